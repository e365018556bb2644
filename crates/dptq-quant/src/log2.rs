//! The power-of-two (log2, non-uniform) quantizer.

use crate::Result;
use crate::config::{ExampleBits, RangeMode, SYMMETRIC_BITS};
use crate::kernels::{CHUNK, Real};
use crate::measure::{self, Prepared};
use crate::plan::Range;
use candle_core::backend::BackendStorage;
use candle_core::{CpuStorage, CustomOp1, Device, Layout, Shape, Tensor, WithDType};
use rayon::prelude::*;

const NAME: &str = "log2";

/// Power-of-two fake quantizer with one range per example (dim 0): one sign bit and
/// `2^(b-1) - 1` exponents, `x^ = sign(x) * 2^e`:
///
/// ```text
/// M     = max|x|   (or its percentile)           (M = 0: x passes unchanged)
/// e_max = round(log2 M),  e_min = e_max - (2^(b-1) - 2)
/// e     = min(round(log2 |x|), e_max)
/// x^    = 0 if x = 0 or e < e_min, else sign(x) * 2^e
/// ```
///
/// `round` is round-half-to-even (in the log domain). Bit-widths 2..=16. Backward: the
/// identity inside `[-M, M]` (everywhere with [`RangeMode::MinMax`]). NaN or infinity:
/// an error naming the example.
///
/// `xs: [N, ...]` (f32 or f64; f16 and bf16 go through f32); the output has the shape
/// and dtype of `xs`. It runs on the CPU (other devices copy to the host and back).
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Log2Quantizer {
    /// How `M` is measured per example. Default: [`RangeMode::MinMax`].
    pub range: RangeMode,
}

impl Log2Quantizer {
    /// A quantizer measuring ranges with `range`.
    pub fn new(range: RangeMode) -> Self {
        Log2Quantizer { range }
    }

    /// Fake-quantizes example `n` of `xs: [N, ...]` at `bits[n]`. Output: the shape of
    /// `xs`.
    pub fn fake_quant(&self, xs: &Tensor, bits: &ExampleBits) -> Result<Tensor> {
        self.range.check(NAME, false)?;
        let p = Prepared::per_example(xs)?;
        let bits = bits.resolve(p.batch, NAME, &SYMMETRIC_BITS)?;
        let inspect: Vec<bool> = bits.iter().map(Option::is_some).collect();
        if !inspect.contains(&true) {
            return Ok(xs.clone());
        }
        let (ranges, clipped) = match self.range {
            RangeMode::MinMax => (
                measure::min_max(&p, &inspect)?
                    .into_iter()
                    .map(|r| r.lo.abs().max(r.hi.abs()))
                    .collect::<Vec<_>>(),
                false,
            ),
            RangeMode::Percentile(pct) => (
                measure::percentiles(&p, pct, true, &inspect)?
                    .into_iter()
                    .map(|r: Range| r.hi)
                    .collect(),
                pct < 100.0,
            ),
        };
        let op = Log2Op {
            dim: p.dim,
            exponents: ranges
                .iter()
                .zip(&bits)
                .map(|(&m, &b)| {
                    let b = b?;
                    (m > 0.0).then(|| {
                        let e_max = m.log2().round_ties_even() as i32;
                        (e_max - ((1i32 << (b - 1)) - 2), e_max)
                    })
                })
                .collect(),
            clip: clipped.then_some(ranges),
        };
        let out = if p.xs.device().is_cpu() {
            p.xs.apply_op1(op)?
        } else {
            p.xs.to_device(&Device::Cpu)?
                .apply_op1(op)?
                .to_device(p.xs.device())?
        };
        p.restore(out)
    }
}

/// The log2 quantizer of each example: `Some((e_min, e_max))`, or `None` (identity).
#[derive(Debug, Clone)]
struct Log2Op {
    dim: usize,
    exponents: Vec<Option<(i32, i32)>>,
    /// `M` per example when values beyond it get no gradient.
    clip: Option<Vec<f64>>,
}

/// `sign(x) * 2^e` with `e = min(round(log2|x|), e_max)`, 0 below `e_min`.
fn log2_level<T: Real>(x: T, e_min: i32, e_max: i32) -> T {
    let a = x.abs();
    if a == T::ZERO {
        return x;
    }
    let e = a.to_f64().log2().round_ties_even();
    if e < e_min as f64 {
        return T::ZERO;
    }
    let e = e.min(e_max as f64) as i32;
    let v = T::from_f64(2f64.powi(e));
    if x < T::ZERO { -v } else { v }
}

fn log2_kernel<T: Real>(xs: &[T], dim: usize, exps: &[Option<(i32, i32)>]) -> Vec<T> {
    let mut out = xs.to_vec();
    if dim == 0 {
        return out;
    }
    out.par_chunks_mut(dim)
        .zip(exps.par_iter())
        .for_each(|(ex, e)| {
            if let Some((e_min, e_max)) = *e {
                ex.par_chunks_mut(CHUNK)
                    .for_each(|c| c.iter_mut().for_each(|v| *v = log2_level(*v, e_min, e_max)));
            }
        });
    out
}

impl CustomOp1 for Log2Op {
    fn name(&self) -> &'static str {
        "dptq-log2-quant"
    }

    fn cpu_fwd(
        &self,
        storage: &CpuStorage,
        layout: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let (start, end) = layout
            .contiguous_offsets()
            .ok_or_else(|| candle_core::Error::msg("dptq-quant ops need contiguous inputs"))?;
        let out = match storage {
            CpuStorage::F32(v) => {
                f32::to_cpu_storage_owned(log2_kernel(&v[start..end], self.dim, &self.exponents))
            }
            CpuStorage::F64(v) => {
                f64::to_cpu_storage_owned(log2_kernel(&v[start..end], self.dim, &self.exponents))
            }
            other => {
                candle_core::bail!("dptq-quant ops run on f32 or f64, got {:?}", other.dtype())
            }
        };
        Ok((out, layout.shape().clone()))
    }

    fn bwd(
        &self,
        arg: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> candle_core::Result<Option<Tensor>> {
        let Some(m) = &self.clip else {
            return Ok(Some(grad.clone()));
        };
        let ranges = m
            .iter()
            .zip(&self.exponents)
            .map(|(&m, e)| match e {
                Some(_) => (-m, m, 1.0),
                None => (f64::NEG_INFINITY, f64::INFINITY, 1.0),
            })
            .collect();
        Ok(Some(crate::ops::masked_grad(arg, grad, self.dim, ranges)?))
    }
}
