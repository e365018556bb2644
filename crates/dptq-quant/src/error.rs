//! The one error type of dptq-quant.

use candle_core::{DType, Shape};

/// Everything that can go wrong when quantizing. Messages are lowercase and carry the
/// offending values.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A bit-width outside the range the quantizer supports.
    #[error("{bits}-bit {quantizer} quantization is not supported (supported: {min}..={max})")]
    UnsupportedBits {
        bits: u32,
        quantizer: &'static str,
        min: u32,
        max: u32,
    },
    /// A percentile outside the range the quantizer accepts.
    #[error("percentile {p} is outside {range} for {quantizer} quantization")]
    Percentile {
        p: f64,
        quantizer: &'static str,
        range: &'static str,
    },
    /// An example of the batch holds a NaN or an infinity.
    #[error("example {example} contains a non-finite value (NaN or infinity)")]
    NonFiniteExample { example: usize },
    /// An example whose range `max - min` overflows its dtype.
    #[error("the range of example {example} ({lo} to {hi}) overflows {dtype:?}")]
    RangeOverflow {
        example: usize,
        lo: f64,
        hi: f64,
        dtype: DType,
    },
    /// A weight tensor holds a NaN or an infinity.
    #[error("the weight tensor of shape {shape:?} contains a non-finite value (NaN or infinity)")]
    NonFiniteWeight { shape: Shape },
    /// Per-example bits that do not cover the batch.
    #[error("per-example bits cover {got} examples but the batch has {expected}")]
    BitsLength { expected: usize, got: usize },
    /// A bits tensor of the wrong shape or dtype.
    #[error("bits must be a [{batch}] u32 tensor, got shape {shape:?} of dtype {dtype:?}")]
    BitsTensor {
        batch: usize,
        shape: Shape,
        dtype: DType,
    },
    /// A selection tensor that does not match the batch and the options.
    #[error("selection must have shape [{batch}, {options}] (batch, options), got {shape:?}")]
    SelectionShape {
        batch: usize,
        options: usize,
        shape: Shape,
    },
    /// A mixture without options.
    #[error("the option mixture needs at least one bit option")]
    NoOptions,
    /// A per-example quantizer applied to a scalar.
    #[error("per-example quantization needs a batch dimension, got a scalar of shape {shape:?}")]
    NoBatchDim { shape: Shape },
    /// A dtype the quantizers do not handle.
    #[error("dtype {dtype:?} is not supported (use f32, f64, f16 or bf16)")]
    UnsupportedDType { dtype: DType },
    /// An integer export asked for an example that stays at full precision.
    #[error("example {example} stays at full precision and has no integer export")]
    ExportFullPrecision { example: usize },
    /// An error raised by candle.
    #[error(transparent)]
    Candle(#[from] candle_core::Error),
}

/// The result type of dptq-quant.
pub type Result<T> = std::result::Result<T, Error>;

impl From<Error> for candle_core::Error {
    fn from(err: Error) -> Self {
        match err {
            Error::Candle(err) => err,
            other => candle_core::Error::wrap(other),
        }
    }
}
