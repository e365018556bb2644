//! Fused CPU max-pooling (PyTorch `MaxPool2d`, floor mode) and ReLU, with their backward
//! passes.
//!
//! Max-pooling: each output is the maximum of its window, scanned in row-major order; the
//! window's first maximum (a NaN counts as a maximum, as in PyTorch) receives the whole
//! gradient. The backward pass finds the same positions again from the input, so the
//! forward stores no indices.

use candle_core::{CpuStorage, CustomOp1, CustomOp2, Layout, Result, Shape, Tensor};
use rayon::prelude::*;

use super::kernel::{Real, contiguous, dispatch_real, storage};

#[derive(Clone, Copy, Debug)]
pub(crate) struct MaxPoolOp {
    pub kernel: usize,
    pub stride: usize,
    pub padding: usize,
}

/// Planes per rayon task so that small planes are not scheduled one by one.
fn planes_per_task(plane: usize) -> usize {
    (8192 / plane.max(1)).max(1)
}

impl MaxPoolOp {
    /// Calls `f(output index, input index of the window's first maximum)` for every output
    /// of one `h x w` plane.
    #[inline]
    fn for_each_argmax<T: Real>(
        &self,
        xp: &[T],
        h: usize,
        w: usize,
        mut f: impl FnMut(usize, usize),
    ) {
        let (k, s, p) = (self.kernel, self.stride, self.padding);
        let (h_out, w_out) = ((h + 2 * p - k) / s + 1, (w + 2 * p - k) / s + 1);
        for i in 0..h_out {
            let r0 = (i * s).saturating_sub(p);
            let r1 = (i * s + k - p).min(h);
            for j in 0..w_out {
                let c0 = (j * s).saturating_sub(p);
                let c1 = (j * s + k - p).min(w);
                let mut best = T::NEG_INFINITY;
                let mut arg = r0 * w + c0;
                for r in r0..r1 {
                    for (cc, &v) in xp[r * w + c0..r * w + c1].iter().enumerate() {
                        if v > best || v.is_nan() {
                            best = v;
                            arg = r * w + c0 + cc;
                        }
                    }
                }
                f(i * w_out + j, arg);
            }
        }
    }

    fn out_dims(&self, h: usize, w: usize) -> Result<(usize, usize)> {
        super::pool_output_size(h, w, self.kernel, self.stride, self.padding)
    }
}

impl CustomOp1 for MaxPoolOp {
    fn name(&self) -> &'static str {
        "dptq-max-pool2d"
    }

    fn cpu_fwd(&self, xs: &CpuStorage, xl: &Layout) -> Result<(CpuStorage, Shape)> {
        let (n, c, h, w) = xl.shape().dims4()?;
        let (h_out, w_out) = self.out_dims(h, w)?;
        dispatch_real!(self.name(), xs, T => {
            let x = contiguous::<T>(xs, xl, self.name())?;
            let mut y = vec![T::ZERO; n * c * h_out * w_out];
            y.par_chunks_mut(h_out * w_out)
                .zip(x.par_chunks(h * w))
                .with_min_len(planes_per_task(h * w))
                .for_each(|(yp, xp)| self.for_each_argmax(xp, h, w, |o, i| yp[o] = xp[i]));
            Ok((storage(y), Shape::from((n, c, h_out, w_out))))
        })
    }

    fn bwd(&self, xs: &Tensor, _ys: &Tensor, dy: &Tensor) -> Result<Option<Tensor>> {
        Ok(Some(
            xs.apply_op2_no_bwd(&dy.contiguous()?, &MaxPoolBwd(*self))?,
        ))
    }
}

/// `(xs, dy) -> dx`: scatters each output gradient onto its window's first maximum.
struct MaxPoolBwd(MaxPoolOp);

impl CustomOp2 for MaxPoolBwd {
    fn name(&self) -> &'static str {
        "dptq-max-pool2d-bwd"
    }

    fn cpu_fwd(
        &self,
        xs: &CpuStorage,
        xl: &Layout,
        dys: &CpuStorage,
        dyl: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let (n, c, h, w) = xl.shape().dims4()?;
        let (h_out, w_out) = self.0.out_dims(h, w)?;
        if dyl.dims() != [n, c, h_out, w_out] {
            candle_core::bail!(
                "{}: gradient {:?} does not match output {:?}",
                self.name(),
                dyl.dims(),
                [n, c, h_out, w_out]
            );
        }
        dispatch_real!(self.name(), xs, T => {
            let x = contiguous::<T>(xs, xl, self.name())?;
            let dy = contiguous::<T>(dys, dyl, self.name())?;
            let mut dx = vec![T::ZERO; x.len()];
            dx.par_chunks_mut(h * w)
                .zip(x.par_chunks(h * w).zip(dy.par_chunks(h_out * w_out)))
                .with_min_len(planes_per_task(h * w))
                .for_each(|(dxp, (xp, dyp))| self.0.for_each_argmax(xp, h, w, |o, i| dxp[i] += dyp[o]));
            Ok((storage(dx), xl.shape().clone()))
        })
    }
}

/// `max(x, 0)`; a NaN stays NaN.
pub(crate) struct ReluOp;

impl CustomOp1 for ReluOp {
    fn name(&self) -> &'static str {
        "dptq-relu"
    }

    fn cpu_fwd(&self, xs: &CpuStorage, xl: &Layout) -> Result<(CpuStorage, Shape)> {
        dispatch_real!(self.name(), xs, T => {
            let x = contiguous::<T>(xs, xl, self.name())?;
            let mut y = vec![T::ZERO; x.len()];
            y.par_chunks_mut(1 << 16).zip(x.par_chunks(1 << 16)).for_each(|(yc, xc)| {
                for (v, &u) in yc.iter_mut().zip(xc) {
                    *v = if u < T::ZERO { T::ZERO } else { u };
                }
            });
            Ok((storage(y), xl.shape().clone()))
        })
    }

    fn bwd(&self, _xs: &Tensor, ys: &Tensor, dy: &Tensor) -> Result<Option<Tensor>> {
        Ok(Some(dy.contiguous()?.apply_op2_no_bwd(ys, &ReluBwd)?))
    }
}

/// `(dy, ys) -> dy * [ys > 0]`.
struct ReluBwd;

impl CustomOp2 for ReluBwd {
    fn name(&self) -> &'static str {
        "dptq-relu-bwd"
    }

    fn cpu_fwd(
        &self,
        dys: &CpuStorage,
        dyl: &Layout,
        ys: &CpuStorage,
        yl: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        if dyl.dims() != yl.dims() {
            candle_core::bail!(
                "{}: gradient {:?} does not match output {:?}",
                self.name(),
                dyl.dims(),
                yl.dims()
            );
        }
        dispatch_real!(self.name(), ys, T => {
            let dy = contiguous::<T>(dys, dyl, self.name())?;
            let y = contiguous::<T>(ys, yl, self.name())?;
            let mut dx = vec![T::ZERO; y.len()];
            dx.par_chunks_mut(1 << 16).zip(dy.par_chunks(1 << 16).zip(y.par_chunks(1 << 16))).for_each(
                |(dc, (gc, yc))| {
                    for ((v, &g), &u) in dc.iter_mut().zip(gc).zip(yc) {
                        *v = if u > T::ZERO { g } else { T::ZERO };
                    }
                },
            );
            Ok((storage(dx), yl.shape().clone()))
        })
    }
}
