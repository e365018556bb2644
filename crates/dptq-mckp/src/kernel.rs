//! The dynamic-programming kernel: one instance at a time, states in blocks of [`LANES`].
//!
//! For group `i` (from the last to the first) and capacity state `s`:
//!
//! ```text
//! V_L(s) = 0 if s == 0 (Exact) or s >= 0 (AtMost), else -inf
//! V_i(s) = max_j  p_ij + V_{i+1}(s - w_ij)          (w_ij: shifted weight)
//! ```
//!
//! Each block of states is a branch-free loop over the items (add, max) that the compiler
//! turns into SIMD code (`maxps(a, b)` is exactly `if a > b { a } else { b }`). Every row
//! `V_i` is kept, so no back-pointer is written in the hot loop: the choice is read forwards,
//! `s = S; c_i = the first j with p_ij + V_{i+1}(s - w_ij) == V_i(s); s -= w_{i c_i}`, the
//! same float expression as in the maximum, hence the same first maximiser that a strict `>`
//! scan over the items keeps.

use crate::gang::{GANG, GangScratch, solve_gang};
use crate::problem::{LANES, Plan, try_vec};
use crate::{Error, Mode, Profit, Result};

/// The buffers one solver reuses for every instance.
#[derive(Clone, Debug)]
pub(crate) struct Scratch<P> {
    /// Value rows `[L + 1, row_len]`; row `L` is the constant `V_L`. Entries outside the
    /// states a group writes stay `-inf`.
    values: Vec<P>,
    /// Buffers of the gang kernel for batches, when small enough.
    gang: Option<GangScratch<P>>,
}

impl<P: Profit> Scratch<P> {
    pub(crate) fn new(plan: &Plan) -> Option<Self> {
        let len = plan.row_len.checked_mul(plan.groups.checked_add(1)?)?;
        let mut values = try_vec(len, P::NEG_INFINITY)?;
        let term = &mut values[plan.groups * plan.row_len..];
        match plan.mode {
            Mode::Exact => term[plan.pad] = P::ZERO,
            Mode::AtMost => term[plan.pad..].fill(P::ZERO),
        }
        Some(Self {
            values,
            gang: GangScratch::new(plan),
        })
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
        Kernel::Portable => {
            solve_batch_inline::<P, false>(plan, scratch, profits, choices, totals, first)
        }
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
    solve_batch_inline::<P, true>(plan, scratch, profits, choices, totals, first)
}

/// `AVX2`: compute rows with [`Sealed::row_avx2`](crate::profit::sealed::Sealed::row_avx2)
/// (only ever true on a CPU with AVX2).
#[inline(always)]
fn solve_batch_inline<P: Profit, const AVX2: bool>(
    plan: &Plan,
    scratch: &mut Scratch<P>,
    profits: &[P],
    choices: &mut [u32],
    totals: &mut [P],
    first: usize,
) -> Result<()> {
    let per = plan.groups * plan.items;
    let limit = P::limit(plan.groups);
    // Whole gangs of GANG instances first, the rest one at a time.
    let gangs = if scratch.gang.is_some() {
        totals.len() / GANG
    } else {
        0
    };
    if let Some(gang) = &mut scratch.gang {
        let per_gang = (profits
            .chunks_exact(GANG * per)
            .zip(choices.chunks_exact_mut(GANG * plan.groups)))
        .zip(totals.chunks_exact_mut(GANG));
        for (g, ((p, c), t)) in per_gang.enumerate().take(gangs) {
            for (lane, instance) in p.chunks_exact(per).enumerate() {
                if !all_within(instance, limit) {
                    return Err(bad_profit(instance, limit, plan, first + g * GANG + lane));
                }
            }
            solve_gang::<P, AVX2>(plan, gang, p, c, t);
        }
    }
    let done = gangs * GANG;
    let (profits, choices, totals) = (
        &profits[done * per..],
        &mut choices[done * plan.groups..],
        &mut totals[done..],
    );
    let first = first + done;
    let instances = profits
        .chunks_exact(per)
        .zip(choices.chunks_exact_mut(plan.groups));
    for (n, ((p, c), total)) in instances.zip(totals.iter_mut()).enumerate() {
        if !all_within(p, limit) {
            return Err(bad_profit(p, limit, plan, first + n));
        }
        *total = solve_instance::<P, AVX2>(plan, scratch, p, c);
    }
    Ok(())
}

/// Whether every `|p| <= limit` (false for NaN and infinities). Lane-wise counters so that
/// it vectorises; the exact culprit is found by [`bad_profit`] when this fails.
// `!(x <= limit)` is deliberate: it is true for NaN.
#[allow(clippy::neg_cmp_op_on_partial_ord)]
#[inline(always)]
fn all_within<P: Profit>(profits: &[P], limit: P) -> bool {
    let mut bad = [0u32; LANES];
    let blocks = profits.chunks_exact(LANES);
    let rest = blocks.remainder();
    for block in blocks {
        for l in 0..LANES {
            bad[l] += !(block[l].abs() <= limit) as u32;
        }
    }
    for &p in rest {
        bad[0] += !(p.abs() <= limit) as u32;
    }
    bad.iter().all(|&b| b == 0)
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
fn solve_instance<P: Profit, const AVX2: bool>(
    plan: &Plan,
    scratch: &mut Scratch<P>,
    profits: &[P],
    choices: &mut [u32],
) -> P {
    let (items, pad, row_len) = (plan.items, plan.pad, plan.row_len);
    let values = &mut scratch.values;
    let per_group = (plan
        .shifted
        .chunks_exact(items)
        .zip(profits.chunks_exact(items)))
    .zip(plan.lo.iter().zip(&plan.blocks))
    .enumerate();
    for (i, ((w, p), (&lo, &blocks))) in per_group.rev() {
        let (head, tail) = values.split_at_mut((i + 1) * row_len);
        let (cur, next) = (&mut head[i * row_len..], &tail[..row_len]);
        let start = pad + lo;
        // `Plan::new` checks `w_ij <= pad` and `pad + lo_i + blocks_i * LANES <= row_len`.
        #[cfg(target_arch = "x86_64")]
        if AVX2 {
            // SAFETY: AVX2 was detected (`Kernel::Avx2`); bounds as checked by `Plan::new`.
            unsafe { P::row_avx2(next, start, cur, w, p, blocks) };
        } else {
            row_portable(next, start, cur, w, p, blocks);
        }
        #[cfg(not(target_arch = "x86_64"))]
        row_portable(next, start, cur, w, p, blocks);
        // AtMost: states past hi_i are worth V_i(hi_i); group i - 1 may read them.
        if plan.mode == Mode::AtMost && i > 0 {
            let end = lo + blocks * LANES;
            if plan.fill_end[i] > end {
                let fill = cur[pad + plan.hi[i]];
                cur[pad + end..pad + plan.fill_end[i]].fill(fill);
            }
        }
    }
    // Read the choice forwards: the first item whose candidate equals the row's optimum.
    let total = values[pad + plan.capacity];
    let mut s = plan.capacity;
    let rows = values
        .chunks_exact(row_len)
        .zip(values.chunks_exact(row_len).skip(1));
    let per_group = (plan
        .shifted
        .chunks_exact(items)
        .zip(profits.chunks_exact(items)))
    .zip(rows.zip(&plan.hi));
    for (((w, p), ((cur, next), &hi)), c) in per_group.zip(choices.iter_mut()) {
        let x = s.min(hi);
        let target = cur[pad + x];
        let j = w
            .iter()
            .zip(p)
            // `w_ij <= pad` (`Plan::new`) and `x <= capacity`, so `pad + x - w_ij` is in the row.
            .position(|(&wj, &pj)| pj + next[pad + x - wj as usize] == target)
            .unwrap_or(0);
        *c = j as u32;
        s = x.saturating_sub(w[j] as usize);
    }
    total
}

/// One row of the dynamic program, block by block, in plain Rust that the compiler
/// vectorises: `cur[start + s] = max_j p[j] + next[start + s - w[j]]` for `s` in
/// `0..blocks * LANES`, ties keeping the earlier item (`if cand > best`).
#[inline(always)]
fn row_portable<P: Profit>(
    next: &[P],
    start: usize,
    cur: &mut [P],
    w: &[u32],
    p: &[P],
    blocks: usize,
) {
    assert!(start + blocks * LANES <= next.len() && w.iter().all(|&w| w as usize <= start));
    let next = next.as_ptr();
    for b in 0..blocks {
        let base = start + b * LANES;
        // SAFETY: `base - w + LANES <= start + blocks * LANES <= next.len()` (asserted above).
        let load = |w: u32| unsafe { *next.add(base - w as usize).cast::<[P; LANES]>() };
        let mut best = load(w[0]);
        for v in best.iter_mut() {
            *v = *v + p[0];
        }
        for j in 1..w.len() {
            let src = load(w[j]);
            let pj = p[j];
            for l in 0..LANES {
                let cand = src[l] + pj;
                best[l] = if cand > best[l] { cand } else { best[l] };
            }
        }
        cur[base..base + LANES].copy_from_slice(&best);
    }
}
