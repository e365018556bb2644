//! Corruptions: identity at degree 0, monotone effect with degree, seeded.

mod common;

use dptq_data::{Corruption, CorruptionKind, Normalize};
use image::RgbImage;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

fn clean(img: &RgbImage) -> Vec<f32> {
    let mut out = vec![0.0; 3 * (img.width() * img.height()) as usize];
    Normalize::IMAGENET.write_chw(img, &mut out);
    out
}

fn corrupted(kind: CorruptionKind, degree: f32, img: &RgbImage, seed: u64) -> Vec<f32> {
    let c = Corruption::new(kind, degree).unwrap();
    c.apply(
        img,
        &Normalize::IMAGENET,
        &mut ChaCha8Rng::seed_from_u64(seed),
    )
    .unwrap()
    .to_chw()
}

fn mad(a: &[f32], b: &[f32]) -> f64 {
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs() as f64)
        .sum::<f64>()
        / a.len() as f64
}

fn images() -> Vec<RgbImage> {
    (0..6)
        .map(|s| common::textured(64, 64, 90 + 10 * s as u8, s))
        .collect()
}

#[test]
fn every_corruption_at_degree_zero_is_the_identity() {
    for img in images() {
        let reference = clean(&img);
        for kind in CorruptionKind::ALL {
            let out = corrupted(kind, 0.0, &img, 1);
            let diff = mad(&out, &reference);
            assert!(
                diff < 1e-6,
                "{kind} at degree 0 changed the image by {diff}"
            );
        }
    }
}

#[test]
fn every_corruption_grows_with_degree() {
    let imgs = images();
    for kind in CorruptionKind::ALL {
        let effect: Vec<f64> = [1.0, 2.0, 3.0, 5.0]
            .iter()
            .map(|&d| {
                imgs.iter()
                    .enumerate()
                    .map(|(i, img)| mad(&corrupted(kind, d, img, i as u64), &clean(img)))
                    .sum::<f64>()
                    / imgs.len() as f64
            })
            .collect();
        assert!(effect[0] > 0.0, "{kind}: {effect:?}");
        assert!(
            effect.windows(2).all(|w| w[0] < w[1]),
            "{kind} is not monotone: {effect:?}"
        );
    }
}

#[test]
fn corruptions_are_determined_by_the_seed() {
    let img = common::textured(48, 48, 110, 9);
    for kind in CorruptionKind::ALL {
        let a = corrupted(kind, 3.0, &img, 4);
        assert_eq!(a, corrupted(kind, 3.0, &img, 4), "{kind}");
    }
    for kind in [CorruptionKind::GaussianNoise, CorruptionKind::RandomErasing] {
        assert_ne!(
            corrupted(kind, 3.0, &img, 4),
            corrupted(kind, 3.0, &img, 5),
            "{kind}"
        );
    }
}

#[test]
fn distribution_shift_changes_only_the_normalisation() {
    let img = common::textured(16, 16, 100, 2);
    let c = Corruption::new(CorruptionKind::DistributionShift, 2.0).unwrap();
    let out = c
        .apply(
            &img,
            &Normalize::IMAGENET,
            &mut ChaCha8Rng::seed_from_u64(0),
        )
        .unwrap();
    let pixels: Vec<f32> = img.as_raw().iter().map(|&v| v as f32 / 255.0).collect();
    assert_eq!(out.pixels.as_raw(), &pixels);
    for ch in 0..3 {
        let dm = (out.normalize.mean[ch] - Normalize::IMAGENET.mean[ch]).abs();
        let ratio = out.normalize.std[ch] / Normalize::IMAGENET.std[ch];
        assert!((dm - 0.1).abs() < 1e-6, "mean moved by {dm}");
        assert!((ratio.ln().abs() - 0.2).abs() < 1e-5, "std ratio {ratio}");
    }
}

#[test]
fn corruptions_parse_from_kind_at_degree_and_reject_bad_degrees() {
    let c: Corruption = "gaussian-blur@2.5".parse().unwrap();
    assert_eq!(
        c,
        Corruption::new(CorruptionKind::GaussianBlur, 2.5).unwrap()
    );
    assert_eq!(c.to_string(), "gaussian-blur@2.5");
    for kind in CorruptionKind::ALL {
        assert_eq!(kind.name().parse::<CorruptionKind>().unwrap(), kind);
    }
    assert!("blur@1".parse::<Corruption>().is_err());
    assert!(Corruption::new(CorruptionKind::Jpeg, -1.0).is_err());
    assert!(Corruption::new(CorruptionKind::Jpeg, f32::NAN).is_err());
}
