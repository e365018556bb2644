//! Feature `candle`: the straight-through bit selector.

use std::sync::Arc;

use candle_core::{CpuStorage, CustomOp1, DType, Device, Layout, Shape, Tensor};

use crate::{Error, Mode, Problem, Result, SolverBuilder};

/// Choose the bit-width of every layer of every example under an exact (or at-most) bit
/// budget, differentiably.
///
/// - `policy_out`: `[N, L, K]` scores `P` (f32 or f64, any device): example `n`, layer `l`,
///   option `k`;
/// - `options`: the `K` bit-widths (item weights, any positive set);
/// - `budget`: `B`, the total bits per example (`sum_l bits[n, l] == B` for [`Mode::Exact`]).
///
/// Returns `(selection, bits)`:
///
/// - `selection`: `[N, L, K]`, same dtype and device as `policy_out`. Its forward value is
///   exactly the one-hot optimum `H` (`H[n, l, k] = 1` iff option `k` is chosen), with no
///   rounding residue; its gradient flows to `P` unchanged, i.e. it differentiates as
///   `(H - P).detach() + P` (the straight-through estimator, see [`StraightThrough`]);
/// - `bits`: `[N, L]` u32, `bits[n, l] = options[k]` of the chosen `k`.
///
/// Each example is the knapsack `max sum_l P[n, l, k_l]` subject to the budget, solved
/// exactly (ties: see [`Solver`](crate::Solver)) in parallel over the batch.
///
/// Errors: the budget errors of [`Problem::new`], [`Error::ShapeMismatch`] when `K !=
/// options.len()`, non-finite scores, [`Error::UnsupportedDtype`], candle errors.
pub fn select_bits(
    policy_out: &Tensor,
    options: &[u32],
    budget: u32,
    mode: Mode,
) -> Result<(Tensor, Tensor)> {
    let (n, layers, k) = policy_out.dims3()?;
    if k != options.len() {
        return Err(Error::ShapeMismatch {
            what: "policy output options (last dim)",
            expected: options.len(),
            got: k,
        });
    }
    let problem = Problem::uniform(options, layers, budget as u64, mode)?;
    let device = policy_out.device();
    let scores = policy_out.detach().to_device(&Device::Cpu)?.flatten_all()?;
    let choices = match policy_out.dtype() {
        DType::F32 => {
            SolverBuilder::new()
                .build::<f32>(&problem)?
                .par_solve_batch(&scores.to_vec1::<f32>()?)?
                .choices
        }
        DType::F64 => {
            SolverBuilder::new()
                .build::<f64>(&problem)?
                .par_solve_batch(&scores.to_vec1::<f64>()?)?
                .choices
        }
        dtype => return Err(Error::UnsupportedDtype { dtype }),
    };
    let bits: Vec<u32> = choices.iter().map(|&c| options[c as usize]).collect();
    let bits = Tensor::from_vec(bits, (n, layers), device)?;
    let hot = one_hot(&choices, k, policy_out.dtype());
    let op = StraightThrough { hot: Arc::new(hot) };
    let selection = if device.is_cpu() {
        policy_out.apply_op1(op)?
    } else {
        // The op runs on the host; `to_device` carries the gradient back to `device`.
        policy_out
            .to_device(&Device::Cpu)?
            .apply_op1(op)?
            .to_device(device)?
    };
    Ok((selection, bits))
}

fn one_hot(choices: &[u32], k: usize, dtype: DType) -> CpuStorage {
    fn fill<T: Copy>(choices: &[u32], k: usize, zero: T, one: T) -> Vec<T> {
        let mut hot = vec![zero; choices.len() * k];
        for (row, &c) in hot.chunks_exact_mut(k).zip(choices) {
            row[c as usize] = one;
        }
        hot
    }
    match dtype {
        DType::F64 => CpuStorage::F64(fill(choices, k, 0.0, 1.0)),
        _ => CpuStorage::F32(fill(choices, k, 0.0, 1.0)),
    }
}

/// The straight-through estimator as a candle op: applied to `P`, its forward value is the
/// fixed tensor `H` (bit-exact), its backward passes the incoming gradient to `P`
/// unchanged — the gradient of `(H - P).detach() + P`, without evaluating that sum in
/// floating point (which can give `0.99999994` instead of `1`).
///
/// `hot` must hold as many elements as `P`, in `P`'s dtype (f32 or f64); the forward runs
/// on the CPU.
#[derive(Clone, Debug)]
pub struct StraightThrough {
    /// The forward value `H`, contiguous, in the shape of the input.
    pub hot: Arc<CpuStorage>,
}

impl CustomOp1 for StraightThrough {
    fn name(&self) -> &'static str {
        "dptq-mckp-straight-through"
    }

    fn cpu_fwd(
        &self,
        storage: &CpuStorage,
        layout: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let shape = layout.shape().clone();
        let (len, same_dtype) = match (self.hot.as_ref(), storage) {
            (CpuStorage::F32(hot), CpuStorage::F32(_)) => (hot.len(), true),
            (CpuStorage::F64(hot), CpuStorage::F64(_)) => (hot.len(), true),
            (CpuStorage::F32(hot), _) => (hot.len(), false),
            (CpuStorage::F64(hot), _) => (hot.len(), false),
            _ => candle_core::bail!("straight-through forward value must be f32 or f64"),
        };
        if !same_dtype {
            candle_core::bail!("straight-through forward value and input differ in dtype");
        }
        if len != shape.elem_count() {
            candle_core::bail!(
                "straight-through forward value has {len} elements, the input {shape:?} has {}",
                shape.elem_count()
            );
        }
        Ok((self.hot.as_ref().clone(), shape))
    }

    fn bwd(
        &self,
        _arg: &Tensor,
        _res: &Tensor,
        grad_res: &Tensor,
    ) -> candle_core::Result<Option<Tensor>> {
        Ok(Some(grad_res.clone()))
    }
}
