//! Small cases whose answers are worked out by hand.

use dptq_mckp::{Mode, Problem, Solver, SolverBuilder, Weights};

fn solve(
    items: &[u32],
    groups: usize,
    budget: u64,
    mode: Mode,
    profits: &[f64],
) -> (Vec<usize>, f64, u64) {
    let problem = Problem::uniform(items, groups, budget, mode).unwrap();
    let s = Solver::<f64>::new(&problem)
        .unwrap()
        .solve(profits)
        .unwrap();
    (s.choices, s.profit, s.weight)
}

#[test]
fn one_group_one_item_is_the_only_choice() {
    assert_eq!(solve(&[5], 1, 5, Mode::Exact, &[-2.5]), (vec![0], -2.5, 5));
    assert_eq!(solve(&[5], 1, 9, Mode::AtMost, &[-2.5]), (vec![0], -2.5, 5));
}

#[test]
fn budget_forces_a_trade_between_layers() {
    // options {2, 4, 8}; 8 + 4 + 2 = 14 beats the unconstrained 8 + 4 + 8 = 20
    #[rustfmt::skip]
    let p = [0.0, 1.0, 5.0,
             0.0, 2.0, 0.0,
             3.0, 0.0, 0.0];
    assert_eq!(
        solve(&[2, 4, 8], 3, 14, Mode::Exact, &p),
        (vec![2, 1, 0], 10.0, 14)
    );
    // with at most 20 bits the budget binds nothing: every group takes its best item
    assert_eq!(
        solve(&[2, 4, 8], 3, 20, Mode::AtMost, &p),
        (vec![2, 1, 0], 10.0, 14)
    );
    // with exactly 24 bits every group must take 8 bits
    assert_eq!(
        solve(&[2, 4, 8], 3, 24, Mode::Exact, &p),
        (vec![2, 2, 2], 5.0, 24)
    );
}

#[test]
fn at_most_prefers_spending_less_when_it_pays() {
    // heavier items have lower profit: at most 12 takes the lightest everywhere
    let p = [3.0, 2.0, 1.0, 3.0, 2.0, 1.0];
    assert_eq!(
        solve(&[1, 2, 3], 2, 12, Mode::AtMost, &p),
        (vec![0, 0], 6.0, 2)
    );
    // exactly 5 must spend it: 2 + 3 (profit 3) or 3 + 2 (3): ties go to the smaller item first
    assert_eq!(
        solve(&[1, 2, 3], 2, 5, Mode::Exact, &p),
        (vec![1, 2], 3.0, 5)
    );
}

#[test]
fn equal_profits_give_the_lexicographically_smallest_feasible_choice() {
    // weights {3, 4, 5}, 3 groups, exactly 12: (3, 4, 5) is the smallest choice vector
    assert_eq!(
        solve(&[3, 4, 5], 3, 12, Mode::Exact, &[1.0; 9]),
        (vec![0, 1, 2], 3.0, 12)
    );
    // unsorted weights {5, 3, 4}: item indices, not weights, decide: (5, 3, 4) = [0, 1, 2]
    assert_eq!(
        solve(&[5, 3, 4], 3, 12, Mode::Exact, &[0.0; 9]),
        (vec![0, 1, 2], 0.0, 12)
    );
}

#[test]
fn duplicate_weights_are_distinct_items() {
    // two items of weight 4 with different profits: the better one wins
    assert_eq!(
        solve(&[4, 4, 9], 1, 4, Mode::Exact, &[1.0, 2.0, 9.0]),
        (vec![1], 2.0, 4)
    );
}

#[test]
fn gaps_in_the_weights_are_honoured() {
    // powers of two {2, 4, 8, 16}: 3 groups, exactly 26 = 16 + 8 + 2 (in some order)
    let p = [0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 1.0, 0.0, 1.0, 0.0, 0.0, 0.0];
    assert_eq!(
        solve(&[2, 4, 8, 16], 3, 26, Mode::Exact, &p),
        (vec![3, 2, 0], 3.0, 26)
    );
}

#[test]
fn absorbed_profits_still_prefer_the_best_remaining_groups() {
    // 1e30 + 1 == 1e30 + 2 in f64: the totals tie, and the documented order then
    // maximises the sum of the remaining groups (2 > 1), not the smaller item index.
    let (choices, profit, _) = solve(&[1, 1], 2, 2, Mode::Exact, &[1e30, 0.0, 1.0, 2.0]);
    assert_eq!(1e30 + 1.0, 1e30 + 2.0);
    assert_eq!((choices, profit), (vec![0, 1], 1e30));
}

#[test]
fn per_group_weights_allow_different_options_per_layer() {
    // layer 0 may use {4, 8}, layer 1 {2, 3}, layer 2 {8, 16}; exactly 22 bits
    let weights = Weights::per_group(&[vec![4, 8], vec![2, 3], vec![8, 16]]).unwrap();
    let problem = Problem::new(weights, 22, Mode::Exact).unwrap();
    assert_eq!(problem.reachable_range(), (14, 27));
    // 4 + 2 + 16 = 22 is the only way to 22
    let s = Solver::<f32>::new(&problem)
        .unwrap()
        .solve(&[1.0, 0.0, 0.0, 1.0, 1.0, 0.0])
        .unwrap();
    assert_eq!((s.choices, s.profit, s.weight), (vec![0, 0, 1], 1.0, 22));
}

#[test]
fn groups_may_hold_hundreds_of_items() {
    // weights 1..=300 in two groups, exactly 301: pairs (w, 301 - w); make item 299 of
    // group 0 (weight 300) the best, which forces item 0 (weight 1) in group 1
    let items: Vec<u32> = (1..=300).collect();
    let problem = Problem::uniform(&items, 2, 301, Mode::Exact).unwrap();
    let mut p = vec![0.0f32; 600];
    p[299] = 10.0;
    let s = Solver::<f32>::new(&problem).unwrap().solve(&p).unwrap();
    assert_eq!((s.choices, s.weight, s.profit), (vec![299, 0], 301, 10.0));
}

#[test]
fn both_kernels_agree_on_the_paper_sized_problems() {
    let options: Vec<u32> = (3..=10).collect();
    for (groups, budget) in [(20, 80), (77, 308), (9, 36)] {
        for mode in [Mode::Exact, Mode::AtMost] {
            let problem = Problem::uniform(&options, groups, budget, mode).unwrap();
            let mut fast = SolverBuilder::new().build::<f32>(&problem).unwrap();
            let mut portable = SolverBuilder::new()
                .detect_cpu_features(false)
                .build::<f32>(&problem)
                .unwrap();
            let mut state = 12345u64;
            let profits: Vec<f32> = (0..groups * 8 * 50)
                .map(|_| {
                    state = state
                        .wrapping_mul(6364136223846793005)
                        .wrapping_add(1442695040888963407);
                    (state >> 40) as f32 / (1u64 << 24) as f32
                })
                .collect();
            let a = fast.solve_batch(&profits).unwrap();
            let b = portable.solve_batch(&profits).unwrap();
            assert_eq!(a, b);
            for n in 0..a.len() {
                let bits: u64 = a
                    .choices_of(n)
                    .unwrap()
                    .iter()
                    .map(|&c| options[c as usize] as u64)
                    .sum();
                match mode {
                    Mode::Exact => assert_eq!(bits, budget),
                    Mode::AtMost => assert!(bits <= budget),
                }
            }
        }
    }
}
