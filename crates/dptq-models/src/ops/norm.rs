//! Fused CPU BatchNorm: training mode with batch statistics and its closed-form backward,
//! and a per-channel affine map for eval mode.
//!
//! With `M = N*H*W` values per channel, `xhat = (x - mean) * invstd`,
//! `invstd = 1 / sqrt(var + eps)` and `y = w * xhat + b`, the backward of training mode is
//! `dx = w * invstd * (dy - mean(dy) - xhat * mean(dy * xhat))`,
//! `dw = sum(dy * xhat)`, `db = sum(dy)`.
//! Sums are accumulated in f64, per channel, in a fixed order.

use candle_core::{
    CpuStorage, CustomOp2, CustomOp3, Layout, Result, Shape, Storage, Tensor, WithDType,
};
use rayon::prelude::*;

use super::kernel::{Real, contiguous, dispatch_real, simd, storage, sum_f64, sum2_f64};

/// Per-channel batch mean and biased variance of a contiguous CPU `[N, C, H, W]` tensor
/// (two passes: the mean, then the squared deviations from it).
pub(crate) fn channel_stats(xs: &Tensor) -> Result<(Vec<f64>, Vec<f64>)> {
    let (n, c, h, w) = xs.dims4()?;
    let hw = h * w;
    let (storage, layout) = xs.storage_and_layout();
    let Storage::Cpu(cpu) = &*storage else {
        candle_core::bail!("batch_norm: fused statistics need a CPU tensor");
    };
    dispatch_real!("batch_norm", cpu, T => {
        let x = contiguous::<T>(cpu, layout, "batch_norm")?;
        let count = (n * hw) as f64;
        let stats: Vec<(f64, f64)> = (0..c)
            .into_par_iter()
            .map(|ch| simd(#[inline(always)] || {
                let planes = || (0..n).map(|i| &x[(i * c + ch) * hw..(i * c + ch + 1) * hw]);
                let mean = planes().map(|p| sum_f64(p, |v| v)).sum::<f64>() / count;
                let var = planes().map(|p| sum_f64(p, |v| (v - mean) * (v - mean))).sum::<f64>() / count;
                (mean, var)
            }))
            .collect();
        Ok(stats.into_iter().unzip())
    })
}

/// Applies `y[n, c] = x[n, c] * scale[c] + shift[c]` plane by plane.
fn channel_affine<T: Real>(x: &[T], c: usize, hw: usize, scale: &[T], shift: &[T]) -> Vec<T> {
    let mut y = vec![T::ZERO; x.len()];
    y.par_chunks_mut(hw)
        .zip(x.par_chunks(hw))
        .with_min_len(planes_per_task(hw))
        .enumerate()
        .for_each(|(plane, (yp, xp))| {
            simd(
                #[inline(always)]
                || {
                    let (a, b) = (scale[plane % c], shift[plane % c]);
                    for (v, &u) in yp.iter_mut().zip(xp) {
                        *v = u * a + b;
                    }
                },
            )
        });
    y
}

fn planes_per_task(hw: usize) -> usize {
    (8192 / hw.max(1)).max(1)
}

/// Training-mode BatchNorm on `(xs, weight, bias)` with the batch statistics computed
/// beforehand by [`channel_stats`].
pub(crate) struct BatchNormTrainOp {
    pub mean: Vec<f64>,
    pub invstd: Vec<f64>,
}

impl CustomOp3 for BatchNormTrainOp {
    fn name(&self) -> &'static str {
        "dptq-batch-norm-train"
    }

    fn cpu_fwd(
        &self,
        xs: &CpuStorage,
        xl: &Layout,
        ws: &CpuStorage,
        wl: &Layout,
        bs: &CpuStorage,
        bl: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let (_, c, h, w) = xl.shape().dims4()?;
        dispatch_real!(self.name(), xs, T => {
            let x = contiguous::<T>(xs, xl, self.name())?;
            let weight = contiguous::<T>(ws, wl, self.name())?;
            let bias = contiguous::<T>(bs, bl, self.name())?;
            let scale: Vec<f64> = (0..c).map(|i| weight[i].to_f64() * self.invstd[i]).collect();
            let shift: Vec<T> = (0..c).map(|i| T::from_f64(bias[i].to_f64() - self.mean[i] * scale[i])).collect();
            let scale: Vec<T> = scale.into_iter().map(T::from_f64).collect();
            let y = channel_affine(x, c, h * w, &scale, &shift);
            Ok((storage(y), xl.shape().clone()))
        })
    }

    fn bwd(
        &self,
        xs: &Tensor,
        weight: &Tensor,
        _bias: &Tensor,
        _ys: &Tensor,
        dy: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let (n, c, h, w) = xs.dims4()?;
        let numel = n * c * h * w;
        let op = BatchNormTrainBwd {
            mean: self.mean.clone(),
            invstd: self.invstd.clone(),
        };
        let packed = dy.contiguous()?.apply_op3_no_bwd(xs, weight, &op)?;
        let dx = packed.narrow(0, 0, numel)?.reshape((n, c, h, w))?;
        let dw = packed.narrow(0, numel, c)?;
        let db = packed.narrow(0, numel + c, c)?;
        Ok((Some(dx), Some(dw), Some(db)))
    }
}

/// `(dy, xs, weight) -> [dx (flattened), dw, db]` packed in one vector.
struct BatchNormTrainBwd {
    mean: Vec<f64>,
    invstd: Vec<f64>,
}

impl CustomOp3 for BatchNormTrainBwd {
    fn name(&self) -> &'static str {
        "dptq-batch-norm-train-bwd"
    }

    fn cpu_fwd(
        &self,
        dys: &CpuStorage,
        dyl: &Layout,
        xs: &CpuStorage,
        xl: &Layout,
        ws: &CpuStorage,
        wl: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let (n, c, h, w) = xl.shape().dims4()?;
        if dyl.dims() != xl.dims() {
            candle_core::bail!(
                "{}: gradient {:?} does not match input {:?}",
                self.name(),
                dyl.dims(),
                xl.dims()
            );
        }
        let hw = h * w;
        let numel = n * c * hw;
        let count = (n * hw) as f64;
        dispatch_real!(self.name(), xs, T => {
            let dy = contiguous::<T>(dys, dyl, self.name())?;
            let x = contiguous::<T>(xs, xl, self.name())?;
            let weight = contiguous::<T>(ws, wl, self.name())?;
            // Per channel: sum(dy) and sum(dy * (x - mean)).
            let sums: Vec<(f64, f64)> = (0..c)
                .into_par_iter()
                .map(|ch| simd(#[inline(always)] || {
                    let mean = self.mean[ch];
                    (0..n).fold((0.0, 0.0), |(s, sx), i| {
                        let r = (i * c + ch) * hw..(i * c + ch + 1) * hw;
                        (s + sum_f64(&dy[r.clone()], |v| v), sx + sum2_f64(&dy[r.clone()], &x[r], |g, v| g * (v - mean)))
                    })
                }))
                .collect();
            // dx = a * dy + b * x + k per channel.
            let mut coef_a = Vec::with_capacity(c);
            let mut coef_b = Vec::with_capacity(c);
            let mut coef_k = Vec::with_capacity(c);
            let mut out = vec![T::ZERO; numel + 2 * c];
            for ch in 0..c {
                let (s, sx) = sums[ch];
                let invstd = self.invstd[ch];
                let a = weight[ch].to_f64() * invstd;
                let b = -a * invstd * invstd * sx / count;
                coef_a.push(T::from_f64(a));
                coef_b.push(T::from_f64(b));
                coef_k.push(T::from_f64(-a * s / count - b * self.mean[ch]));
                out[numel + ch] = T::from_f64(invstd * sx);
                out[numel + c + ch] = T::from_f64(s);
            }
            out[..numel]
                .par_chunks_mut(hw)
                .zip(dy.par_chunks(hw).zip(x.par_chunks(hw)))
                .with_min_len(planes_per_task(hw))
                .enumerate()
                .for_each(|(plane, (dxp, (dyp, xp)))| simd(#[inline(always)] || {
                    let ch = plane % c;
                    let (a, b, k) = (coef_a[ch], coef_b[ch], coef_k[ch]);
                    for ((v, &g), &u) in dxp.iter_mut().zip(dyp).zip(xp) {
                        *v = a * g + b * u + k;
                    }
                }));
            Ok((storage(out), Shape::from(numel + 2 * c)))
        })
    }
}

/// `y = x * scale[c] + shift[c]` on `(xs, scale, shift)`; eval-mode BatchNorm with the
/// scale and shift derived from the running statistics by composed ops (so that their
/// gradients reach weight, bias and the statistics through candle's autograd).
pub(crate) struct ChannelAffineOp;

impl CustomOp3 for ChannelAffineOp {
    fn name(&self) -> &'static str {
        "dptq-channel-affine"
    }

    fn cpu_fwd(
        &self,
        xs: &CpuStorage,
        xl: &Layout,
        ss: &CpuStorage,
        sl: &Layout,
        bs: &CpuStorage,
        bl: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let (_, c, h, w) = xl.shape().dims4()?;
        dispatch_real!(self.name(), xs, T => {
            let x = contiguous::<T>(xs, xl, self.name())?;
            let scale = contiguous::<T>(ss, sl, self.name())?;
            let shift = contiguous::<T>(bs, bl, self.name())?;
            Ok((storage(channel_affine(x, c, h * w, scale, shift)), xl.shape().clone()))
        })
    }

    fn bwd(
        &self,
        xs: &Tensor,
        scale: &Tensor,
        shift: &Tensor,
        _ys: &Tensor,
        dy: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let dy = dy.contiguous()?;
        let c = scale.dim(0)?;
        let dx = dy.apply_op3_no_bwd(scale, &shift.zeros_like()?, &ChannelAffineOp)?;
        let sums = dy.apply_op2_no_bwd(xs, &ChannelSums)?;
        Ok((
            Some(dx),
            Some(sums.narrow(0, 0, c)?),
            Some(sums.narrow(0, c, c)?),
        ))
    }
}

/// `(dy, xs) -> [sum(dy * x) per channel, sum(dy) per channel]`.
struct ChannelSums;

impl CustomOp2 for ChannelSums {
    fn name(&self) -> &'static str {
        "dptq-channel-sums"
    }

    fn cpu_fwd(
        &self,
        dys: &CpuStorage,
        dyl: &Layout,
        xs: &CpuStorage,
        xl: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let (n, c, h, w) = xl.shape().dims4()?;
        let hw = h * w;
        dispatch_real!(self.name(), xs, T => {
            let dy = contiguous::<T>(dys, dyl, self.name())?;
            let x = contiguous::<T>(xs, xl, self.name())?;
            let sums: Vec<(f64, f64)> = (0..c)
                .into_par_iter()
                .map(|ch| simd(#[inline(always)] || {
                    (0..n).fold((0.0, 0.0), |(sx, s), i| {
                        let r = (i * c + ch) * hw..(i * c + ch + 1) * hw;
                        (sx + sum2_f64(&dy[r.clone()], &x[r.clone()], |g, v| g * v), s + sum_f64(&dy[r], |v| v))
                    })
                }))
                .collect();
            let (sx, s): (Vec<f64>, Vec<f64>) = sums.into_iter().unzip();
            let out: Vec<T> = sx.into_iter().chain(s).map(T::from_f64).collect();
            Ok((storage(out), Shape::from(2 * c)))
        })
    }
}
