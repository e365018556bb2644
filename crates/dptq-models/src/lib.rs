//! dptq-models: the paper's image classifiers as trainable candle modules whose weights
//! are timm's, name for name, and whose every quantizable activation a plan can reach.
//!
//! - architectures as configs, timm style: ResNet (`resnet18/34/50` and the small
//!   `resnet_tiny`, `resnet_small`, `resnet_tiny_wide`), RegNetX (`regnetx_002..032`),
//!   MobileNetV4 conv (`mobilenetv4_conv_small/medium`), built by name with [`build`];
//! - [`Classifier::forward`] takes a [`QuantPlan`] (16-bit weights, per-example per-layer
//!   activation bits or a straight-through selection, a layer mask) and a [`BnMode`];
//!   the quantizable activations ("taps") are the inputs of every Conv2d and Linear but the
//!   stem, named by timm module path, in execution order;
//! - [`ParamStore`]: parameters keyed by timm state-dict name, seeded, loaded from and
//!   saved to safetensors with strict checks, cloned and frozen;
//! - [`PolicyNet`]: the bit-width policy CNN, image -> `[N, L, K]` logits;
//! - [`hub`]: `timm/<arch>.<tag>` weights and preprocessing from the Hugging Face hub or
//!   its local cache; [`preprocess`]: images to normalised tensors; [`predict`]: what
//!   `dptq predict` computes;
//! - [`ops`]: the conv, BatchNorm, ReLU, pooling and linear operations every layer runs.

mod classifier;
mod error;
pub mod hub;
mod imagenet;
mod layers;
mod mobilenetv4;
pub mod ops;
mod param;
mod plan;
mod policy;
pub mod predict;
pub mod preprocess;
mod regnet;
mod resnet;
pub mod seeded;

pub use classifier::{
    ARCH_NAMES, ArchConfig, Classifier, LayerInfo, build, describe_layers, load_weights,
};
pub use error::{Error, Result};
pub use imagenet::IMAGENET_CLASSES;
pub use layers::{
    BN_EPS, BN_MOMENTUM, BatchNorm2d, Builder, Conv2d, ConvConfig, ConvNormAct, Linear,
    same_padding,
};
pub use mobilenetv4::{
    BlockSpec, BlockType, ConvBnAct, EdgeResidual, MnBlock, MobileNetV4, MobileNetV4Config,
    UniversalInvertedResidual, make_divisible,
};
pub use param::{
    Init, LoadOptions, LoadReport, ParamKind, ParamStore, fnv1a64, read_safetensors,
    write_safetensors,
};
pub use plan::{ActivationCapture, ActivationPlan, BnMode, CapturedActivation, QuantPlan, Taps};
pub use policy::{PolicyConfig, PolicyNet};
pub use regnet::{
    RegBlock, RegNet, RegNetConfig, RegStage, adjust_widths_groups_comp, generate_regnet,
    quantize_float,
};
pub use resnet::{BlockKind, Downsample, ResBlock, ResNet, ResNetConfig, Stem};
