//! The analyses on real artefacts: a run of the `smoke` preset (the tiny preset cut to
//! 320 training / 200 test images, one epoch per stage) is produced once by
//! `dptq_distill::reproduce` and
//! every test reads it. Accuracies of so short a run are low; these tests check the
//! identities, shapes and bookkeeping the analyses must satisfy whatever the accuracy.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use candle_core::Device;
use dptq_analysis::{
    AnalysisOptions, AnalysisPart, AuditConfig, Bits, CorruptConfig, EvalCache, EvalSet,
    HistConfig, ModelSource, RunArtefacts, SweepKind, accuracy_pct, activation_histograms,
    analyze_run, argmax_rows, corruption_robustness, evaluate, percentile_mitigation,
    policy_dynamics, run_audit, run_sweeps, sweep_mask, write_audit,
};
use dptq_data::{CorruptionKind, Transform};
use dptq_distill::{EvalPolicy, NoProgress, RunConfig, balanced_subset, reproduce};
use dptq_models::{ActivationCapture, BnMode, QuantPlan};
use dptq_quant::RangeMode;

/// The micro run, produced once per test binary.
fn micro_run() -> &'static Path {
    static RUN: OnceLock<(tempfile::TempDir, PathBuf)> = OnceLock::new();
    let (_, path) = RUN.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("run");
        let cfg = RunConfig::preset("smoke").unwrap();
        reproduce(&cfg, &out, false, &NoProgress).unwrap();
        (dir, out)
    });
    path
}

fn open() -> RunArtefacts {
    RunArtefacts::open(micro_run(), None).unwrap()
}

fn test_set(run: &RunArtefacts, n: usize, batch: usize) -> EvalSet {
    let subset = balanced_subset(&run.data.dataset.test, n, usize::MAX);
    let loader = run.data.eval_loader(&subset, batch, &Device::Cpu).unwrap();
    EvalSet::from_loader("test", &loader).unwrap()
}

#[test]
fn sweep_end_points_are_exactly_the_all_fp_and_all_quantized_passes() {
    let run = open();
    let experiment = run.experiments().unwrap().remove(0);
    let models = run.load(&experiment).unwrap();
    let set = test_set(&run, 60, 25); // uneven last batch on purpose
    let d = models.d.classifier();
    let l = models.layers.len();
    let bits = Bits::Policy {
        policy: EvalPolicy::Trained {
            net: &models.pi_d,
            profits: models.profits,
        },
        options: &experiment.options,
        budget: experiment.budget,
    };
    let sweeps = run_sweeps(d, "D", "pi_D", &bits, Some(16), &[&set]).unwrap();
    assert_eq!(
        sweeps
            .curve(SweepKind::Before, "test")
            .unwrap()
            .points
            .len(),
        l + 1
    );
    assert_eq!(
        sweeps.curve(SweepKind::After, "test").unwrap().points.len(),
        l + 1
    );
    assert_eq!(
        sweeps
            .curve(SweepKind::Single, "test")
            .unwrap()
            .points
            .len(),
        l
    );

    // All activations FP (16-bit weights), computed without any mask.
    let mut preds = Vec::new();
    for b in &set.batches {
        let plan = QuantPlan {
            weight_bits: Some(16),
            ..QuantPlan::full_precision()
        };
        preds.extend(
            argmax_rows(&d.forward(&b.images, &plan, BnMode::Eval, None).unwrap()).unwrap(),
        );
    }
    let all_fp = accuracy_pct(&preds, &set.labels());
    // All layers quantized by the policy, without any mask.
    let all_q = evaluate(d, &set, &bits, Some(16), None, RangeMode::MinMax)
        .unwrap()
        .accuracy();
    assert_eq!(sweeps.at(SweepKind::Before, 0, "test"), Some(all_fp));
    assert_eq!(sweeps.at(SweepKind::After, l, "test"), Some(all_fp));
    assert_eq!(sweeps.at(SweepKind::Before, l, "test"), Some(all_q));
    assert_eq!(sweeps.at(SweepKind::After, 0, "test"), Some(all_q));

    // Every point equals a pass with its own mask (no sharing of passes between points).
    for kind in SweepKind::ALL {
        for at in kind.points(l) {
            let mask = sweep_mask(kind, at, l).unwrap();
            let own = evaluate(d, &set, &bits, Some(16), Some(&mask), RangeMode::MinMax)
                .unwrap()
                .accuracy();
            assert_eq!(sweeps.at(kind, at, "test"), Some(own), "{kind:?} at {at}");
        }
    }

    // With full-precision weights and a fixed width, before(0) is the FP network itself.
    let fixed = run_sweeps(d, "D", "3 bits", &Bits::Uniform(3), None, &[&set]).unwrap();
    let fp = evaluate(d, &set, &Bits::FullPrecision, None, None, RangeMode::MinMax)
        .unwrap()
        .accuracy();
    assert_eq!(fixed.all_fp("test"), Some(fp));
    let q3 = evaluate(d, &set, &Bits::Uniform(3), None, None, RangeMode::MinMax)
        .unwrap()
        .accuracy();
    assert_eq!(fixed.all_quantized("test"), Some(q3));
}

#[test]
fn histograms_count_every_activation_of_every_layer_once_per_pass() {
    let run = open();
    let experiment = run.experiments().unwrap().remove(0);
    let models = run.load(&experiment).unwrap();
    let set = test_set(&run, 40, 16);
    let r = models.r.classifier();
    let bits = Bits::Policy {
        policy: EvalPolicy::Trained {
            net: &models.pi_r,
            profits: models.profits,
        },
        options: &experiment.options,
        budget: experiment.budget,
    };
    let cfg = HistConfig {
        examples: 30,
        ..Default::default()
    };
    let h = activation_histograms(r, "R", "pi_R", &bits, Some(16), &set, &cfg).unwrap();
    assert_eq!(h.examples, 30);
    assert_eq!(h.layers.len(), models.layers.len());
    // Values per example of each layer's input, from one captured pass.
    let mut capture = ActivationCapture::all();
    let one = set.batches[0].images.narrow(0, 0, 1).unwrap();
    r.forward(
        &one,
        &QuantPlan::full_precision(),
        BnMode::Eval,
        Some(&mut capture),
    )
    .unwrap();
    for (lh, rec) in h.layers.iter().zip(capture.iter()) {
        let per_example = rec.fp.elem_count() as u64;
        assert_eq!(lh.fp.total(), 30 * per_example, "layer {}", lh.name);
        assert_eq!(lh.quantized.total(), 30 * per_example, "layer {}", lh.name);
        assert_eq!(lh.fp.non_finite, 0);
        let s = lh.quantized.sparsity();
        assert!((0.0..=1.0).contains(&s));
        let kept: f64 = lh.fp.without_zero_bin().iter().sum();
        assert!(kept == 0.0 || (kept - 1.0).abs() < 1e-9);
    }
}

#[test]
fn corruption_degrees_increase_and_degree_zero_is_the_clean_accuracy() {
    let run = open();
    let experiment = run.experiments().unwrap().remove(0);
    let models = run.load(&experiment).unwrap();
    let split = balanced_subset(&run.data.dataset.test, 50, usize::MAX);
    let Transform::Eval(eval) = run.data.eval_pipeline.transform else {
        panic!("evaluation transform expected")
    };
    let cfg = CorruptConfig {
        kinds: vec![CorruptionKind::GaussianNoise, CorruptionKind::Rotation],
        degrees: vec![0.0, 2.0, 5.0],
        seeds: 2,
        examples: 50,
    };
    let nets = models.networks();
    let c = corruption_robustness(
        &nets,
        &split,
        eval,
        run.data.eval_pipeline.normalize,
        &cfg,
        7,
        32,
        &Device::Cpu,
    )
    .unwrap();
    assert_eq!(c.curves.len(), 2 * 3);
    let clean_set = {
        let loader = run.data.eval_loader(&split, 32, &Device::Cpu).unwrap();
        EvalSet::from_loader("test", &loader).unwrap()
    };
    for curve in &c.curves {
        let degrees: Vec<f32> = curve.points.iter().map(|p| p.degree).collect();
        assert_eq!(degrees, cfg.degrees);
        assert!(degrees.windows(2).all(|w| w[0] < w[1]));
        assert_eq!(curve.points[0].summary.n, 1);
        assert!(
            curve.points[1..]
                .iter()
                .all(|p| p.summary.n == 2 && p.accuracies.len() == 2)
        );
        let (_, model) = nets.iter().find(|(n, _)| *n == curve.network).unwrap();
        let clean = evaluate(
            *model,
            &clean_set,
            &Bits::FullPrecision,
            None,
            None,
            RangeMode::MinMax,
        )
        .unwrap();
        assert_eq!(
            curve.points[0].summary.mean,
            clean.accuracy(),
            "{}",
            curve.network
        );
    }
    // Same seeds, same numbers.
    let again = corruption_robustness(
        &nets,
        &split,
        eval,
        run.data.eval_pipeline.normalize,
        &cfg,
        7,
        50,
        &Device::Cpu,
    )
    .unwrap();
    assert_eq!(again, c);
}

#[test]
fn percentile_100_scales_recover_nothing_because_they_are_min_max() {
    let run = open();
    let experiment = run.experiments().unwrap().remove(0);
    let models = run.load(&experiment).unwrap();
    let set = test_set(&run, 40, 20);
    let bits = Bits::Policy {
        policy: EvalPolicy::Trained {
            net: &models.pi_d,
            profits: models.profits,
        },
        options: &experiment.options,
        budget: experiment.budget,
    };
    let mut cache = EvalCache::new(&set);
    let m = percentile_mitigation(
        models.d.classifier(),
        "D",
        "pi_D",
        &bits,
        Some(16),
        &mut cache,
        &[100.0, 99.0],
    )
    .unwrap();
    // FP, min/max and the two percentiles: four passes.
    assert_eq!(cache.passes(), 4);
    assert_eq!(m.rows.len(), 3);
    assert_eq!(m.rows[0].scale, "min-max");
    assert_eq!(m.rows[1].accuracy, m.rows[0].accuracy);
    assert!(
        percentile_mitigation(
            models.d.classifier(),
            "D",
            "pi_D",
            &bits,
            Some(16),
            &mut cache,
            &[40.0]
        )
        .is_err()
    );
}

#[test]
fn the_fixed_projection_costs_exactly_the_budget_and_counts_cover_every_example() {
    let run = open();
    let experiment = run.experiments().unwrap().remove(0);
    let models = run.load(&experiment).unwrap();
    let set = test_set(&run, 50, 20);
    let bits = Bits::Policy {
        policy: EvalPolicy::Trained {
            net: &models.pi_d,
            profits: models.profits,
        },
        options: &experiment.options,
        budget: experiment.budget,
    };
    let mut cache = EvalCache::new(&set);
    let d = policy_dynamics(
        models.d.classifier(),
        "D",
        "pi_D",
        &bits,
        Some(16),
        &mut cache,
    )
    .unwrap();
    // The dynamic and FP passes are shared with anything else that asks for them.
    let passes = cache.passes();
    let again = cache
        .get(
            models.d.classifier(),
            "D",
            "pi_D",
            &bits,
            Some(16),
            RangeMode::MinMax,
        )
        .unwrap();
    assert_eq!(again.accuracy(), d.accuracy_dynamic);
    assert_eq!(cache.passes(), passes);
    assert_eq!(d.fixed_allocation.iter().sum::<u32>(), experiment.budget);
    assert_eq!(d.on_budget, (50, 50));
    assert_eq!(d.counts.examples, 50);
    for row in &d.counts.counts {
        assert_eq!(row.iter().sum::<u64>(), 50);
    }
    let per_alloc: u64 = d.counts.allocations.iter().map(|(_, c)| c).sum();
    assert_eq!(per_alloc, 50);
    for (alloc, _) in &d.counts.allocations {
        assert_eq!(alloc.iter().sum::<u32>(), experiment.budget);
    }
}

fn read_csv(dir: &Path, name: &str) -> Vec<Vec<String>> {
    let text = std::fs::read_to_string(dir.join(format!("{name}.csv"))).unwrap();
    text.lines()
        .map(|l| l.split(',').map(str::to_string).collect())
        .collect()
}

#[test]
fn analyze_run_writes_every_table_in_shape_and_splices_the_report_once() {
    let run_dir = micro_run();
    let mut options = AnalysisOptions::default();
    options.sweep.train_examples = 40;
    options.sweep.test_examples = 40;
    options.hist.examples = 30;
    options.corrupt = CorruptConfig {
        kinds: vec![CorruptionKind::Jpeg, CorruptionKind::Contrast],
        degrees: vec![0.0, 1.0, 3.0],
        seeds: 2,
        examples: 40,
    };
    options.percentiles = vec![99.9, 99.0];
    let summary = analyze_run(run_dir, &options, &NoProgress).unwrap();
    let out = run_dir.join("analysis");
    assert_eq!(summary.out_dir, out);
    let run = open();
    let experiment = run.experiments().unwrap().remove(0);
    let tag = dptq_analysis::slug(&experiment.id());
    let l = experiment.num_layers;

    let t3 = read_csv(&out, &format!("table3_cross_{tag}"));
    assert_eq!(t3[0], ["network", "FP", "pi_R", "pi_D", "random"]);
    assert_eq!(t3.len(), 1 + 3);
    let sweeps = read_csv(&out, &format!("sweeps_{tag}"));
    assert_eq!(sweeps.len(), 1 + 2 * 2 * (3 * l + 2)); // D and R, train and test
    assert_eq!(read_csv(&out, &format!("sparsity_{tag}")).len(), 1 + 2 * l);
    assert_eq!(
        read_csv(&out, &format!("histograms_{tag}")).len(),
        1 + 2 * l * options.hist.bins
    );
    assert_eq!(
        read_csv(&out, &format!("corrupt_{tag}")).len(),
        1 + 2 * 3 * 3
    );
    assert_eq!(read_csv(&out, &format!("dynamics_{tag}")).len(), 1 + 2);
    assert_eq!(
        read_csv(&out, &format!("bit_choices_{tag}")).len(),
        1 + 2 * l
    );
    assert_eq!(
        read_csv(&out, &format!("mitigation_{tag}")).len(),
        1 + 2 * 3
    );
    assert_eq!(read_csv(&out, "table1_pairs").len(), 2);
    let t2 = read_csv(&out, "table2_transitory");
    assert_eq!(t2.len(), 2);
    assert_eq!(t2[0].len(), 4);
    assert_eq!(t2[1][0], experiment.id());
    // Top 5 layers of each swept network.
    assert_eq!(
        read_csv(&out, &format!("vulnerable_layers_{tag}")).len(),
        1 + 2 * 5
    );
    assert_eq!(
        read_csv(&out, &format!("transitory_classes_{tag}")).len(),
        1 + run.num_classes()
    );

    // Transitory points: recomputed over the whole test split, they match results.json.
    let e = &summary.experiments[0];
    let t = e.transitory.as_ref().unwrap();
    let reported = run.result_of(&experiment).unwrap();
    assert_eq!(t.examples, reported.test_examples);
    assert_eq!(t.reported_count, Some(t.indices.len()));
    assert_eq!(t.indices.len(), reported.transitory_count);
    assert_eq!(
        read_csv(&out, &format!("transitory_{tag}")).len(),
        1 + t.indices.len()
    );
    assert_eq!(e.cross.as_ref().unwrap(), &reported.cross);

    // Every figure exists as a decodable PNG and an SVG.
    assert_eq!(summary.figures.len(), 5); // sweeps, hist R, hist D, bit choices, corruptions
    for f in &summary.figures {
        let img = image::open(&f.png).unwrap();
        assert!(img.width() > 400 && img.height() > 200);
        assert!(std::fs::read_to_string(&f.svg).unwrap().contains("<svg"));
    }
    let html = std::fs::read_to_string(out.join("index.html")).unwrap();
    assert_eq!(html.matches("<svg").count(), summary.figures.len());
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&summary.json).unwrap()).unwrap();
    assert_eq!(json["experiments"][0]["budget"], experiment.budget);

    let report = std::fs::read_to_string(run_dir.join("report.md")).unwrap();
    assert_eq!(report.matches(dptq_analysis::BEGIN_MARKER).count(), 1);
    assert!(report.contains(&format!("analysis/fig2_sweeps_{tag}.png")));
    assert!(report.contains("Table 3"));

    // A second, partial analysis replaces the section instead of appending another.
    let partial = AnalysisOptions {
        parts: vec![AnalysisPart::Cross],
        ..Default::default()
    };
    analyze_run(run_dir, &partial, &NoProgress).unwrap();
    let report = std::fs::read_to_string(run_dir.join("report.md")).unwrap();
    assert_eq!(report.matches(dptq_analysis::BEGIN_MARKER).count(), 1);
    assert!(!report.contains("fig2_sweeps"));
    assert!(report.contains("Table 3"));
    // The pipeline's own tables are still there, above the section.
    assert!(report.find("Table 1").unwrap() < report.find(dptq_analysis::BEGIN_MARKER).unwrap());
}

#[test]
fn an_unknown_experiment_or_part_is_an_error_naming_the_choices() {
    let options = AnalysisOptions {
        experiments: vec!["resnet18/I-A".into()],
        parts: vec![AnalysisPart::Cross],
        update_report: false,
        out_dir: Some(tempfile::tempdir().unwrap().path().join("a")),
        ..Default::default()
    };
    let err = analyze_run(micro_run(), &options, &NoProgress)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("resnet18/I-A") && err.contains("resnet_tiny/I-A"),
        "{err}"
    );
    let err = "sweep".parse::<AnalysisPart>().unwrap_err().to_string();
    assert!(err.contains("sweeps"), "{err}");
}

#[test]
fn a_directory_that_is_not_a_run_names_the_missing_file() {
    let dir = tempfile::tempdir().unwrap();
    let err = analyze_run(dir.path(), &AnalysisOptions::default(), &NoProgress)
        .unwrap_err()
        .to_string();
    assert!(err.contains("config.toml"), "{err}");
}

#[test]
fn audit_of_the_white_box_finds_a_worst_case_with_every_example_on_budget() {
    let weights = micro_run()
        .join("white_box")
        .join("resnet_tiny.safetensors");
    let source = ModelSource::Local {
        weights,
        arch: "resnet_tiny".into(),
    };
    let config = AuditConfig {
        train_examples: 96,
        test_examples: 60,
        epochs: 1,
        batch_size: 32,
        sweep_train_examples: 30,
        sweep_test_examples: 30,
        eval_batch_size: 30,
        ..Default::default()
    };
    let result = run_audit(&source, &config, &NoProgress).unwrap();
    assert_eq!(result.layers.len(), 9);
    assert_eq!(result.budget, 36);
    assert_eq!(result.test_examples, 60);
    assert_eq!(result.on_budget, (3 * 60, 3 * 60)); // detrimental, random, robust
    assert_eq!(result.training.len(), 2);
    assert_eq!(result.training[0].1.len(), 96 / 32);
    assert!(
        (result.worst_case_drop - (result.accuracy_fp - result.accuracy_detrimental)).abs() < 1e-12
    );
    assert_eq!(
        result.severity,
        dptq_analysis::Severity::of(result.worst_case_drop)
    );
    assert!(
        result.verdict.starts_with(result.severity.label()),
        "{}",
        result.verdict
    );
    assert!(
        result.verdict.contains("exactly 36 bits per example"),
        "{}",
        result.verdict
    );
    assert_eq!(result.accuracy_uniform.map(|u| u.0), Some(4));
    assert_eq!(result.sweeps.layers.len(), 9);
    assert_eq!(result.dynamics[0].fixed_allocation.iter().sum::<u32>(), 36);

    let out = tempfile::tempdir().unwrap();
    let files = write_audit(&result, out.path()).unwrap();
    let back: dptq_analysis::AuditResult =
        serde_json::from_str(&std::fs::read_to_string(&files.json).unwrap()).unwrap();
    // (serde_json may round the last bit of a float: compare what a reader uses.)
    assert_eq!(back.verdict, result.verdict);
    assert_eq!(
        (back.budget, back.on_budget),
        (result.budget, result.on_budget)
    );
    assert!((back.accuracy_detrimental - result.accuracy_detrimental).abs() < 1e-9);
    assert_eq!(back.sweeps.curves.len(), result.sweeps.curves.len());
    let md = std::fs::read_to_string(&files.markdown).unwrap();
    assert!(md.contains(&result.verdict));
    assert!(md.contains("audit_sweeps.png"));
    assert_eq!(files.figures.len(), 3);
    assert!(
        std::fs::read_to_string(&files.html)
            .unwrap()
            .contains("<svg")
    );
}

#[test]
fn audit_refuses_missing_weights_and_weights_for_another_class_count() {
    let source = ModelSource::Local {
        weights: "/nonexistent/model.safetensors".into(),
        arch: "resnet_tiny".into(),
    };
    let err = run_audit(&source, &AuditConfig::default(), &NoProgress)
        .unwrap_err()
        .to_string();
    assert!(err.contains("/nonexistent/model.safetensors"), "{err}");
    let weights = micro_run()
        .join("white_box")
        .join("resnet_tiny.safetensors");
    let err = dptq_analysis::load_model(
        &ModelSource::Local {
            weights,
            arch: "resnet_tiny".into(),
        },
        7,
        &Device::Cpu,
    )
    .err()
    .unwrap()
    .to_string();
    assert!(
        err.contains("fc.weight") || err.contains("fc.bias"),
        "{err}"
    );
}

/// An HF-style hub cache holding the micro run's white box as `timm/resnet_tiny.fmnist`
/// (with the Fashion-MNIST preprocessing in its `config.json`), `num_classes` in the config.
fn hub_cache(dir: &Path, num_classes: usize) {
    let repo = dir.join("models--timm--resnet_tiny.fmnist");
    let snap = repo.join("snapshots").join("0123abcd");
    std::fs::create_dir_all(&snap).unwrap();
    std::fs::create_dir_all(repo.join("refs")).unwrap();
    // A trailing newline, as some writers leave it.
    std::fs::write(repo.join("refs").join("main"), "0123abcd\n").unwrap();
    std::fs::copy(
        micro_run()
            .join("white_box")
            .join("resnet_tiny.safetensors"),
        snap.join("model.safetensors"),
    )
    .unwrap();
    let config = serde_json::json!({
        "architecture": "resnet_tiny",
        "num_classes": num_classes,
        "pretrained_cfg": {
            "input_size": [3, 28, 28],
            "crop_pct": 1.0,
            "interpolation": "bilinear",
            "mean": [0.2860, 0.2860, 0.2860],
            "std": [0.3530, 0.3530, 0.3530]
        }
    });
    std::fs::write(snap.join("config.json"), config.to_string()).unwrap();
}

#[test]
fn audit_of_a_hub_model_reads_the_offline_cache_and_its_preprocessing() {
    let cache = tempfile::tempdir().unwrap();
    hub_cache(cache.path(), 10);
    let hub = ModelSource::Hub {
        id: "timm/resnet_tiny.fmnist".into(),
        cache_dir: Some(cache.path().to_path_buf()),
        offline: true,
    };
    let resolved = hub.resolve().unwrap();
    assert_eq!(resolved.arch, "resnet_tiny");
    assert_eq!(resolved.num_classes, Some(10));
    assert_eq!(
        resolved.pretrained.as_ref().unwrap().input_size,
        [3, 28, 28]
    );

    let config = AuditConfig {
        train_examples: 64,
        test_examples: 40,
        epochs: 1,
        batch_size: 32,
        robust_reference: false,
        sweep_train_examples: 20,
        sweep_test_examples: 20,
        eval_batch_size: 40,
        ..Default::default()
    };
    let via_hub = run_audit(&hub, &config, &NoProgress).unwrap();
    assert_eq!(via_hub.on_budget, (2 * 40, 2 * 40)); // detrimental and random
    assert!(via_hub.accuracy_robust.is_none());
    // The same weights from a local file, with the run's own preprocessing: the same FP
    // accuracy (the hub config carries the same statistics).
    let local = ModelSource::Local {
        weights: micro_run()
            .join("white_box")
            .join("resnet_tiny.safetensors"),
        arch: "resnet_tiny".into(),
    };
    let run = open();
    let set = test_set(&run, 40, 40);
    let model = dptq_analysis::load_model(&local, 10, &Device::Cpu).unwrap();
    let fp = evaluate(
        model.classifier(),
        &set,
        &Bits::FullPrecision,
        None,
        None,
        RangeMode::MinMax,
    )
    .unwrap();
    assert!(
        (fp.accuracy() - via_hub.accuracy_fp).abs() < 1e-9,
        "{} vs {}",
        fp.accuracy(),
        via_hub.accuracy_fp
    );

    // Offline and not cached: an error naming the repository.
    let missing = ModelSource::Hub {
        id: "timm/resnet18.a1_in1k".into(),
        cache_dir: Some(cache.path().to_path_buf()),
        offline: true,
    };
    let err = run_audit(&missing, &config, &NoProgress)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("timm/resnet18.a1_in1k") && err.contains("HF_HUB_OFFLINE"),
        "{err}"
    );

    // A checkpoint for another number of classes than the data: refused.
    let other = tempfile::tempdir().unwrap();
    hub_cache(other.path(), 37);
    let wrong = ModelSource::Hub {
        id: "timm/resnet_tiny.fmnist".into(),
        cache_dir: Some(other.path().to_path_buf()),
        offline: true,
    };
    let err = run_audit(&wrong, &config, &NoProgress)
        .unwrap_err()
        .to_string();
    assert!(err.contains("37 classes but the data has 10"), "{err}");
}
