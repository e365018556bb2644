//! Every bad input gives its typed error with the offending values, and nothing panics.

use dptq_mckp::{Error, Mode, Problem, Solver, SolverBuilder, Weights};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

#[test]
fn budget_outside_the_range_names_the_range() {
    let err = Problem::uniform(&[3, 4, 5, 6, 7, 8, 9, 10], 20, 59, Mode::Exact).unwrap_err();
    assert!(
        matches!(
            err,
            Error::BudgetOutOfRange {
                budget: 59,
                min: 60,
                max: 200
            }
        ),
        "{err:?}"
    );
    assert_eq!(
        err.to_string(),
        "budget 59 is outside the reachable range [60, 200] of total weights"
    );
    let err = Problem::uniform(&[3, 4], 2, 9, Mode::Exact).unwrap_err();
    assert!(
        matches!(
            err,
            Error::BudgetOutOfRange {
                budget: 9,
                min: 6,
                max: 8
            }
        ),
        "{err:?}"
    );
}

#[test]
fn budget_with_the_wrong_parity_is_unreachable_inside_the_range() {
    let err = Problem::uniform(&[2, 4, 8, 16], 4, 31, Mode::Exact).unwrap_err();
    assert!(
        matches!(
            err,
            Error::BudgetUnreachable {
                budget: 31,
                min: 8,
                max: 64,
                below: 30,
                above: 32
            }
        ),
        "{err:?}"
    );
    let msg = err.to_string();
    assert!(
        msg.contains("inside the reachable range [8, 64]") && msg.contains("30 and 32"),
        "{msg}"
    );
}

#[test]
fn budget_in_a_gap_names_the_nearest_reachable_totals() {
    // one group {1, 10}, one {1, 10}: totals 2, 11, 20; 5 is in a gap
    let err = Problem::uniform(&[1, 10], 2, 5, Mode::Exact).unwrap_err();
    assert!(
        matches!(
            err,
            Error::BudgetUnreachable {
                below: 2,
                above: 11,
                ..
            }
        ),
        "{err:?}"
    );
}

#[test]
fn at_most_fails_only_below_the_lightest_choice() {
    let err = Problem::uniform(&[3, 4], 5, 14, Mode::AtMost).unwrap_err();
    assert!(
        matches!(
            err,
            Error::BudgetBelowMinimum {
                budget: 14,
                min: 15
            }
        ),
        "{err:?}"
    );
    assert!(Problem::uniform(&[2, 4], 5, 11, Mode::AtMost).is_ok()); // odd: fine for <=
    assert!(Problem::uniform(&[2, 4], 5, u64::MAX, Mode::AtMost).is_ok());
}

#[test]
fn malformed_weights_are_rejected() {
    assert!(matches!(Weights::uniform(&[1, 2], 0), Err(Error::NoGroups)));
    assert!(matches!(
        Weights::per_group::<Vec<u32>>(&[]),
        Err(Error::NoGroups)
    ));
    assert!(matches!(
        Weights::uniform(&[], 3),
        Err(Error::EmptyGroup { group: 0 })
    ));
    assert!(matches!(
        Weights::per_group(&[vec![1, 2], vec![]]),
        Err(Error::EmptyGroup { group: 1 })
    ));
    assert!(matches!(
        Weights::per_group(&[vec![1, 2], vec![1, 2], vec![3]]),
        Err(Error::RaggedGroups {
            group: 2,
            expected: 2,
            got: 1
        })
    ));
    let err = Weights::per_group(&[vec![1, 2], vec![4, 0]]).unwrap_err();
    assert!(matches!(err, Error::ZeroWeight { group: 1, item: 1 }));
    assert_eq!(
        err.to_string(),
        "item 1 of group 1 has weight 0; weights must be positive"
    );
}

#[test]
fn totals_that_overflow_u64_are_an_error() {
    let weights = Weights::uniform(&[u32::MAX], usize::MAX).unwrap();
    assert!(matches!(
        Problem::new(weights, 1, Mode::Exact),
        Err(Error::WeightOverflow { .. })
    ));
}

#[test]
fn tables_beyond_the_memory_limit_are_an_error() {
    // a shifted capacity of ~2e9 states
    let err = Problem::uniform(&[1, u32::MAX], 1, 1 << 31, Mode::Exact).unwrap_err();
    assert!(
        matches!(err, Error::TableTooLarge { groups: 1, .. }),
        "{err:?}"
    );
    // 2^40 groups with nothing to choose still need per-group bookkeeping
    let err = Problem::uniform(&[1], 1 << 40, 1 << 40, Mode::Exact).unwrap_err();
    assert!(matches!(err, Error::TableTooLarge { .. }), "{err:?}");
    // a large but reasonable table (~200 MB of value rows) is fine: 1000 + 250 x 99
    assert!(Problem::uniform(&[1, 100], 1000, 25_750, Mode::Exact).is_ok());
}

#[test]
fn non_finite_profits_name_instance_group_and_item() {
    let problem = Problem::uniform(&[1, 2, 3], 4, 8, Mode::Exact).unwrap();
    let mut solver = Solver::<f32>::new(&problem).unwrap();
    for bad in [f32::NAN, f32::INFINITY, f32::NEG_INFINITY] {
        let mut p = vec![0.5f32; 3 * 4 * 3];
        p[12 + 3 * 2 + 1] = bad; // instance 1, group 2, item 1
        let err = solver.solve_batch(&p).unwrap_err();
        assert!(
            matches!(
                err,
                Error::NonFiniteProfit {
                    instance: 1,
                    group: 2,
                    item: 1,
                    ..
                }
            ),
            "{err:?}"
        );
        assert!(
            err.to_string()
                .starts_with("profit of instance 1, group 2, item 1 is"),
            "{err}"
        );
    }
}

#[test]
fn profits_whose_sum_could_overflow_are_rejected() {
    let problem = Problem::uniform(&[1, 2], 3, 4, Mode::Exact).unwrap();
    let mut solver = Solver::<f32>::new(&problem).unwrap();
    let err = solver.solve(&[0.0, 0.0, 0.0, -1e38, 0.0, 0.0]).unwrap_err();
    assert!(
        matches!(
            err,
            Error::ProfitTooLarge {
                instance: 0,
                group: 1,
                item: 1,
                groups: 3,
                ..
            }
        ),
        "{err:?}"
    );
    // 1e30 is far inside the limit for f32 and 3 groups
    assert!(solver.solve(&[1e30, -1e30, 1e30, 0.0, 0.0, 1e30]).is_ok());
    // in f64 1e38 is harmless
    let mut wide = Solver::<f64>::new(&problem).unwrap();
    assert!(wide.solve(&[0.0, 0.0, 0.0, -1e38, 0.0, 0.0]).is_ok());
}

#[test]
fn buffers_of_the_wrong_length_are_shape_errors() {
    let problem = Problem::uniform(&[1, 2], 3, 4, Mode::Exact).unwrap();
    let mut solver = Solver::<f64>::new(&problem).unwrap();
    let err = solver.solve(&[0.0; 5]).unwrap_err();
    assert!(
        matches!(
            err,
            Error::ShapeMismatch {
                expected: 6,
                got: 5,
                ..
            }
        ),
        "{err:?}"
    );
    assert_eq!(
        err.to_string(),
        "profits [N, L, K]: expected 6 values, got 5"
    );
    let err = solver.solve_batch(&[0.0; 13]).unwrap_err();
    assert!(
        matches!(
            err,
            Error::NotWholeInstances {
                per_instance: 6,
                got: 13,
                ..
            }
        ),
        "{err:?}"
    );
    let (mut choices, mut totals) = (vec![0u32; 5], vec![0.0; 2]);
    let err = solver
        .solve_batch_into(&[0.0; 12], &mut choices, &mut totals)
        .unwrap_err();
    assert!(
        matches!(
            err,
            Error::ShapeMismatch {
                expected: 6,
                got: 5,
                ..
            }
        ),
        "{err:?}"
    );
    let err = solver
        .par_solve_batch_into(&[0.0; 12], &mut choices, &mut totals)
        .unwrap_err();
    assert!(
        matches!(
            err,
            Error::ShapeMismatch {
                expected: 6,
                got: 5,
                ..
            }
        ),
        "{err:?}"
    );
    // an empty batch is fine
    assert!(solver.solve_batch(&[]).unwrap().is_empty());
}

/// Random garbage everywhere: weights with zeros and extremes, any budget, odd buffer
/// lengths, NaN/inf/huge/subnormal profits. Every call returns `Ok` or a typed `Err`.
#[test]
fn adversarial_inputs_never_panic() {
    let mut rng = ChaCha8Rng::seed_from_u64(0xbad);
    let pick_weight = |rng: &mut ChaCha8Rng| match rng.random_range(0..40) {
        0 => 0,
        1 => u32::MAX,
        2..6 => 1 << rng.random_range(0..12),
        6..20 => rng.random_range(1..4),
        _ => rng.random_range(1..1000),
    };
    let pick_profit = |rng: &mut ChaCha8Rng| match rng.random_range(0..8) {
        0 => f64::NAN,
        1 => f64::INFINITY,
        2 => -1e300,
        3 => f64::MIN_POSITIVE / 4.0,
        4 => -0.0,
        _ => rng.random_range(-10.0..10.0),
    };
    let mut outcomes = [0usize; 2];
    for _ in 0..3000 {
        let groups = rng.random_range(0..6);
        let items = rng.random_range(0..5);
        let rows: Vec<Vec<u32>> = (0..groups)
            .map(|_| {
                let k = if rng.random_bool(0.9) {
                    items
                } else {
                    rng.random_range(0..5)
                };
                (0..k).map(|_| pick_weight(&mut rng)).collect()
            })
            .collect();
        let budget = match rng.random_range(0..4) {
            0 => 0,
            1 => u64::MAX,
            2 => rng.random_range(0..5000),
            _ => rows
                .iter()
                .map(|r| r.first().copied().unwrap_or(0) as u64)
                .sum(),
        };
        let mode = if rng.random_bool(0.5) {
            Mode::Exact
        } else {
            Mode::AtMost
        };
        let problem = Weights::per_group(&rows).and_then(|w| Problem::new(w, budget, mode));
        let Ok(problem) = problem else {
            outcomes[0] += 1;
            continue;
        };
        let len =
            problem.groups() * problem.items() * rng.random_range(0..4) + rng.random_range(0..2);
        let p64: Vec<f64> = (0..len).map(|_| pick_profit(&mut rng)).collect();
        let p32: Vec<f32> = p64.iter().map(|&x| x as f32).collect();
        let mut s64 = SolverBuilder::new()
            .parallel_min_len(1)
            .build::<f64>(&problem)
            .unwrap();
        let mut s32 = SolverBuilder::new()
            .parallel_min_len(1)
            .build::<f32>(&problem)
            .unwrap();
        let _ = s64.solve(&p64);
        let _ = s64.solve_batch(&p64);
        let _ = s64.par_solve_batch(&p64);
        let _ = s32.solve(&p32);
        let _ = s32.par_solve_batch(&p32);
        outcomes[1] += 1;
    }
    assert!(outcomes.iter().all(|&n| n > 300), "{outcomes:?}");
}
