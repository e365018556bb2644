//! dptq-quant: fake quantizers on candle tensors, as dynamic post-training quantization
//! applies them, with the straight-through gradients quantization-aware training needs.
//!
//! - [`WeightQuantizer`]: symmetric, one range per tensor (weights);
//! - [`ActivationQuantizer`]: asymmetric, one range per example (activations), with a
//!   bit-width per example ([`ExampleBits`] or a `[N]` u32 tensor) and the option
//!   mixture `sum_j sel[n, j] * Q_{b_j}(x[n])` through which a bit selection learns;
//! - [`Log2Quantizer`]: power-of-two levels;
//! - [`RangeMode::Percentile`] ranges, integer export ([`IntegerActivations`],
//!   [`IntegerWeights`]) for deployment checks.
//!
//! The equations are those of SPEC §1 (see each type). On CPU (and CUDA with the `cuda`
//! feature) they run as fused custom ops: one pass for the per-example range, one pass
//! to quantize, a free backward pass; results are bit-identical run to run. Other
//! devices run the same math as composed candle ops (`*_composed`, also the test
//! oracle).

mod activation;
mod composed;
mod config;
#[cfg(feature = "cuda")]
mod cuda;
mod error;
mod kernels;
mod log2;
mod measure;
mod ops;
mod plan;
mod weight;

pub use activation::{ActivationQuantizer, IntegerActivations};
pub use config::{ACTIVATION_BITS, ExampleBits, RangeMode, SYMMETRIC_BITS};
pub use error::{Error, Result};
pub use log2::Log2Quantizer;
pub use weight::{IntegerWeights, WeightQuantizer};

/// The straight-through estimator: forward exactly `quantized`, backward the identity
/// to `xs` (SPEC §1's `x + (x^ - x).detach()`, written `x^.detach() + (x - x.detach())`
/// so that the forward value is `x^` bit for bit). Shapes: equal.
pub fn straight_through(
    xs: &candle_core::Tensor,
    quantized: &candle_core::Tensor,
) -> Result<candle_core::Tensor> {
    Ok(composed::straight_through(quantized, xs)?)
}
