//! The symmetric per-tensor weight quantizer.

use crate::config::{RangeMode, SYMMETRIC_BITS, check_bits};
use crate::measure::{self, Path, Prepared};
use crate::ops;
use crate::plan::{Plan, Range, Scheme};
use crate::{Error, Result, composed};
use candle_core::{DType, Tensor};

const NAME: &str = "symmetric";

/// Symmetric fake quantizer with one range per tensor, for weights (SPEC §1):
///
/// ```text
/// s  = max|w| / (2^(b-1) - 1)                 (s = 0: w passes unchanged)
/// q  = clamp(round(w / s), -(2^(b-1) - 1), 2^(b-1) - 1)
/// w^ = s * q
/// ```
///
/// `round` is round-half-to-even. Bit-widths 2..=16. The backward pass is the identity
/// inside `[-max|w|, max|w|]` (everywhere with [`RangeMode::MinMax`]), zero outside a
/// percentile range. A NaN or an infinity is an error.
///
/// `w`: any shape (f32 or f64; f16 and bf16 go through f32); the output has the shape
/// and dtype of `w`.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct WeightQuantizer {
    /// How `max|w|` is measured. Default: [`RangeMode::MinMax`].
    pub range: RangeMode,
}

/// A weight tensor exported as integers: `w^ = scale * q`.
#[derive(Debug, Clone)]
pub struct IntegerWeights {
    /// i64 codes in `-(2^(b-1) - 1)..=2^(b-1) - 1`, the shape of the weight.
    pub q: Tensor,
    /// The step (0 for an all-zero tensor).
    pub scale: f64,
    /// The bit-width.
    pub bits: u32,
    /// The dtype of the quantized tensor.
    pub dtype: DType,
}

impl IntegerWeights {
    /// `scale * q`: equals the fake-quantized tensor exactly.
    pub fn dequantize(&self) -> Result<Tensor> {
        Ok(self
            .q
            .to_dtype(DType::F64)?
            .affine(self.scale, 0.0)?
            .to_dtype(self.dtype)?)
    }
}

impl WeightQuantizer {
    /// A quantizer measuring the range with `range`.
    pub fn new(range: RangeMode) -> Self {
        WeightQuantizer { range }
    }

    fn plan(&self, p: &Prepared) -> Result<Plan> {
        self.range.check(NAME, false)?;
        let nonfinite = |e: Error| match e {
            Error::NonFiniteExample { .. } => Error::NonFiniteWeight {
                shape: p.xs.shape().clone(),
            },
            e => e,
        };
        let (ranges, clipped) = match self.range {
            RangeMode::MinMax => {
                let ranges = measure::min_max(p, &[true]).map_err(nonfinite)?;
                let ranges = ranges
                    .into_iter()
                    .map(|r| {
                        let m = r.lo.abs().max(r.hi.abs());
                        Range { lo: -m, hi: m }
                    })
                    .collect();
                (ranges, false)
            }
            RangeMode::Percentile(pct) => (
                measure::percentiles(p, pct, true, &[true]).map_err(nonfinite)?,
                pct < 100.0,
            ),
        };
        Ok(Plan {
            scheme: Scheme::Symmetric,
            dim: p.dim,
            ranges,
            clipped,
        })
    }

    /// The range `m` (`max|w|` or its percentile) this quantizer measures on `w`.
    pub fn range_of(&self, w: &Tensor) -> Result<f64> {
        let p = Prepared::whole(w)?;
        Ok(self.plan(&p)?.ranges[0].hi)
    }

    /// Fake-quantizes `w` (any shape) at `bits`. Output: the shape and dtype of `w`.
    pub fn fake_quant(&self, w: &Tensor, bits: u32) -> Result<Tensor> {
        check_bits(bits, NAME, &SYMMETRIC_BITS)?;
        let p = Prepared::whole(w)?;
        let plan = self.plan(&p)?;
        let bits = vec![Some(bits)];
        let out = match Path::of(p.xs.device()) {
            Path::Fused => p.xs.apply_op1(ops::FakeQuant { plan, bits })?,
            Path::Composed => {
                let flat = p.xs.reshape((1, p.dim))?;
                composed::fake_quant(&flat, &plan, &bits)?.reshape(p.xs.shape())?
            }
        };
        p.restore(out)
    }

    /// The reference implementation of [`fake_quant`](Self::fake_quant) in composed candle
    /// ops (the oracle of the fused kernel).
    pub fn fake_quant_composed(&self, w: &Tensor, bits: u32) -> Result<Tensor> {
        check_bits(bits, NAME, &SYMMETRIC_BITS)?;
        self.range.check(NAME, false)?;
        let p = Prepared::whole(w)?;
        let flat = p.xs.reshape((1, p.dim))?;
        let (pct, clipped) = match self.range {
            RangeMode::MinMax => (None, false),
            RangeMode::Percentile(pct) => (Some(pct), pct < 100.0),
        };
        let ranges = composed::ranges(&flat, pct, true, &[true]).map_err(|e| match e {
            Error::NonFiniteExample { .. } => Error::NonFiniteWeight {
                shape: w.shape().clone(),
            },
            e => e,
        })?;
        let plan = Plan {
            scheme: Scheme::Symmetric,
            dim: p.dim,
            ranges,
            clipped,
        };
        let out = composed::fake_quant(&flat, &plan, &[Some(bits)])?.reshape(p.xs.shape())?;
        p.restore(out)
    }

    /// Exports `w` quantized at `bits` as integer codes and one scale.
    pub fn export(&self, w: &Tensor, bits: u32) -> Result<IntegerWeights> {
        check_bits(bits, NAME, &SYMMETRIC_BITS)?;
        let p = Prepared::whole(w)?;
        let plan = self.plan(&p)?;
        fn codes<T: crate::kernels::Real>(xs: &[T], plan: &Plan, bits: u32) -> (Vec<i64>, f64) {
            match plan.grid::<T>(0, Some(bits)) {
                Some(grid) => (
                    xs.iter().map(|&x| grid.level(x).to_f64() as i64).collect(),
                    grid.s.to_f64(),
                ),
                None => (vec![0; xs.len()], 0.0),
            }
        }
        let (q, scale) = measure::with_host_values(
            &p.xs,
            |xs| codes(xs, &plan, bits),
            |xs| codes(xs, &plan, bits),
        )?;
        Ok(IntegerWeights {
            q: Tensor::from_vec(q, p.xs.shape(), p.xs.device())?,
            scale,
            bits,
            dtype: p.dtype,
        })
    }
}
