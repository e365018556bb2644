//! Image transforms: the evaluation transform (resize, center crop), the training
//! augmentations of SPEC §6 (RandomResizedCrop, horizontal flip, padded random crop,
//! RandAugment, colour jitter), normalisation, and mixup at batch level.
//!
//! Transforms work on `RgbImage` (u8, as PIL does) and draw every random number from
//! the generator they are given, so that a seed fixes every augmentation.

use std::f32::consts::PI;

use candle_core::Tensor;
use image::imageops;
use image::{Rgb, RgbImage};
use imageproc::geometric_transformations::{Interpolation as Warp, Projection, warp};
use rand::Rng;
use rand::seq::SliceRandom;
use rand_distr::{Beta, Distribution};

use crate::error::{Error, Result};
use crate::resample;

/// Resampling filter for resizes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Interpolation {
    /// Nearest neighbour.
    Nearest,
    /// Bilinear (triangle filter, antialiased when downscaling, like PIL).
    #[default]
    Bilinear,
    /// Bicubic (Catmull-Rom, antialiased when downscaling).
    Bicubic,
}

impl Interpolation {
    /// Parses timm's `pretrained_cfg["interpolation"]` (`bilinear`, `bicubic`, `nearest`).
    pub fn from_timm(name: &str) -> Result<Self> {
        match name {
            "nearest" => Ok(Self::Nearest),
            "bilinear" => Ok(Self::Bilinear),
            "bicubic" => Ok(Self::Bicubic),
            _ => Err(Error::config("interpolation", format!("unknown {name:?}"))),
        }
    }
}

/// Per-channel normalisation `x = (p / 255 - mean[c]) / std[c]`.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Normalize {
    /// Channel means in [0, 1] units (R, G, B). Default: ImageNet `[0.485, 0.456, 0.406]`.
    pub mean: [f32; 3],
    /// Channel standard deviations (R, G, B). Default: ImageNet `[0.229, 0.224, 0.225]`.
    pub std: [f32; 3],
}

impl Default for Normalize {
    fn default() -> Self {
        Self::IMAGENET
    }
}

impl Normalize {
    /// ImageNet statistics, used by every timm model of the paper.
    pub const IMAGENET: Normalize = Normalize {
        mean: [0.485, 0.456, 0.406],
        std: [0.229, 0.224, 0.225],
    };
    /// Pixel statistics of the embedded Fashion-MNIST training subset (grey, so the
    /// three channels agree); checked against the data by a test.
    pub const FASHION_MNIST: Normalize = Normalize {
        mean: [0.2860; 3],
        std: [0.3530; 3],
    };

    /// Writes `img` normalised into `out` in CHW order (`out.len() == 3 * H * W`).
    pub fn write_chw(&self, img: &RgbImage, out: &mut [f32]) {
        let hw = (img.width() * img.height()) as usize;
        debug_assert_eq!(out.len(), 3 * hw);
        let mut lut = [[0f32; 256]; 3];
        for c in 0..3 {
            for (v, slot) in lut[c].iter_mut().enumerate() {
                *slot = (v as f32 / 255.0 - self.mean[c]) / self.std[c];
            }
        }
        let (r, rest) = out.split_at_mut(hw);
        let (g, b) = rest.split_at_mut(hw);
        for (i, p) in img.as_raw().chunks_exact(3).enumerate() {
            r[i] = lut[0][p[0] as usize];
            g[i] = lut[1][p[1] as usize];
            b[i] = lut[2][p[2] as usize];
        }
    }

    /// Writes a float image (values in [0, 1]) normalised into `out` in CHW order.
    pub fn write_chw_f32(&self, img: &image::Rgb32FImage, out: &mut [f32]) {
        let hw = (img.width() * img.height()) as usize;
        debug_assert_eq!(out.len(), 3 * hw);
        for (i, p) in img.as_raw().chunks_exact(3).enumerate() {
            for c in 0..3 {
                out[c * hw + i] = (p[c] - self.mean[c]) / self.std[c];
            }
        }
    }
}

/// Resizes so that the shorter side is `short` (torchvision `Resize(int)`).
pub fn resize_shorter(img: &RgbImage, short: u32, interpolation: Interpolation) -> RgbImage {
    let (w, h) = img.dimensions();
    let (nw, nh) = if w <= h {
        (short, ((short as u64 * h as u64) / w as u64).max(1) as u32)
    } else {
        (((short as u64 * w as u64) / h as u64).max(1) as u32, short)
    };
    resample::resize(img, nw, nh, interpolation)
}

/// Crops the central `size x size` window (torchvision `CenterCrop`; zero padding
/// when the image is smaller).
pub fn center_crop(img: &RgbImage, size: u32) -> RgbImage {
    let (w, h) = img.dimensions();
    if (w, h) == (size, size) {
        return img.clone();
    }
    let left = (w as i64 - size as i64) as f64 / 2.0;
    let top = (h as i64 - size as i64) as f64 / 2.0;
    // Python rounds halves to even, as torchvision does here.
    crop_padded(
        img,
        left.round_ties_even() as i64,
        top.round_ties_even() as i64,
        size,
        size,
    )
}

/// The `width x height` window at (`left`, `top`), which may reach outside the image
/// (zero fill there).
fn crop_padded(img: &RgbImage, left: i64, top: i64, width: u32, height: u32) -> RgbImage {
    let (w, h) = (img.width() as i64, img.height() as i64);
    let mut out = RgbImage::new(width, height);
    let src = img.as_raw();
    let dst: &mut [u8] = &mut out;
    for y in 0..height as i64 {
        let sy = top + y;
        if sy < 0 || sy >= h {
            continue;
        }
        let x0 = left.max(0);
        let x1 = (left + width as i64).min(w);
        if x0 >= x1 {
            continue;
        }
        let s = ((sy * w + x0) * 3) as usize;
        let d = ((y * width as i64 + (x0 - left)) * 3) as usize;
        let n = ((x1 - x0) * 3) as usize;
        dst[d..d + n].copy_from_slice(&src[s..s + n]);
    }
    out
}

/// The evaluation transform: resize the shorter side to `floor(size / crop_pct)`,
/// then center-crop `size x size` (timm's eval transform).
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct EvalTransform {
    /// Output side in pixels. Default: 224.
    pub size: u32,
    /// Fraction of the resized image kept by the crop. Default: 0.875.
    pub crop_pct: f32,
    /// Resampling filter. Default: bilinear.
    pub interpolation: Interpolation,
}

impl Default for EvalTransform {
    fn default() -> Self {
        Self {
            size: 224,
            crop_pct: 0.875,
            interpolation: Interpolation::Bilinear,
        }
    }
}

impl EvalTransform {
    /// Resizes and center-crops `img` to `size x size`.
    pub fn apply(&self, img: &RgbImage) -> RgbImage {
        let scale = ((self.size as f64) / self.crop_pct as f64).floor() as u32;
        let resized = resize_shorter(img, scale.max(self.size), self.interpolation);
        center_crop(&resized, self.size)
    }

    fn validate(&self) -> Result<()> {
        if self.size == 0 || !(self.crop_pct > 0.0 && self.crop_pct <= 1.0) {
            return Err(Error::config(
                "eval transform",
                format!(
                    "size {} and crop_pct {} (need size > 0, 0 < crop_pct <= 1)",
                    self.size, self.crop_pct
                ),
            ));
        }
        Ok(())
    }
}

/// torchvision's `RandomResizedCrop`: a random window of `scale` times the area and
/// aspect ratio in `ratio` (log-uniform), resized to the output size.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct RandomResizedCrop {
    /// Range of the window's area as a fraction of the image. Default: (0.08, 1.0).
    pub scale: (f32, f32),
    /// Range of the window's width / height. Default: (3/4, 4/3).
    pub ratio: (f32, f32),
}

impl Default for RandomResizedCrop {
    fn default() -> Self {
        Self {
            scale: (0.08, 1.0),
            ratio: (3.0 / 4.0, 4.0 / 3.0),
        }
    }
}

impl RandomResizedCrop {
    /// The window `(left, top, width, height)` for an image of `w x h` (torchvision's
    /// `get_params`: ten tries, then a center crop clamped to the ratio range).
    pub fn window(&self, w: u32, h: u32, rng: &mut impl Rng) -> (u32, u32, u32, u32) {
        let area = (w * h) as f32;
        let (lr0, lr1) = (self.ratio.0.ln(), self.ratio.1.ln());
        for _ in 0..10 {
            let target = area * rng.random_range(self.scale.0..=self.scale.1);
            let aspect = rng.random_range(lr0..=lr1).exp();
            let cw = (target * aspect).sqrt().round() as u32;
            let ch = (target / aspect).sqrt().round() as u32;
            if cw > 0 && ch > 0 && cw <= w && ch <= h {
                let top = rng.random_range(0..=h - ch);
                let left = rng.random_range(0..=w - cw);
                return (left, top, cw, ch);
            }
        }
        let in_ratio = w as f32 / h as f32;
        let (cw, ch) = if in_ratio < self.ratio.0 {
            (w, ((w as f32 / self.ratio.0).round() as u32).clamp(1, h))
        } else if in_ratio > self.ratio.1 {
            (((h as f32 * self.ratio.1).round() as u32).clamp(1, w), h)
        } else {
            (w, h)
        };
        ((w - cw) / 2, (h - ch) / 2, cw, ch)
    }
}

/// torchvision's `ColorJitter`: brightness, contrast, saturation factors drawn from
/// `[max(0, 1 - v), 1 + v]` and a hue shift from `[-hue, hue]`, applied in random order.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ColorJitter {
    /// Default: 0.4.
    pub brightness: f32,
    /// Default: 0.4.
    pub contrast: f32,
    /// Default: 0.4.
    pub saturation: f32,
    /// Fraction of a full hue turn, at most 0.5. Default: 0.0.
    pub hue: f32,
}

impl Default for ColorJitter {
    fn default() -> Self {
        Self {
            brightness: 0.4,
            contrast: 0.4,
            saturation: 0.4,
            hue: 0.0,
        }
    }
}

impl ColorJitter {
    /// Applies the jitter in place.
    pub fn apply(&self, img: &mut RgbImage, rng: &mut impl Rng) {
        let mut order = [0usize, 1, 2, 3];
        order.shuffle(rng);
        let factor = |v: f32, rng: &mut dyn rand::RngCore| {
            if v > 0.0 {
                Some(rng.random_range((1.0 - v).max(0.0)..=1.0 + v))
            } else {
                None
            }
        };
        for op in order {
            match op {
                0 => {
                    if let Some(f) = factor(self.brightness, rng) {
                        adjust_brightness(img, f)
                    }
                }
                1 => {
                    if let Some(f) = factor(self.contrast, rng) {
                        adjust_contrast(img, f)
                    }
                }
                2 => {
                    if let Some(f) = factor(self.saturation, rng) {
                        adjust_saturation(img, f)
                    }
                }
                _ => {
                    if self.hue > 0.0 {
                        let shift = rng.random_range(-self.hue..=self.hue);
                        adjust_hue(img, shift)
                    }
                }
            }
        }
    }
}

/// RandAugment (Cubuk et al. 2020) with torchvision's 14 operations and magnitude
/// table: `n` operations drawn uniformly, each at magnitude bin `m` of `bins`, signed
/// operations negated with probability 1/2; geometric ones use nearest-neighbour
/// sampling and black fill.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct RandAugment {
    /// Operations per image. Default: 2 (the paper's value was lost in extraction).
    pub n: usize,
    /// Magnitude bin, `0..bins`. Default: 9.
    pub m: usize,
    /// Number of magnitude bins. Default: 31.
    pub bins: usize,
}

impl Default for RandAugment {
    fn default() -> Self {
        Self {
            n: 2,
            m: 9,
            bins: 31,
        }
    }
}

/// One RandAugment operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AugmentOp {
    Identity,
    ShearX,
    ShearY,
    TranslateX,
    TranslateY,
    Rotate,
    Brightness,
    Color,
    Contrast,
    Sharpness,
    Posterize,
    Solarize,
    AutoContrast,
    Equalize,
}

impl AugmentOp {
    /// The 14 operations, in torchvision's order.
    pub const ALL: [AugmentOp; 14] = [
        AugmentOp::Identity,
        AugmentOp::ShearX,
        AugmentOp::ShearY,
        AugmentOp::TranslateX,
        AugmentOp::TranslateY,
        AugmentOp::Rotate,
        AugmentOp::Brightness,
        AugmentOp::Color,
        AugmentOp::Contrast,
        AugmentOp::Sharpness,
        AugmentOp::Posterize,
        AugmentOp::Solarize,
        AugmentOp::AutoContrast,
        AugmentOp::Equalize,
    ];

    /// torchvision's magnitude for bin `m` of `bins` (unsigned), and whether the
    /// operation is signed.
    pub fn magnitude(self, m: usize, bins: usize, w: u32, h: u32) -> (f32, bool) {
        let t = if bins > 1 {
            m as f32 / (bins - 1) as f32
        } else {
            0.0
        };
        match self {
            AugmentOp::Identity | AugmentOp::AutoContrast | AugmentOp::Equalize => (0.0, false),
            AugmentOp::ShearX | AugmentOp::ShearY => (0.3 * t, true),
            AugmentOp::TranslateX => (150.0 / 331.0 * w as f32 * t, true),
            AugmentOp::TranslateY => (150.0 / 331.0 * h as f32 * t, true),
            AugmentOp::Rotate => (30.0 * t, true),
            AugmentOp::Brightness
            | AugmentOp::Color
            | AugmentOp::Contrast
            | AugmentOp::Sharpness => (0.9 * t, true),
            // bits kept: 8 - round(m / ((bins - 1) / 4))
            AugmentOp::Posterize => {
                let step = if bins > 1 {
                    (bins - 1) as f32 / 4.0
                } else {
                    1.0
                };
                (8.0 - (m as f32 / step).round(), false)
            }
            AugmentOp::Solarize => (255.0 * (1.0 - t), false),
        }
    }

    /// Applies the operation with its (signed) magnitude.
    pub fn apply(self, img: &RgbImage, magnitude: f32) -> RgbImage {
        let black = Rgb([0u8, 0, 0]);
        let affine = |m: [f32; 9]| {
            let p = Projection::from_matrix(m).expect("invertible affine map");
            warp(img, &p, Warp::Nearest, black)
        };
        match self {
            AugmentOp::Identity => img.clone(),
            // torchvision shears about the top-left corner: x' = x + s * y.
            AugmentOp::ShearX => affine([1.0, magnitude, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0]),
            AugmentOp::ShearY => affine([1.0, 0.0, 0.0, magnitude, 1.0, 0.0, 0.0, 0.0, 1.0]),
            AugmentOp::TranslateX => {
                affine([1.0, 0.0, magnitude.trunc(), 0.0, 1.0, 0.0, 0.0, 0.0, 1.0])
            }
            AugmentOp::TranslateY => {
                affine([1.0, 0.0, 0.0, 0.0, 1.0, magnitude.trunc(), 0.0, 0.0, 1.0])
            }
            AugmentOp::Rotate => rotate(img, magnitude, Warp::Nearest),
            AugmentOp::Brightness => map_clone(img, |im| adjust_brightness(im, 1.0 + magnitude)),
            AugmentOp::Color => map_clone(img, |im| adjust_saturation(im, 1.0 + magnitude)),
            AugmentOp::Contrast => map_clone(img, |im| adjust_contrast(im, 1.0 + magnitude)),
            AugmentOp::Sharpness => sharpness(img, 1.0 + magnitude),
            AugmentOp::Posterize => {
                let bits = magnitude.clamp(0.0, 8.0) as u32;
                let mask = if bits == 0 {
                    0u8
                } else {
                    (0xffu16 << (8 - bits)) as u8
                };
                map_clone(img, |im| im.iter_mut().for_each(|v| *v &= mask))
            }
            AugmentOp::Solarize => map_clone(img, |im| {
                im.iter_mut().for_each(|v| {
                    if *v as f32 >= magnitude {
                        *v = 255 - *v
                    }
                })
            }),
            AugmentOp::AutoContrast => autocontrast(img),
            AugmentOp::Equalize => equalize(img),
        }
    }
}

impl RandAugment {
    /// Applies `n` random operations.
    pub fn apply(&self, img: &RgbImage, rng: &mut impl Rng) -> RgbImage {
        let mut out = img.clone();
        for _ in 0..self.n {
            let op = AugmentOp::ALL[rng.random_range(0..AugmentOp::ALL.len())];
            let (mut mag, signed) = op.magnitude(self.m, self.bins, out.width(), out.height());
            if signed && rng.random_bool(0.5) {
                mag = -mag;
            }
            out = op.apply(&out, mag);
        }
        out
    }
}

fn map_clone(img: &RgbImage, f: impl FnOnce(&mut RgbImage)) -> RgbImage {
    let mut out = img.clone();
    f(&mut out);
    out
}

#[inline]
fn clamp_u8(v: f32) -> u8 {
    // For v in [0, 255], truncating v + 0.5 is f32::round (halves away from zero) without
    // the libm call; NaN maps to 0.
    (v.clamp(0.0, 255.0) + 0.5) as u8
}

/// PIL/torchvision grey level `(299 R + 587 G + 114 B) / 1000`.
#[inline]
fn grey(p: &[u8]) -> f32 {
    (299.0 * p[0] as f32 + 587.0 * p[1] as f32 + 114.0 * p[2] as f32) / 1000.0
}

/// Blends with black: `p * factor`.
pub fn adjust_brightness(img: &mut RgbImage, factor: f32) {
    apply_lut(img, |v| v * factor);
}

/// Maps every channel value through `f` (tabulated once for the 256 levels).
fn apply_lut(img: &mut RgbImage, f: impl Fn(f32) -> f32) {
    let mut lut = [0u8; 256];
    for (v, slot) in lut.iter_mut().enumerate() {
        *slot = clamp_u8(f(v as f32));
    }
    img.iter_mut().for_each(|v| *v = lut[*v as usize]);
}

/// Blends with the image's mean grey level: `mean + factor * (p - mean)`.
pub fn adjust_contrast(img: &mut RgbImage, factor: f32) {
    let n = (img.width() * img.height()).max(1) as f32;
    let mean = img.as_raw().chunks_exact(3).map(grey).sum::<f32>() / n;
    apply_lut(img, |v| mean + factor * (v - mean));
}

/// Blends with the pixel's grey level: `g + factor * (p - g)`.
pub fn adjust_saturation(img: &mut RgbImage, factor: f32) {
    let raw: &mut [u8] = img;
    for p in raw.chunks_exact_mut(3) {
        let g = grey(p);
        for v in p.iter_mut() {
            *v = clamp_u8(g + factor * (*v as f32 - g));
        }
    }
}

/// Rotates the hue by `shift` of a full turn (HSV space).
pub fn adjust_hue(img: &mut RgbImage, shift: f32) {
    let raw: &mut [u8] = img;
    for p in raw.chunks_exact_mut(3) {
        let [r, g, b] = [
            p[0] as f32 / 255.0,
            p[1] as f32 / 255.0,
            p[2] as f32 / 255.0,
        ];
        let max = r.max(g).max(b);
        let min = r.min(g).min(b);
        let delta = max - min;
        if delta <= 0.0 {
            continue;
        }
        let mut hue = if max == r {
            ((g - b) / delta).rem_euclid(6.0)
        } else if max == g {
            (b - r) / delta + 2.0
        } else {
            (r - g) / delta + 4.0
        } / 6.0;
        hue = (hue + shift).rem_euclid(1.0);
        let (s, v) = (delta / max, max);
        let h6 = hue * 6.0;
        let i = h6.floor();
        let f = h6 - i;
        let (pp, q, t) = (v * (1.0 - s), v * (1.0 - s * f), v * (1.0 - s * (1.0 - f)));
        let (r, g, b) = match i as i32 % 6 {
            0 => (v, t, pp),
            1 => (q, v, pp),
            2 => (pp, v, t),
            3 => (pp, q, v),
            4 => (t, pp, v),
            _ => (v, pp, q),
        };
        p[0] = clamp_u8(r * 255.0);
        p[1] = clamp_u8(g * 255.0);
        p[2] = clamp_u8(b * 255.0);
    }
}

/// Rotates by `degrees` counter-clockwise about the center (black fill).
pub fn rotate(img: &RgbImage, degrees: f32, interpolation: Warp) -> RgbImage {
    let (w, h) = img.dimensions();
    let (cx, cy) = (w as f32 / 2.0, h as f32 / 2.0);
    let p = Projection::translate(cx, cy)
        * Projection::rotate(-degrees * PI / 180.0)
        * Projection::translate(-cx, -cy);
    warp(img, &p, interpolation, Rgb([0, 0, 0]))
}

/// Blends with the 3x3 smoothed image (PIL's SMOOTH kernel, borders untouched).
fn sharpness(img: &RgbImage, factor: f32) -> RgbImage {
    let (w, h) = img.dimensions();
    let mut out = img.clone();
    if w < 3 || h < 3 {
        return out;
    }
    let src = img.as_raw();
    let dst: &mut [u8] = &mut out;
    let (w, h) = (w as usize, h as usize);
    for y in 1..h - 1 {
        for x in 1..w - 1 {
            for c in 0..3 {
                let mut s = 0u32;
                for dy in 0..3 {
                    for dx in 0..3 {
                        let v = src[((y + dy - 1) * w + x + dx - 1) * 3 + c] as u32;
                        s += if dy == 1 && dx == 1 { 5 * v } else { v };
                    }
                }
                let smooth = (s as f32 / 13.0).round();
                let i = (y * w + x) * 3 + c;
                dst[i] = clamp_u8(smooth + factor * (src[i] as f32 - smooth));
            }
        }
    }
    out
}

/// Stretches each channel to the full 0..255 range.
fn autocontrast(img: &RgbImage) -> RgbImage {
    let mut out = img.clone();
    for c in 0..3 {
        let (mut lo, mut hi) = (255u8, 0u8);
        for p in img.as_raw().chunks_exact(3) {
            lo = lo.min(p[c]);
            hi = hi.max(p[c]);
        }
        if hi > lo {
            let scale = 255.0 / (hi - lo) as f32;
            let raw: &mut [u8] = &mut out;
            for p in raw.chunks_exact_mut(3) {
                p[c] = clamp_u8((p[c] - lo) as f32 * scale);
            }
        }
    }
    out
}

/// Histogram equalisation per channel (PIL's `ImageOps.equalize`).
fn equalize(img: &RgbImage) -> RgbImage {
    let mut out = img.clone();
    for c in 0..3 {
        let mut hist = [0usize; 256];
        for p in img.as_raw().chunks_exact(3) {
            hist[p[c] as usize] += 1;
        }
        let last = hist
            .iter()
            .rposition(|&n| n > 0)
            .map(|i| hist[i])
            .unwrap_or(0);
        let total: usize = hist.iter().sum();
        let step = (total - last) / 255;
        if step == 0 {
            continue;
        }
        let mut lut = [0u8; 256];
        let mut acc = step / 2;
        for (v, slot) in lut.iter_mut().enumerate() {
            *slot = (acc / step).min(255) as u8;
            acc += hist[v];
        }
        let raw: &mut [u8] = &mut out;
        for p in raw.chunks_exact_mut(3) {
            p[c] = lut[p[c] as usize];
        }
    }
    out
}

/// The training transform of SPEC §6, in this order: RandomResizedCrop to
/// `size x size` (or, without it, the shorter side resized to `size` and center-cropped),
/// horizontal flip, padded random crop, RandAugment, colour jitter. Mixup is applied
/// to whole batches by [`mixup`].
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct TrainTransform {
    /// Output side in pixels. Default: 224.
    pub size: u32,
    /// Default: `Some(RandomResizedCrop::default())`.
    pub random_resized_crop: Option<RandomResizedCrop>,
    /// Probability of a horizontal flip. Default: 0.5.
    pub hflip: f32,
    /// Zero padding on each side before a random `size x size` crop (the paper's
    /// "another random crop with padding"). Default: `Some(4)`.
    pub padded_crop: Option<u32>,
    /// Default: `Some(RandAugment::default())` (n = 2, m = 9).
    pub rand_augment: Option<RandAugment>,
    /// Default: `Some(ColorJitter::default())` (0.4, 0.4, 0.4, 0).
    pub color_jitter: Option<ColorJitter>,
    /// Resampling filter of the crops. Default: bilinear.
    pub interpolation: Interpolation,
}

impl Default for TrainTransform {
    fn default() -> Self {
        Self {
            size: 224,
            random_resized_crop: Some(RandomResizedCrop::default()),
            hflip: 0.5,
            padded_crop: Some(4),
            rand_augment: Some(RandAugment::default()),
            color_jitter: Some(ColorJitter::default()),
            interpolation: Interpolation::Bilinear,
        }
    }
}

impl TrainTransform {
    /// The standard ImageNet training transform: RandomResizedCrop and flip only.
    pub fn crop_flip(size: u32) -> Self {
        Self {
            size,
            padded_crop: None,
            rand_augment: None,
            color_jitter: None,
            ..Default::default()
        }
    }

    /// Augments `img` into a `size x size` image.
    pub fn apply(&self, img: &RgbImage, rng: &mut impl Rng) -> RgbImage {
        let size = self.size;
        let mut out = match &self.random_resized_crop {
            Some(rrc) => {
                let (l, t, w, h) = rrc.window(img.width(), img.height(), rng);
                if (w, h) == (size, size) {
                    crop_padded(img, l as i64, t as i64, w, h)
                } else {
                    resample::resize_window(img, (l, t, w, h), size, size, self.interpolation)
                }
            }
            None => center_crop(&resize_shorter(img, size, self.interpolation), size),
        };
        if self.hflip > 0.0 && rng.random::<f32>() < self.hflip {
            imageops::flip_horizontal_in_place(&mut out);
        }
        if let Some(pad) = self.padded_crop {
            let dx = rng.random_range(0..=2 * pad) as i64 - pad as i64;
            let dy = rng.random_range(0..=2 * pad) as i64 - pad as i64;
            if (dx, dy) != (0, 0) {
                out = crop_padded(&out, dx, dy, size, size);
            }
        }
        if let Some(ra) = &self.rand_augment {
            out = ra.apply(&out, rng);
        }
        if let Some(cj) = &self.color_jitter {
            cj.apply(&mut out, rng);
        }
        out
    }

    fn validate(&self) -> Result<()> {
        let bad = |reason: String| Err(Error::config("train transform", reason));
        if self.size == 0 {
            return bad("size 0".into());
        }
        if !(0.0..=1.0).contains(&self.hflip) {
            return bad(format!("hflip probability {}", self.hflip));
        }
        if let Some(r) = &self.random_resized_crop {
            let scale_ok = r.scale.0 > 0.0 && r.scale.0 <= r.scale.1 && r.scale.1 <= 1.0;
            let ratio_ok = r.ratio.0 > 0.0 && r.ratio.0 <= r.ratio.1;
            if !scale_ok || !ratio_ok {
                return bad(format!(
                    "random resized crop scale {:?} ratio {:?}",
                    r.scale, r.ratio
                ));
            }
        }
        if let Some(ra) = &self.rand_augment
            && (ra.bins == 0 || ra.m >= ra.bins)
        {
            return bad(format!(
                "RandAugment magnitude {} of {} bins",
                ra.m, ra.bins
            ));
        }
        if let Some(cj) = &self.color_jitter
            && (cj.brightness < 0.0
                || cj.contrast < 0.0
                || cj.saturation < 0.0
                || !(0.0..=0.5).contains(&cj.hue))
        {
            return bad(format!("colour jitter {cj:?}"));
        }
        Ok(())
    }
}

/// The per-image transform a loader applies before normalisation.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub enum Transform {
    /// Deterministic resize + center crop.
    Eval(EvalTransform),
    /// Random augmentations (seeded per sample).
    Train(TrainTransform),
}

impl Default for Transform {
    fn default() -> Self {
        Transform::Eval(EvalTransform::default())
    }
}

impl Transform {
    /// Output side in pixels.
    pub fn size(&self) -> u32 {
        match self {
            Transform::Eval(t) => t.size,
            Transform::Train(t) => t.size,
        }
    }

    /// Applies the transform (the generator is unused by `Eval`).
    pub fn apply(&self, img: &RgbImage, rng: &mut impl Rng) -> RgbImage {
        match self {
            Transform::Eval(t) => t.apply(img),
            Transform::Train(t) => t.apply(img, rng),
        }
    }

    /// Checks every parameter's range.
    pub fn validate(&self) -> Result<()> {
        match self {
            Transform::Eval(t) => t.validate(),
            Transform::Train(t) => t.validate(),
        }
    }
}

/// Mixing of a batch by [`mixup`]: `mixed[i] = lambda * x[i] + (1 - lambda) * x[permutation[i]]`.
#[derive(Debug, Clone, PartialEq)]
pub struct Mix {
    /// Weight of the original images, drawn from Beta(alpha, alpha).
    pub lambda: f64,
    /// Partner of each example.
    pub permutation: Vec<usize>,
}

/// mixup (Zhang et al. 2018) on a batch `images: [N, C, H, W]`:
/// `lambda ~ Beta(alpha, alpha)`, a random permutation of the batch, and
/// `lambda * x + (1 - lambda) * x[perm]`. `alpha = 0` returns the batch unchanged.
/// For consistent distillation, feed the returned batch to teacher and student alike.
pub fn mixup(images: &Tensor, alpha: f64, rng: &mut impl Rng) -> Result<(Tensor, Mix)> {
    let n = images.dim(0)?;
    if !(alpha >= 0.0 && alpha.is_finite()) {
        return Err(Error::config("mixup alpha", format!("{alpha} (need >= 0)")));
    }
    if alpha == 0.0 || n < 2 {
        let mix = Mix {
            lambda: 1.0,
            permutation: (0..n).collect(),
        };
        return Ok((images.clone(), mix));
    }
    let beta = Beta::new(alpha, alpha).map_err(|e| Error::config("mixup alpha", e.to_string()))?;
    let lambda: f64 = beta.sample(rng);
    let mut permutation: Vec<usize> = (0..n).collect();
    permutation.shuffle(rng);
    let idx = Tensor::from_vec(
        permutation.iter().map(|&i| i as u32).collect::<Vec<_>>(),
        n,
        images.device(),
    )?;
    let partners = images.index_select(&idx, 0)?;
    let mixed = ((images * lambda)? + (partners * (1.0 - lambda))?)?;
    Ok((
        mixed,
        Mix {
            lambda,
            permutation,
        },
    ))
}
