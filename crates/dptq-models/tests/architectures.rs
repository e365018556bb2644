//! The architectures against timm's own tables (`fixtures/timm/`, read from timm 1.0.31
//! with `num_classes=37`): state-dict keys and shapes, quantizable layers in execution
//! order, and each layer's input shape at 224 px.

use std::collections::BTreeMap;
use std::path::PathBuf;

use candle_core::{DType, Device, Tensor};
use dptq_models::{ActivationCapture, BnMode, ParamStore, QuantPlan, build};

type Result<T> = std::result::Result<T, Box<dyn std::error::Error>>;

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../fixtures/timm")
        .join(name)
}

/// `name -> shape` of timm's state dict, without `num_batches_tracked`.
fn timm_keys(arch: &str) -> Result<BTreeMap<String, Vec<usize>>> {
    let text = std::fs::read_to_string(fixture(&format!("keys_{arch}.json")))?;
    let json: BTreeMap<String, (Vec<usize>, String)> = serde_json::from_str(&text)?;
    Ok(json
        .into_iter()
        .filter(|(k, _)| !k.ends_with("num_batches_tracked"))
        .map(|(k, (s, _))| (k, s))
        .collect())
}

/// Rows of `layers_{arch}.tsv`: (name, in_shape at 224 px).
fn timm_layers(arch: &str) -> Result<Vec<(String, Vec<usize>)>> {
    let text = std::fs::read_to_string(fixture(&format!("layers_{arch}.tsv")))?;
    let mut rows = Vec::new();
    for line in text.lines().skip(1) {
        let cols: Vec<&str> = line.split('\t').collect();
        let shape: Vec<usize> = serde_json::from_str(cols[6])?;
        rows.push((cols[1].to_string(), shape));
    }
    Ok(rows)
}

const PAPER_ARCHS: [(&str, usize); 4] = [
    ("resnet18", 20),
    ("resnet50", 53),
    ("mobilenetv4_conv_medium", 77),
    ("regnetx_016", 59),
];

#[test]
fn parameter_names_and_shapes_are_timms_state_dict() -> Result<()> {
    for (arch, _) in PAPER_ARCHS {
        let store = ParamStore::new(0, DType::F32, &Device::Cpu);
        build(arch, 37, &store)?;
        let ours: BTreeMap<String, Vec<usize>> = store.shapes().into_iter().collect();
        let theirs = timm_keys(arch)?;
        let missing: Vec<&String> = theirs.keys().filter(|k| !ours.contains_key(*k)).collect();
        let extra: Vec<&String> = ours.keys().filter(|k| !theirs.contains_key(*k)).collect();
        assert!(
            missing.is_empty() && extra.is_empty(),
            "{arch}: missing {missing:?}, extra {extra:?}"
        );
        for (k, shape) in &theirs {
            assert_eq!(&ours[k], shape, "{arch}: {k}");
        }
    }
    Ok(())
}

#[test]
fn quantizable_layers_are_every_conv_and_linear_but_the_stem_in_execution_order() -> Result<()> {
    for (arch, l) in PAPER_ARCHS {
        let store = ParamStore::new(0, DType::F32, &Device::Cpu);
        let model = build(arch, 37, &store)?;
        let expected: Vec<String> = timm_layers(arch)?
            .into_iter()
            .skip(1)
            .map(|(n, _)| n)
            .collect();
        assert_eq!(model.quant_layers(), expected.as_slice(), "{arch}");
        assert_eq!(model.quant_layers().len(), l, "{arch}");
    }
    Ok(())
}

#[test]
fn every_layer_sees_timms_input_shape_at_224_px() -> Result<()> {
    for (arch, _) in PAPER_ARCHS {
        let store = ParamStore::new(0, DType::F32, &Device::Cpu).frozen();
        let model = build(arch, 37, &store)?;
        let xs = Tensor::randn(0f32, 1.0, (1, 3, 224, 224), &Device::Cpu)?;
        let mut capture = ActivationCapture::all();
        let logits = model.forward(
            &xs,
            &QuantPlan::full_precision(),
            BnMode::Eval,
            Some(&mut capture),
        )?;
        assert_eq!(logits.dims(), &[1, 37], "{arch}");
        let layers = timm_layers(arch)?;
        assert_eq!(capture.len(), layers.len() - 1, "{arch}");
        for (l, (name, shape)) in layers.iter().skip(1).enumerate() {
            let got = capture.get(l).expect("captured").fp.dims().to_vec();
            assert_eq!(&got[1..], shape.as_slice(), "{arch} {name}");
        }
    }
    Ok(())
}

#[test]
fn small_variants_have_the_documented_depths_and_run_at_28_and_64_px() -> Result<()> {
    // Parameter counts by hand: stem 3x3 conv + BN, per block two 3x3 convs + BNs (and a
    // 1x1 projection + BN where the shape changes), fc with bias, 10 classes.
    for (arch, l, params) in [
        ("resnet_tiny", 9, 78_042),
        ("resnet_small", 12, 308_826),
        ("resnet_tiny_wide", 15, 696_618),
    ] {
        let store = ParamStore::new(1, DType::F32, &Device::Cpu);
        let model = build(arch, 10, &store)?;
        assert_eq!(model.quant_layers().len(), l, "{arch}");
        assert_eq!(model.quant_layers().last().map(String::as_str), Some("fc"));
        assert_eq!(store.num_trainable(), params, "{arch}");
        for px in [28, 64] {
            let xs = Tensor::randn(0f32, 1.0, (2, 3, px, px), &Device::Cpu)?;
            let ys = model.forward_fp(&xs, BnMode::Eval)?;
            assert_eq!(ys.dims(), &[2, 10]);
        }
    }
    let store = ParamStore::new(1, DType::F32, &Device::Cpu);
    let tiny = build("resnet_tiny", 10, &store)?;
    assert_eq!(
        tiny.quant_layers(),
        [
            "layer1.0.conv1",
            "layer1.0.conv2",
            "layer2.0.conv1",
            "layer2.0.conv2",
            "layer2.0.downsample.0",
            "layer3.0.conv1",
            "layer3.0.conv2",
            "layer3.0.downsample.0",
            "fc"
        ]
    );
    Ok(())
}

#[test]
fn other_family_members_build_with_timm_shapes() -> Result<()> {
    // Parameter counts printed by timm 1.0.31 (num_classes=1000).
    for (arch, count) in [
        ("resnet34", 21_797_672),
        ("regnetx_002", 2_684_792),
        ("regnetx_004", 5_157_512),
        ("regnetx_008", 7_259_656),
        ("regnetx_032", 15_296_552),
        ("mobilenetv4_conv_small", 3_774_024),
    ] {
        let store = ParamStore::new(0, DType::F32, &Device::Cpu);
        build(arch, 1000, &store)?;
        assert_eq!(store.num_trainable(), count, "{arch}");
    }
    Ok(())
}

#[test]
fn unknown_architecture_error_lists_the_known_names() {
    let store = ParamStore::new(0, DType::F32, &Device::Cpu);
    let err = build("resnet19", 10, &store)
        .err()
        .expect("an error")
        .to_string();
    assert!(
        err.contains("\"resnet19\"") && err.contains("resnet18") && err.contains("regnetx_016"),
        "{err}"
    );
}
