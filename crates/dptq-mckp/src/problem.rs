//! What is being solved: the item weights of every group, the budget and the mode.

use crate::{Error, Result};

/// Most items a group may hold: choices are reported as `u32`.
pub const MAX_ITEMS: usize = u32::MAX as usize;

/// Most memory, in bytes, the tables of one problem and one solver may take (1 GiB): the
/// `L + 1` value rows of `S + spread + 9` profits each (`S` = budget minus the lightest total,
/// `spread` = the largest `max - min` weight of a group; counted as f64) and the per-group
/// bookkeeping. Larger problems fail with [`Error::TableTooLarge`]. A parallel batch uses one
/// such table per thread.
pub const MAX_TABLE_BYTES: usize = 1 << 30;

/// How the total weight must relate to the budget `B`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Mode {
    /// `sum of weights == B` (the paper's exact bit budget). Default.
    #[default]
    Exact,
    /// `sum of weights <= B`.
    AtMost,
}

/// The item weights of every group: an `L x K` table of positive integers.
///
/// The same `K` weights in every group ([`Weights::uniform`], e.g. the bit options
/// `{3, ..., 10}` of every layer; stored once) or one row per group ([`Weights::per_group`]).
/// Weights need not be sorted, distinct or a range: `{2, 4, 8, 16}` and `{4, 4, 9}` are fine.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Weights {
    groups: usize,
    items: usize,
    /// `[K]` when uniform, else row-major `[L, K]`.
    table: Vec<u32>,
    uniform: bool,
}

impl Weights {
    /// The same item weights `items` in each of `groups` groups.
    ///
    /// Errors: no groups, no items, more than [`MAX_ITEMS`] items, a zero weight.
    pub fn uniform(items: &[u32], groups: usize) -> Result<Self> {
        if groups == 0 {
            return Err(Error::NoGroups);
        }
        check_row(items, 0)?;
        Ok(Self {
            groups,
            items: items.len(),
            table: items.to_vec(),
            uniform: true,
        })
    }

    /// One row of item weights per group; every row needs the same length.
    ///
    /// Errors: no groups, an empty or ragged row, more than [`MAX_ITEMS`] items, a zero weight.
    pub fn per_group<R: AsRef<[u32]>>(rows: &[R]) -> Result<Self> {
        let first = rows.first().ok_or(Error::NoGroups)?.as_ref();
        let items = first.len();
        let mut table = Vec::new();
        let too_large = || Error::TableTooLarge {
            groups: rows.len(),
            states: 0,
        };
        let len = rows.len().checked_mul(items).ok_or_else(too_large)?;
        table.try_reserve_exact(len).map_err(|_| too_large())?;
        for (group, row) in rows.iter().enumerate() {
            let row = row.as_ref();
            check_row(row, group)?;
            if row.len() != items {
                return Err(Error::RaggedGroups {
                    group,
                    expected: items,
                    got: row.len(),
                });
            }
            table.extend_from_slice(row);
        }
        Ok(Self {
            groups: rows.len(),
            items,
            table,
            uniform: false,
        })
    }

    /// Number of groups `L`.
    pub fn groups(&self) -> usize {
        self.groups
    }

    /// Items per group `K`.
    pub fn items(&self) -> usize {
        self.items
    }

    /// Whether every group has the same weights.
    pub fn is_uniform(&self) -> bool {
        self.uniform
    }

    /// The weights of `group` (`K` values), or `None` past the last group.
    pub fn row(&self, group: usize) -> Option<&[u32]> {
        if group >= self.groups {
            None
        } else if self.uniform {
            Some(&self.table)
        } else {
            Some(&self.table[group * self.items..(group + 1) * self.items])
        }
    }

    /// The weight of `item` in `group`, or `None` out of range.
    pub fn get(&self, group: usize, item: usize) -> Option<u32> {
        self.row(group)?.get(item).copied()
    }

    /// The rows of all groups, in order.
    pub fn rows(&self) -> impl Iterator<Item = &[u32]> + '_ {
        (0..self.groups).map(|g| self.row(g).unwrap_or_default())
    }

    /// `(min, max)`: the total weights of the lightest and of the heaviest choice.
    ///
    /// Errors: [`Error::WeightOverflow`] when a total does not fit in a `u64`.
    pub fn total_range(&self) -> Result<(u64, u64)> {
        let overflow = || Error::WeightOverflow {
            groups: self.groups,
        };
        if self.uniform {
            let (lo, hi) = min_max(&self.table);
            let groups = u64::try_from(self.groups).map_err(|_| overflow())?;
            let min = (lo as u64).checked_mul(groups).ok_or_else(overflow)?;
            let max = (hi as u64).checked_mul(groups).ok_or_else(overflow)?;
            return Ok((min, max));
        }
        let (mut min, mut max) = (0u64, 0u64);
        for row in self.rows() {
            let (lo, hi) = min_max(row);
            min = min.checked_add(lo as u64).ok_or_else(overflow)?;
            max = max.checked_add(hi as u64).ok_or_else(overflow)?;
        }
        Ok((min, max))
    }
}

fn check_row(row: &[u32], group: usize) -> Result<()> {
    if row.is_empty() {
        return Err(Error::EmptyGroup { group });
    }
    if row.len() > MAX_ITEMS {
        return Err(Error::TooManyItems {
            items: row.len(),
            max: MAX_ITEMS,
        });
    }
    if let Some(item) = row.iter().position(|&w| w == 0) {
        return Err(Error::ZeroWeight { group, item });
    }
    Ok(())
}

/// A feasible multiple-choice knapsack: choose exactly one item in each group so that the
/// total weight meets the budget (`== B` or `<= B`, see [`Mode`]) and the total profit is
/// largest. Profits are not part of the problem: they change per instance and are given to
/// the [`Solver`](crate::Solver).
///
/// Construction checks feasibility once, so that solving never fails for budget reasons.
#[derive(Clone, Debug)]
pub struct Problem {
    weights: Weights,
    budget: u64,
    mode: Mode,
    min_total: u64,
    max_total: u64,
    pub(crate) plan: Plan,
}

impl Problem {
    /// A problem over `weights` with budget `budget`.
    ///
    /// Errors ([`Mode::Exact`]): [`Error::BudgetOutOfRange`] when `budget` is outside the
    /// reachable totals `[min, max]`, [`Error::BudgetUnreachable`] when it is inside but no
    /// choice sums to it. ([`Mode::AtMost`]): [`Error::BudgetBelowMinimum`]. Also
    /// [`Error::WeightOverflow`] and [`Error::TableTooLarge`].
    pub fn new(weights: Weights, budget: u64, mode: Mode) -> Result<Self> {
        let groups = weights.groups;
        let (min_total, max_total) = weights.total_range()?;
        if budget < min_total || (mode == Mode::Exact && budget > max_total) {
            return Err(Error::infeasible(mode, budget, min_total, max_total));
        }
        // Capacity left once every group holds its lightest item; `AtMost` never needs more
        // than the whole range.
        let capacity = (budget - min_total).min(max_total - min_total);
        let too_large = || Error::TableTooLarge {
            groups,
            states: capacity.saturating_add(1),
        };
        let capacity = usize::try_from(capacity).map_err(|_| too_large())?;
        let plan = Plan::new(&weights, capacity, mode).ok_or_else(too_large)?;
        if mode == Mode::Exact {
            check_reachable(&weights, capacity, budget, min_total, max_total)?;
        }
        Ok(Self {
            weights,
            budget,
            mode,
            min_total,
            max_total,
            plan,
        })
    }

    /// Shorthand for `Problem::new(Weights::uniform(items, groups)?, budget, mode)`.
    pub fn uniform(items: &[u32], groups: usize, budget: u64, mode: Mode) -> Result<Self> {
        Self::new(Weights::uniform(items, groups)?, budget, mode)
    }

    /// The item weights.
    pub fn weights(&self) -> &Weights {
        &self.weights
    }

    /// Number of groups `L`.
    pub fn groups(&self) -> usize {
        self.weights.groups
    }

    /// Items per group `K`.
    pub fn items(&self) -> usize {
        self.weights.items
    }

    /// The budget `B`.
    pub fn budget(&self) -> u64 {
        self.budget
    }

    /// The mode.
    pub fn mode(&self) -> Mode {
        self.mode
    }

    /// `(min, max)`: the totals of the lightest and of the heaviest choice.
    pub fn reachable_range(&self) -> (u64, u64) {
        (self.min_total, self.max_total)
    }
}

fn min_max(row: &[u32]) -> (u32, u32) {
    row.iter()
        .fold((u32::MAX, 0), |(lo, hi), &w| (lo.min(w), hi.max(w)))
}

/// Subset-sum reachability of the shifted budget, as a bitset over `[0, capacity + pad]`
/// (`pad` = the largest spread of a group). Any total in `[min, max]` has a reachable total
/// within `pad` above and below it (walk the groups from lightest to heaviest item one at a
/// time), so this bitset is enough to name the nearest reachable totals.
fn check_reachable(
    weights: &Weights,
    capacity: usize,
    budget: u64,
    min_total: u64,
    max_total: u64,
) -> Result<()> {
    let pad = weights
        .rows()
        .map(|r| (min_max(r).1 - min_max(r).0) as usize)
        .max()
        .unwrap_or(0);
    let top = capacity + pad;
    let words = top / 64 + 1;
    let too_large = || Error::TableTooLarge {
        groups: weights.groups,
        states: top as u64 + 1,
    };
    let mut reach = try_vec(words, 0u64).ok_or_else(too_large)?;
    let mut next = try_vec(words, 0u64).ok_or_else(too_large)?;
    reach[0] = 1;
    let mut shifts: Vec<usize> = Vec::with_capacity(weights.items);
    for row in weights.rows() {
        let lo = min_max(row).0;
        shifts.clear();
        shifts.extend(row.iter().map(|&w| (w - lo) as usize));
        shifts.sort_unstable();
        shifts.dedup();
        next.fill(0);
        for &s in &shifts {
            or_shifted(&mut next, &reach, s);
        }
        std::mem::swap(&mut reach, &mut next);
    }
    let bit = |x: usize| x <= top && (reach[x / 64] >> (x % 64)) & 1 == 1;
    if bit(capacity) {
        return Ok(());
    }
    let below = (0..capacity).rev().find(|&x| bit(x)).unwrap_or(0);
    let above = (capacity + 1..=top).find(|&x| bit(x)).unwrap_or(top);
    Err(Error::BudgetUnreachable {
        budget,
        min: min_total,
        max: max_total,
        below: min_total + below as u64,
        above: min_total + above as u64,
    })
}

/// `dst |= src << shift` on little-endian bitsets of equal length (bits past the end drop).
fn or_shifted(dst: &mut [u64], src: &[u64], shift: usize) {
    let (words, bits) = (shift / 64, shift % 64);
    for i in (words..dst.len()).rev() {
        let j = i - words;
        let mut v = src[j] << bits;
        if bits > 0 && j > 0 {
            v |= src[j - 1] >> (64 - bits);
        }
        dst[i] |= v;
    }
}

pub(crate) fn try_vec<T: Clone>(len: usize, value: T) -> Option<Vec<T>> {
    let mut v = Vec::new();
    v.try_reserve_exact(len).ok()?;
    v.resize(len, value);
    Some(v)
}

/// Lanes of the DP kernel: capacity states are computed 8 at a time.
pub(crate) const LANES: usize = 8;

/// The precomputed shape of the dynamic program, the same for every instance.
///
/// Groups are processed from the last to the first: `V_i(s)` is the best profit of groups
/// `i..L` with exactly (`Exact`) or at most (`AtMost`) `s` capacity left above their lightest
/// items. Group `i` only needs the states `s` in `[lo_i, hi_i]`: `s >= capacity - (spread of
/// groups 0..i)` (the earlier groups cannot have used more) and `s <= spread of groups i..L`
/// (the later groups cannot use more). States are computed in blocks of [`LANES`]; a value
/// row is stored at offset `pad` so that reading `s - w` never leaves the row.
#[derive(Clone, Debug)]
pub(crate) struct Plan {
    pub groups: usize,
    pub items: usize,
    pub mode: Mode,
    /// Shifted capacity `S = B - min total` (capped at the total spread for `AtMost`).
    pub capacity: usize,
    /// Largest spread `max_j w_ij - min_j w_ij` over the groups.
    pub pad: usize,
    /// Length of one value row: `pad + capacity + LANES + 1`.
    pub row_len: usize,
    /// Shifted weights `w_ij - min_j w_ij`, row-major `[L, K]`.
    pub shifted: Vec<u32>,
    /// First state of the window of group `i`.
    pub lo: Vec<usize>,
    /// Last state of the window of group `i`.
    pub hi: Vec<usize>,
    /// Blocks of `LANES` states computed for group `i`, covering `[lo_i, end_i)`.
    pub blocks: Vec<usize>,
    /// States `[end_i, fill_end_i)` of row `i` that group `i - 1` reads beyond the computed
    /// blocks; they are filled with `-inf` (`Exact`) or `V_i(hi_i)` (`AtMost`).
    pub fill_end: Vec<usize>,
}

impl Plan {
    fn new(weights: &Weights, capacity: usize, mode: Mode) -> Option<Self> {
        let (groups, items) = (weights.groups, weights.items);
        // Bytes needed, checked before any allocation of that size: shifted weights and 6
        // per-group words, then L + 1 value rows of f64 at worst (checked again below with
        // their padding).
        let fixed = groups.checked_mul(items * 4 + 6 * 8)?;
        let within = |bytes: usize| bytes <= MAX_TABLE_BYTES;
        let rows = capacity
            .checked_mul(groups.checked_add(1)?)?
            .checked_mul(8)?;
        if !within(fixed.checked_add(rows)?) {
            return None;
        }
        let mut shifted = Vec::new();
        shifted.try_reserve_exact(groups.checked_mul(items)?).ok()?;
        let mut spread = Vec::new();
        spread.try_reserve_exact(groups).ok()?;
        for row in weights.rows() {
            let (lo, hi) = min_max(row);
            shifted.extend(row.iter().map(|&w| w - lo));
            spread.push((hi - lo) as usize);
        }
        let pad = spread.iter().copied().max().unwrap_or(0);
        let row_len = pad.checked_add(capacity)?.checked_add(LANES + 1)?;
        // Value rows: L + 1 of them, f64 at worst.
        let fixed = fixed.checked_add(
            row_len
                .checked_mul(groups.checked_add(1)?)?
                .checked_mul(8)?,
        )?;
        if !within(fixed) {
            return None;
        }
        // suffix[i] = spread of groups i..L; prefix = spread of groups 0..i (capped at capacity
        // so that huge spreads do not overflow).
        let mut suffix = try_vec(groups.checked_add(1)?, 0usize)?;
        for i in (0..groups).rev() {
            suffix[i] = suffix[i + 1].saturating_add(spread[i]);
        }
        let (mut lo, mut hi, mut blocks) = (try_vec(0, 0)?, try_vec(0, 0)?, try_vec(0, 0)?);
        for v in [&mut lo, &mut hi, &mut blocks] {
            v.try_reserve_exact(groups).ok()?;
        }
        let mut prefix = 0usize;
        for i in 0..groups {
            let l = capacity.saturating_sub(prefix);
            let h = capacity.min(suffix[i]);
            let b = (h - l) / LANES + 1;
            lo.push(l);
            hi.push(h);
            blocks.push(b);
            prefix = prefix.saturating_add(spread[i]).min(capacity);
        }
        // The kernel reads `row[pad + lo_i + 8b - w .. + 8]` without bounds checks: make sure.
        for i in 0..groups {
            if pad + lo[i] + blocks[i] * LANES > row_len {
                return None;
            }
        }
        if shifted.iter().any(|&w| w as usize > pad) {
            return None;
        }
        let mut fill_end = try_vec(groups, 0usize)?;
        for i in 1..groups {
            // Group i - 1 reads row i at most up to end_{i-1} - 1.
            fill_end[i] = (lo[i - 1] + blocks[i - 1] * LANES).max(lo[i] + blocks[i] * LANES);
        }
        Some(Self {
            groups,
            items,
            mode,
            capacity,
            pad,
            row_len,
            shifted,
            lo,
            hi,
            blocks,
            fill_end,
        })
    }
}
