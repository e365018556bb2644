//! The solver against exhaustive enumeration on thousands of small seeded random instances.
//! Every problem gets a batch of 9 instances, solved one by one and as a batch (a gang of
//! 8 in SIMD lanes plus one), with both kernels.
//!
//! The brute force enumerates every choice vector, sums profits from the last group to the
//! first (as documented) and keeps the best under the documented order: maximise
//! `(T_0, -c_0, T_1, -c_1, ...)` where `T_i` is the sum over groups `i..L`.

use std::cmp::Ordering;

use dptq_mckp::{Error, Mode, Problem, Profit, SolverBuilder, Weights};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

struct Instance<P> {
    rows: Vec<Vec<u32>>,
    profits: Vec<P>,
    budget: u64,
    mode: Mode,
}

/// Instances in the batch of every random problem.
const BATCH: usize = 9;

enum Expected<P> {
    Optimum {
        choices: Vec<usize>,
        profit: P,
        weight: u64,
    },
    OutOfRange,
    Unreachable {
        below: u64,
        above: u64,
    },
    BelowMinimum,
}

/// All choice vectors of `k` items in `l` groups, in lexicographic order.
fn all_choices(l: usize, k: usize) -> impl Iterator<Item = Vec<usize>> {
    let count = k.pow(l as u32);
    (0..count).map(move |mut code| {
        let mut c = vec![0; l];
        for i in (0..l).rev() {
            c[i] = code % k;
            code /= k;
        }
        c
    })
}

/// Suffix sums `T_i = p_i + T_{i+1}`, `T_L = 0`, in the profit type.
fn suffix_sums<P: Profit>(inst: &Instance<P>, c: &[usize]) -> Vec<P> {
    let k = inst.rows[0].len();
    let mut t = vec![P::ZERO; c.len() + 1];
    for i in (0..c.len()).rev() {
        t[i] = inst.profits[i * k + c[i]] + t[i + 1];
    }
    t
}

/// `Greater` when `a` is preferred to `b` under the documented order.
fn compare<P: Profit>(ta: &[P], a: &[usize], tb: &[P], b: &[usize]) -> Ordering {
    for i in 0..a.len() {
        match ta[i].partial_cmp(&tb[i]).expect("finite sums") {
            Ordering::Equal => {}
            o => return o,
        }
        match b[i].cmp(&a[i]) {
            Ordering::Equal => {}
            o => return o,
        }
    }
    Ordering::Equal
}

fn brute_force<P: Profit>(inst: &Instance<P>) -> Expected<P> {
    let (l, k) = (inst.rows.len(), inst.rows[0].len());
    let weight = |c: &[usize]| {
        c.iter()
            .enumerate()
            .map(|(i, &j)| inst.rows[i][j] as u64)
            .sum::<u64>()
    };
    let min: u64 = inst
        .rows
        .iter()
        .map(|r| *r.iter().min().unwrap() as u64)
        .sum();
    let max: u64 = inst
        .rows
        .iter()
        .map(|r| *r.iter().max().unwrap() as u64)
        .sum();
    let feasible = |w: u64| match inst.mode {
        Mode::Exact => w == inst.budget,
        Mode::AtMost => w <= inst.budget,
    };
    let mut best: Option<(Vec<usize>, Vec<P>)> = None;
    let mut totals = Vec::new();
    for c in all_choices(l, k) {
        let w = weight(&c);
        totals.push(w);
        if !feasible(w) {
            continue;
        }
        let t = suffix_sums(inst, &c);
        let better = match &best {
            None => true,
            Some((bc, bt)) => compare(&t, &c, bt, bc) == Ordering::Greater,
        };
        if better {
            best = Some((c, t));
        }
    }
    match best {
        Some((c, t)) => {
            let w = weight(&c);
            Expected::Optimum {
                choices: c,
                profit: t[0],
                weight: w,
            }
        }
        None => match inst.mode {
            Mode::AtMost => Expected::BelowMinimum,
            Mode::Exact if inst.budget < min || inst.budget > max => Expected::OutOfRange,
            Mode::Exact => Expected::Unreachable {
                below: totals
                    .iter()
                    .copied()
                    .filter(|&w| w < inst.budget)
                    .max()
                    .unwrap(),
                above: totals
                    .iter()
                    .copied()
                    .filter(|&w| w > inst.budget)
                    .min()
                    .unwrap(),
            },
        },
    }
}

fn random_row(rng: &mut ChaCha8Rng, k: usize) -> Vec<u32> {
    match rng.random_range(0..4) {
        // a range, like bit options 3..=10
        0 => {
            let start = rng.random_range(1..6);
            (start..start + k as u32).collect()
        }
        // powers of two, shuffled
        1 => {
            let mut row: Vec<u32> = (0..k).map(|j| 2u32 << j).collect();
            for j in (1..k).rev() {
                row.swap(j, rng.random_range(0..=j));
            }
            row
        }
        // any small weights, duplicates allowed
        2 => (0..k).map(|_| rng.random_range(1..7)).collect(),
        // spread-out weights
        _ => (0..k).map(|_| rng.random_range(1..40)).collect(),
    }
}

fn random_instance<P: Profit>(rng: &mut ChaCha8Rng, from_f64: fn(f64) -> P) -> Instance<P> {
    let l = rng.random_range(1..=5);
    let k = rng.random_range(1..=5);
    let rows = if rng.random_bool(0.5) {
        vec![random_row(rng, k); l]
    } else {
        (0..l).map(|_| random_row(rng, k)).collect()
    };
    let kind = rng.random_range(0..5);
    let profits = (0..BATCH * l * k)
        .map(|_| {
            from_f64(match kind {
                // integer-valued: many exact ties
                0 => rng.random_range(-3..=3) as f64,
                // all equal
                1 => 1.0,
                // continuous, negative and positive
                2 => rng.random_range(-1.0..1.0),
                // huge values that absorb small ones (1e30 + 1 == 1e30)
                3 => *[1e30, -1e30, 1.0, 2.0, -1.0, 0.0]
                    .get(rng.random_range(0..6))
                    .unwrap(),
                // only negative
                _ => -rng.random_range(0.0..100.0f64).floor(),
            })
        })
        .collect();
    let min: u64 = rows.iter().map(|r| *r.iter().min().unwrap() as u64).sum();
    let max: u64 = rows.iter().map(|r| *r.iter().max().unwrap() as u64).sum();
    let budget = rng.random_range(min.saturating_sub(3)..=max + 3);
    let mode = if rng.random_bool(0.7) {
        Mode::Exact
    } else {
        Mode::AtMost
    };
    Instance {
        rows,
        profits,
        budget,
        mode,
    }
}

/// The `n`-th instance of the batch.
fn nth<P: Profit>(inst: &Instance<P>, n: usize) -> Instance<P> {
    let per = inst.rows.len() * inst.rows[0].len();
    let profits = inst.profits[n * per..(n + 1) * per].to_vec();
    Instance {
        rows: inst.rows.clone(),
        profits,
        budget: inst.budget,
        mode: inst.mode,
    }
}

/// Solve the batch one by one and at once, with both kernels, and check every instance
/// against the brute force.
fn check<P: Profit>(batch: &Instance<P>, case: usize) -> &'static str {
    let per = batch.rows.len() * batch.rows[0].len();
    let expected: Vec<Expected<P>> = (0..BATCH).map(|n| brute_force(&nth(batch, n))).collect();
    let problem =
        Weights::per_group(&batch.rows).and_then(|w| Problem::new(w, batch.budget, batch.mode));
    let context = |n: usize| {
        format!(
            "case {case}, instance {n}: rows {:?} budget {} {:?} profits {:?}",
            batch.rows,
            batch.budget,
            batch.mode,
            nth(batch, n).profits
        )
    };
    match (&expected[0], problem) {
        (Expected::Optimum { .. }, Ok(problem)) => {
            for detect in [true, false] {
                let mut solver = SolverBuilder::new()
                    .detect_cpu_features(detect)
                    .build::<P>(&problem)
                    .unwrap();
                let together = solver.solve_batch(&batch.profits).unwrap();
                for (n, expected) in expected.iter().enumerate() {
                    let Expected::Optimum {
                        choices,
                        profit,
                        weight,
                    } = expected
                    else {
                        panic!("{}: feasibility differs between instances", context(n));
                    };
                    let single = solver
                        .solve(&batch.profits[n * per..(n + 1) * per])
                        .unwrap();
                    assert_eq!(&single.choices, choices, "{}", context(n));
                    assert_eq!(
                        single.profit.to_f64().to_bits(),
                        profit.to_f64().to_bits(),
                        "{}",
                        context(n)
                    );
                    assert_eq!(single.weight, *weight, "{}", context(n));
                    let in_batch: Vec<usize> = together
                        .choices_of(n)
                        .unwrap()
                        .iter()
                        .map(|&c| c as usize)
                        .collect();
                    assert_eq!(&in_batch, choices, "batch, {}", context(n));
                    assert_eq!(
                        together.profits[n].to_f64().to_bits(),
                        profit.to_f64().to_bits(),
                        "batch, {}",
                        context(n)
                    );
                }
            }
            "optimum"
        }
        (Expected::OutOfRange, Err(Error::BudgetOutOfRange { .. })) => "out of range",
        (Expected::BelowMinimum, Err(Error::BudgetBelowMinimum { .. })) => "below minimum",
        (
            Expected::Unreachable { below, above },
            Err(Error::BudgetUnreachable {
                below: b, above: a, ..
            }),
        ) => {
            assert_eq!((b, a), (*below, *above), "{}", context(0));
            "unreachable"
        }
        (_, got) => panic!("{}: unexpected {got:?}", context(0)),
    }
}

fn run_many<P: Profit>(
    seed: u64,
    cases: usize,
    from_f64: fn(f64) -> P,
) -> std::collections::BTreeMap<&'static str, usize> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut seen = std::collections::BTreeMap::new();
    for case in 0..cases {
        let inst = random_instance(&mut rng, from_f64);
        *seen.entry(check(&inst, case)).or_insert(0) += 1;
    }
    seen
}

#[test]
fn random_f64_instances_match_brute_force() {
    let seen = run_many(20240611, 6000, |x| x);
    // every outcome class is exercised, not only the easy one
    for class in ["optimum", "out of range", "below minimum", "unreachable"] {
        assert!(
            seen.get(class).copied().unwrap_or(0) >= 20,
            "{class}: {seen:?}"
        );
    }
}

#[test]
fn random_f32_instances_match_brute_force() {
    let seen = run_many(7, 6000, |x| x as f32);
    assert!(seen["optimum"] >= 3000, "{seen:?}");
}

/// With exact sums (small integer profits) the documented order is plain "the
/// lexicographically smallest optimal choice": check that reading directly.
#[test]
fn integer_profits_give_the_lexicographically_smallest_optimum() {
    let mut rng = ChaCha8Rng::seed_from_u64(99);
    let mut solved = 0;
    for _ in 0..3000 {
        let mut inst = nth(&random_instance(&mut rng, |x| x), 0);
        for p in &mut inst.profits {
            *p = rng.random_range(-2..=2) as f64;
        }
        let Ok(problem) =
            Weights::per_group(&inst.rows).and_then(|w| Problem::new(w, inst.budget, inst.mode))
        else {
            continue;
        };
        let (l, k) = (inst.rows.len(), inst.rows[0].len());
        let feasible: Vec<(Vec<usize>, f64)> = all_choices(l, k)
            .filter(|c| {
                let w: u64 = c
                    .iter()
                    .enumerate()
                    .map(|(i, &j)| inst.rows[i][j] as u64)
                    .sum();
                match inst.mode {
                    Mode::Exact => w == inst.budget,
                    Mode::AtMost => w <= inst.budget,
                }
            })
            .map(|c| {
                let p = c
                    .iter()
                    .enumerate()
                    .map(|(i, &j)| inst.profits[i * k + j])
                    .sum();
                (c, p)
            })
            .collect();
        let best = feasible
            .iter()
            .map(|(_, p)| *p)
            .fold(f64::NEG_INFINITY, f64::max);
        let first = feasible.iter().find(|(_, p)| *p == best).unwrap();
        let got = SolverBuilder::new()
            .build::<f64>(&problem)
            .unwrap()
            .solve(&inst.profits)
            .unwrap();
        assert_eq!(got.choices, first.0);
        assert_eq!(got.profit, best);
        solved += 1;
    }
    assert!(solved > 1500, "{solved}");
}

/// Wider instances than the brute force can enumerate: the choice must meet the budget and
/// its recomputed profit must equal the reported one; the two kernels must agree.
#[test]
fn larger_instances_meet_the_budget_and_kernels_agree() {
    let mut rng = ChaCha8Rng::seed_from_u64(3);
    for _ in 0..300 {
        let l = rng.random_range(1..=80);
        let k = rng.random_range(1..=12);
        let rows: Vec<Vec<u32>> = (0..l).map(|_| random_row(&mut rng, k)).collect();
        let min: u64 = rows.iter().map(|r| *r.iter().min().unwrap() as u64).sum();
        let max: u64 = rows.iter().map(|r| *r.iter().max().unwrap() as u64).sum();
        let budget = rng.random_range(min..=max);
        let mode = if rng.random_bool(0.5) {
            Mode::Exact
        } else {
            Mode::AtMost
        };
        let Ok(problem) = Problem::new(Weights::per_group(&rows).unwrap(), budget, mode) else {
            continue;
        };
        let profits: Vec<f32> = (0..l * k).map(|_| rng.random_range(-1.0..1.0)).collect();
        let a = SolverBuilder::new()
            .build::<f32>(&problem)
            .unwrap()
            .solve(&profits)
            .unwrap();
        let b = SolverBuilder::new()
            .detect_cpu_features(false)
            .build::<f32>(&problem)
            .unwrap()
            .solve(&profits)
            .unwrap();
        assert_eq!(a, b);
        match mode {
            Mode::Exact => assert_eq!(a.weight, budget),
            Mode::AtMost => assert!(a.weight <= budget),
        }
        let mut total = 0.0f32;
        for i in (0..l).rev() {
            total += profits[i * k + a.choices[i]];
        }
        assert_eq!(total, a.profit);
    }
}
