//! Training operations for the architectures: convolution, BatchNorm, ReLU, pooling and
//! the linear head, with exact gradients.
//!
//! Every function takes and returns candle tensors on any device and carries its gradient
//! through candle's autograd. On the CPU, f32 and f64 run on fused kernels (custom ops with
//! fused backward passes, see `conv`, `norm`, `pool`), and f16/bf16 run on the f32 kernels. [`composed`] holds the same operations built
//! from candle's own tensor ops: the fallback on devices without fused kernels and the
//! reference the fused kernels are tested against.

pub mod composed;
mod conv;
mod kernel;
mod norm;
mod pool;

use candle_core::{D, DType, Result, Tensor};

/// Whether `xs` runs on the fused CPU kernels (f32 and f64 on the CPU); everything else
/// takes the composed candle ops.
fn fused(xs: &Tensor) -> bool {
    xs.device().is_cpu() && kernel::has_kernels(xs.dtype())
}

/// The half-precision dtype of a CPU tensor: such tensors run through the f32 kernels
/// (candle's CPU matmul has no f16/bf16) and are converted back.
fn half_on_cpu(xs: &Tensor) -> Option<DType> {
    (xs.device().is_cpu() && matches!(xs.dtype(), DType::F16 | DType::BF16)).then_some(xs.dtype())
}

fn f32(t: &Tensor) -> Result<Tensor> {
    t.to_dtype(DType::F32)
}

/// Convolution hyper-parameters (PyTorch semantics, symmetric padding).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Conv2dParams {
    /// Step between output positions, in both H and W. Default 1.
    pub stride: usize,
    /// Zeros added on each side of H and W. Default 0.
    pub padding: usize,
    /// Spacing between kernel taps. Default 1.
    pub dilation: usize,
    /// Channel groups: `C_in` and `C_out` are split in `groups` independent convolutions
    /// (`groups == C_in` is depthwise). Default 1.
    pub groups: usize,
}

impl Default for Conv2dParams {
    fn default() -> Self {
        Self {
            stride: 1,
            padding: 0,
            dilation: 1,
            groups: 1,
        }
    }
}

/// 2-D convolution (cross-correlation, as in PyTorch):
/// `y[n, o, i, j] = bias[o] + sum_{c, a, b} w[o, c, a, b] * x[n, g*C_in/groups + c, i*s + a*d - p, j*s + b*d - p]`
/// where `g = o / (C_out / groups)` and out-of-range inputs are zero.
///
/// xs: `[N, C_in, H, W]`, weight: `[C_out, C_in/groups, kh, kw]`, bias: `[C_out]`
/// -> `[N, C_out, H', W']` with `H' = (H + 2p - d(kh - 1) - 1) / s + 1` (floor).
pub fn conv2d(
    xs: &Tensor,
    weight: &Tensor,
    bias: Option<&Tensor>,
    p: Conv2dParams,
) -> Result<Tensor> {
    check_conv2d(xs, weight, bias, p)?;
    if let Some(dtype) = half_on_cpu(xs) {
        let bias = bias.map(f32).transpose()?;
        return conv2d(&f32(xs)?, &f32(weight)?, bias.as_ref(), p)?.to_dtype(dtype);
    }
    if !fused(xs) {
        return composed::conv2d(xs, weight, bias, p);
    }
    let ys = xs
        .contiguous()?
        .apply_op2(&weight.contiguous()?, conv::Conv2dOp { p })?;
    match bias {
        Some(bias) => ys.broadcast_add(&bias.reshape((1, (), 1, 1))?),
        None => Ok(ys),
    }
}

/// The result of [`batch_norm_train`].
#[derive(Clone, Debug)]
pub struct BatchNormTrainOutput {
    /// Normalised output, same shape as the input `[N, C, H, W]`.
    pub ys: Tensor,
    /// Batch mean per channel `[C]` (detached).
    pub mean: Tensor,
    /// Biased batch variance per channel `[C]` (detached): `mean((x - mean)^2)`.
    pub var: Tensor,
}

/// Training-mode BatchNorm2d on `[N, C, H, W]`:
/// `y = (x - mean) / sqrt(var + eps) * weight + bias` with the batch mean and biased
/// variance over `N, H, W`; returns `y` and those statistics (detached), so that the caller
/// updates running statistics (PyTorch uses the unbiased variance for that:
/// `var * n / (n - 1)` with `n = N*H*W`).
///
/// weight, bias: `[C]`.
pub fn batch_norm_train(
    xs: &Tensor,
    weight: &Tensor,
    bias: &Tensor,
    eps: f64,
) -> Result<BatchNormTrainOutput> {
    check_batch_norm(xs, &[("weight", weight), ("bias", bias)])?;
    if let Some(dtype) = half_on_cpu(xs) {
        let out = batch_norm_train(&f32(xs)?, &f32(weight)?, &f32(bias)?, eps)?;
        return Ok(BatchNormTrainOutput {
            ys: out.ys.to_dtype(dtype)?,
            mean: out.mean.to_dtype(dtype)?,
            var: out.var.to_dtype(dtype)?,
        });
    }
    if !fused(xs) {
        return composed::batch_norm_train(xs, weight, bias, eps);
    }
    let xs = xs.contiguous()?;
    let (mean, var) = norm::channel_stats(&xs)?;
    let invstd = var.iter().map(|v| 1.0 / (v + eps).sqrt()).collect();
    let stat = |v: &[f64]| Tensor::new(v, xs.device())?.to_dtype(xs.dtype());
    let (mean_t, var_t) = (stat(&mean)?, stat(&var)?);
    let op = norm::BatchNormTrainOp { mean, invstd };
    let ys = xs.apply_op3(&weight.contiguous()?, &bias.contiguous()?, op)?;
    Ok(BatchNormTrainOutput {
        ys,
        mean: mean_t,
        var: var_t,
    })
}

/// Eval-mode BatchNorm2d with running statistics (also used by frozen teachers):
/// `y = (x - running_mean) / sqrt(running_var + eps) * weight + bias`.
///
/// xs: `[N, C, H, W]`; running_mean, running_var, weight, bias: `[C]` -> `[N, C, H, W]`.
pub fn batch_norm_eval(
    xs: &Tensor,
    running_mean: &Tensor,
    running_var: &Tensor,
    weight: &Tensor,
    bias: &Tensor,
    eps: f64,
) -> Result<Tensor> {
    check_batch_norm(
        xs,
        &[
            ("running_mean", running_mean),
            ("running_var", running_var),
            ("weight", weight),
            ("bias", bias),
        ],
    )?;
    if let Some(dtype) = half_on_cpu(xs) {
        let (m, v, w, b) = (
            f32(running_mean)?,
            f32(running_var)?,
            f32(weight)?,
            f32(bias)?,
        );
        return batch_norm_eval(&f32(xs)?, &m, &v, &w, &b, eps)?.to_dtype(dtype);
    }
    if !fused(xs) {
        return composed::batch_norm_eval(xs, running_mean, running_var, weight, bias, eps);
    }
    let scale = (running_var + eps)?.sqrt()?.recip()?.mul(weight)?;
    let shift = bias.sub(&running_mean.mul(&scale)?)?;
    xs.contiguous()?
        .apply_op3(&scale, &shift, norm::ChannelAffineOp)
}

/// `max(x, 0)` elementwise, any shape; the gradient is `dy * [x > 0]`.
pub fn relu(xs: &Tensor) -> Result<Tensor> {
    if let Some(dtype) = half_on_cpu(xs) {
        return relu(&f32(xs)?)?.to_dtype(dtype);
    }
    if !fused(xs) {
        return composed::relu(xs);
    }
    xs.contiguous()?.apply_op1(pool::ReluOp)
}

/// Max-pooling with PyTorch `MaxPool2d` semantics (padding with `-inf`, floor mode); the
/// gradient of each output goes to the first maximum of its window in row-major order.
///
/// xs: `[N, C, H, W]` -> `[N, C, H', W']`, `H' = (H + 2*padding - kernel) / stride + 1`.
/// Requires `padding <= kernel / 2`, as PyTorch does.
pub fn max_pool2d(xs: &Tensor, kernel: usize, stride: usize, padding: usize) -> Result<Tensor> {
    let (_, _, h, w) = xs.dims4()?;
    pool_output_size(h, w, kernel, stride, padding)?;
    if let Some(dtype) = half_on_cpu(xs) {
        return max_pool2d(&f32(xs)?, kernel, stride, padding)?.to_dtype(dtype);
    }
    if !fused(xs) {
        return composed::max_pool2d(xs, kernel, stride, padding);
    }
    // Recording the argmax costs a pass of index writes: only when a gradient may follow.
    let op = pool::MaxPoolOp::new(kernel, stride, padding, xs.track_op());
    xs.contiguous()?.apply_op1(op)
}

/// Mean over the spatial dimensions: `[N, C, H, W] -> [N, C]`.
pub fn global_avg_pool(xs: &Tensor) -> Result<Tensor> {
    let (n, c, h, w) = xs.dims4()?;
    if let Some(dtype) = half_on_cpu(xs) {
        return global_avg_pool(&f32(xs)?)?.to_dtype(dtype);
    }
    if !fused(xs) {
        return composed::global_avg_pool(xs);
    }
    xs.reshape((n, c, h * w))?.mean(D::Minus1)
}

/// Fully connected layer `y = x * weight^T + bias`.
///
/// xs: `[N, in]`, weight: `[out, in]` (PyTorch layout), bias: `[out]` -> `[N, out]`.
pub fn linear(xs: &Tensor, weight: &Tensor, bias: Option<&Tensor>) -> Result<Tensor> {
    let (_, d_in) = xs.dims2()?;
    let (d_out, w_in) = weight.dims2()?;
    if d_in != w_in {
        candle_core::bail!(
            "linear: input {:?} does not match weight {:?}",
            xs.dims(),
            weight.dims()
        );
    }
    if let Some(bias) = bias
        && bias.dims() != [d_out]
    {
        candle_core::bail!(
            "linear: bias {:?} does not match weight {:?}",
            bias.dims(),
            weight.dims()
        );
    }
    if let Some(dtype) = half_on_cpu(xs) {
        let bias = bias.map(f32).transpose()?;
        return linear(&f32(xs)?, &f32(weight)?, bias.as_ref())?.to_dtype(dtype);
    }
    composed::linear(xs, weight, bias)
}

/// Output size of a convolution along one axis, or an error naming the offending values.
pub(crate) fn conv_output_len(len: usize, k: usize, p: Conv2dParams) -> Result<usize> {
    let span = p.dilation * (k - 1) + 1;
    if len + 2 * p.padding < span {
        candle_core::bail!(
            "conv2d: input extent {len} with padding {} is smaller than the dilated kernel extent {span}",
            p.padding
        );
    }
    Ok((len + 2 * p.padding - span) / p.stride + 1)
}

/// Output `(H', W')` of a max-pool, with PyTorch's argument checks.
pub(crate) fn pool_output_size(
    h: usize,
    w: usize,
    kernel: usize,
    stride: usize,
    padding: usize,
) -> Result<(usize, usize)> {
    if kernel == 0 || stride == 0 {
        candle_core::bail!("max_pool2d: kernel {kernel} and stride {stride} must be positive");
    }
    if 2 * padding > kernel {
        candle_core::bail!(
            "max_pool2d: padding {padding} must be at most half the kernel {kernel}"
        );
    }
    if h + 2 * padding < kernel || w + 2 * padding < kernel {
        candle_core::bail!(
            "max_pool2d: input {h}x{w} with padding {padding} is smaller than the kernel {kernel}"
        );
    }
    Ok((
        (h + 2 * padding - kernel) / stride + 1,
        (w + 2 * padding - kernel) / stride + 1,
    ))
}

fn check_conv2d(
    xs: &Tensor,
    weight: &Tensor,
    bias: Option<&Tensor>,
    p: Conv2dParams,
) -> Result<()> {
    let (_, c_in, h, w) = xs.dims4()?;
    let (c_out, c_in_g, kh, kw) = weight.dims4()?;
    if p.stride == 0 || p.dilation == 0 || p.groups == 0 {
        candle_core::bail!("conv2d: stride, dilation and groups must be positive, got {p:?}");
    }
    if c_in % p.groups != 0 || c_out % p.groups != 0 || c_in / p.groups != c_in_g {
        candle_core::bail!(
            "conv2d: input {:?} and weight {:?} do not match {} groups",
            xs.dims(),
            weight.dims(),
            p.groups
        );
    }
    if kh == 0 || kw == 0 {
        candle_core::bail!("conv2d: empty kernel {:?}", weight.dims());
    }
    if let Some(bias) = bias
        && bias.dims() != [c_out]
    {
        candle_core::bail!(
            "conv2d: bias {:?} does not match weight {:?}",
            bias.dims(),
            weight.dims()
        );
    }
    conv_output_len(h, kh, p)?;
    conv_output_len(w, kw, p)?;
    Ok(())
}

fn check_batch_norm(xs: &Tensor, params: &[(&str, &Tensor)]) -> Result<()> {
    let (_, c, _, _) = xs.dims4()?;
    for (name, t) in params {
        if t.dims() != [c] {
            candle_core::bail!(
                "batch_norm: {name} {:?} does not match input {:?}",
                t.dims(),
                xs.dims()
            );
        }
    }
    Ok(())
}
