//! Presets, overrides, the experiment grid, and the run directory's files.

use std::collections::BTreeMap;

use candle_core::{Device, Tensor};
use dptq_distill::{CheckpointState, Experiment, RunConfig, RunDir, stream_rng};
use rand::Rng;

#[test]
fn tiny_preset_is_the_default_and_survives_a_toml_round_trip() {
    let cfg = RunConfig::default();
    assert_eq!(cfg.preset, "tiny");
    assert_eq!(cfg.data.spec, "embedded");
    assert_eq!(cfg.device, "cpu");
    let again = RunConfig::from_toml(&cfg.to_toml().unwrap()).unwrap();
    assert_eq!(cfg, again);
}

#[test]
fn tiny_preset_trains_options_three_to_ten_at_budget_36_for_nine_layers() {
    let cfg = RunConfig::preset("tiny").unwrap();
    let exps = cfg.experiments_for("resnet_tiny", 9).unwrap();
    assert_eq!(exps.len(), 1);
    assert_eq!(exps[0].options, (3..=10).collect::<Vec<u32>>());
    assert_eq!(exps[0].budget, 36);
    assert!(exps[0].budget_feasible());
}

#[test]
fn paper_preset_grid_has_three_versions_times_three_budgets_with_the_paper_adjustments() {
    let cfg = RunConfig::preset("paper").unwrap();
    assert_eq!(cfg.white_box.students.len(), 3);
    assert_eq!(cfg.white_box.batch_size_for["mobilenetv4_conv_medium"], 64);
    let exps = cfg.experiments_for("resnet18", 20).unwrap();
    let budgets: Vec<(String, u32)> = exps
        .iter()
        .map(|e| (format!("{}-{}", e.version, e.budget_level), e.budget))
        .collect();
    let want = [
        ("I-A", 80),
        ("I-B", 110),
        ("I-C", 140),
        ("II-A", 100),
        ("II-B", 130),
        ("II-C", 160),
        ("III-A", 100),
        ("III-B", 130),
        ("III-C", 160),
    ];
    for ((name, b), (wn, wb)) in budgets.iter().zip(want) {
        assert_eq!((name.as_str(), *b), (wn, wb));
    }
    // RegNetX gets +80 in versions II and III.
    let rx = cfg.experiments_for("regnetx_016", 10).unwrap();
    assert_eq!(rx[0].budget, 40);
    assert_eq!(rx[3].budget, 40 + 80);
}

#[test]
fn overrides_change_one_field_and_reject_unknown_keys_and_wrong_types() {
    let cfg = RunConfig::default();
    let c2 = cfg.set("pairs.train.epochs=7").unwrap();
    assert_eq!(c2.pairs.train.epochs, 7);
    assert_eq!(c2.teacher, cfg.teacher);
    let c3 = c2.set("data.spec=idx:/tmp/mnist").unwrap();
    assert_eq!(c3.data.spec, "idx:/tmp/mnist");
    let c4 = c3.set("pairs.profits=\"softmax\"").unwrap();
    assert_eq!(c4.pairs.profits, dptq_distill::Profits::Softmax);
    let c5 = c4.set("white_box.batch_size_for.resnet_tiny=32").unwrap();
    assert_eq!(c5.white_box.batch_size_for["resnet_tiny"], 32);
    let c6 = cfg
        .set("pairs.train.optimizer.weight_decay=0.0005")
        .unwrap();
    assert!(matches!(
        c6.pairs.train.optimizer,
        dptq_distill::OptimizerConfig::Sgd { weight_decay, .. } if weight_decay == 0.0005
    ));

    let err = cfg.set("pairs.epochs=3").unwrap_err().to_string();
    assert!(err.contains("pairs.epochs"), "{err}");
    assert!(cfg.set("pairs.margin=\"wide\"").is_err());
    assert!(cfg.set("pairs.margin").is_err());
    assert!(cfg.set("pairs.train.batch_size=0").is_err());
    assert!(
        cfg.set("pairs.bit_versions=[{name=\"I\", options=[5, 4]}]")
            .is_err()
    );
}

#[test]
fn switching_the_optimizer_kind_replaces_its_whole_table() {
    let cfg = RunConfig::default();
    let adamw = "{kind=\"adamw\", beta1=0.9, beta2=0.999, eps=1e-8, weight_decay=0.05}";
    let c = cfg
        .set(&format!("white_box.train.optimizer={adamw}"))
        .unwrap();
    assert_eq!(
        c.white_box.train.optimizer,
        dptq_distill::OptimizerConfig::adamw(0.05)
    );
    let c = cfg
        .merge_toml(
            "[pairs.train.optimizer]\nkind = \"adamw\"\nbeta1 = 0.9\nbeta2 = 0.999\neps = 1e-8\nweight_decay = 0.01\n",
            "f.toml",
        )
        .unwrap();
    assert_eq!(
        c.pairs.train.optimizer,
        dptq_distill::OptimizerConfig::adamw(0.01)
    );
    // A partial table of the same kind still merges field by field.
    let c = cfg
        .merge_toml("[pairs.train.optimizer]\nweight_decay = 0.0\n", "f.toml")
        .unwrap();
    assert_eq!(
        c.pairs.train.optimizer,
        dptq_distill::OptimizerConfig::Sgd {
            momentum: 0.9,
            weight_decay: 0.0
        }
    );
}

#[test]
fn a_toml_file_overrides_only_the_fields_it_names() {
    let cfg = RunConfig::default();
    let merged = cfg
        .merge_toml("seed = 3\n[pairs.train]\nepochs = 9\n", "test.toml")
        .unwrap();
    assert_eq!(merged.seed, 3);
    assert_eq!(merged.pairs.train.epochs, 9);
    assert_eq!(merged.pairs.train.lr, cfg.pairs.train.lr);
    let err = cfg
        .merge_toml("[pairs]\nmargn = 0.2\n", "typo.toml")
        .unwrap_err()
        .to_string();
    assert!(err.contains("typo.toml") && err.contains("margn"), "{err}");
    assert!(RunConfig::preset("huge").is_err());
}

#[test]
fn budget_feasibility_is_exact_reachability_not_just_the_range() {
    let e = |options: Vec<u32>, budget| Experiment {
        student: "s".into(),
        version: "v".into(),
        options,
        budget_level: "b".into(),
        budget,
        num_layers: 3,
    };
    assert!(e(vec![3, 4, 5], 9).budget_feasible());
    assert!(e(vec![3, 4, 5], 15).budget_feasible());
    assert!(!e(vec![3, 4, 5], 8).budget_feasible());
    assert!(!e(vec![3, 4, 5], 16).budget_feasible());
    // {4, 8}: sums of three are multiples of 4 between 12 and 24.
    assert!(e(vec![4, 8], 20).budget_feasible());
    assert!(!e(vec![4, 8], 18).budget_feasible());
}

#[test]
fn checkpoints_are_complete_before_latest_names_them_and_replace_older_ones() {
    let tmp = tempfile::tempdir().unwrap();
    let run = RunDir::create(tmp.path().join("run")).unwrap();
    let mut model = BTreeMap::new();
    model.insert(
        "fc.weight".to_string(),
        Tensor::new(&[[1f32, 2.0]], &Device::Cpu).unwrap(),
    );
    model.insert(
        "bn1.running_var".to_string(),
        Tensor::new(&[3f32], &Device::Cpu).unwrap(),
    );
    let state = |step| CheckpointState {
        stage: "white_box/resnet_tiny".into(),
        epoch: 1,
        step,
        done: false,
        seed: 5,
        extra: serde_json::json!({"loss": 0.5}),
    };
    assert!(
        run.load_checkpoint("white_box/resnet_tiny", &Device::Cpu)
            .unwrap()
            .is_none()
    );
    run.save_checkpoint(&state(10), &[("model", &model)])
        .unwrap();
    model.insert(
        "fc.weight".to_string(),
        Tensor::new(&[[7f32, 8.0]], &Device::Cpu).unwrap(),
    );
    let dir = run
        .save_checkpoint(&state(20), &[("model", &model)])
        .unwrap();
    assert!(dir.ends_with("step-000000020"));
    let (loaded_state, parts) = run
        .load_checkpoint("white_box/resnet_tiny", &Device::Cpu)
        .unwrap()
        .unwrap();
    assert_eq!(loaded_state, state(20));
    let w = parts["model"]["fc.weight"].to_vec2::<f32>().unwrap();
    assert_eq!(w, vec![vec![7.0, 8.0]]);
    assert!(!dir.parent().unwrap().join("step-000000010").exists());
    // No temporary files are left behind.
    for entry in std::fs::read_dir(dir.parent().unwrap()).unwrap() {
        let name = entry.unwrap().file_name().to_string_lossy().into_owned();
        assert!(!name.contains("tmp"), "left over {name}");
    }
}

#[test]
fn metrics_log_appends_lines_and_drops_records_after_a_resume_point() {
    let tmp = tempfile::tempdir().unwrap();
    let run = RunDir::create(tmp.path()).unwrap();
    let log = run.metrics();
    for step in 0..5u64 {
        log.append(&serde_json::json!({"stage": "teacher", "step": step}))
            .unwrap();
    }
    // A line cut by a kill is ignored.
    std::fs::OpenOptions::new()
        .append(true)
        .open(log.path())
        .and_then(|mut f| std::io::Write::write_all(&mut f, b"{\"stage\": \"tea"))
        .unwrap();
    assert_eq!(log.read().unwrap().len(), 5);
    log.retain(|r| r["step"].as_u64().unwrap() <= 2).unwrap();
    let steps: Vec<u64> = log
        .read()
        .unwrap()
        .iter()
        .map(|r| r["step"].as_u64().unwrap())
        .collect();
    assert_eq!(steps, vec![0, 1, 2]);
}

#[test]
fn stream_generators_depend_on_every_coordinate_and_repeat_exactly() {
    let draw = |seed, stream, epoch, step| stream_rng(seed, stream, epoch, step).random::<u64>();
    assert_eq!(draw(1, "mixup", 2, 3), draw(1, "mixup", 2, 3));
    let base = draw(1, "mixup", 2, 3);
    for other in [
        draw(2, "mixup", 2, 3),
        draw(1, "policy", 2, 3),
        draw(1, "mixup", 3, 3),
        draw(1, "mixup", 2, 4),
    ] {
        assert_ne!(base, other);
    }
}
