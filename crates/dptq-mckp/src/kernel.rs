//! The dynamic-programming kernel: one instance at a time, states in blocks of [`LANES`].
//!
//! For group `i` (from the last to the first) and capacity state `s`:
//!
//! ```text
//! V_L(s) = 0 if s == 0 (Exact) or s >= 0 (AtMost), else -inf
//! V_i(s) = max_j  p_ij + V_{i+1}(s - w_ij)          (w_ij: shifted weight)
//! arg_i(s) = the smallest j reaching the maximum      (strict `>`, items in order)
//! ```
//!
//! and the choice is read forwards: `s = S; c_i = arg_i(s); s -= w_{i c_i}`. Each block of
//! states is a branch-free loop over the items (add, compare, select) that the compiler
//! turns into SIMD code; back-pointers are bytes.

use crate::problem::{LANES, Plan, try_vec};
use crate::{Error, Mode, Profit, Result};

/// The buffers one solver reuses for every instance.
#[derive(Clone, Debug)]
pub(crate) struct Scratch<P> {
    /// Two value rows `[2, row_len]`, used alternately by consecutive groups.
    rows: Vec<P>,
    /// The constant row `V_L`.
    term: Vec<P>,
    /// Back-pointers of every group, `arg_len` bytes.
    args: Vec<u8>,
}

impl<P: Profit> Scratch<P> {
    pub(crate) fn new(plan: &Plan) -> Option<Self> {
        let rows = try_vec(plan.row_len.checked_mul(2)?, P::NEG_INFINITY)?;
        let mut term = try_vec(plan.row_len, P::NEG_INFINITY)?;
        match plan.mode {
            Mode::Exact => term[plan.pad] = P::ZERO,
            Mode::AtMost => term[plan.pad..].fill(P::ZERO),
        }
        let args = try_vec(plan.arg_len, 0u8)?;
        Some(Self { rows, term, args })
    }
}

/// Which compiled copy of the kernel runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kernel {
    /// Compiled for the baseline target.
    Portable,
    /// Compiled with AVX2 enabled (x86-64 only, chosen after runtime detection).
    #[cfg(target_arch = "x86_64")]
    Avx2,
}

impl Kernel {
    /// The fastest kernel this CPU runs, or the portable one when `detect` is false.
    pub(crate) fn select(detect: bool) -> Self {
        #[cfg(target_arch = "x86_64")]
        if detect && std::arch::is_x86_feature_detected!("avx2") {
            return Kernel::Avx2;
        }
        let _ = detect;
        Kernel::Portable
    }
}

/// Solve `totals.len()` consecutive instances: `profits` is `[N, L, K]`, `choices` `[N, L]`.
/// Instance indices in errors start at `first`. Shapes are checked by the caller.
pub(crate) fn solve_batch<P: Profit>(
    kernel: Kernel,
    plan: &Plan,
    scratch: &mut Scratch<P>,
    profits: &[P],
    choices: &mut [u32],
    totals: &mut [P],
    first: usize,
) -> Result<()> {
    match kernel {
        Kernel::Portable => solve_batch_inline(plan, scratch, profits, choices, totals, first),
        #[cfg(target_arch = "x86_64")]
        // SAFETY: `Kernel::Avx2` is only selected after `is_x86_feature_detected!("avx2")`.
        Kernel::Avx2 => unsafe { solve_batch_avx2(plan, scratch, profits, choices, totals, first) },
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
fn solve_batch_avx2<P: Profit>(
    plan: &Plan,
    scratch: &mut Scratch<P>,
    profits: &[P],
    choices: &mut [u32],
    totals: &mut [P],
    first: usize,
) -> Result<()> {
    solve_batch_inline(plan, scratch, profits, choices, totals, first)
}

#[inline(always)]
fn solve_batch_inline<P: Profit>(
    plan: &Plan,
    scratch: &mut Scratch<P>,
    profits: &[P],
    choices: &mut [u32],
    totals: &mut [P],
    first: usize,
) -> Result<()> {
    let per = plan.groups * plan.items;
    let limit = P::limit(plan.groups);
    let instances = profits
        .chunks_exact(per)
        .zip(choices.chunks_exact_mut(plan.groups));
    for (n, ((p, c), total)) in instances.zip(totals.iter_mut()).enumerate() {
        if !all_within(p, limit) {
            return Err(bad_profit(p, limit, plan, first + n));
        }
        *total = solve_instance(plan, scratch, p, c);
    }
    Ok(())
}

/// Whether every `|p| <= limit` (false for NaN and infinities). Lane-wise so that it
/// vectorises; the exact culprit is found by [`bad_profit`] when this fails.
// `!(x <= limit)` is deliberate: it is true for NaN.
#[allow(clippy::neg_cmp_op_on_partial_ord)]
#[inline(always)]
fn all_within<P: Profit>(profits: &[P], limit: P) -> bool {
    let mut bad = [false; LANES];
    let blocks = profits.chunks_exact(LANES);
    let rest = blocks.remainder();
    for block in blocks {
        for l in 0..LANES {
            bad[l] |= !(block[l].abs() <= limit);
        }
    }
    for &p in rest {
        bad[0] |= !(p.abs() <= limit);
    }
    !bad.iter().any(|&b| b)
}

#[cold]
#[allow(clippy::neg_cmp_op_on_partial_ord)]
fn bad_profit<P: Profit>(profits: &[P], limit: P, plan: &Plan, instance: usize) -> Error {
    let at = profits
        .iter()
        .position(|p| !p.is_finite())
        .map(|i| (i, true));
    let at = at.or_else(|| {
        profits
            .iter()
            .position(|p| !(p.abs() <= limit))
            .map(|i| (i, false))
    });
    let (index, non_finite) = at.unwrap_or((0, true));
    let (group, item) = (index / plan.items, index % plan.items);
    let value = profits.get(index).map_or(f64::NAN, |p| p.to_f64());
    if non_finite {
        Error::NonFiniteProfit {
            instance,
            group,
            item,
            value,
        }
    } else {
        Error::ProfitTooLarge {
            instance,
            group,
            item,
            value,
            limit: limit.to_f64(),
            groups: plan.groups,
        }
    }
}

/// Solve one instance (`profits` `[L, K]`, all within the limit); writes `choices` `[L]` and
/// returns the optimal total profit `V_0(S)`.
#[inline(always)]
fn solve_instance<P: Profit>(
    plan: &Plan,
    scratch: &mut Scratch<P>,
    profits: &[P],
    choices: &mut [u32],
) -> P {
    let (groups, items, pad, row_len) = (plan.groups, plan.items, plan.pad, plan.row_len);
    let Scratch { rows, term, args } = scratch;
    for i in (0..groups).rev() {
        let (a, b) = rows.split_at_mut(row_len);
        let (cur, next) = if i % 2 == 0 { (a, &*b) } else { (b, &*a) };
        let next: &[P] = if i + 1 == groups { term } else { next };
        let w = &plan.shifted[i * items..(i + 1) * items];
        let p = &profits[i * items..(i + 1) * items];
        let blocks = plan.blocks[i];
        let args = &mut args[plan.arg_offset[i]..plan.arg_offset[i] + blocks * LANES];
        let start = pad + plan.lo[i];
        for (b, arg_out) in args.chunks_exact_mut(LANES).enumerate() {
            let base = start + b * LANES;
            let mut best = load(next, base - w[0] as usize);
            for v in best.iter_mut() {
                *v = *v + p[0];
            }
            let mut arg = [0u8; LANES];
            for j in 1..items {
                let src = load(next, base - w[j] as usize);
                let pj = p[j];
                for l in 0..LANES {
                    let cand = src[l] + pj;
                    let gt = cand > best[l];
                    best[l] = if gt { cand } else { best[l] };
                    arg[l] = if gt { j as u8 } else { arg[l] };
                }
            }
            cur[base..base + LANES].copy_from_slice(&best);
            arg_out.copy_from_slice(&arg);
        }
        if i > 0 {
            let end = plan.lo[i] + blocks * LANES;
            let fill = match plan.mode {
                Mode::Exact => P::NEG_INFINITY,
                Mode::AtMost => cur[pad + plan.hi[i]],
            };
            if plan.fill_end[i] > end {
                cur[pad + end..pad + plan.fill_end[i]].fill(fill);
            }
        }
    }
    let total = rows[pad + plan.capacity];
    let mut s = plan.capacity;
    for (i, c) in choices.iter_mut().enumerate() {
        let x = s.min(plan.hi[i]);
        let j = args[plan.arg_offset[i] + x.saturating_sub(plan.lo[i])] as usize;
        *c = j as u32;
        s = s.saturating_sub(plan.shifted[i * items + j] as usize);
    }
    total
}

#[inline(always)]
fn load<P: Profit>(row: &[P], at: usize) -> [P; LANES] {
    let mut out = [P::NEG_INFINITY; LANES];
    out.copy_from_slice(&row[at..at + LANES]);
    out
}
