//! The batch kernel: a gang of [`GANG`] instances solved at once, one instance per SIMD lane.
//!
//! Same dynamic program as [`kernel`](crate::kernel), same float operations in the same
//! order, hence bit-identical results; only the layout differs. Values are stored
//! `[group][state][lane]` and profits transposed to `[group][item][lane]`, so every step
//! `best = max(best, next[s - w_j] + p_j)` is one load, one add and one max for 8 instances,
//! and the per-group bookkeeping is paid once per gang instead of once per instance. Only
//! the windows `[lo_i, hi_i]` are computed (no padding to blocks of states).

use crate::problem::{Plan, try_vec};
use crate::{Mode, Profit};

/// Instances per gang.
pub(crate) const GANG: usize = 8;

/// Largest gang table, in bytes, a solver keeps (beyond it only the one-instance kernel
/// runs, whose table is 8 times smaller).
const MAX_GANG_BYTES: usize = 4 << 20;

/// Buffers of the gang kernel, reused for every gang.
#[derive(Clone, Debug)]
pub(crate) struct GangScratch<P> {
    /// `[L + 1, row_len, GANG]`; row `L` is the constant `V_L`; states outside the windows
    /// stay `-inf`.
    values: Vec<P>,
    /// Transposed profits `[L, K, GANG]`.
    profits: Vec<P>,
}

impl<P: Profit> GangScratch<P> {
    /// `None` when the table would exceed [`MAX_GANG_BYTES`] or cannot be allocated.
    pub(crate) fn new(plan: &Plan) -> Option<Self> {
        let len = plan
            .row_len
            .checked_mul(plan.groups.checked_add(1)?)?
            .checked_mul(GANG)?;
        let profits_len = plan.groups.checked_mul(plan.items)?.checked_mul(GANG)?;
        let bytes = len.checked_add(profits_len)?.checked_mul(size_of::<P>())?;
        if bytes > MAX_GANG_BYTES {
            return None;
        }
        let mut values = try_vec(len, P::NEG_INFINITY)?;
        let term = &mut values[plan.groups * plan.row_len * GANG..];
        match plan.mode {
            Mode::Exact => term[plan.pad * GANG..(plan.pad + 1) * GANG].fill(P::ZERO),
            Mode::AtMost => term[plan.pad * GANG..].fill(P::ZERO),
        }
        let profits = try_vec(profits_len, P::ZERO)?;
        Some(Self { values, profits })
    }
}

/// Solve [`GANG`] consecutive instances: `profits` `[GANG, L, K]` (all within the profit
/// limit), `choices` `[GANG, L]`, `totals` `[GANG]`.
#[inline(always)]
pub(crate) fn solve_gang<P: Profit, const AVX2: bool>(
    plan: &Plan,
    gang: &mut GangScratch<P>,
    profits: &[P],
    choices: &mut [u32],
    totals: &mut [P],
) {
    let (groups, items, pad) = (plan.groups, plan.items, plan.pad);
    let per = groups * items;
    let stride = plan.row_len * GANG;
    #[cfg(target_arch = "x86_64")]
    if AVX2 {
        // SAFETY: AVX2 was detected (`Kernel::Avx2`); `profits` holds GANG instances.
        unsafe { P::gang_transpose_avx2(profits, per, &mut gang.profits) };
    } else {
        transpose(profits, per, &mut gang.profits);
    }
    #[cfg(not(target_arch = "x86_64"))]
    transpose(profits, per, &mut gang.profits);
    let values = &mut gang.values;
    let per_group = plan
        .shifted
        .chunks_exact(items)
        .zip(gang.profits.chunks_exact(items * GANG));
    for (i, (w, p)) in per_group.enumerate().rev() {
        let (head, tail) = values.split_at_mut((i + 1) * stride);
        let (cur, next) = (&mut head[i * stride..], &tail[..stride]);
        let (start, end) = (pad + plan.lo[i], pad + plan.hi[i] + 1);
        // `Plan::new` checks `w_ij <= pad`; `end <= pad + capacity + 1 <= row_len`.
        #[cfg(target_arch = "x86_64")]
        if AVX2 {
            // SAFETY: AVX2 was detected (`Kernel::Avx2`); bounds as above.
            unsafe { P::gang_row_avx2(next, cur, p, w, start, end) };
        } else {
            gang_row(next, cur, p, w, start, end);
        }
        #[cfg(not(target_arch = "x86_64"))]
        gang_row(next, cur, p, w, start, end);
        // AtMost: states past hi_i are worth V_i(hi_i); group i - 1 reads up to hi_{i-1}.
        if plan.mode == Mode::AtMost && i > 0 && plan.hi[i - 1] > plan.hi[i] {
            let (last, rest) =
                cur[(end - 1) * GANG..(pad + plan.hi[i - 1] + 1) * GANG].split_at_mut(GANG);
            for state in rest.chunks_exact_mut(GANG) {
                state.copy_from_slice(last);
            }
        }
    }
    let top = (pad + plan.capacity) * GANG;
    totals[..GANG].copy_from_slice(&values[top..top + GANG]);
    // Read each lane's choice forwards: the first item whose candidate equals the optimum.
    let walk = Walk {
        stride,
        shifted: &plan.shifted,
        hi: &plan.hi,
        pad,
        capacity: plan.capacity,
    };
    #[cfg(target_arch = "x86_64")]
    if AVX2 {
        // SAFETY: AVX2 was detected; `walk` describes `values` (checked by `Plan::new`).
        unsafe { P::gang_backtrack_avx2(values, &gang.profits, &walk, choices) };
    } else {
        backtrack(values, &gang.profits, &walk, choices);
    }
    #[cfg(not(target_arch = "x86_64"))]
    backtrack(values, &gang.profits, &walk, choices);
}

/// What the backtracking reads besides the values and the transposed profits.
#[derive(Debug)]
pub struct Walk<'a> {
    /// `row_len * GANG`: distance between two value rows.
    pub stride: usize,
    /// Shifted weights `[L, K]`, each at most `pad`.
    pub shifted: &'a [u32],
    /// Last state of each group's window, at most `capacity`.
    pub hi: &'a [usize],
    /// Offset of state 0 in a row.
    pub pad: usize,
    /// The shifted capacity `S`.
    pub capacity: usize,
}

/// `out[q * GANG + lane] = profits[lane * per + q]`: `[GANG, per]` to `[per, GANG]`.
pub(crate) fn transpose<P: Profit>(profits: &[P], per: usize, out: &mut [P]) {
    for (q, column) in out.chunks_exact_mut(GANG).take(per).enumerate() {
        for (lane, v) in column.iter_mut().enumerate() {
            *v = profits[lane * per + q];
        }
    }
}

/// Each lane's choices `[GANG, L]`, scalar: for every group the first item `j` with
/// `p[j] + V_{i+1}(x - w_j) == V_i(x)`, `x = min(s, hi_i)`, then `s = x - w_j`.
pub(crate) fn backtrack<P: Profit>(values: &[P], p: &[P], walk: &Walk<'_>, choices: &mut [u32]) {
    let groups = walk.hi.len();
    let items = walk.shifted.len() / groups.max(1);
    let (pad, stride) = (walk.pad, walk.stride);
    for (lane, choices) in choices.chunks_exact_mut(groups).take(GANG).enumerate() {
        let mut s = walk.capacity;
        for (i, c) in choices.iter_mut().enumerate() {
            let x = s.min(walk.hi[i]);
            let cur = &values[i * stride..(i + 1) * stride];
            let next = &values[(i + 1) * stride..(i + 2) * stride];
            let target = cur[(pad + x) * GANG + lane];
            let w = &walk.shifted[i * items..(i + 1) * items];
            let p = &p[i * items * GANG..(i + 1) * items * GANG];
            let mut j = 0;
            while j < items
                && p[j * GANG + lane] + next[(pad + x - w[j] as usize) * GANG + lane] != target
            {
                j += 1;
            }
            let j = if j < items { j } else { 0 };
            *c = j as u32;
            s = x.saturating_sub(w[j] as usize);
        }
    }
}

/// One row, portable: `cur[s] = max_j p[j] + next[s - w[j]]` lane-wise for states
/// `start..end`, ties keeping the earlier item.
#[inline(always)]
fn gang_row<P: Profit>(next: &[P], cur: &mut [P], p: &[P], w: &[u32], start: usize, end: usize) {
    for s in start..end {
        let at = (s - w[0] as usize) * GANG;
        let mut best = [P::ZERO; GANG];
        for l in 0..GANG {
            best[l] = next[at + l] + p[l];
        }
        for j in 1..w.len() {
            let at = (s - w[j] as usize) * GANG;
            let (src, pj) = (&next[at..at + GANG], &p[j * GANG..(j + 1) * GANG]);
            for l in 0..GANG {
                let cand = src[l] + pj[l];
                best[l] = if cand > best[l] { cand } else { best[l] };
            }
        }
        cur[s * GANG..(s + 1) * GANG].copy_from_slice(&best);
    }
}
