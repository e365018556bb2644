//! Fused CPU max-pooling (PyTorch `MaxPool2d`, floor mode) and ReLU, with their backward
//! passes.
//!
//! Max-pooling: each output is the maximum of its window, scanned in row-major order; the
//! window's first maximum (a NaN counts as a maximum, as PyTorch's `val > max || isnan(val)`
//! rule does) receives the whole gradient. When the input may need a gradient the forward
//! records each output's argmax (as PyTorch does), and the backward scatters the incoming
//! gradient onto those positions.

use std::sync::{Arc, Mutex};

use candle_core::{CpuStorage, CustomOp1, CustomOp2, Layout, Result, Shape, Tensor};
use rayon::prelude::*;

use super::kernel::{Real, contiguous, dispatch_real, simd, storage};

/// Planes per rayon task so that small planes are not scheduled one by one.
fn planes_per_task(plane: usize) -> usize {
    (8192 / plane.max(1)).max(1)
}

/// Per-thread scratch of [`PoolGeom::plane`]: one output row of maxima and argmaxes, one
/// padded input row and its stride phases.
struct Scratch<T> {
    best: Vec<T>,
    arg: Vec<u32>,
    phases: Vec<T>,
    /// One input row with `-inf` on both sides (and up to the end of the last phase).
    padded: Vec<T>,
}

/// Max-pooling geometry.
#[derive(Clone, Copy, Debug)]
pub(crate) struct PoolGeom {
    pub kernel: usize,
    pub stride: usize,
    pub padding: usize,
}

impl PoolGeom {
    fn out_dims(&self, h: usize, w: usize) -> Result<(usize, usize)> {
        super::pool_output_size(h, w, self.kernel, self.stride, self.padding)
    }

    /// Pools one `h x w` plane into `yp`, and writes each output's argmax (index in the
    /// plane) into `ip` when given.
    ///
    /// Each input row is copied once into `-inf`-padded stride phases (`phases[k][m]` is
    /// padded column `m*s + k`), so that the values tap column `cc` reads for consecutive
    /// outputs are contiguous. Loops run over output columns innermost (one select per tap
    /// and output), taps in row-major window order, so the first maximum wins exactly as in
    /// a per-window scan; padding (`-inf`) never wins.
    #[inline(always)]
    fn plane<T: Real>(
        &self,
        xp: &[T],
        h: usize,
        w: usize,
        yp: &mut [T],
        mut ip: Option<&mut [u32]>,
        s: &mut Scratch<T>,
    ) {
        let (k, st, p) = (self.kernel, self.stride, self.padding);
        let w_out = s.best.len();
        let h_out = yp.len() / w_out.max(1);
        let phase_len = (w + 2 * p).div_ceil(st);
        for i in 0..h_out {
            let r0 = (i * st).saturating_sub(p);
            let r1 = (i * st + k - p).min(h);
            s.best.fill(T::NEG_INFINITY);
            for (j, a) in s.arg.iter_mut().enumerate() {
                *a = (r0 * w + (j * st).saturating_sub(p)) as u32;
            }
            for r in r0..r1 {
                s.padded[p..p + w].copy_from_slice(&xp[r * w..(r + 1) * w]);
                for (ph, dst) in s.phases.chunks_exact_mut(phase_len).enumerate() {
                    for (m, v) in dst.iter_mut().enumerate() {
                        *v = s.padded[m * st + ph];
                    }
                }
                for cc in 0..k {
                    let start = (cc % st) * phase_len + cc / st;
                    let vals = &s.phases[start..start + w_out];
                    if ip.is_some() {
                        // Plane index of output j's tap: r*w + j*s + cc - p (wraps only for
                        // padding, which never wins).
                        let base = ((r * w + cc) as u32).wrapping_sub(p as u32);
                        for (j, ((b, a), &v)) in s
                            .best
                            .iter_mut()
                            .zip(s.arg.iter_mut())
                            .zip(vals)
                            .enumerate()
                        {
                            // `|`, not `||`: no branch, so the loop vectorises.
                            let take = (v > *b) | v.is_nan();
                            *b = if take { v } else { *b };
                            *a = if take {
                                base.wrapping_add((j * st) as u32)
                            } else {
                                *a
                            };
                        }
                    } else {
                        for (b, &v) in s.best.iter_mut().zip(vals) {
                            *b = if (v > *b) | v.is_nan() { v } else { *b };
                        }
                    }
                }
            }
            yp[i * w_out..(i + 1) * w_out].copy_from_slice(&s.best);
            if let Some(ip) = ip.as_deref_mut() {
                ip[i * w_out..(i + 1) * w_out].copy_from_slice(&s.arg);
            }
        }
    }

    /// Pools every plane of `x: [N*C, h, w]`; returns the outputs and, with `record`, the
    /// argmax of each output.
    fn pool<T: Real>(
        &self,
        x: &[T],
        h: usize,
        w: usize,
        record: bool,
    ) -> Result<(Vec<T>, Option<Vec<u32>>)> {
        let (h_out, w_out) = self.out_dims(h, w)?;
        let planes = x.len() / (h * w).max(1);
        let out = h_out * w_out;
        let mut y = vec![T::ZERO; planes * out];
        let mut idx = if record {
            vec![0u32; planes * out]
        } else {
            Vec::new()
        };
        let phase_len = (w + 2 * self.padding).div_ceil(self.stride);
        let scratch = || Scratch {
            best: vec![T::ZERO; w_out],
            arg: vec![0u32; w_out],
            phases: vec![T::ZERO; self.stride * phase_len],
            padded: vec![T::NEG_INFINITY; self.stride * phase_len],
        };
        if record {
            y.par_chunks_mut(out)
                .zip(idx.par_chunks_mut(out))
                .zip(x.par_chunks(h * w))
                .with_min_len(planes_per_task(h * w))
                .for_each_init(scratch, |s, ((yp, ip), xp)| {
                    simd(
                        #[inline(always)]
                        || self.plane(xp, h, w, yp, Some(ip), s),
                    )
                });
        } else {
            y.par_chunks_mut(out)
                .zip(x.par_chunks(h * w))
                .with_min_len(planes_per_task(h * w))
                .for_each_init(scratch, |s, (yp, xp)| {
                    simd(
                        #[inline(always)]
                        || self.plane(xp, h, w, yp, None, s),
                    )
                });
        }
        Ok((y, record.then_some(idx)))
    }
}

/// `max_pool2d(xs)` as a custom op.
pub(crate) struct MaxPoolOp {
    pub geom: PoolGeom,
    /// Record the argmax of each output for the backward pass (when the input may need a
    /// gradient).
    pub record: bool,
    /// The recorded argmax positions, set by the forward pass.
    pub argmax: Mutex<Option<Arc<Vec<u32>>>>,
}

impl MaxPoolOp {
    pub fn new(kernel: usize, stride: usize, padding: usize, record: bool) -> Self {
        Self {
            geom: PoolGeom {
                kernel,
                stride,
                padding,
            },
            record,
            argmax: Mutex::new(None),
        }
    }
}

impl CustomOp1 for MaxPoolOp {
    fn name(&self) -> &'static str {
        "dptq-max-pool2d"
    }

    fn cpu_fwd(&self, xs: &CpuStorage, xl: &Layout) -> Result<(CpuStorage, Shape)> {
        let (n, c, h, w) = xl.shape().dims4()?;
        let (h_out, w_out) = self.geom.out_dims(h, w)?;
        dispatch_real!(self.name(), xs, T => {
            let x = contiguous::<T>(xs, xl, self.name())?;
            let (y, idx) = self.geom.pool(x, h, w, self.record)?;
            if let Some(idx) = idx {
                *self.argmax.lock().map_err(|_| candle_core::Error::Msg("max_pool2d: poisoned argmax lock".into()))? = Some(Arc::new(idx));
            }
            Ok((storage(y), Shape::from((n, c, h_out, w_out))))
        })
    }

    fn bwd(&self, xs: &Tensor, _ys: &Tensor, dy: &Tensor) -> Result<Option<Tensor>> {
        let dy = dy.contiguous()?;
        let recorded = self
            .argmax
            .lock()
            .map_err(|_| candle_core::Error::Msg("max_pool2d: poisoned argmax lock".into()))?
            .clone();
        // A gradient is only asked for when the input tracked one, and then the forward
        // recorded the argmax.
        let Some(argmax) = recorded else {
            candle_core::bail!("max_pool2d: backward through a forward that recorded no argmax");
        };
        Ok(Some(dy.apply_op1_no_bwd(&MaxPoolScatter {
            dims: xs.dims4()?,
            argmax,
        })?))
    }
}

/// Adds each output gradient onto its window's first maximum, per plane.
fn scatter<T: Real>(dy: &[T], argmax: &[u32], plane_in: usize, plane_out: usize) -> Vec<T> {
    let planes = dy.len() / plane_out.max(1);
    let mut dx = vec![T::ZERO; planes * plane_in];
    dx.par_chunks_mut(plane_in)
        .zip(dy.par_chunks(plane_out).zip(argmax.par_chunks(plane_out)))
        .with_min_len(planes_per_task(plane_in))
        .for_each(|(dxp, (dyp, ip))| {
            for (&g, &i) in dyp.iter().zip(ip) {
                dxp[i as usize] += g;
            }
        });
    dx
}

/// `dy -> dx` from the argmax recorded by the forward pass, for an input `dims`.
struct MaxPoolScatter {
    dims: (usize, usize, usize, usize),
    argmax: Arc<Vec<u32>>,
}

impl CustomOp1 for MaxPoolScatter {
    fn name(&self) -> &'static str {
        "dptq-max-pool2d-scatter"
    }

    fn cpu_fwd(&self, dys: &CpuStorage, dyl: &Layout) -> Result<(CpuStorage, Shape)> {
        let (n, c, h, w) = self.dims;
        if dyl.shape().elem_count() != self.argmax.len() {
            candle_core::bail!(
                "{}: gradient {:?} does not match the {} recorded outputs",
                self.name(),
                dyl.dims(),
                self.argmax.len()
            );
        }
        let (_, _, h_out, w_out) = dyl.shape().dims4()?;
        dispatch_real!(self.name(), dys, T => {
            let dy = contiguous::<T>(dys, dyl, self.name())?;
            Ok((storage(scatter(dy, &self.argmax, h * w, h_out * w_out)), Shape::from((n, c, h, w))))
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
            y.par_chunks_mut(1 << 16).zip(x.par_chunks(1 << 16)).for_each(|(yc, xc)| simd(#[inline(always)] || {
                for (v, &u) in yc.iter_mut().zip(xc) {
                    *v = if u < T::ZERO { T::ZERO } else { u };
                }
            }));
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
                |(dc, (gc, yc))| simd(#[inline(always)] || {
                    for ((v, &g), &u) in dc.iter_mut().zip(gc).zip(yc) {
                        *v = if u > T::ZERO { g } else { T::ZERO };
                    }
                }),
            );
            Ok((storage(dx), yl.shape().clone()))
        })
    }
}
