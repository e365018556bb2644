//! Training augmentations, the evaluation transform and mixup.

mod common;

use candle_core::{Device, Tensor};
use dptq_data::{
    AugmentOp, ColorJitter, EvalTransform, Interpolation, RandAugment, RandomResizedCrop,
    TrainTransform, center_crop, mixup, resize_shorter,
};
use image::RgbImage;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

fn rng(seed: u64) -> ChaCha8Rng {
    ChaCha8Rng::seed_from_u64(seed)
}

fn mad(a: &RgbImage, b: &RgbImage) -> f64 {
    assert_eq!(a.dimensions(), b.dimensions());
    let s: u64 = a
        .as_raw()
        .iter()
        .zip(b.as_raw())
        .map(|(&x, &y)| (x as i64 - y as i64).unsigned_abs())
        .sum();
    s as f64 / a.as_raw().len() as f64
}

#[test]
fn eval_transform_resizes_the_shorter_side_then_center_crops() {
    let img = common::textured(500, 375, 120, 1);
    let eval = EvalTransform::default(); // 224, crop_pct 0.875 -> shorter side 256
    let out = eval.apply(&img);
    assert_eq!(out.dimensions(), (224, 224));
    let resized = resize_shorter(&img, 256, Interpolation::Bilinear);
    assert_eq!(resized.dimensions(), (341, 256));
    let expected = center_crop(&resized, 224);
    assert_eq!(out, expected);
    // the crop is the central window: pixel (0,0) of the crop is pixel (58, 16)
    assert_eq!(expected.get_pixel(0, 0), resized.get_pixel(58, 16));
    // same size, crop_pct 1: the identity
    let small = common::textured(28, 28, 100, 2);
    let id = EvalTransform {
        size: 28,
        crop_pct: 1.0,
        ..Default::default()
    };
    assert_eq!(id.apply(&small), small);
}

#[test]
fn random_resized_crop_windows_stay_inside_and_follow_the_scale_range() {
    let rrc = RandomResizedCrop::default();
    let mut r = rng(0);
    let mut areas = Vec::new();
    for _ in 0..2000 {
        let (l, t, w, h) = rrc.window(500, 375, &mut r);
        assert!(w > 0 && h > 0 && l + w <= 500 && t + h <= 375);
        areas.push((w * h) as f64 / (500.0 * 375.0));
    }
    let min = areas.iter().cloned().fold(1.0, f64::min);
    let mean = areas.iter().sum::<f64>() / areas.len() as f64;
    assert!(min >= 0.075, "{min}");
    // uniform scale in [0.08, 1] has mean 0.54; rejected large windows pull it lower
    assert!(mean > 0.35 && mean < 0.6, "{mean}");
}

#[test]
fn train_transform_is_deterministic_by_seed_and_varies_across_seeds() {
    let img = common::textured(120, 90, 110, 3);
    let t = TrainTransform {
        size: 64,
        ..Default::default()
    };
    let a = t.apply(&img, &mut rng(5));
    assert_eq!(a.dimensions(), (64, 64));
    assert_eq!(a, t.apply(&img, &mut rng(5)));
    assert_ne!(a, t.apply(&img, &mut rng(6)));
}

#[test]
fn horizontal_flip_mirrors_and_padded_crop_shifts_with_zero_fill() {
    let img = common::textured(32, 32, 128, 4);
    let flip_only = TrainTransform {
        size: 32,
        random_resized_crop: None,
        hflip: 1.0,
        padded_crop: None,
        rand_augment: None,
        color_jitter: None,
        interpolation: Interpolation::Bilinear,
    };
    let flipped = flip_only.apply(&img, &mut rng(0));
    assert_eq!(flipped.get_pixel(0, 5), img.get_pixel(31, 5));
    assert_eq!(flipped.get_pixel(31, 7), img.get_pixel(0, 7));
    let pad = TrainTransform {
        hflip: 0.0,
        padded_crop: Some(4),
        ..flip_only
    };
    let mut shifted = 0;
    for seed in 0..20 {
        let out = pad.apply(&img, &mut rng(seed));
        // find the shift (dx, dy) in [-4, 4]^2 that explains the output exactly
        let found = (-4i64..=4)
            .flat_map(|dy| (-4i64..=4).map(move |dx| (dx, dy)))
            .find(|&(dx, dy)| {
                (0..32i64).all(|y| {
                    (0..32i64).all(|x| {
                        let (sx, sy) = (x + dx, y + dy);
                        let want = if (0..32).contains(&sx) && (0..32).contains(&sy) {
                            *img.get_pixel(sx as u32, sy as u32)
                        } else {
                            image::Rgb([0, 0, 0])
                        };
                        *out.get_pixel(x as u32, y as u32) == want
                    })
                })
            });
        let (dx, dy) = found.expect("a shift of at most 4 pixels");
        if (dx, dy) != (0, 0) {
            shifted += 1;
        }
    }
    assert!(shifted >= 15, "{shifted}");
}

#[test]
fn randaugment_operations_at_zero_magnitude_are_the_identity() {
    let img = common::textured(40, 30, 100, 5);
    for op in AugmentOp::ALL {
        let (mag, _) = op.magnitude(0, 31, 40, 30);
        let out = op.apply(&img, mag);
        match op {
            // these have no magnitude: they always act
            AugmentOp::AutoContrast | AugmentOp::Equalize => assert_ne!(out, img, "{op:?}"),
            // threshold 255 only flips pure white, absent from this image
            _ => assert_eq!(out, img, "{op:?} at magnitude {mag}"),
        }
    }
}

#[test]
fn randaugment_effect_grows_with_magnitude() {
    let img = common::textured(48, 48, 120, 6);
    for op in [
        AugmentOp::ShearX,
        AugmentOp::TranslateY,
        AugmentOp::Rotate,
        AugmentOp::Brightness,
        AugmentOp::Color,
        AugmentOp::Contrast,
        AugmentOp::Posterize,
        AugmentOp::Solarize,
    ] {
        let effect: Vec<f64> = [5, 15, 30]
            .iter()
            .map(|&m| {
                let (mag, _) = op.magnitude(m, 31, 48, 48);
                mad(&op.apply(&img, mag), &img)
            })
            .collect();
        assert!(
            effect[0] < effect[1] && effect[1] < effect[2],
            "{op:?}: {effect:?}"
        );
    }
}

#[test]
fn colour_jitter_at_zero_is_the_identity_and_otherwise_seeded() {
    let img = common::textured(30, 30, 100, 7);
    let none = ColorJitter {
        brightness: 0.0,
        contrast: 0.0,
        saturation: 0.0,
        hue: 0.0,
    };
    let mut out = img.clone();
    none.apply(&mut out, &mut rng(0));
    assert_eq!(out, img);
    let cj = ColorJitter {
        hue: 0.2,
        ..Default::default()
    };
    let (mut a, mut b, mut c) = (img.clone(), img.clone(), img.clone());
    cj.apply(&mut a, &mut rng(1));
    cj.apply(&mut b, &mut rng(1));
    cj.apply(&mut c, &mut rng(2));
    assert_eq!(a, b);
    assert_ne!(a, c);
    assert_ne!(a, img);
}

#[test]
fn randaugment_is_seeded() {
    let img = common::textured(40, 40, 100, 8);
    let ra = RandAugment::default();
    assert_eq!(ra.apply(&img, &mut rng(3)), ra.apply(&img, &mut rng(3)));
    let distinct: std::collections::HashSet<Vec<u8>> = (0..10)
        .map(|s| ra.apply(&img, &mut rng(s)).into_raw())
        .collect();
    assert!(distinct.len() >= 5, "{}", distinct.len());
}

#[test]
fn mixup_is_a_convex_combination_with_a_permutation() {
    let dev = Device::Cpu;
    let x = Tensor::arange(0f32, 4.0 * 3.0 * 2.0 * 2.0, &dev)
        .unwrap()
        .reshape((4, 3, 2, 2))
        .unwrap();
    let (same, mix0) = mixup(&x, 0.0, &mut rng(0)).unwrap();
    assert_eq!(mix0.lambda, 1.0);
    assert_eq!(
        same.flatten_all().unwrap().to_vec1::<f32>().unwrap(),
        x.flatten_all().unwrap().to_vec1::<f32>().unwrap()
    );
    let (mixed, mix) = mixup(&x, 1.0, &mut rng(9)).unwrap();
    assert!(mix.lambda > 0.0 && mix.lambda < 1.0);
    let mut perm = mix.permutation.clone();
    perm.sort();
    assert_eq!(perm, vec![0, 1, 2, 3]);
    let xs = x.flatten_from(1).unwrap().to_vec2::<f32>().unwrap();
    let ms = mixed.flatten_from(1).unwrap().to_vec2::<f32>().unwrap();
    for i in 0..4 {
        for k in 0..12 {
            let want = mix.lambda as f32 * xs[i][k]
                + (1.0 - mix.lambda as f32) * xs[mix.permutation[i]][k];
            assert!((ms[i][k] - want).abs() < 1e-4);
        }
    }
    let (_, again) = mixup(&x, 1.0, &mut rng(9)).unwrap();
    assert_eq!(again, mix);
    assert!(mixup(&x, -1.0, &mut rng(0)).is_err());
}

/// The 61x47 test pattern of the torchvision golden files.
fn pattern() -> RgbImage {
    RgbImage::from_fn(61, 47, |x, y| {
        image::Rgb([0, 1, 2].map(|c| ((x * 37 + y * 11 + c * 63) % 256) as u8))
    })
}

/* fixtures/data/eval_transform_{bilinear,bicubic}_32.bin were generated with the following
   code (torchvision 0.29.2, Pillow 13.0.0):

    y, x = np.mgrid[0:47, 0:61]
    img = np.stack([(x * 37 + y * 11 + c * 63) % 256 for c in range(3)], -1).astype(np.uint8)
    for name, interp in [("bilinear", InterpolationMode.BILINEAR), ("bicubic", InterpolationMode.BICUBIC)]:
        t = transforms.Compose([transforms.Resize(36, interpolation=interp), transforms.CenterCrop(32)])
        open(f"fixtures/data/eval_transform_{name}_32.bin", "wb").write(np.asarray(t(Image.fromarray(img))).tobytes())
*/
#[test]
fn resize_and_center_crop_match_torchvision_and_pil() {
    for (name, interp) in [
        ("bilinear", Interpolation::Bilinear),
        ("bicubic", Interpolation::Bicubic),
    ] {
        let path = format!(
            "{}/../../fixtures/data/eval_transform_{name}_32.bin",
            env!("CARGO_MANIFEST_DIR")
        );
        let golden = std::fs::read(&path).unwrap();
        let ours = center_crop(&resize_shorter(&pattern(), 36, interp), 32);
        // the same fixed-point scheme as PIL's resample: bit-exact
        assert_eq!(ours.as_raw(), &golden, "{name}");
    }
}
