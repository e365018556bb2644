//! Parity with timm, in f64: the logits of the paper's four architectures, full precision
//! and quantized per SPEC §1, match timm's to 1e-6 relative.
//!
//! The small variants are compared with the same network built in PyTorch from timm's
//! `BasicBlock` (`SmallResNet` in the tool).
//!
//! The fixtures `fixtures/timm/parity_<arch>.safetensors` were generated with
//! `python3 tools/timm_reference.py` (timm 1.0.31, torch 2.15, seed 20250101): timm built
//! with num_classes=37, every state-dict tensor filled by the seeded generator that
//! `dptq_models::seeded` implements bit for bit, 2 seeded images of 64 px, eval mode;
//! quantized = 16-bit symmetric weights (stem included) + per-example activation bits in
//! 3..=10 at the input of every Conv2d/Linear but the stem (forward pre-hooks). Only the
//! outputs are stored: weights, images and bits are regenerated here from the seed.

use std::collections::HashMap;
use std::path::PathBuf;

use candle_core::{DType, Device, Tensor};
use dptq_models::seeded::{seeded_bits, seeded_images, seeded_state_dict};
use dptq_models::{ActivationCapture, BnMode, LoadOptions, ParamStore, QuantPlan, build};

type Result<T> = std::result::Result<T, Box<dyn std::error::Error>>;

struct Fixture {
    tensors: HashMap<String, Tensor>,
    meta: HashMap<String, String>,
}

fn fixture(arch: &str) -> Result<Fixture> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join(format!("../../fixtures/timm/parity_{arch}.safetensors"));
    let bytes = std::fs::read(&path)?;
    let (_, header) = safetensors::SafeTensors::read_metadata(&bytes)?;
    let meta = header.metadata().clone().unwrap_or_default();
    let tensors = candle_core::safetensors::load_buffer(&bytes, &Device::Cpu)?;
    Ok(Fixture { tensors, meta })
}

/// max |a - b| / max |b|.
fn rel_err(a: &Tensor, b: &Tensor) -> Result<f64> {
    let diff = (a - b)?.abs()?.max_all()?.to_scalar::<f64>()?;
    let scale = b.abs()?.max_all()?.to_scalar::<f64>()?;
    Ok(diff / scale)
}

fn check(arch: &str) -> Result<()> {
    let fx = fixture(arch)?;
    let seed: u64 = fx.meta["seed"].parse()?;
    let px: usize = fx.meta["px"].parse()?;
    let num_classes: usize = fx.meta["num_classes"].parse()?;
    let dev = Device::Cpu;

    let store = ParamStore::new(0, DType::F64, &dev).frozen();
    let model = build(arch, num_classes, &store)?;
    store.set_tensors(
        &seeded_state_dict(seed, &store)?,
        "seeded",
        &LoadOptions::default(),
    )?;

    // The tap list is timm's module list, in the order timm's pre-hooks fired.
    let layers: Vec<String> = serde_json::from_str(&fx.meta["layers"])?;
    assert_eq!(
        model.quant_layers(),
        layers.as_slice(),
        "{arch}: quantizable layers"
    );
    let l = layers.len();

    let images = seeded_images(seed, (2, 3, px, px), DType::F64, &dev)?;
    let mut capture = ActivationCapture::all();
    let fp = model.forward(
        &images,
        &QuantPlan::full_precision(),
        BnMode::Eval,
        Some(&mut capture),
    )?;
    let err = rel_err(&fp, &fx.tensors["logits_fp"])?;
    assert!(
        err < 1e-6,
        "{arch}: full precision differs from timm by {err:e} (relative)"
    );

    let in_shapes: Vec<Vec<usize>> = serde_json::from_str(&fx.meta["in_shapes"])?;
    for (i, shape) in in_shapes.iter().enumerate() {
        assert_eq!(
            &capture.get(i).expect("captured").fp.dims()[1..],
            shape.as_slice(),
            "{arch}: {}",
            layers[i]
        );
    }

    let bits = seeded_bits(seed, 2, l, 3, 10, &dev)?;
    let stored_bits = fx.tensors["bits"]
        .to_dtype(DType::I64)?
        .flatten_all()?
        .to_vec1::<i64>()?;
    let our_bits: Vec<i64> = bits
        .flatten_all()?
        .to_vec1::<u32>()?
        .into_iter()
        .map(i64::from)
        .collect();
    assert_eq!(our_bits, stored_bits, "{arch}: seeded bits");

    let q = model.forward(&images, &QuantPlan::bits(&bits), BnMode::Eval, None)?;
    let err = rel_err(&q, &fx.tensors["logits_q"])?;
    assert!(
        err < 1e-6,
        "{arch}: quantized differs from timm by {err:e} (relative)"
    );
    // The quantized reference is far from full precision: the comparison has teeth.
    assert!(
        rel_err(&fx.tensors["logits_q"], &fx.tensors["logits_fp"])? > 1e-3,
        "{arch}"
    );

    let mask: Vec<bool> = (0..l).map(|i| i < l / 2).collect();
    let half = model.forward(
        &images,
        &QuantPlan::bits(&bits).with_mask(&mask),
        BnMode::Eval,
        None,
    )?;
    let err = rel_err(&half, &fx.tensors["logits_q_half"])?;
    assert!(
        err < 1e-6,
        "{arch}: half-masked quantized differs from timm by {err:e} (relative)"
    );
    Ok(())
}

#[test]
fn resnet18_matches_timm_in_f64_at_full_precision_and_quantized() -> Result<()> {
    check("resnet18")
}

#[test]
fn resnet50_matches_timm_in_f64_at_full_precision_and_quantized() -> Result<()> {
    check("resnet50")
}

#[test]
fn mobilenetv4_conv_medium_matches_timm_in_f64_at_full_precision_and_quantized() -> Result<()> {
    check("mobilenetv4_conv_medium")
}

#[test]
fn regnetx_016_matches_timm_in_f64_at_full_precision_and_quantized() -> Result<()> {
    check("regnetx_016")
}

#[test]
fn resnet_tiny_matches_its_pytorch_build_from_timm_blocks() -> Result<()> {
    check("resnet_tiny")
}

#[test]
fn resnet_small_matches_its_pytorch_build_from_timm_blocks() -> Result<()> {
    check("resnet_small")
}
