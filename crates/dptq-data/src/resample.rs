//! Separable resampling of RGB u8 images with fixed-point weights (PIL's scheme):
//! each output pixel is a normalised weighted sum over the input pixels under the
//! filter, whose support is widened by the scale factor when downscaling
//! (antialiasing). Reads straight from a crop window, so a RandomResizedCrop costs
//! one resample and no copy.

use image::RgbImage;

use crate::transform::Interpolation;

const PRECISION: u32 = 22;

/// Filter kernel and its support radius (in input pixels at scale 1).
fn kernel(interpolation: Interpolation) -> (fn(f64) -> f64, f64) {
    fn triangle(x: f64) -> f64 {
        (1.0 - x.abs()).max(0.0)
    }
    // Catmull-Rom (a = -0.5), as PIL's and image's bicubic.
    fn cubic(x: f64) -> f64 {
        let a = -0.5;
        let x = x.abs();
        if x < 1.0 {
            ((a + 2.0) * x - (a + 3.0)) * x * x + 1.0
        } else if x < 2.0 {
            (((x - 5.0) * x + 8.0) * x - 4.0) * a
        } else {
            0.0
        }
    }
    fn boxed(x: f64) -> f64 {
        if (-0.5..0.5).contains(&x) { 1.0 } else { 0.0 }
    }
    match interpolation {
        Interpolation::Nearest => (boxed, 0.5),
        Interpolation::Bilinear => (triangle, 1.0),
        Interpolation::Bicubic => (cubic, 2.0),
    }
}

/// For each output index: the first input index and its fixed-point weights, for
/// `out` samples over the input span `[start, start + len)` (taps stay inside it, as
/// if the span had been cropped first).
fn coefficients(
    start: u32,
    len: u32,
    out: u32,
    interpolation: Interpolation,
) -> Vec<(usize, Vec<i32>)> {
    let (k, support) = kernel(interpolation);
    let scale = len as f64 / out as f64;
    let filter_scale = scale.max(1.0);
    let support = support * filter_scale;
    (0..out)
        .map(|i| {
            let center = start as f64 + (i as f64 + 0.5) * scale;
            let lo = ((center - support).floor() as i64).max(start as i64);
            let hi = ((center + support).ceil() as i64).min((start + len) as i64);
            let mut weights: Vec<f64> = (lo..hi)
                .map(|j| k((j as f64 + 0.5 - center) / filter_scale))
                .collect();
            let sum: f64 = weights.iter().sum();
            if sum != 0.0 {
                weights.iter_mut().for_each(|w| *w /= sum);
            }
            let fixed = weights
                .iter()
                .map(|w| (w * (1u32 << PRECISION) as f64).round() as i32)
                .collect();
            (lo as usize, fixed)
        })
        .collect()
}

/// Rounds a fixed-point sum (which started at half a unit) to u8. With 22 fraction
/// bits, `255 * 2^22 * (sum of positive weights <= 1.25)` fits in an i32.
#[inline]
fn clip(acc: i32) -> u8 {
    (acc >> PRECISION).clamp(0, 255) as u8
}

const HALF: i32 = 1 << (PRECISION - 1);

/// Resamples the window `(left, top, width, height)` of `img` to `out_w x out_h`.
pub fn resize_window(
    img: &RgbImage,
    window: (u32, u32, u32, u32),
    out_w: u32,
    out_h: u32,
    interpolation: Interpolation,
) -> RgbImage {
    let (left, top, width, height) = window;
    let iw = img.width();
    let xs = coefficients(left, width, out_w, interpolation);
    let ys = coefficients(top, height, out_h, interpolation);
    // Rows of the input the vertical pass reads.
    let row_lo = ys.iter().map(|(s, _)| *s).min().unwrap_or(0);
    let row_hi = ys.iter().map(|(s, w)| s + w.len()).max().unwrap_or(0);
    let src = img.as_raw();
    let iw = iw as usize;
    let ow = out_w as usize;
    // Horizontal pass into a u8 buffer of rows row_lo..row_hi.
    let mut tmp = vec![0u8; (row_hi - row_lo) * ow * 3];
    for (r, y) in (row_lo..row_hi).enumerate() {
        let row = &src[y * iw * 3..(y + 1) * iw * 3];
        let dst = &mut tmp[r * ow * 3..(r + 1) * ow * 3];
        for (x, (s, w)) in xs.iter().enumerate() {
            let (mut a0, mut a1, mut a2) = (HALF, HALF, HALF);
            for (j, &wt) in w.iter().enumerate() {
                let p = (s + j) * 3;
                a0 += row[p] as i32 * wt;
                a1 += row[p + 1] as i32 * wt;
                a2 += row[p + 2] as i32 * wt;
            }
            dst[x * 3] = clip(a0);
            dst[x * 3 + 1] = clip(a1);
            dst[x * 3 + 2] = clip(a2);
        }
    }
    // Vertical pass.
    let mut out = RgbImage::new(out_w, out_h);
    let dst: &mut [u8] = &mut out;
    let mut acc = vec![0i32; ow * 3];
    for (y, (s, w)) in ys.iter().enumerate() {
        acc.iter_mut().for_each(|a| *a = HALF);
        for (j, &wt) in w.iter().enumerate() {
            let r = s + j - row_lo;
            let row = &tmp[r * ow * 3..(r + 1) * ow * 3];
            for (a, &v) in acc.iter_mut().zip(row) {
                *a += v as i32 * wt;
            }
        }
        for (d, &a) in dst[y * ow * 3..(y + 1) * ow * 3].iter_mut().zip(&acc) {
            *d = clip(a);
        }
    }
    out
}

/// Resamples the whole image to `out_w x out_h`.
pub fn resize(img: &RgbImage, out_w: u32, out_h: u32, interpolation: Interpolation) -> RgbImage {
    if (out_w, out_h) == img.dimensions() {
        return img.clone();
    }
    resize_window(
        img,
        (0, 0, img.width(), img.height()),
        out_w,
        out_h,
        interpolation,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use image::imageops::{self, FilterType};

    fn test_image(w: u32, h: u32) -> RgbImage {
        RgbImage::from_fn(w, h, |x, y| {
            let v = |o: u32| {
                (((x * 37 + y * 11 + o) % 97) as f32 * 2.5 + ((x + y) % 5) as f32 * 3.0) as u8
            };
            image::Rgb([v(0), v(31), v(63)])
        })
    }

    fn max_and_mean_diff(a: &RgbImage, b: &RgbImage) -> (u8, f64) {
        let d: Vec<u8> = a
            .as_raw()
            .iter()
            .zip(b.as_raw())
            .map(|(&x, &y)| x.abs_diff(y))
            .collect();
        let mean = d.iter().map(|&v| v as f64).sum::<f64>() / d.len() as f64;
        (*d.iter().max().unwrap(), mean)
    }

    fn smooth_image(w: u32, h: u32) -> RgbImage {
        RgbImage::from_fn(w, h, |x, y| {
            let v = |o: f32| {
                (128.0 + 90.0 * ((x as f32 * 0.13 + o).sin() * (y as f32 * 0.07).cos())) as u8
            };
            image::Rgb([v(0.0), v(1.0), v(2.0)])
        })
    }

    #[test]
    fn resize_agrees_with_the_image_crate_when_shrinking_and_growing() {
        // Bicubic overshoots on sharp edges, where keeping u8 between the passes (PIL)
        // and keeping f32 (image) legitimately differ: compare it on a smooth image.
        let (sharp, smooth) = (test_image(120, 90), smooth_image(120, 90));
        for (w, h, interp, filter, img) in [
            (
                56,
                56,
                Interpolation::Bilinear,
                FilterType::Triangle,
                &sharp,
            ),
            (
                200,
                150,
                Interpolation::Bilinear,
                FilterType::Triangle,
                &sharp,
            ),
            (
                41,
                73,
                Interpolation::Bicubic,
                FilterType::CatmullRom,
                &smooth,
            ),
            (
                240,
                101,
                Interpolation::Bicubic,
                FilterType::CatmullRom,
                &smooth,
            ),
        ] {
            let ours = resize(img, w, h, interp);
            let reference = imageops::resize(img, w, h, filter);
            let (max, mean) = max_and_mean_diff(&ours, &reference);
            // image keeps f32 between its passes, we keep u8 (as PIL does)
            assert!(
                max <= 3 && mean < 0.6,
                "{w}x{h} {interp:?}: max {max}, mean {mean}"
            );
        }
    }

    #[test]
    fn a_window_resize_equals_cropping_then_resizing() {
        let img = test_image(100, 80);
        let ours = resize_window(&img, (13, 7, 60, 50), 32, 32, Interpolation::Bilinear);
        let cropped = imageops::crop_imm(&img, 13, 7, 60, 50).to_image();
        let reference = imageops::resize(&cropped, 32, 32, FilterType::Triangle);
        let (max, mean) = max_and_mean_diff(&ours, &reference);
        assert!(max <= 3 && mean < 0.6, "max {max}, mean {mean}");
    }

    #[test]
    fn a_constant_image_stays_constant_and_same_size_is_a_copy() {
        let img = RgbImage::from_pixel(37, 23, image::Rgb([10, 200, 99]));
        for interp in [
            Interpolation::Nearest,
            Interpolation::Bilinear,
            Interpolation::Bicubic,
        ] {
            let out = resize(&img, 11, 64, interp);
            assert!(out.pixels().all(|p| p.0 == [10, 200, 99]), "{interp:?}");
        }
        let t = test_image(9, 9);
        assert_eq!(resize(&t, 9, 9, Interpolation::Bicubic), t);
    }
}
