//! Inference as `dptq predict` runs it: logits of a batch of tensors under an optional
//! per-layer bit assignment, and top-k classes of a real image with hub weights.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use candle_core::{D, DType, Device, Tensor};
use dptq_quant::ExampleBits;
use serde::Deserialize;

use crate::classifier::{Classifier, build, load_weights};
use crate::error::{Error, Result};
use crate::hub::{self, HubConfig, HubId, HubOptions};
use crate::imagenet::IMAGENET_CLASSES;
use crate::param::{LoadReport, ParamStore, read_safetensors, write_safetensors};
use crate::plan::{ActivationPlan, BnMode, QuantPlan};
use crate::preprocess::Preprocess;

/// The bits of one layer in a `--bits` file: one integer for every example, or one
/// integer or `null` (full precision) per example.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(untagged)]
pub enum LayerBitsSpec {
    /// Every example at these bits.
    All(u32),
    /// One entry per example; `null` keeps that example at full precision.
    PerExample(Vec<Option<u32>>),
}

/// A `--bits` file: quantizable layer name -> [`LayerBitsSpec`]. Unlisted layers stay at
/// full precision.
pub type BitsSpec = BTreeMap<String, LayerBitsSpec>;

/// Reads a `--bits` JSON file; errors name the file.
pub fn read_bits_file(path: &Path) -> Result<BitsSpec> {
    let text = std::fs::read_to_string(path).map_err(|source| Error::Io {
        path: path.to_path_buf(),
        source,
    })?;
    serde_json::from_str(&text).map_err(|e| Error::Parse {
        path: path.to_path_buf(),
        detail: format!("expected {{\"<layer>\": <bits> | [<bits> | null, ...]}}: {e}"),
    })
}

/// One [`ExampleBits`] per quantizable layer of the model, for a batch of `n`: listed
/// layers as given, unlisted ones at full precision. Unknown layer names and lists of the
/// wrong length are errors naming them.
pub fn resolve_bits(spec: &BitsSpec, layers: &[String], n: usize) -> Result<Vec<ExampleBits>> {
    for name in spec.keys() {
        if !layers.contains(name) {
            return Err(Error::InvalidConfig {
                what: "bits layer",
                detail: format!(
                    "{name:?} is not a quantizable layer of this model (see `dptq layers`)"
                ),
            });
        }
    }
    layers
        .iter()
        .map(|name| match spec.get(name) {
            None => Ok(ExampleBits::PerExample(vec![None; n])),
            Some(LayerBitsSpec::All(b)) => Ok(ExampleBits::All(*b)),
            Some(LayerBitsSpec::PerExample(v)) if v.len() == n => {
                Ok(ExampleBits::PerExample(v.clone()))
            }
            Some(LayerBitsSpec::PerExample(v)) => Err(Error::InvalidConfig {
                what: "bits list",
                detail: format!(
                    "layer {name:?} lists {} entries for a batch of {n}",
                    v.len()
                ),
            }),
        })
        .collect()
}

/// Parses `f32`, `f64`, `f16`, `bf16`.
pub fn parse_dtype(name: &str) -> Result<DType> {
    match name {
        "f32" => Ok(DType::F32),
        "f64" => Ok(DType::F64),
        "f16" => Ok(DType::F16),
        "bf16" => Ok(DType::BF16),
        other => Err(Error::InvalidConfig {
            what: "dtype",
            detail: format!("{other:?} (known: f32, f64, f16, bf16)"),
        }),
    }
}

/// Parses `cpu`, `cuda[:i]`, `metal[:i]`; a device this build lacks is an error.
pub fn parse_device(name: &str) -> Result<Device> {
    let (kind, ordinal) = match name.split_once(':') {
        Some((k, i)) => {
            let i = i.parse::<usize>().map_err(|_| Error::InvalidConfig {
                what: "device",
                detail: format!("{name:?}: the ordinal is not an integer"),
            })?;
            (k, i)
        }
        None => (name, 0),
    };
    match kind {
        "cpu" => Ok(Device::Cpu),
        "cuda" => Ok(Device::new_cuda(ordinal)?),
        "metal" => Ok(Device::new_metal(ordinal)?),
        other => Err(Error::InvalidConfig {
            what: "device",
            detail: format!("{other:?} (known: cpu, cuda, metal)"),
        }),
    }
}

/// What `dptq predict --arch` computes.
#[derive(Clone, Debug)]
pub struct PredictConfig {
    /// Registered architecture.
    pub arch: String,
    /// Classes of the head.
    pub num_classes: usize,
    /// timm-named safetensors checkpoint.
    pub weights: PathBuf,
    /// Per-layer bits; `None` runs at full precision (weights too).
    pub bits: Option<BitsSpec>,
    /// Weight bits when `bits` is given. Default 16.
    pub weight_bits: u32,
    /// Compute dtype. Default f32.
    pub dtype: DType,
    /// Compute device. Default CPU.
    pub device: Device,
}

/// A model with its weights, ready for inference.
pub struct LoadedModel {
    /// The network (built on a frozen store: no autograd graph).
    pub model: Box<dyn Classifier>,
    /// The store its tensors live in.
    pub store: ParamStore,
    /// What loading did (re-initialised head, ignored keys).
    pub report: LoadReport,
}

/// Builds `arch` and loads `weights` (strict; another head size is re-initialised), in
/// `dtype` on `device`.
pub fn load_model(
    arch: &str,
    num_classes: usize,
    weights: &Path,
    dtype: DType,
    device: &Device,
) -> Result<LoadedModel> {
    let store = ParamStore::new(0, dtype, device);
    build(arch, num_classes, &store)?;
    let report = load_weights(arch, &store, weights)?;
    let frozen = store.frozen();
    let model = build(arch, num_classes, &frozen)?;
    Ok(LoadedModel {
        model,
        store: frozen,
        report,
    })
}

/// Logits `[N, C]` of `images` `[N, 3, H, W]` (any float dtype; converted), in eval mode.
pub fn predict(cfg: &PredictConfig, images: &Tensor) -> Result<Tensor> {
    let loaded = load_model(
        &cfg.arch,
        cfg.num_classes,
        &cfg.weights,
        cfg.dtype,
        &cfg.device,
    )?;
    let xs = images.to_dtype(cfg.dtype)?.to_device(&cfg.device)?;
    let n = xs.dims4()?.0;
    let model = loaded.model.as_ref();
    match &cfg.bits {
        None => model.forward_fp(&xs, BnMode::Eval),
        Some(spec) => {
            let per_layer = resolve_bits(spec, model.quant_layers(), n)?;
            let plan = QuantPlan {
                weight_bits: Some(cfg.weight_bits),
                activations: ActivationPlan::LayerBits(&per_layer),
                ..QuantPlan::full_precision()
            };
            model.forward(&xs, &plan, BnMode::Eval, None)
        }
    }
}

/// `dptq predict --input X --output Y`: reads tensor `images` from `input`, writes tensor
/// `logits` to `output` (in the compute dtype).
pub fn predict_files(cfg: &PredictConfig, input: &Path, output: &Path) -> Result<Tensor> {
    let tensors = read_safetensors(input, &Device::Cpu)?;
    let images = tensors.get("images").ok_or_else(|| Error::Parse {
        path: input.to_path_buf(),
        detail: format!(
            "no tensor \"images\" (found: {:?})",
            tensors.keys().collect::<Vec<_>>()
        ),
    })?;
    if images.rank() != 4 || images.dim(1)? != 3 {
        return Err(Error::Parse {
            path: input.to_path_buf(),
            detail: format!("\"images\" must be [N, 3, H, W], got {:?}", images.dims()),
        });
    }
    let logits = predict(cfg, images)?;
    let out =
        std::collections::HashMap::from([("logits".to_string(), logits.to_device(&Device::Cpu)?)]);
    write_safetensors(&out, output)?;
    Ok(logits)
}

/// One ranked class.
#[derive(Clone, Debug, PartialEq)]
pub struct Ranked {
    /// Class index.
    pub class: usize,
    /// Softmax probability.
    pub prob: f32,
    /// Class name when known (ImageNet-1k heads, or names in the hub config).
    pub name: Option<String>,
}

/// `dptq predict --hub ID --image photo.jpg`: fetch weights and preprocessing, classify,
/// return the `k` most probable classes.
pub fn classify_image(
    id: &str,
    image: &Path,
    k: usize,
    hub_opts: &HubOptions,
    device: &Device,
) -> Result<Vec<Ranked>> {
    let id = HubId::parse(id)?;
    let files = hub::fetch(&id.repo, hub_opts)?;
    let cfg = HubConfig::read(&files.config)?;
    let loaded = load_model(
        &cfg.architecture,
        cfg.num_classes,
        &files.weights,
        DType::F32,
        device,
    )?;
    let pre = Preprocess::from_pretrained(&cfg.pretrained_cfg)?;
    let xs = pre.load(image, device)?.unsqueeze(0)?;
    let logits = loaded.model.forward_fp(&xs, BnMode::Eval)?;
    let probs = candle_nn::ops::softmax(&logits.squeeze(0)?, D::Minus1)?.to_vec1::<f32>()?;
    let names: Option<Vec<String>> = cfg.label_names.clone().or_else(|| {
        (cfg.num_classes == IMAGENET_CLASSES.len())
            .then(|| IMAGENET_CLASSES.iter().map(|s| s.to_string()).collect())
    });
    Ok(top_k(&probs, k, names.as_deref()))
}

/// The `k` largest entries of `probs`, best first (ties: lower index first).
pub fn top_k(probs: &[f32], k: usize, names: Option<&[String]>) -> Vec<Ranked> {
    let mut order: Vec<usize> = (0..probs.len()).collect();
    order.sort_by(|&a, &b| probs[b].total_cmp(&probs[a]).then(a.cmp(&b)));
    order
        .into_iter()
        .take(k)
        .map(|class| Ranked {
            class,
            prob: probs[class],
            name: names.and_then(|n| n.get(class).cloned()),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn layers() -> Vec<String> {
        vec!["a".into(), "b".into(), "fc".into()]
    }

    #[test]
    fn bits_json_takes_integers_lists_and_nulls_and_leaves_unlisted_layers_fp() -> Result<()> {
        let spec: BitsSpec = serde_json::from_str(r#"{"a": 4, "fc": [8, null]}"#).unwrap();
        let bits = resolve_bits(&spec, &layers(), 2)?;
        assert_eq!(
            bits,
            vec![
                ExampleBits::All(4),
                ExampleBits::PerExample(vec![None, None]),
                ExampleBits::PerExample(vec![Some(8), None])
            ]
        );
        Ok(())
    }

    #[test]
    fn unknown_layers_and_short_lists_are_errors_naming_them() {
        let spec: BitsSpec = serde_json::from_str(r#"{"layer9.conv": 4}"#).unwrap();
        let err = resolve_bits(&spec, &layers(), 2).unwrap_err().to_string();
        assert!(err.contains("layer9.conv"), "{err}");
        let spec: BitsSpec = serde_json::from_str(r#"{"b": [4]}"#).unwrap();
        let err = resolve_bits(&spec, &layers(), 2).unwrap_err().to_string();
        assert!(
            err.contains("\"b\"") && err.contains("1 entries") && err.contains("batch of 2"),
            "{err}"
        );
        assert!(serde_json::from_str::<BitsSpec>(r#"{"b": "four"}"#).is_err());
    }

    #[test]
    fn top_k_ranks_by_probability_with_names() {
        let names: Vec<String> = ["cat", "dog", "fish"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let ranked = top_k(&[0.2, 0.5, 0.3], 2, Some(&names));
        assert_eq!(
            ranked.iter().map(|r| r.class).collect::<Vec<_>>(),
            vec![1, 2]
        );
        assert_eq!(ranked[0].name.as_deref(), Some("dog"));
        assert_eq!(top_k(&[0.1, 0.9], 5, None).len(), 2);
    }

    #[test]
    fn dtypes_and_devices_parse_and_unknown_ones_are_named() {
        assert_eq!(parse_dtype("bf16").unwrap(), DType::BF16);
        assert!(parse_dtype("f8").unwrap_err().to_string().contains("f8"));
        assert!(parse_device("cpu").unwrap().is_cpu());
        assert!(parse_device("tpu").unwrap_err().to_string().contains("tpu"));
        assert!(parse_device("cuda:x").is_err());
    }
}
