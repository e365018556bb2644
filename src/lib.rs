//! dptq: assess the potential for catastrophic failure in dynamic post-training
//! quantization.
//!
//! This facade re-exports the workspace's libraries under short names, so that the
//! tutorials in `examples/` (and downstream users who want everything) need one
//! dependency:
//!
//! - [`mckp`]: the exact-budget multiple-choice knapsack solver (bit allocation);
//! - [`quant`]: fake quantizers and straight-through estimators on candle tensors;
//! - [`data`]: datasets, loaders, augmentations and corruptions;
//! - [`models`]: timm-compatible ResNet, MobileNetV4, RegNetX with quantization taps;
//! - [`distill`]: distillation losses, optimizers and the paper's training stages;
//! - [`analysis`]: layer sweeps, histograms, corruptions, audits and reports.

pub use dptq_analysis as analysis;
pub use dptq_data as data;
pub use dptq_distill as distill;
pub use dptq_mckp as mckp;
pub use dptq_models as models;
pub use dptq_quant as quant;
