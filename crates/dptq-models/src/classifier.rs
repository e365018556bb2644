//! The classifier interface and the registry of architectures by timm name.

use std::path::Path;

use candle_core::{DType, Device, Tensor};

use crate::error::{Error, Result};
use crate::mobilenetv4::{MobileNetV4, MobileNetV4Config};
use crate::param::{LoadOptions, LoadReport, ParamStore};
use crate::plan::{ActivationCapture, BnMode, QuantPlan};
use crate::regnet::{RegNet, RegNetConfig};
use crate::resnet::{ResNet, ResNetConfig};

/// An image classifier whose every quantizable activation a plan can reach.
pub trait Classifier: Send + Sync {
    /// Architecture name (`resnet18`, `resnet_tiny`, ...).
    fn arch(&self) -> &str;

    /// Number of output classes.
    fn num_classes(&self) -> usize;

    /// The `L` quantizable activations — the input of every Conv2d and Linear but the
    /// stem — by timm module name, in execution order.
    fn quant_layers(&self) -> &[String];

    /// Logits of a batch. xs: `[N, 3, H, W]` (normalised) -> `[N, num_classes]`.
    ///
    /// `plan` says which weights and activations are fake-quantized, `bn` how BatchNorm
    /// normalises, and `capture` (opt-in) records layer inputs, FP and quantized.
    fn forward(
        &self,
        xs: &Tensor,
        plan: &QuantPlan<'_>,
        bn: BnMode,
        capture: Option<&mut ActivationCapture>,
    ) -> Result<Tensor>;

    /// Full-precision logits: `forward` with [`QuantPlan::full_precision`].
    fn forward_fp(&self, xs: &Tensor, bn: BnMode) -> Result<Tensor> {
        self.forward(xs, &QuantPlan::full_precision(), bn, None)
    }
}

/// An architecture by family and configuration.
#[derive(Clone, Debug, PartialEq)]
pub enum ArchConfig {
    /// timm `resnet.py` and the small variants.
    ResNet(ResNetConfig),
    /// timm `regnet.py` (RegNetX).
    RegNet(RegNetConfig),
    /// timm `mobilenetv3.py` MobileNetV4 conv models.
    MobileNetV4(MobileNetV4Config),
}

/// The registered architecture names, in the order `dptq layers` lists them.
pub const ARCH_NAMES: &[&str] = &[
    "resnet_tiny",
    "resnet_small",
    "resnet_tiny_wide",
    "resnet18",
    "resnet34",
    "resnet50",
    "regnetx_002",
    "regnetx_004",
    "regnetx_008",
    "regnetx_016",
    "regnetx_032",
    "mobilenetv4_conv_small",
    "mobilenetv4_conv_medium",
];

impl ArchConfig {
    /// The configuration of a registered name (see [`ARCH_NAMES`]); an error lists them.
    pub fn from_name(name: &str) -> Result<Self> {
        let cfg = match name {
            "resnet_tiny" => Self::ResNet(ResNetConfig::resnet_tiny()),
            "resnet_small" => Self::ResNet(ResNetConfig::resnet_small()),
            "resnet_tiny_wide" => Self::ResNet(ResNetConfig::resnet_tiny_wide()),
            "resnet18" => Self::ResNet(ResNetConfig::resnet18()),
            "resnet34" => Self::ResNet(ResNetConfig::resnet34()),
            "resnet50" => Self::ResNet(ResNetConfig::resnet50()),
            "regnetx_002" => Self::RegNet(RegNetConfig::regnetx_002()),
            "regnetx_004" => Self::RegNet(RegNetConfig::regnetx_004()),
            "regnetx_008" => Self::RegNet(RegNetConfig::regnetx_008()),
            "regnetx_016" => Self::RegNet(RegNetConfig::regnetx_016()),
            "regnetx_032" => Self::RegNet(RegNetConfig::regnetx_032()),
            "mobilenetv4_conv_small" => Self::MobileNetV4(MobileNetV4Config::conv_small()),
            "mobilenetv4_conv_medium" => Self::MobileNetV4(MobileNetV4Config::conv_medium()),
            _ => {
                return Err(Error::UnknownArch {
                    arch: name.to_string(),
                    known: ARCH_NAMES.iter().map(|s| s.to_string()).collect(),
                });
            }
        };
        Ok(cfg)
    }

    /// The module name of the classifier head (re-initialised when a checkpoint has another
    /// number of classes): `fc`, `head.fc` or `classifier`.
    pub fn head_name(&self) -> &'static str {
        match self {
            Self::ResNet(_) => "fc",
            Self::RegNet(_) => "head.fc",
            Self::MobileNetV4(_) => "classifier",
        }
    }

    /// Builds this configuration as `arch` with `num_classes` outputs on `store`.
    pub fn build(
        &self,
        arch: &str,
        num_classes: usize,
        store: &ParamStore,
    ) -> Result<Box<dyn Classifier>> {
        if num_classes == 0 {
            return Err(Error::InvalidConfig {
                what: "num_classes",
                detail: "must be at least 1".into(),
            });
        }
        Ok(match self {
            Self::ResNet(cfg) => Box::new(ResNet::new(arch, cfg, num_classes, store)?),
            Self::RegNet(cfg) => Box::new(RegNet::new(arch, cfg, num_classes, store)?),
            Self::MobileNetV4(cfg) => Box::new(MobileNetV4::new(arch, cfg, num_classes, store)?),
        })
    }
}

/// Builds the registered architecture `arch` with `num_classes` outputs on `store`:
/// tensors absent from the store are created from its seed, present ones are reused.
pub fn build(arch: &str, num_classes: usize, store: &ParamStore) -> Result<Box<dyn Classifier>> {
    ArchConfig::from_name(arch)?.build(arch, num_classes, store)
}

/// Loads a timm-named checkpoint into a store built for `arch`. A head of another number of
/// classes is re-initialised (reported and warned), any other mismatch is an error.
pub fn load_weights(arch: &str, store: &ParamStore, path: impl AsRef<Path>) -> Result<LoadReport> {
    let head = ArchConfig::from_name(arch)?.head_name();
    store.load(
        path,
        &LoadOptions {
            reinit_on_mismatch: vec![head.to_string()],
        },
    )
}

/// One quantizable layer, as `dptq layers` lists it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LayerInfo {
    /// Position `l` in the `[N, L]` bit plans.
    pub index: usize,
    /// timm module name.
    pub name: String,
    /// Input shape without the batch dimension (`[C, H, W]` or `[C]`), when measured.
    pub in_shape: Option<Vec<usize>>,
}

/// The quantizable layers of `arch`; with `px`, each layer's input shape for one
/// `px x px` image (one full-precision forward with seeded weights).
pub fn describe_layers(
    arch: &str,
    num_classes: usize,
    px: Option<usize>,
) -> Result<Vec<LayerInfo>> {
    let store = ParamStore::new(0, DType::F32, &Device::Cpu).frozen();
    let model = build(arch, num_classes, &store)?;
    let mut infos: Vec<LayerInfo> = model
        .quant_layers()
        .iter()
        .enumerate()
        .map(|(index, name)| LayerInfo {
            index,
            name: name.clone(),
            in_shape: None,
        })
        .collect();
    if let Some(px) = px {
        let xs = Tensor::zeros((1, 3, px, px), DType::F32, &Device::Cpu)?;
        let mut capture = ActivationCapture::all();
        model.forward(
            &xs,
            &QuantPlan::full_precision(),
            BnMode::Eval,
            Some(&mut capture),
        )?;
        for info in &mut infos {
            info.in_shape = capture.get(info.index).map(|c| c.fp.dims()[1..].to_vec());
        }
    }
    Ok(infos)
}
