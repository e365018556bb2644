//! The training operations composed from candle's own tensor ops.
//!
//! This is the fallback on devices without fused kernels (CUDA, Metal) and the
//! independent reference that the fused CPU kernels are tested and benchmarked against.
//! Every function has the same contract as its namesake in [`crate::ops`]; the gradients
//! come from candle's autograd, except for max-pooling, whose candle backward is wrong
//! (see `max_pool2d`).

use candle_core::{D, DType, Result, Tensor};

use super::{BatchNormTrainOutput, Conv2dParams};

/// Convolution through `Tensor::conv2d` (grouped convolutions run one conv per group),
/// plus the bias broadcast over `[N, C_out, H', W']`.
///
/// The input is zero-padded explicitly and cropped to the rows and columns the kernel
/// reaches, so that candle's `conv2d` runs without padding and with no leftover pixels:
/// its backward derives the input-gradient size from the height alone and fails (or is
/// wrong) when height and width leave different remainders.
pub fn conv2d(
    xs: &Tensor,
    weight: &Tensor,
    bias: Option<&Tensor>,
    p: Conv2dParams,
) -> Result<Tensor> {
    let (_, _, kh, kw) = weight.dims4()?;
    let xs = xs
        .pad_with_zeros(2, p.padding, p.padding)?
        .pad_with_zeros(3, p.padding, p.padding)?;
    let (_, _, h, w) = xs.dims4()?;
    let used = |len: usize, k: usize| -> Result<usize> {
        let span = p.dilation * (k - 1) + 1;
        if len < span {
            candle_core::bail!(
                "conv2d: padded extent {len} is smaller than the dilated kernel extent {span}"
            );
        }
        Ok((len - span) / p.stride * p.stride + span)
    };
    let xs = xs.narrow(2, 0, used(h, kh)?)?.narrow(3, 0, used(w, kw)?)?;
    let ys = xs.conv2d(weight, 0, p.stride, p.dilation, p.groups)?;
    match bias {
        Some(bias) => ys.broadcast_add(&bias.reshape((1, (), 1, 1))?),
        None => Ok(ys),
    }
}

/// Training-mode BatchNorm from means and broadcasts; the biased variance is
/// `mean((x - mean)^2)` over `N, H, W`.
pub fn batch_norm_train(
    xs: &Tensor,
    weight: &Tensor,
    bias: &Tensor,
    eps: f64,
) -> Result<BatchNormTrainOutput> {
    let c = xs.dim(1)?;
    let mean = xs.mean_keepdim(0)?.mean_keepdim(2)?.mean_keepdim(3)?;
    let centred = xs.broadcast_sub(&mean)?;
    let var = centred
        .sqr()?
        .mean_keepdim(0)?
        .mean_keepdim(2)?
        .mean_keepdim(3)?;
    let scale = (&var + eps)?.sqrt()?.recip()?;
    let ys = centred
        .broadcast_mul(&scale)?
        .broadcast_mul(&weight.reshape((1, c, 1, 1))?)?
        .broadcast_add(&bias.reshape((1, c, 1, 1))?)?;
    Ok(BatchNormTrainOutput {
        ys,
        mean: mean.flatten_all()?.detach(),
        var: var.flatten_all()?.detach(),
    })
}

/// Eval-mode BatchNorm: `y = (x - running_mean) / sqrt(running_var + eps) * weight + bias`.
pub fn batch_norm_eval(
    xs: &Tensor,
    running_mean: &Tensor,
    running_var: &Tensor,
    weight: &Tensor,
    bias: &Tensor,
    eps: f64,
) -> Result<Tensor> {
    let c = xs.dim(1)?;
    let scale = (running_var + eps)?.sqrt()?.recip()?.mul(weight)?;
    let shift = bias.sub(&running_mean.mul(&scale)?)?;
    xs.broadcast_mul(&scale.reshape((1, c, 1, 1))?)?
        .broadcast_add(&shift.reshape((1, c, 1, 1))?)
}

/// `max(x, 0)` through `Tensor::relu`.
pub fn relu(xs: &Tensor) -> Result<Tensor> {
    xs.relu()
}

/// Max-pooling built from `index_select` views, one per kernel offset, so that the gradient
/// is exact: each output's gradient goes to the first maximum of its window in row-major
/// scan order (PyTorch's rule), ties included. The input is padded with `-inf`.
///
/// candle's own `max_pool2d` cannot serve here: its backward spreads the gradient over
/// the window (1/k² of the right value) and does not exist for kernel != stride.
pub fn max_pool2d(xs: &Tensor, kernel: usize, stride: usize, padding: usize) -> Result<Tensor> {
    let (n, c, h, w) = xs.dims4()?;
    let (h_out, w_out) = super::pool_output_size(h, w, kernel, stride, padding)?;
    let padded = pad_neg_inf(xs, padding)?;
    let device = xs.device();
    let index = |offset: usize, len: usize| -> Result<Tensor> {
        let idx: Vec<u32> = (0..len).map(|i| (offset + i * stride) as u32).collect();
        Tensor::from_vec(idx, len, device)
    };
    let mut views = Vec::with_capacity(kernel * kernel);
    for ki in 0..kernel {
        let rows = padded.index_select(&index(ki, h_out)?, 2)?;
        for kj in 0..kernel {
            views.push(rows.index_select(&index(kj, w_out)?, 3)?);
        }
    }
    // The maximum itself, without a graph: only the selection below carries gradients.
    let mut max = views[0].detach();
    for view in &views[1..] {
        max = max.maximum(&view.detach())?;
    }
    let zeros = Tensor::zeros((n, c, h_out, w_out), xs.dtype(), device)?;
    let mut taken = Tensor::zeros((n, c, h_out, w_out), DType::U8, device)?;
    let mut ys = zeros.clone();
    for view in &views {
        let is_max = view.eq(&max)?;
        // First maximum in scan order: equal to the max and not taken by an earlier offset.
        let first = is_max.gt(&taken)?;
        taken = taken.maximum(&is_max)?;
        ys = ys.add(&first.where_cond(view, &zeros)?)?;
    }
    Ok(ys)
}

/// Pads H and W of `[N, C, H, W]` symmetrically with `-inf`.
fn pad_neg_inf(xs: &Tensor, padding: usize) -> Result<Tensor> {
    if padding == 0 {
        return Ok(xs.clone());
    }
    let (n, c, h, w) = xs.dims4()?;
    let device = xs.device();
    let neg_inf = |shape: (usize, usize, usize, usize)| -> Result<Tensor> {
        Tensor::full(f32::NEG_INFINITY, shape, device)?.to_dtype(xs.dtype())
    };
    let side = neg_inf((n, c, h, padding))?;
    let xs = Tensor::cat(&[&side, xs, &side], 3)?;
    let top = neg_inf((n, c, padding, w + 2 * padding))?;
    Tensor::cat(&[&top, &xs, &top], 2)
}

/// Mean over H and W: `[N, C, H, W] -> [N, C]`.
pub fn global_avg_pool(xs: &Tensor) -> Result<Tensor> {
    xs.dims4()?;
    xs.mean(D::Minus1)?.mean(D::Minus1)
}

/// `xs * weight^T + bias` through `Tensor::matmul`.
pub fn linear(xs: &Tensor, weight: &Tensor, bias: Option<&Tensor>) -> Result<Tensor> {
    let ys = xs.matmul(&weight.t()?)?;
    match bias {
        Some(bias) => ys.broadcast_add(bias),
        None => Ok(ys),
    }
}
