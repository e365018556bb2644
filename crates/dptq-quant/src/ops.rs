//! The fused candle custom ops. Each op reads contiguous f32/f64 storage; the public
//! functions make their inputs contiguous and convert f16/bf16 to f32 first.

use crate::kernels::{self, Real};
use crate::plan::Plan;
use candle_core::backend::BackendStorage;
use candle_core::{CpuStorage, CustomOp1, CustomOp2, DType, Layout, Shape, Tensor, WithDType};

/// The contiguous slice of a CPU storage.
fn slice<'a, T: Real>(storage: &'a CpuStorage, layout: &Layout) -> candle_core::Result<&'a [T]> {
    match layout.contiguous_offsets() {
        Some((start, end)) => Ok(&storage.as_slice::<T>()?[start..end]),
        None => candle_core::bail!("dptq-quant ops need contiguous inputs"),
    }
}

/// Runs `f` on the f32 or f64 slice of `storage`.
macro_rules! dispatch {
    ($storage:expr, $layout:expr, |$xs:ident: $t:ident| $body:expr) => {
        match $storage {
            CpuStorage::F32(_) => {
                type $t = f32;
                let $xs = slice::<f32>($storage, $layout)?;
                $body
            }
            CpuStorage::F64(_) => {
                type $t = f64;
                let $xs = slice::<f64>($storage, $layout)?;
                $body
            }
            other => {
                candle_core::bail!("dptq-quant ops run on f32 or f64, got {:?}", other.dtype())
            }
        }
    };
}

/// Per-example fake quantization: forward `Q_{bits[n]}(x[n])`, backward the
/// straight-through gradient (identity inside the range, 0 outside a clipped range).
#[derive(Debug, Clone)]
pub(crate) struct FakeQuant {
    pub plan: Plan,
    pub bits: Vec<Option<u32>>,
}

impl CustomOp1 for FakeQuant {
    fn name(&self) -> &'static str {
        "dptq-fake-quant"
    }

    fn cpu_fwd(
        &self,
        storage: &CpuStorage,
        layout: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let out = dispatch!(storage, layout, |xs: T| {
            let grids = self.plan.grids::<T>(&self.bits);
            T::to_cpu_storage_owned(kernels::quantize(xs, self.plan.dim, &grids))
        });
        Ok((out, layout.shape().clone()))
    }

    #[cfg(feature = "cuda")]
    fn cuda_fwd(
        &self,
        storage: &candle_core::CudaStorage,
        layout: &Layout,
    ) -> candle_core::Result<(candle_core::CudaStorage, Shape)> {
        crate::cuda::fake_quant(self, storage, layout)
    }

    fn bwd(
        &self,
        arg: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> candle_core::Result<Option<Tensor>> {
        if !self.plan.clipped {
            return Ok(Some(grad.clone()));
        }
        let has_grid: Vec<bool> = (0..self.bits.len())
            .map(|n| self.plan.grid::<f64>(n, self.bits[n]).is_some())
            .collect();
        let ranges = self.plan.mask_ranges(&has_grid, &vec![1.0; has_grid.len()]);
        Ok(Some(masked_grad(arg, grad, self.plan.dim, ranges)?))
    }
}

/// `scale * g` where `lo <= x <= hi`, 0 elsewhere, per example; fused on CPU, composed
/// candle ops elsewhere.
pub(crate) fn masked_grad(
    xs: &Tensor,
    grad: &Tensor,
    dim: usize,
    ranges: Vec<(f64, f64, f64)>,
) -> candle_core::Result<Tensor> {
    let grad = grad.contiguous()?;
    if xs.device().is_cpu() {
        return xs.apply_op2_no_bwd(&grad, &MaskedGrad { dim, ranges });
    }
    let batch = ranges.len();
    let col = |f: fn(&(f64, f64, f64)) -> f64| {
        let v: Vec<f64> = ranges.iter().map(f).collect();
        Tensor::from_vec(v, (batch, 1), xs.device())?.to_dtype(xs.dtype())
    };
    let (lo, hi, scale) = (col(|r| r.0)?, col(|r| r.1)?, col(|r| r.2)?);
    let flat = xs.reshape((batch, dim))?;
    let inside = flat
        .broadcast_ge(&lo)?
        .to_dtype(xs.dtype())?
        .mul(&flat.broadcast_le(&hi)?.to_dtype(xs.dtype())?)?;
    grad.reshape((batch, dim))?
        .mul(&inside)?
        .broadcast_mul(&scale)?
        .reshape(xs.shape())
}

/// The CPU kernel behind [`masked_grad`].
#[derive(Debug, Clone)]
struct MaskedGrad {
    dim: usize,
    ranges: Vec<(f64, f64, f64)>,
}

impl CustomOp2 for MaskedGrad {
    fn name(&self) -> &'static str {
        "dptq-masked-grad"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let out = dispatch!(s1, l1, |xs: T| {
            let gs = slice::<T>(s2, l2)?;
            let ranges: Vec<(T, T, T)> = self
                .ranges
                .iter()
                .map(|&(lo, hi, s)| (T::from_f64(lo), T::from_f64(hi), T::from_f64(s)))
                .collect();
            T::to_cpu_storage_owned(kernels::masked_grad(xs, gs, self.dim, &ranges))
        });
        Ok((out, l1.shape().clone()))
    }
}

/// The option mixture `x^[n] = sum_j sel[n, j] * Q_{options[j]}(x[n])` (arguments: xs,
/// then the `[N, K]` selection). A one-hot row quantizes once.
#[derive(Debug, Clone)]
pub(crate) struct Mixture {
    pub plan: Plan,
    pub options: Vec<u32>,
}

impl CustomOp2 for Mixture {
    fn name(&self) -> &'static str {
        "dptq-mixture"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let out = dispatch!(s1, l1, |xs: T| {
            let sel = slice::<T>(s2, l2)?;
            let rows = self.plan.mix_rows(sel, &self.options);
            T::to_cpu_storage_owned(kernels::mixture(xs, self.plan.dim, &rows))
        });
        Ok((out, l1.shape().clone()))
    }

    #[cfg(feature = "cuda")]
    fn cuda_fwd(
        &self,
        s1: &candle_core::CudaStorage,
        l1: &Layout,
        s2: &candle_core::CudaStorage,
        l2: &Layout,
    ) -> candle_core::Result<(candle_core::CudaStorage, Shape)> {
        crate::cuda::mixture(self, s1, l1, s2, l2)
    }

    /// `d/dsel[n, j] = sum_i g[n, i] * Q_j(x[n, i])` (one pass over x for all K options),
    /// `d/dx = (sum_j sel[n, j]) * g` inside the range.
    fn bwd(
        &self,
        xs: &Tensor,
        sel: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>)> {
        let grad = grad.contiguous()?;
        let batch = self.plan.ranges.len();
        let grad_sel = xs.apply_op2_no_bwd(
            &grad,
            &SelectionGrad {
                plan: self.plan.clone(),
                options: self.options.clone(),
            },
        )?;
        let row_sums: Vec<f64> = sel.to_dtype(DType::F64)?.sum(1)?.to_vec1::<f64>()?;
        let grad_xs = if !self.plan.clipped && row_sums.iter().all(|&s| s == 1.0) {
            grad
        } else {
            let has_grid: Vec<bool> = (0..batch)
                .map(|n| {
                    self.options
                        .iter()
                        .any(|&b| self.plan.grid::<f64>(n, Some(b)).is_some())
                })
                .collect();
            masked_grad(
                xs,
                &grad,
                self.plan.dim,
                self.plan.mask_ranges(&has_grid, &row_sums),
            )?
        };
        Ok((Some(grad_xs), Some(grad_sel)))
    }
}

/// The selection gradient of [`Mixture`] (arguments: xs, then the output gradient):
/// `[N, K]`, all K dot products in one pass over the data, sharing the range.
#[derive(Debug, Clone)]
pub(crate) struct SelectionGrad {
    pub plan: Plan,
    pub options: Vec<u32>,
}

impl CustomOp2 for SelectionGrad {
    fn name(&self) -> &'static str {
        "dptq-mixture-selection-grad"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let batch = self.plan.ranges.len();
        let out = dispatch!(s1, l1, |xs: T| {
            let gs = slice::<T>(s2, l2)?;
            let grids: Vec<Vec<_>> = (0..batch)
                .map(|n| {
                    self.options
                        .iter()
                        .map(|&b| self.plan.grid::<T>(n, Some(b)))
                        .collect()
                })
                .collect();
            let sums = kernels::mixture_selection_grad(xs, gs, self.plan.dim, &grids);
            T::to_cpu_storage_owned(sums.into_iter().map(T::from_f64).collect())
        });
        Ok((out, Shape::from((batch, self.options.len()))))
    }

    #[cfg(feature = "cuda")]
    fn cuda_fwd(
        &self,
        s1: &candle_core::CudaStorage,
        l1: &Layout,
        s2: &candle_core::CudaStorage,
        l2: &Layout,
    ) -> candle_core::Result<(candle_core::CudaStorage, Shape)> {
        crate::cuda::selection_grad(self, s1, l1, s2, l2)
    }
}

/// Per-example `[min, max]` as a `[N, 2]` tensor of the input dtype, with `min = NaN`
/// for an example that holds a NaN or an infinity (one pass over the data).
#[derive(Debug, Clone)]
pub(crate) struct MinMax {
    pub dim: usize,
}

impl CustomOp1 for MinMax {
    fn name(&self) -> &'static str {
        "dptq-min-max"
    }

    fn cpu_fwd(
        &self,
        storage: &CpuStorage,
        layout: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let batch = layout
            .shape()
            .elem_count()
            .checked_div(self.dim)
            .unwrap_or(0);
        let out = dispatch!(storage, layout, |xs: T| {
            let nan = T::from_f64(f64::NAN);
            let out = kernels::example_min_max(xs, self.dim)
                .into_iter()
                .flat_map(|r| r.map_or([nan, nan], |(lo, hi)| [lo, hi]))
                .collect();
            T::to_cpu_storage_owned(out)
        });
        Ok((out, Shape::from((batch, 2))))
    }

    #[cfg(feature = "cuda")]
    fn cuda_fwd(
        &self,
        storage: &candle_core::CudaStorage,
        layout: &Layout,
    ) -> candle_core::Result<(candle_core::CudaStorage, Shape)> {
        crate::cuda::min_max(self, storage, layout)
    }
}
