//! Exact multiple-choice knapsack: choose one item in each of `L` groups so that the total
//! weight is exactly (or at most) a budget `B` and the total profit is largest.
//!
//! In dptq the groups are a network's layers, the items its bit-width options and the
//! profits a policy's scores; the crate itself knows nothing of layers or bits. The optimum
//! is found by dynamic programming over the capacity left above the lightest items, with
//! backtracking, documented tie-breaking (the lexicographically smallest optimal choice,
//! see [`Solver`]) and typed errors instead of panics. A [`Solver`] keeps its buffers, so a
//! batch of instances allocates nothing per instance, and batches run in parallel on rayon.
//!
//! ```
//! use dptq_mckp::{Mode, Problem, Solver};
//!
//! // 3 layers, bit options {2, 4, 8}, exactly 14 bits in total.
//! let problem = Problem::uniform(&[2, 4, 8], 3, 14, Mode::Exact)?;
//! let mut solver = Solver::<f32>::new(&problem)?;
//! #[rustfmt::skip]
//! let scores = [
//!     0.1, 0.5, 0.9, // layer 0 prefers 8 bits
//!     0.2, 0.5, 0.3, // layer 1 prefers 4 bits
//!     0.0, 0.6, 0.7, // layer 2 prefers 8 bits, but 8 + 4 + 8 = 20 > 14
//! ];
//! let best = solver.solve(&scores)?;
//! assert_eq!(best.choices, vec![2, 0, 1]); // 8 + 2 + 4 = 14 bits
//! assert_eq!(best.weight, 14);
//!
//! // An odd budget cannot be met with even weights: a typed error, not a fallback.
//! let err = Problem::uniform(&[2, 4, 8], 3, 13, Mode::Exact).unwrap_err();
//! assert!(err.to_string().contains("inside the reachable range [6, 24]"));
//! # Ok::<(), dptq_mckp::Error>(())
//! ```
//!
//! Feature `candle`: [`select_bits`], the straight-through bit selector used to train
//! bit-width policies (forward: the one-hot optimum; backward: identity to the scores).

mod error;
mod gang;
mod kernel;
mod problem;
mod profit;
#[cfg(target_arch = "x86_64")]
mod simd;
mod solver;
#[cfg(feature = "candle")]
mod ste;

pub use error::{Error, Result};
pub use problem::{MAX_ITEMS, MAX_TABLE_BYTES, Mode, Problem, Weights};
pub use profit::Profit;
pub use solver::{Batch, Solution, Solver, SolverBuilder};
#[cfg(feature = "candle")]
pub use ste::{StraightThrough, select_bits};

/// The README's examples run as doctests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
