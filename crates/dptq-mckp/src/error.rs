//! The one error type of the crate.

use crate::Mode;

/// Everything that can go wrong when describing or solving a knapsack instance.
///
/// Messages are lowercase and carry the offending values; no input makes the crate panic.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A problem needs at least one group.
    #[error("a problem needs at least one group, got 0")]
    NoGroups,

    /// A group without items admits no choice.
    #[error("group {group} has no items")]
    EmptyGroup {
        /// Index of the empty group.
        group: usize,
    },

    /// A per-group weight table must be rectangular (the same number of items in every group).
    #[error(
        "group {group} has {got} items but group 0 has {expected}; every group needs the same number of items"
    )]
    RaggedGroups {
        /// Index of the first group whose length differs from group 0.
        group: usize,
        /// Items in group 0.
        expected: usize,
        /// Items in `group`.
        got: usize,
    },

    /// Choices are reported as `u32`, so a group holds at most [`MAX_ITEMS`](crate::MAX_ITEMS)
    /// items.
    #[error("{items} items per group, at most {max} are supported")]
    TooManyItems {
        /// Items per group requested.
        items: usize,
        /// The supported maximum.
        max: usize,
    },

    /// Weights must be positive.
    #[error("item {item} of group {group} has weight 0; weights must be positive")]
    ZeroWeight {
        /// Group of the zero weight.
        group: usize,
        /// Item of the zero weight.
        item: usize,
    },

    /// The total weight of a choice does not fit in a `u64`.
    #[error("the total weight of {groups} groups overflows u64")]
    WeightOverflow {
        /// Number of groups.
        groups: usize,
    },

    /// `Mode::Exact`: the budget lies outside `[min, max]`, the totals one item per group can
    /// reach.
    #[error("budget {budget} is outside the reachable range [{min}, {max}] of total weights")]
    BudgetOutOfRange {
        /// The requested budget.
        budget: u64,
        /// Smallest reachable total (every group at its lightest item).
        min: u64,
        /// Largest reachable total (every group at its heaviest item).
        max: u64,
    },

    /// `Mode::Exact`: the budget is inside the range but no choice sums to it (a parity or gap
    /// in the weights, e.g. weights {2, 4} and an odd budget).
    #[error(
        "budget {budget} is inside the reachable range [{min}, {max}] but no choice of one item per group weighs exactly {budget} (nearest reachable totals: {below} and {above})"
    )]
    BudgetUnreachable {
        /// The requested budget.
        budget: u64,
        /// Smallest reachable total.
        min: u64,
        /// Largest reachable total.
        max: u64,
        /// The largest reachable total below the budget.
        below: u64,
        /// The smallest reachable total above the budget.
        above: u64,
    },

    /// `Mode::AtMost`: even the lightest choice exceeds the budget.
    #[error("budget {budget} is below the smallest total weight {min}")]
    BudgetBelowMinimum {
        /// The requested budget.
        budget: u64,
        /// Smallest reachable total.
        min: u64,
    },

    /// The dynamic-programming tables would exceed [`MAX_TABLE_BYTES`](crate::MAX_TABLE_BYTES)
    /// or could not be allocated.
    #[error(
        "the dynamic-programming tables of {groups} groups x {states} capacity states exceed the {} byte limit or could not be allocated",
        crate::MAX_TABLE_BYTES
    )]
    TableTooLarge {
        /// Number of groups.
        groups: usize,
        /// Capacity states per group (budget minus the lightest total, plus one).
        states: u64,
    },

    /// A profit is NaN or infinite.
    #[error(
        "profit of instance {instance}, group {group}, item {item} is {value}; profits must be finite"
    )]
    NonFiniteProfit {
        /// Instance index within the batch (0 for a single solve).
        instance: usize,
        /// Group index.
        group: usize,
        /// Item index.
        item: usize,
        /// The offending value.
        value: f64,
    },

    /// A profit so large that a sum over the groups could overflow to infinity.
    #[error(
        "profit of instance {instance}, group {group}, item {item} is {value}; with {groups} groups profits must stay within +-{limit} so that their sum cannot overflow"
    )]
    ProfitTooLarge {
        /// Instance index within the batch (0 for a single solve).
        instance: usize,
        /// Group index.
        group: usize,
        /// Item index.
        item: usize,
        /// The offending value.
        value: f64,
        /// The largest allowed magnitude: `MAX / (2 * groups)` of the profit type.
        limit: f64,
        /// Number of groups.
        groups: usize,
    },

    /// A buffer has the wrong length.
    #[error("{what}: expected {expected} values, got {got}")]
    ShapeMismatch {
        /// Which buffer.
        what: &'static str,
        /// The length it should have.
        expected: usize,
        /// The length it has.
        got: usize,
    },

    /// A batch buffer whose length is not a whole number of instances.
    #[error("{what}: {got} values is not a whole number of instances of {per_instance} values")]
    NotWholeInstances {
        /// Which buffer.
        what: &'static str,
        /// Values per instance.
        per_instance: usize,
        /// The buffer length.
        got: usize,
    },

    /// The policy output of [`select_bits`](crate::select_bits) has an unsupported dtype.
    #[cfg(feature = "candle")]
    #[error("policy output has dtype {dtype:?}; select_bits takes f32 or f64")]
    UnsupportedDtype {
        /// The dtype found.
        dtype: candle_core::DType,
    },

    /// An error from candle (tensor shape, device transfer).
    #[cfg(feature = "candle")]
    #[error(transparent)]
    Candle(#[from] candle_core::Error),
}

impl Error {
    /// The instance (index within the batch) this error is about, if any.
    pub fn instance(&self) -> Option<usize> {
        match self {
            Error::NonFiniteProfit { instance, .. } | Error::ProfitTooLarge { instance, .. } => {
                Some(*instance)
            }
            _ => None,
        }
    }

    /// The error for a budget that `mode` cannot meet, given the reachable range.
    pub(crate) fn infeasible(mode: Mode, budget: u64, min: u64, max: u64) -> Self {
        match mode {
            Mode::Exact => Error::BudgetOutOfRange { budget, min, max },
            Mode::AtMost => Error::BudgetBelowMinimum { budget, min },
        }
    }
}

#[cfg(feature = "candle")]
impl From<Error> for candle_core::Error {
    fn from(err: Error) -> Self {
        match err {
            Error::Candle(err) => err,
            err => candle_core::Error::wrap(err),
        }
    }
}

/// `Result` with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
