//! Optimizers against PyTorch (`golden/make_golden.py` wrote `golden/optimizers.json`:
//! `torch.optim.SGD(momentum=0.9, weight_decay=1e-4)` and
//! `torch.optim.AdamW(betas=(0.9, 0.999), eps=1e-8, weight_decay=0.05)`, three steps
//! with fixed gradients and learning rates 0.1, 0.05, 0.02) and the schedule against
//! its closed form.

use std::collections::BTreeMap;

use candle_core::{Device, Tensor, Var, backprop::GradStore};
use dptq_distill::{CosineSchedule, Optimizer, OptimizerConfig};
use serde_json::Value;

fn golden() -> Value {
    serde_json::from_str(include_str!("golden/optimizers.json")).unwrap()
}

fn tensor(v: &Value) -> Tensor {
    match &v[0] {
        Value::Array(_) => {
            let rows: Vec<Vec<f32>> = serde_json::from_value(v.clone()).unwrap();
            let (n, c) = (rows.len(), rows[0].len());
            Tensor::from_vec(rows.concat(), (n, c), &Device::Cpu).unwrap()
        }
        _ => {
            let xs: Vec<f32> = serde_json::from_value(v.clone()).unwrap();
            Tensor::from_vec(xs.clone(), xs.len(), &Device::Cpu).unwrap()
        }
    }
}

/// A `GradStore` holding exactly `grad` for each var: the gradient of `Σ var · grad`.
fn grads_of(pairs: &[(&Var, Tensor)]) -> GradStore {
    let mut total: Option<Tensor> = None;
    for (var, grad) in pairs {
        let term = (var.as_tensor() * grad).unwrap().sum_all().unwrap();
        total = Some(match total {
            Some(t) => (t + term).unwrap(),
            None => term,
        });
    }
    total.unwrap().backward().unwrap()
}

fn max_diff(a: &Tensor, b: &Tensor) -> f32 {
    (a - b)
        .unwrap()
        .abs()
        .unwrap()
        .flatten_all()
        .unwrap()
        .max(0)
        .unwrap()
        .to_scalar::<f32>()
        .unwrap()
}

/// Runs the three golden steps; a `running_mean` buffer has no gradient throughout.
fn run_three_steps(config: OptimizerConfig, key: &str) {
    let g = golden();
    let w = Var::from_tensor(&tensor(&g["w0"])).unwrap();
    let b = Var::from_tensor(&tensor(&g["b0"])).unwrap();
    let running_mean =
        Var::from_tensor(&Tensor::new(&[0.5f32, -0.5], &Device::Cpu).unwrap()).unwrap();
    // The parameter list is in an arbitrary order: state is keyed by name, not position.
    let params = [
        ("layer1.bn.running_mean".to_string(), running_mean.clone()),
        ("fc.weight".to_string(), w.clone()),
        ("fc.bias".to_string(), b.clone()),
    ];
    let mut opt = Optimizer::new(config).unwrap();
    for step in 0..3 {
        let grads = grads_of(&[
            (&w, tensor(&g["grads"][step][0])),
            (&b, tensor(&g["grads"][step][1])),
        ]);
        let lr = g["lrs"][step].as_f64().unwrap();
        let updated = opt
            .step(params.iter().map(|(n, v)| (n.as_str(), v)), &grads, lr)
            .unwrap();
        assert_eq!(updated, 2);
        let want_w = tensor(&g[key][step][0]);
        let want_b = tensor(&g[key][step][1]);
        assert!(
            max_diff(w.as_tensor(), &want_w) < 1e-6,
            "{key} step {step}: weight"
        );
        assert!(
            max_diff(b.as_tensor(), &want_b) < 1e-6,
            "{key} step {step}: bias"
        );
    }
    assert_eq!(
        running_mean.as_tensor().to_vec1::<f32>().unwrap(),
        vec![0.5, -0.5]
    );
    assert!(opt.state().keys().all(|k| !k.contains("running_mean")));
}

#[test]
fn sgd_with_momentum_and_weight_decay_matches_pytorch() {
    run_three_steps(
        OptimizerConfig::Sgd {
            momentum: 0.9,
            weight_decay: 1e-4,
        },
        "sgd",
    );
}

#[test]
fn adamw_matches_pytorch() {
    run_three_steps(OptimizerConfig::adamw(0.05), "adamw");
}

#[test]
fn optimizer_state_round_trip_continues_identically() {
    // Two steps, save state, restore into a fresh optimizer, third step: same as three
    // steps in one go.
    for config in [OptimizerConfig::default(), OptimizerConfig::adamw(0.05)] {
        let g = golden();
        let run = |split: bool| {
            let w = Var::from_tensor(&tensor(&g["w0"])).unwrap();
            let mut opt = Optimizer::new(config.clone()).unwrap();
            for step in 0..3 {
                if split && step == 2 {
                    let saved: BTreeMap<String, Tensor> = opt.state().clone();
                    opt = Optimizer::new(config.clone()).unwrap();
                    opt.load_state(saved, &Device::Cpu).unwrap();
                }
                let grads = grads_of(&[(&w, tensor(&g["grads"][step][0]))]);
                opt.step([("w", &w)], &grads, 0.1).unwrap();
            }
            w.as_tensor()
                .flatten_all()
                .unwrap()
                .to_vec1::<f32>()
                .unwrap()
        };
        assert_eq!(run(false), run(true));
    }
}

#[test]
fn optimizer_rejects_foreign_state_and_bad_hyper_parameters() {
    let mut sgd = Optimizer::new(OptimizerConfig::default()).unwrap();
    let mut state = BTreeMap::new();
    state.insert(
        "exp_avg/w".to_string(),
        Tensor::new(&[1f32], &Device::Cpu).unwrap(),
    );
    assert!(sgd.load_state(state, &Device::Cpu).is_err());
    assert!(
        Optimizer::new(OptimizerConfig::Sgd {
            momentum: 1.5,
            weight_decay: 0.0
        })
        .is_err()
    );
    let w = Var::new(&[1f32], &Device::Cpu).unwrap();
    assert!(
        sgd.step(
            [("w", &w)],
            &grads_of(&[(&w, Tensor::new(&[1f32], &Device::Cpu).unwrap())]),
            f64::NAN
        )
        .is_err()
    );
}

#[test]
fn cosine_schedule_follows_half_period_cosine_after_linear_warmup() {
    let s = CosineSchedule::new(0.1, 100).with_warmup(10);
    assert!((s.lr(0) - 0.01).abs() < 1e-12);
    assert!((s.lr(9) - 0.1).abs() < 1e-12);
    assert!((s.lr(10) - 0.1).abs() < 1e-12);
    // Half-way through the cosine part: half the peak.
    assert!((s.lr(55) - 0.05).abs() < 1e-12);
    let u: f64 = 30.0 / 90.0;
    let want = 0.05 * (1.0 + (std::f64::consts::PI * u).cos());
    assert!((s.lr(40) - want).abs() < 1e-12);
    // Monotone after the warm-up, ending above final_lr.
    for t in 10..99 {
        assert!(s.lr(t + 1) <= s.lr(t));
    }
    assert!(s.lr(99) > 0.0);
    let with_floor = CosineSchedule {
        final_lr: 1e-3,
        ..CosineSchedule::new(0.1, 10)
    };
    assert!((with_floor.lr(10) - 1e-3).abs() < 1e-12);
}
