//! Stage 2's gradient routing and BatchNorm rule (SPEC §4), on resnet_tiny with random
//! weights and random images.

use candle_core::{Device, Tensor, backprop::GradStore};
use dptq_distill::{
    BlackBox, Network, PairSettings, PairTrainer, RunConfig, StepTimes, pair_losses,
};
use dptq_models::{BnMode, ParamStore};

fn setup() -> (Network, RunConfig, Tensor) {
    let w = Network::new("resnet_tiny", 10, 7, &Device::Cpu).unwrap();
    // resnet_tiny zero-initialises the last BatchNorm of each block (timm's
    // zero_init_last); give every gamma a value so that every weight has a path to the loss.
    let mut tensors = w.tensors();
    for (name, t) in tensors.iter_mut() {
        *t = if name.ends_with("bn2.weight") {
            (t.ones_like().unwrap() * 0.5).unwrap()
        } else {
            t.copy().unwrap()
        };
    }
    w.set_tensors(&tensors, "test").unwrap();
    let cfg = RunConfig::default();
    let images = Tensor::randn(0f32, 1.0, (8, 3, 28, 28), &Device::Cpu).unwrap();
    (w, cfg, images)
}

fn settings(cfg: &RunConfig) -> PairSettings {
    let exp = &cfg.experiments_for("resnet_tiny", 9).unwrap()[0];
    PairSettings::new(&cfg.pairs, exp)
}

fn has_grad(grads: &GradStore, store: &ParamStore) -> (usize, usize, Vec<String>) {
    let vars = store.trainable_vars();
    let mut with = 0;
    let mut nonzero = 0;
    let mut missing = Vec::new();
    for (name, v) in &vars {
        match grads.get(v.as_tensor()) {
            Some(g) => {
                with += 1;
                let norm = g
                    .abs()
                    .unwrap()
                    .sum_all()
                    .unwrap()
                    .to_scalar::<f32>()
                    .unwrap();
                assert!(norm.is_finite(), "{name}: gradient not finite");
                if norm > 0.0 {
                    nonzero += 1;
                }
            }
            None => missing.push(name.clone()),
        }
    }
    (with, nonzero, missing)
}

#[test]
fn every_student_and_policy_weight_gets_a_gradient_and_kd_alone_gives_the_policy_none() {
    let (w, cfg, images) = setup();
    let teacher = w.frozen().unwrap();
    let trainer = PairTrainer::new(&teacher, &w, &cfg.pairs, settings(&cfg), None, 3).unwrap();
    let t = teacher.logits(&images).unwrap();
    for pair in &trainer.pairs {
        let s = settings(&cfg);
        let losses = pair_losses(pair, &images, &t, &s, &mut StepTimes::default()).unwrap();
        // The hinge is active on a fresh pair (the margin is not met yet).
        assert!(losses.hinge.to_scalar::<f32>().unwrap() > 0.0);

        let total = (&losses.kd + &losses.hinge).unwrap();
        let grads = total.backward().unwrap();
        let n_student = pair.net.store.trainable_vars().len();
        let (with, nonzero, missing) = has_grad(&grads, &pair.net.store);
        assert_eq!(
            (with, missing.len()),
            (n_student, 0),
            "{:?}: student missing {missing:?}",
            pair.kind
        );
        assert_eq!(
            nonzero, n_student,
            "{:?}: some student gradient is zero",
            pair.kind
        );
        let n_policy = pair.policy.store.trainable_vars().len();
        let (with, nonzero, missing) = has_grad(&grads, &pair.policy.store);
        assert_eq!(
            (with, missing.len()),
            (n_policy, 0),
            "{:?}: policy missing {missing:?}",
            pair.kind
        );
        assert_eq!(
            nonzero, n_policy,
            "{:?}: some policy gradient is zero",
            pair.kind
        );

        // KD alone: the student learns, the policy gets nothing.
        let grads = losses.kd.backward().unwrap();
        let (with, _, _) = has_grad(&grads, &pair.policy.store);
        assert_eq!(with, 0, "{:?}: the KD term reached the policy", pair.kind);
        let (with, _, _) = has_grad(&grads, &pair.net.store);
        assert_eq!(with, n_student);

        // The hinge alone reaches the policy.
        let grads = losses.hinge.backward().unwrap();
        let (_, nonzero, _) = has_grad(&grads, &pair.policy.store);
        assert_eq!(nonzero, n_policy);
    }
}

#[test]
fn only_the_full_precision_pass_updates_the_running_statistics() {
    let (w, cfg, images) = setup();
    let teacher = w.frozen().unwrap();
    let trainer = PairTrainer::new(&teacher, &w, &cfg.pairs, settings(&cfg), None, 3).unwrap();
    let t = teacher.logits(&images).unwrap();
    // Reference: one full-precision training pass on a copy of W.
    let reference = w.deep_clone().unwrap();
    reference.model.forward_fp(&images, BnMode::Train).unwrap();
    let want = reference.store.buffers();

    let pair = &trainer.pairs[1];
    pair_losses(
        pair,
        &images,
        &t,
        &settings(&cfg),
        &mut StepTimes::default(),
    )
    .unwrap();
    let got = pair.net.store.buffers();
    assert_eq!(want.len(), got.len());
    let before = w.store.buffers();
    let mut moved = 0;
    for (((name, a), (_, b)), (_, w0)) in want.iter().zip(&got).zip(&before) {
        let a = a
            .as_tensor()
            .flatten_all()
            .unwrap()
            .to_vec1::<f32>()
            .unwrap();
        let b = b
            .as_tensor()
            .flatten_all()
            .unwrap()
            .to_vec1::<f32>()
            .unwrap();
        assert_eq!(a, b, "{name}: running statistic differs from one FP pass");
        if b != w0
            .as_tensor()
            .flatten_all()
            .unwrap()
            .to_vec1::<f32>()
            .unwrap()
        {
            moved += 1;
        }
    }
    assert!(moved > 0, "the FP pass must update the running statistics");

    // With the quantized pass updating them too, they end elsewhere.
    let cfg2 = cfg.set("pairs.quantized_pass_bn=\"update_stats\"").unwrap();
    let s2 = PairSettings::new(
        &cfg2.pairs,
        &cfg2.experiments_for("resnet_tiny", 9).unwrap()[0],
    );
    let trainer2 = PairTrainer::new(&teacher, &w, &cfg2.pairs, s2.clone(), None, 3).unwrap();
    pair_losses(
        &trainer2.pairs[1],
        &images,
        &t,
        &s2,
        &mut StepTimes::default(),
    )
    .unwrap();
    let differs = want
        .iter()
        .zip(trainer2.pairs[1].net.store.buffers())
        .any(|((_, a), (_, b))| {
            a.as_tensor()
                .flatten_all()
                .unwrap()
                .to_vec1::<f32>()
                .unwrap()
                != b.as_tensor()
                    .flatten_all()
                    .unwrap()
                    .to_vec1::<f32>()
                    .unwrap()
        });
    assert!(differs);
}

#[test]
fn every_training_example_costs_exactly_the_budget() {
    let (w, cfg, images) = setup();
    let teacher = w.frozen().unwrap();
    let trainer = PairTrainer::new(&teacher, &w, &cfg.pairs, settings(&cfg), None, 3).unwrap();
    let t = teacher.logits(&images).unwrap();
    for pair in &trainer.pairs {
        let losses = pair_losses(
            pair,
            &images,
            &t,
            &settings(&cfg),
            &mut StepTimes::default(),
        )
        .unwrap();
        let rows = losses.bits.to_vec2::<u32>().unwrap();
        assert_eq!(rows.len(), 8);
        for r in rows {
            assert_eq!(r.len(), 9);
            assert_eq!(r.iter().sum::<u32>(), 36);
            assert!(r.iter().all(|b| (3..=10).contains(b)));
        }
    }
}

#[test]
fn the_black_box_returns_detached_logits_of_the_frozen_weights() {
    let (w, _, images) = setup();
    let bb = w.frozen().unwrap();
    let a = bb.logits(&images).unwrap();
    let b = w.model.forward_fp(&images, BnMode::Eval).unwrap();
    assert_eq!(a.dims(), &[8, 10]);
    let diff = (a.clone() - b)
        .unwrap()
        .abs()
        .unwrap()
        .max_all()
        .unwrap()
        .to_scalar::<f32>()
        .unwrap();
    assert_eq!(diff, 0.0);
    // No variable of W is reachable from the black box's output.
    let grads = a.sum_all().unwrap().backward().unwrap();
    for (_, v) in w.store.trainable_vars() {
        assert!(grads.get(v.as_tensor()).is_none());
    }
}
