//! Evaluation: the cross matrix, transitory points, random policies, the budget count.

use candle_core::Device;
use dptq_distill::{
    CrossEval, EvalPolicy, ExperimentResult, Network, NoProgress, RunConfig, RunData, StepTimes,
    evaluate_cross, random_profits,
};

fn hand_made() -> CrossEval {
    // 6 examples. FP: W all right; R right on 0-4; D right on 0-3 and 5.
    // D under pi_D right only on 0; R under pi_R right on 0-4.
    let t = true;
    let f = false;
    CrossEval {
        networks: vec!["W".into(), "R".into(), "D".into()],
        policies: vec!["pi_R".into(), "pi_D".into(), "random".into()],
        fp: vec![vec![t; 6], vec![t, t, t, t, t, f], vec![t, t, t, t, f, t]],
        quantized: vec![
            vec![vec![t; 6], vec![t, t, t, f, f, f], vec![t; 6]],
            vec![
                vec![t, t, t, t, t, f],
                vec![t, t, f, f, f, f],
                vec![t, t, t, t, f, f],
            ],
            vec![
                vec![t, t, t, f, f, f],
                vec![t, f, f, f, f, f],
                vec![t, t, f, f, f, f],
            ],
        ],
        budget_checked: 18,
        budget_exact: 18,
        mean_bits: vec![vec![4.0; 2]; 3],
    }
}

#[test]
fn transitory_points_are_examples_right_for_r_and_d_at_fp_and_wrong_for_d_quantized() {
    let e = hand_made();
    // Both right at FP: 0, 1, 2, 3; D under pi_D wrong on 1, 2, 3.
    let (count, pct) = e.transitory_points("R", "D", "pi_D").unwrap();
    assert_eq!(count, 3);
    assert!((pct - 50.0).abs() < 1e-12);
    assert!(e.transitory_points("R", "X", "pi_D").is_err());
}

#[test]
fn experiment_tables_read_the_diagonal_and_judge_the_bars() {
    let e = hand_made();
    let cfg = RunConfig::default();
    let exp = &cfg.experiments_for("resnet_tiny", 2).unwrap()[0];
    let r =
        ExperimentResult::from_eval(exp, vec!["a".into(), "b".into()], &e, StepTimes::default())
            .unwrap();
    let pct = |k: f64| 100.0 * k / 6.0;
    assert!((r.white_box.fp - 100.0).abs() < 1e-9);
    assert!((r.robust.fp - pct(5.0)).abs() < 1e-9);
    assert!((r.robust.quantized - pct(5.0)).abs() < 1e-9);
    assert!((r.detrimental.quantized - pct(1.0)).abs() < 1e-9);
    assert!((r.detrimental.change - (pct(1.0) - pct(5.0))).abs() < 1e-9);
    assert_eq!(r.cross.accuracy[2][0], pct(3.0), "D under pi_R");
    assert_eq!(r.cross.accuracy[0][1], pct(3.0), "W under pi_D");
    // R's FP is 16.7 points below W: the FP bar fails, so the phenomenon is not shown.
    assert!(!r.verdict.fp_within_2_points);
    assert!(r.verdict.robust_holds);
    assert!(r.verdict.detrimental_collapses);
    assert!(!r.verdict.shown);
    assert_eq!(r.budget_exact_fraction, 1.0);
}

#[test]
fn random_profits_of_an_example_do_not_depend_on_its_batch() {
    let a = random_profits(&[3, 4], 9, 8, 5, &Device::Cpu).unwrap();
    let b = random_profits(&[4], 9, 8, 5, &Device::Cpu).unwrap();
    let a4 = a
        .get(1)
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1::<f32>()
        .unwrap();
    let b4 = b
        .get(0)
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1::<f32>()
        .unwrap();
    assert_eq!(a4, b4);
    let a3 = a
        .get(0)
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1::<f32>()
        .unwrap();
    assert_ne!(a3, a4);
    let other_seed = random_profits(&[4], 9, 8, 6, &Device::Cpu).unwrap();
    assert_ne!(
        other_seed.flatten_all().unwrap().to_vec1::<f32>().unwrap(),
        b4
    );
}

#[test]
fn sixteen_bit_activations_leave_predictions_as_at_full_precision_and_every_example_is_counted() {
    let cfg = RunConfig::default().set("data.test_limit=96").unwrap();
    let data = RunData::open(&cfg.data).unwrap();
    let w = Network::new("resnet_tiny", 10, 4, &Device::Cpu).unwrap();
    let frozen = w.frozen().unwrap();
    let loader = data.test_loader(40, &Device::Cpu).unwrap();
    // One option, 16 bits, budget 16 L: every policy must give 16 bits everywhere.
    let eval = evaluate_cross(
        &loader,
        &[("W", frozen.classifier())],
        &[
            ("random", EvalPolicy::Random { seed: 1 }),
            ("random2", EvalPolicy::Random { seed: 2 }),
        ],
        &[16],
        16 * 9,
        16,
        &NoProgress,
        "test",
    )
    .unwrap();
    assert_eq!(eval.budget_checked, 2 * 96);
    assert_eq!(eval.budget_exact, 2 * 96);
    assert!(
        eval.mean_bits
            .iter()
            .flatten()
            .all(|&b| (b - 16.0).abs() < 1e-9)
    );
    let fp = eval.fp_accuracy("W").unwrap();
    let q = eval.quantized_accuracy("W", "random").unwrap();
    // At most one of 96 predictions may flip between 16-bit and full precision.
    assert!(
        (fp - q).abs() <= 100.0 / 96.0 + 1e-9,
        "fp {fp} vs 16-bit {q}"
    );

    // Low bits do change predictions: 2 bits everywhere.
    let low = evaluate_cross(
        &loader,
        &[("W", frozen.classifier())],
        &[("random", EvalPolicy::Random { seed: 1 })],
        &[2],
        2 * 9,
        16,
        &NoProgress,
        "test",
    )
    .unwrap();
    let agree = (0..96)
        .filter(|&i| low.quantized[0][0][i] == low.fp[0][i])
        .count();
    assert!(agree < 96, "2-bit activations changed no prediction");
}

#[test]
fn an_infeasible_budget_is_an_error_not_a_fallback() {
    let cfg = RunConfig::default().set("data.test_limit=8").unwrap();
    let data = RunData::open(&cfg.data).unwrap();
    let w = Network::new("resnet_tiny", 10, 4, &Device::Cpu).unwrap();
    let frozen = w.frozen().unwrap();
    let loader = data.test_loader(8, &Device::Cpu).unwrap();
    let err = evaluate_cross(
        &loader,
        &[("W", frozen.classifier())],
        &[("random", EvalPolicy::Random { seed: 1 })],
        &[3, 4],
        3 * 9 - 1,
        16,
        &NoProgress,
        "test",
    );
    assert!(err.is_err());
}
