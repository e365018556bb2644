//! Batch APIs: a batch equals its instances solved one by one, the rayon batch equals the
//! sequential one for any thread count and split, and a reused solver keeps no state.

use dptq_mckp::{Batch, Error, Mode, Problem, Profit, SolverBuilder, Weights};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

fn random_problem(rng: &mut ChaCha8Rng) -> Problem {
    loop {
        let l = rng.random_range(1..=30);
        let k = rng.random_range(1..=10);
        let rows: Vec<Vec<u32>> = if rng.random_bool(0.5) {
            vec![(0..k).map(|_| rng.random_range(1..12)).collect(); l]
        } else {
            (0..l)
                .map(|_| (0..k).map(|_| rng.random_range(1..12)).collect())
                .collect()
        };
        let weights = Weights::per_group(&rows).unwrap();
        let (min, max) = weights.total_range().unwrap();
        let mode = if rng.random_bool(0.6) {
            Mode::Exact
        } else {
            Mode::AtMost
        };
        if let Ok(p) = Problem::new(weights, rng.random_range(min..=max), mode) {
            return p;
        }
    }
}

fn random_profits<P: Profit>(rng: &mut ChaCha8Rng, len: usize, from: fn(f64) -> P) -> Vec<P> {
    let integer = rng.random_bool(0.3);
    (0..len)
        .map(|_| {
            from(if integer {
                rng.random_range(-2..=2) as f64
            } else {
                rng.random_range(-5.0..5.0)
            })
        })
        .collect()
}

fn same<P: Profit>(a: &Batch<P>, b: &Batch<P>) -> bool {
    a.choices == b.choices
        && a.profits.len() == b.profits.len()
        && a.profits
            .iter()
            .zip(&b.profits)
            .all(|(x, y)| x.to_f64().to_bits() == y.to_f64().to_bits())
}

fn batch_equals_singles<P: Profit>(seed: u64, from: fn(f64) -> P) {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    for _ in 0..200 {
        let problem = random_problem(&mut rng);
        let per = problem.groups() * problem.items();
        let n = rng.random_range(0..60);
        let profits = random_profits(&mut rng, n * per, from);
        let mut solver = SolverBuilder::new().build::<P>(&problem).unwrap();
        let batch = solver.solve_batch(&profits).unwrap();
        assert_eq!(batch.len(), n);
        // batches run whole gangs of 8 instances in SIMD lanes: the portable build of that
        // kernel must agree too
        let mut portable = SolverBuilder::new()
            .detect_cpu_features(false)
            .build::<P>(&problem)
            .unwrap();
        assert!(same(&portable.solve_batch(&profits).unwrap(), &batch));
        for i in 0..n {
            let single = solver.solve(&profits[i * per..(i + 1) * per]).unwrap();
            let choices: Vec<usize> = batch
                .choices_of(i)
                .unwrap()
                .iter()
                .map(|&c| c as usize)
                .collect();
            assert_eq!(single.choices, choices);
            assert_eq!(
                single.profit.to_f64().to_bits(),
                batch.profits[i].to_f64().to_bits()
            );
        }
    }
}

#[test]
fn batch_results_equal_single_results_f32() {
    batch_equals_singles(1, |x| x as f32);
}

#[test]
fn batch_results_equal_single_results_f64() {
    batch_equals_singles(2, |x| x);
}

#[test]
fn parallel_batch_equals_sequential_batch_for_any_threads_and_split() {
    let mut rng = ChaCha8Rng::seed_from_u64(3);
    let pools: Vec<rayon::ThreadPool> = [1, 2, 3, 5]
        .iter()
        .map(|&t| {
            rayon::ThreadPoolBuilder::new()
                .num_threads(t)
                .build()
                .unwrap()
        })
        .collect();
    for round in 0..60 {
        let problem = random_problem(&mut rng);
        let per = problem.groups() * problem.items();
        let n = rng.random_range(0..400);
        let profits = random_profits(&mut rng, n * per, |x| x as f32);
        let sequential = SolverBuilder::new()
            .build::<f32>(&problem)
            .unwrap()
            .solve_batch(&profits)
            .unwrap();
        for pool in &pools {
            for min_len in [1, 3, 64] {
                let mut solver = SolverBuilder::new()
                    .parallel_min_len(min_len)
                    .build::<f32>(&problem)
                    .unwrap();
                // twice: the second call reuses the per-part buffers
                for _ in 0..2 {
                    let parallel = pool.install(|| solver.par_solve_batch(&profits)).unwrap();
                    assert!(
                        same(&parallel, &sequential),
                        "round {round}, min_len {min_len}"
                    );
                }
            }
        }
    }
}

#[test]
fn parallel_batch_reports_the_first_failing_instance() {
    let problem = Problem::uniform(&[3, 4, 5, 6, 7, 8, 9, 10], 20, 80, Mode::Exact).unwrap();
    let per = 20 * 8;
    let mut profits = vec![0.25f64; 100 * per];
    profits[80 * per + 5] = f64::NAN;
    profits[37 * per + 9 * 8 + 3] = f64::INFINITY;
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(4)
        .build()
        .unwrap();
    let mut solver = SolverBuilder::new()
        .parallel_min_len(1)
        .build::<f64>(&problem)
        .unwrap();
    for result in [
        solver.solve_batch(&profits),
        pool.install(|| solver.par_solve_batch(&profits)),
    ] {
        let err = result.unwrap_err();
        assert!(
            matches!(
                err,
                Error::NonFiniteProfit {
                    instance: 37,
                    group: 9,
                    item: 3,
                    ..
                }
            ),
            "{err:?}"
        );
    }
}

#[test]
fn a_reused_solver_keeps_no_state_between_instances() {
    let mut rng = ChaCha8Rng::seed_from_u64(4);
    for _ in 0..100 {
        let problem = random_problem(&mut rng);
        let per = problem.groups() * problem.items();
        let a = random_profits(&mut rng, per, |x| x);
        let b = random_profits(&mut rng, 7 * per, |x| x);
        let mut fresh = SolverBuilder::new().build::<f64>(&problem).unwrap();
        let expected = fresh.solve(&a).unwrap();
        let mut reused = SolverBuilder::new().build::<f64>(&problem).unwrap();
        reused.solve_batch(&b).unwrap();
        reused.par_solve_batch(&b).unwrap();
        assert_eq!(reused.solve(&a).unwrap(), expected);
    }
}
