//! Measuring ranges: per-example min/max (one fused pass that also finds non-finite
//! values) and percentiles, plus the input preparation every quantizer shares.

use crate::kernels::{self, Real};
use crate::ops;
use crate::plan::Range;
use crate::{Error, Result};
use candle_core::{DType, Device, Storage, Tensor};
use rayon::prelude::*;

/// Where the work runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Path {
    /// The fused custom ops (CPU, and CUDA with the `cuda` feature).
    Fused,
    /// Composed candle ops (every other device).
    Composed,
}

impl Path {
    pub fn of(device: &Device) -> Self {
        if device.is_cpu() || (cfg!(feature = "cuda") && device.is_cuda()) {
            Path::Fused
        } else {
            Path::Composed
        }
    }
}

/// An input made ready for the kernels: contiguous, f32 or f64, seen as `[batch, dim]`.
#[derive(Debug)]
pub(crate) struct Prepared {
    pub xs: Tensor,
    /// The caller's dtype, restored on the output.
    pub dtype: DType,
    pub batch: usize,
    pub dim: usize,
}

impl Prepared {
    /// Per-example view (dim 0 is the batch).
    pub fn per_example(xs: &Tensor) -> Result<Self> {
        let batch = match xs.dims().first() {
            Some(&b) => b,
            None => {
                return Err(Error::NoBatchDim {
                    shape: xs.shape().clone(),
                });
            }
        };
        let dim = xs.dims()[1..].iter().product();
        Self::new(xs, batch, dim)
    }

    /// The whole tensor as one example.
    pub fn whole(xs: &Tensor) -> Result<Self> {
        Self::new(xs, 1, xs.elem_count())
    }

    fn new(xs: &Tensor, batch: usize, dim: usize) -> Result<Self> {
        let dtype = xs.dtype();
        let xs = match dtype {
            DType::F32 | DType::F64 => xs.contiguous()?,
            DType::F16 | DType::BF16 => xs.to_dtype(DType::F32)?.contiguous()?,
            dtype => return Err(Error::UnsupportedDType { dtype }),
        };
        Ok(Prepared {
            xs,
            dtype,
            batch,
            dim,
        })
    }

    /// Converts an output back to the caller's dtype.
    pub fn restore(&self, out: Tensor) -> Result<Tensor> {
        Ok(if out.dtype() == self.dtype {
            out
        } else {
            out.to_dtype(self.dtype)?
        })
    }
}

/// Runs `f` on the host values of a contiguous f32/f64 tensor (copied to the host first
/// when it lives on a device).
pub(crate) fn with_host_values<R>(
    xs: &Tensor,
    f32_fn: impl FnOnce(&[f32]) -> R,
    f64_fn: impl FnOnce(&[f64]) -> R,
) -> Result<R> {
    let host;
    let xs = if xs.device().is_cpu() {
        xs
    } else {
        host = xs.to_device(&Device::Cpu)?;
        &host
    };
    let (storage, layout) = xs.storage_and_layout();
    let Storage::Cpu(cpu) = &*storage else {
        unreachable!("the tensor was moved to the host")
    };
    let (start, end) = layout
        .contiguous_offsets()
        .ok_or_else(|| candle_core::Error::msg("dptq-quant expected a contiguous tensor"))?;
    Ok(match xs.dtype() {
        DType::F32 => f32_fn(&cpu.as_slice::<f32>()?[start..end]),
        DType::F64 => f64_fn(&cpu.as_slice::<f64>()?[start..end]),
        dtype => return Err(Error::UnsupportedDType { dtype }),
    })
}

/// The `[min, max]` of every example, or [`Error::NonFiniteExample`] naming the first
/// example holding a NaN or an infinity among those with `inspect[n]` (the examples
/// that get quantized; the others pass unchanged and get an empty range).
pub(crate) fn min_max(p: &Prepared, inspect: &[bool]) -> Result<Vec<Range>> {
    if p.dim == 0 {
        return Ok(vec![Range { lo: 0.0, hi: 0.0 }; p.batch]);
    }
    let ranges: Vec<Option<(f64, f64)>> = if p.xs.device().is_cpu() {
        fn conv<T: Real>(v: Vec<Option<(T, T)>>) -> Vec<Option<(f64, f64)>> {
            v.into_iter()
                .map(|r| r.map(|(lo, hi)| (lo.to_f64(), hi.to_f64())))
                .collect()
        }
        with_host_values(
            &p.xs,
            |xs| conv(kernels::example_min_max(xs, p.dim)),
            |xs| conv(kernels::example_min_max(xs, p.dim)),
        )?
    } else if Path::of(p.xs.device()) == Path::Fused {
        let stats =
            p.xs.apply_op1_no_bwd(&ops::MinMax { dim: p.dim })?
                .to_dtype(DType::F64)?
                .to_vec2::<f64>()?;
        stats
            .into_iter()
            .map(|r| (!r[0].is_nan()).then_some((r[0], r[1])))
            .collect()
    } else {
        composed_min_max(p)?
    };
    ranges
        .into_iter()
        .enumerate()
        .map(|(n, r)| match r {
            Some((lo, hi)) => Ok(Range { lo, hi }),
            None if !inspect[n] => Ok(Range { lo: 0.0, hi: 0.0 }),
            None => Err(Error::NonFiniteExample { example: n }),
        })
        .collect()
}

/// Min/max with plain candle ops; `x * 0` summed per example is NaN exactly when the
/// example holds a NaN or an infinity.
pub(crate) fn composed_min_max(p: &Prepared) -> Result<Vec<Option<(f64, f64)>>> {
    if p.batch == 0 || p.dim == 0 {
        return Ok(vec![Some((0.0, 0.0)); p.batch]);
    }
    let flat = p.xs.reshape((p.batch, p.dim))?;
    let bad = flat
        .affine(0.0, 0.0)?
        .sum(1)?
        .to_dtype(DType::F64)?
        .to_vec1::<f64>()?;
    let lo = flat.min(1)?.to_dtype(DType::F64)?.to_vec1::<f64>()?;
    let hi = flat.max(1)?.to_dtype(DType::F64)?.to_vec1::<f64>()?;
    Ok((0..p.batch)
        .map(|n| (bad[n] == 0.0).then_some((lo[n], hi[n])))
        .collect())
}

/// Percentile ranges of every example: `[P_{100-p}(x), P_p(x)]` (`abs = false`) or
/// `[-P_p(|x|), P_p(|x|)]` (`abs = true`). Computed on the host by selection, for the
/// examples with `inspect[n]` (the others get an empty range).
pub(crate) fn percentiles(
    p: &Prepared,
    pct: f64,
    abs: bool,
    inspect: &[bool],
) -> Result<Vec<Range>> {
    fn run<T: Real>(
        xs: &[T],
        dim: usize,
        pct: f64,
        abs: bool,
        inspect: &[bool],
    ) -> Vec<Option<Range>> {
        if dim == 0 {
            return Vec::new();
        }
        xs.par_chunks(dim)
            .zip(inspect.par_iter())
            .map(|(ex, &inspect)| {
                if !inspect {
                    return Some(Range { lo: 0.0, hi: 0.0 });
                }
                if !ex.iter().all(|v| v.is_finite()) {
                    return None;
                }
                let mut vals: Vec<T> = if abs {
                    ex.iter().map(|v| v.abs()).collect()
                } else {
                    ex.to_vec()
                };
                let hi = kernels::percentile(&mut vals, pct).to_f64();
                let lo = if abs {
                    -hi
                } else {
                    kernels::percentile(&mut vals, 100.0 - pct).to_f64()
                };
                Some(Range { lo, hi })
            })
            .collect()
    }
    let ranges = with_host_values(
        &p.xs,
        |xs| run(xs, p.dim, pct, abs, inspect),
        |xs| run(xs, p.dim, pct, abs, inspect),
    )?;
    if p.dim == 0 {
        return Ok(vec![Range { lo: 0.0, hi: 0.0 }; p.batch]);
    }
    ranges
        .into_iter()
        .enumerate()
        .map(|(n, r)| r.ok_or(Error::NonFiniteExample { example: n }))
        .collect()
}
