//! Helpers shared by the `ops_*` tests: seeded tensors, gradients through candle's
//! autograd, and error measures.
#![allow(dead_code)]

use candle_core::{DType, Device, Result, Tensor, Var};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// Uniform values in `[-1, 1)` from a seeded generator.
pub fn uniform(dims: &[usize], seed: u64, dtype: DType) -> Result<Tensor> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let n: usize = dims.iter().product();
    let data: Vec<f64> = (0..n).map(|_| rng.random_range(-1.0..1.0)).collect();
    Tensor::from_vec(data, dims, &Device::Cpu)?.to_dtype(dtype)
}

/// Output and gradients of `f` with respect to every input, for the loss
/// `sum(f(inputs) * r)` with a fixed random `r` (so that the incoming gradient is not
/// uniform).
pub fn output_and_grads(
    inputs: &[Tensor],
    seed: u64,
    f: impl Fn(&[Tensor]) -> Result<Tensor>,
) -> Result<(Tensor, Vec<Tensor>)> {
    let vars: Vec<Var> = inputs.iter().map(Var::from_tensor).collect::<Result<_>>()?;
    let tensors: Vec<Tensor> = vars.iter().map(|v| v.as_tensor().clone()).collect();
    let ys = f(&tensors)?;
    let r = uniform(ys.dims(), seed, ys.dtype())?;
    let grads = (&ys * &r)?.sum_all()?.backward()?;
    let grads = tensors
        .iter()
        .enumerate()
        .map(|(i, t)| {
            grads
                .get(t)
                .cloned()
                .ok_or_else(|| candle_core::Error::Msg(format!("input {i} got no gradient")))
        })
        .collect::<Result<_>>()?;
    Ok((ys.detach(), grads))
}

/// `max |a - b| / max(1, max |b|)`, or an error when the shapes differ.
pub fn rel_diff(a: &Tensor, b: &Tensor) -> Result<f64> {
    if a.dims() != b.dims() {
        candle_core::bail!("shapes differ: {:?} vs {:?}", a.dims(), b.dims());
    }
    let a = a.to_dtype(DType::F64)?.flatten_all()?.to_vec1::<f64>()?;
    let b = b.to_dtype(DType::F64)?.flatten_all()?.to_vec1::<f64>()?;
    let scale = b.iter().fold(1.0f64, |m, v| m.max(v.abs()));
    let diff = a
        .iter()
        .zip(&b)
        .fold(0.0f64, |m, (x, y)| m.max((x - y).abs()));
    Ok(diff / scale)
}

/// The raw bits of a float tensor, for run-to-run comparisons.
pub fn bits(t: &Tensor) -> Result<Vec<u64>> {
    Ok(match t.dtype() {
        DType::F32 => t
            .flatten_all()?
            .to_vec1::<f32>()?
            .into_iter()
            .map(|v| u64::from(v.to_bits()))
            .collect(),
        _ => t
            .flatten_all()?
            .to_vec1::<f64>()?
            .into_iter()
            .map(f64::to_bits)
            .collect(),
    })
}

/// Central finite difference of `sum(f(inputs) * r)` (the loss of [`output_and_grads`])
/// with respect to element `index` of input `which`, in f64.
pub fn finite_difference(
    inputs: &[Tensor],
    which: usize,
    index: usize,
    seed: u64,
    f: &impl Fn(&[Tensor]) -> Result<Tensor>,
) -> Result<f64> {
    let h = 1e-6;
    let loss = |delta: f64| -> Result<f64> {
        let mut moved = inputs.to_vec();
        let dims = inputs[which].dims().to_vec();
        let mut data = inputs[which].flatten_all()?.to_vec1::<f64>()?;
        data[index] += delta;
        moved[which] = Tensor::from_vec(data, dims, &Device::Cpu)?;
        let ys = f(&moved)?;
        let r = uniform(ys.dims(), seed, DType::F64)?;
        (&ys * &r)?.sum_all()?.to_scalar::<f64>()
    };
    Ok((loss(h)? - loss(-h)?) / (2.0 * h))
}

/// Checks the gradients of `f` (f64) against finite differences at a few elements of each
/// input; returns the largest relative error.
pub fn max_finite_difference_error(
    inputs: &[Tensor],
    seed: u64,
    f: impl Fn(&[Tensor]) -> Result<Tensor>,
) -> Result<f64> {
    let (_, grads) = output_and_grads(inputs, seed, &f)?;
    let mut worst = 0f64;
    for (which, (input, grad)) in inputs.iter().zip(&grads).enumerate() {
        let grad = grad.flatten_all()?.to_vec1::<f64>()?;
        let n = input.elem_count();
        for index in [0, n / 3, n / 2, n - 1, (7 * n) / 11] {
            let numeric = finite_difference(inputs, which, index, seed, &f)?;
            let err = (numeric - grad[index]).abs() / numeric.abs().max(1.0);
            worst = worst.max(err);
        }
    }
    Ok(worst)
}
