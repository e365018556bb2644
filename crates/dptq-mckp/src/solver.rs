//! The reusable solver: a builder makes it, it keeps its buffers across instances.

use rayon::prelude::*;

use crate::kernel::{self, Kernel, Scratch};
use crate::{Error, Problem, Profit, Result};

/// One instance's optimum.
#[derive(Clone, Debug, PartialEq)]
pub struct Solution<P> {
    /// The chosen item of every group, `[L]`.
    pub choices: Vec<usize>,
    /// The total profit, summed from the last group to the first.
    pub profit: P,
    /// The total weight of the chosen items (`== B` in [`Mode::Exact`](crate::Mode::Exact)).
    pub weight: u64,
}

/// The optima of a batch of `N` instances.
#[derive(Clone, Debug, PartialEq)]
pub struct Batch<P> {
    groups: usize,
    /// Chosen items, row-major `[N, L]`.
    pub choices: Vec<u32>,
    /// Total profits, `[N]`.
    pub profits: Vec<P>,
}

impl<P: Profit> Batch<P> {
    /// Number of instances `N`.
    pub fn len(&self) -> usize {
        self.profits.len()
    }

    /// Whether the batch holds no instance.
    pub fn is_empty(&self) -> bool {
        self.profits.is_empty()
    }

    /// The choices of instance `n` (`[L]`), or `None` past the end.
    pub fn choices_of(&self, n: usize) -> Option<&[u32]> {
        (n < self.len()).then(|| &self.choices[n * self.groups..(n + 1) * self.groups])
    }
}

/// Configures and builds a [`Solver`].
///
/// ```
/// use dptq_mckp::{Mode, Problem, SolverBuilder};
///
/// let problem = Problem::uniform(&[2, 4, 8], 3, 14, Mode::Exact)?;
/// let mut solver = SolverBuilder::new().parallel_min_len(128).build::<f64>(&problem)?;
/// let best = solver.solve(&[0.0, 1.0, 5.0, 0.0, 2.0, 0.0, 3.0, 0.0, 0.0])?;
/// assert_eq!(best.choices, vec![2, 1, 0]); // 8 + 4 + 2 = 14, profit 5 + 2 + 3
/// assert_eq!(best.profit, 10.0);
/// # Ok::<(), dptq_mckp::Error>(())
/// ```
#[derive(Clone, Debug)]
pub struct SolverBuilder {
    parallel_min_len: usize,
    detect_cpu_features: bool,
}

impl Default for SolverBuilder {
    fn default() -> Self {
        Self::new()
    }
}

impl SolverBuilder {
    /// The default configuration.
    pub fn new() -> Self {
        Self {
            parallel_min_len: 64,
            detect_cpu_features: true,
        }
    }

    /// Fewest instances a parallel batch hands to one rayon task. Default: 64.
    pub fn parallel_min_len(&mut self, instances: usize) -> &mut Self {
        self.parallel_min_len = instances.max(1);
        self
    }

    /// Pick the kernel compiled for the best instruction set this CPU supports (AVX2 on
    /// x86-64) at run time; `false` always uses the portable kernel. Both give identical
    /// results. Default: `true`.
    pub fn detect_cpu_features(&mut self, yes: bool) -> &mut Self {
        self.detect_cpu_features = yes;
        self
    }

    /// A solver for `problem` with profits of type `P` (`f32` or `f64`).
    ///
    /// Errors: [`Error::TableTooLarge`] when the buffers cannot be allocated.
    pub fn build<P: Profit>(&self, problem: &Problem) -> Result<Solver<P>> {
        let scratch = new_scratch(problem)?;
        Ok(Solver {
            problem: problem.clone(),
            scratch,
            pool: Vec::new(),
            kernel: Kernel::select(self.detect_cpu_features),
            parallel_min_len: self.parallel_min_len,
        })
    }
}

fn new_scratch<P: Profit>(problem: &Problem) -> Result<Scratch<P>> {
    Scratch::new(&problem.plan).ok_or(Error::TableTooLarge {
        groups: problem.groups(),
        states: problem.plan.capacity as u64 + 1,
    })
}

/// An exact multiple-choice knapsack solver for one [`Problem`], reused across instances.
///
/// An instance is the profit table `p[l, k]` (`L x K`, row-major) of the problem's groups and
/// items. The solver returns the choice `c` (one item per group) that maximises the total
/// profit `T_0 = p[0, c_0] + (p[1, c_1] + (... + p[L-1, c_{L-1}]))`, summed from the last
/// group to the first, subject to the budget.
///
/// **Ties.** Among optimal choices the solver returns the lexicographically smallest one
/// (smallest item in group 0, then in group 1, ...). Profit comparisons are exact. When
/// float rounding absorbs small profits (e.g. `1e30 + 1 == 1e30 + 2`) "optimal" is read
/// group by group: with `T_i` the sum over groups `i..L`, the solver maximises the key
/// `(T_0, -c_0, T_1, -c_1, ..., T_{L-1}, -c_{L-1})` lexicographically. Whenever sums are
/// exact (integer-valued profits of moderate size, for instance) this is the same as the
/// lexicographically smallest optimal choice.
///
/// **Cost.** `O(L * K * S)` per instance with `S = B - sum_l min_k w[l, k]` (fewer: only the
/// capacity states reachable from both ends are visited), no allocation per instance.
#[derive(Clone, Debug)]
pub struct Solver<P: Profit = f32> {
    problem: Problem,
    scratch: Scratch<P>,
    /// One scratch per parallel part, grown on demand and kept.
    pool: Vec<Scratch<P>>,
    kernel: Kernel,
    parallel_min_len: usize,
}

impl<P: Profit> Solver<P> {
    /// A solver with the default [`SolverBuilder`] configuration.
    pub fn new(problem: &Problem) -> Result<Self> {
        SolverBuilder::new().build(problem)
    }

    /// The problem this solver solves.
    pub fn problem(&self) -> &Problem {
        &self.problem
    }

    /// Solve one instance; `profits` is `[L, K]` row-major.
    ///
    /// Errors: [`Error::ShapeMismatch`], [`Error::NonFiniteProfit`], [`Error::ProfitTooLarge`].
    pub fn solve(&mut self, profits: &[P]) -> Result<Solution<P>> {
        let mut choices = vec![0u32; self.problem.groups()];
        let profit = self.solve_into(profits, &mut choices)?;
        let weights = self.problem.weights();
        let weight = (choices.iter().enumerate())
            .map(|(l, &c)| weights.get(l, c as usize).unwrap_or(0) as u64)
            .sum();
        Ok(Solution {
            choices: choices.into_iter().map(|c| c as usize).collect(),
            profit,
            weight,
        })
    }

    /// Solve one instance into `choices` (`[L]`); returns the total profit.
    pub fn solve_into(&mut self, profits: &[P], choices: &mut [u32]) -> Result<P> {
        let mut total = [P::ZERO];
        self.solve_batch_into(profits, choices, &mut total)?;
        Ok(total[0])
    }

    /// Solve a batch on the calling thread; `profits` is `[N, L, K]` row-major.
    ///
    /// Errors: [`Error::NotWholeInstances`] and the errors of [`Solver::solve`] (the first
    /// failing instance is reported).
    pub fn solve_batch(&mut self, profits: &[P]) -> Result<Batch<P>> {
        let mut batch = self.empty_batch(profits)?;
        self.solve_batch_into(profits, &mut batch.choices, &mut batch.profits)?;
        Ok(batch)
    }

    /// Solve a batch on the calling thread into caller buffers: `profits` `[N, L, K]`,
    /// `choices` `[N, L]`, `totals` `[N]` (`N` is taken from `totals`). Allocates nothing.
    pub fn solve_batch_into(
        &mut self,
        profits: &[P],
        choices: &mut [u32],
        totals: &mut [P],
    ) -> Result<()> {
        self.check_shapes(profits, choices, totals)?;
        let plan = &self.problem.plan;
        kernel::solve_batch(
            self.kernel,
            plan,
            &mut self.scratch,
            profits,
            choices,
            totals,
            0,
        )
    }

    /// [`Solver::solve_batch`] on the rayon thread pool (one reused scratch per part).
    pub fn par_solve_batch(&mut self, profits: &[P]) -> Result<Batch<P>> {
        let mut batch = self.empty_batch(profits)?;
        self.par_solve_batch_into(profits, &mut batch.choices, &mut batch.profits)?;
        Ok(batch)
    }

    /// [`Solver::solve_batch_into`] on the rayon thread pool: the batch is cut into one
    /// contiguous part per thread (at least the builder's `parallel_min_len` instances
    /// each), every part solved by its own scratch buffers, kept for the next call. Results
    /// equal the sequential ones; the reported error is that of the first failing instance.
    pub fn par_solve_batch_into(
        &mut self,
        profits: &[P],
        choices: &mut [u32],
        totals: &mut [P],
    ) -> Result<()> {
        self.check_shapes(profits, choices, totals)?;
        let n = totals.len();
        let threads = rayon::current_num_threads().max(1);
        let part = n.div_ceil(threads).max(self.parallel_min_len);
        let parts = n.div_ceil(part);
        if parts <= 1 {
            return self.solve_batch_into(profits, choices, totals);
        }
        while self.pool.len() < parts {
            self.pool.push(new_scratch(&self.problem)?);
        }
        let (groups, items) = (self.problem.groups(), self.problem.items());
        let (plan, kernel) = (&self.problem.plan, self.kernel);
        profits
            .par_chunks(part * groups * items)
            .zip(choices.par_chunks_mut(part * groups))
            .zip(totals.par_chunks_mut(part))
            .zip(self.pool.par_iter_mut())
            .enumerate()
            .map(|(k, (((p, c), t), scratch))| {
                kernel::solve_batch(kernel, plan, scratch, p, c, t, k * part)
            })
            .reduce(|| Ok(()), first_error)
    }

    fn empty_batch(&self, profits: &[P]) -> Result<Batch<P>> {
        let (groups, per) = (
            self.problem.groups(),
            self.problem.groups() * self.problem.items(),
        );
        if !profits.len().is_multiple_of(per) {
            return Err(Error::NotWholeInstances {
                what: "profits",
                per_instance: per,
                got: profits.len(),
            });
        }
        let n = profits.len() / per;
        Ok(Batch {
            groups,
            choices: vec![0; n * groups],
            profits: vec![P::ZERO; n],
        })
    }

    fn check_shapes(&self, profits: &[P], choices: &[u32], totals: &[P]) -> Result<()> {
        let (groups, items) = (self.problem.groups(), self.problem.items());
        let n = totals.len();
        let expect = |what, expected: Option<usize>, got| match expected {
            Some(expected) if expected == got => Ok(()),
            expected => Err(Error::ShapeMismatch {
                what,
                expected: expected.unwrap_or(usize::MAX),
                got,
            }),
        };
        expect(
            "profits [N, L, K]",
            n.checked_mul(groups * items),
            profits.len(),
        )?;
        expect("choices [N, L]", n.checked_mul(groups), choices.len())
    }
}

/// Keep the error of the earlier instance (parts are reduced in order, but be explicit).
fn first_error(a: Result<()>, b: Result<()>) -> Result<()> {
    match (a, b) {
        (Err(a), Err(b)) => {
            if b.instance().unwrap_or(usize::MAX) < a.instance().unwrap_or(usize::MAX) {
                Err(b)
            } else {
                Err(a)
            }
        }
        (Err(a), Ok(())) => Err(a),
        (Ok(()), b) => b,
    }
}
