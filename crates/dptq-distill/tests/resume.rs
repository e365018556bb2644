//! Kill-and-resume: a run stopped by a step limit (twice) and resumed ends bit-identical
//! to an uninterrupted run on CPU — every saved tensor and every accuracy.

use std::path::Path;

use dptq_distill::{Error, NoProgress, RunConfig, reproduce};

/// A micro run: resnet_tiny teacher and student, 192 training / 64 test examples, one
/// epoch of 6 steps per stage, checkpoints every 2 steps.
fn micro() -> RunConfig {
    let mut cfg = RunConfig::default();
    for s in [
        "seed=11",
        "data.train_limit=192",
        "data.test_limit=64",
        "teacher.arch=\"resnet_tiny\"",
        "teacher.train.epochs=1",
        "teacher.train.batch_size=32",
        "teacher.train.checkpoint_every=2",
        "white_box.train.epochs=1",
        "white_box.train.batch_size=32",
        "white_box.train.checkpoint_every=2",
        "pairs.train.epochs=1",
        "pairs.train.batch_size=32",
        "pairs.train.checkpoint_every=2",
        "pairs.policy_width=4",
        "eval.batch_size=64",
        "run.log_every=1",
    ] {
        cfg = cfg.set(s).unwrap();
    }
    cfg
}

fn files(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                if !p.ends_with("checkpoints") {
                    stack.push(p);
                }
            } else if p.extension().is_some_and(|x| x == "safetensors") {
                out.push((
                    p.strip_prefix(dir).unwrap().display().to_string(),
                    std::fs::read(&p).unwrap(),
                ));
            }
        }
    }
    out.sort();
    out
}

#[test]
fn a_run_killed_twice_and_resumed_ends_bit_identical_to_an_uninterrupted_one() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = micro();
    let straight = reproduce(&cfg, &tmp.path().join("a"), false, &NoProgress).unwrap();

    let b = tmp.path().join("b");
    // Killed mid white box (step 3 of 6, last checkpoint at step 2).
    let err = reproduce(
        &cfg.set("run.stop_after_steps=9").unwrap(),
        &b,
        false,
        &NoProgress,
    )
    .unwrap_err();
    assert!(
        matches!(&err, Error::StepLimit { stage, .. } if stage == "white_box/resnet_tiny"),
        "{err}"
    );
    // Killed again mid pairs (step 5 of 6, last checkpoint at step 4).
    let err = reproduce(
        &cfg.set("run.stop_after_steps=8").unwrap(),
        &b,
        true,
        &NoProgress,
    )
    .unwrap_err();
    assert!(
        matches!(&err, Error::StepLimit { stage, .. } if stage.starts_with("pairs/")),
        "{err}"
    );
    let resumed = reproduce(&cfg, &b, true, &NoProgress).unwrap();

    let fa = files(&tmp.path().join("a"));
    let fb = files(&b);
    assert_eq!(fa.len(), 6, "teacher, white box, R, D, pi_R, pi_D");
    assert_eq!(
        fa.iter().map(|f| &f.0).collect::<Vec<_>>(),
        fb.iter().map(|f| &f.0).collect::<Vec<_>>()
    );
    for ((name, x), (_, y)) in fa.iter().zip(&fb) {
        assert!(x == y, "{name} differs after resume");
    }
    let (ea, eb) = (&straight.experiments[0], &resumed.experiments[0]);
    assert_eq!(ea.cross, eb.cross);
    assert_eq!(ea.robust, eb.robust);
    assert_eq!(ea.detrimental, eb.detrimental);
    assert_eq!(ea.mean_bits, eb.mean_bits);
    assert_eq!(straight.teacher, resumed.teacher);
    assert_eq!(straight.budget_exact_fraction, 1.0);
    assert_eq!(resumed.budget_checked, 3 * 64);
    for (sa, sb) in straight.stages.iter().zip(&resumed.stages) {
        assert_eq!(
            (sa.steps, &sa.last_epoch),
            (sb.steps, &sb.last_epoch),
            "{}",
            sa.stage
        );
    }
    // The metrics log holds each step once, as in the uninterrupted run.
    let steps = |dir: &Path| -> Vec<(String, u64)> {
        std::fs::read_to_string(dir.join("metrics.jsonl"))
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
            .filter(|r| r.get("lr").is_some())
            .map(|r| {
                (
                    r["stage"].as_str().unwrap().to_string(),
                    r["step"].as_u64().unwrap(),
                )
            })
            .collect()
    };
    assert_eq!(steps(&tmp.path().join("a")), steps(&b));
}

#[test]
fn a_new_run_refuses_a_directory_that_holds_one_and_resume_refuses_another_config() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = micro().set("pairs.train.epochs=0").unwrap();
    let out = tmp.path().join("run");
    let first = reproduce(&cfg, &out, false, &NoProgress).unwrap();
    let again = reproduce(&cfg, &out, false, &NoProgress)
        .unwrap_err()
        .to_string();
    assert!(again.contains("--resume"), "{again}");
    let other = reproduce(&cfg.set("seed=12").unwrap(), &out, true, &NoProgress)
        .unwrap_err()
        .to_string();
    assert!(other.contains("differs"), "{other}");
    // Resuming a finished run restores every stage and measures the same.
    let resumed = reproduce(&cfg, &out, true, &NoProgress).unwrap();
    assert_eq!(first.experiments[0].cross, resumed.experiments[0].cross);
    let report = std::fs::read_to_string(out.join("report.md")).unwrap();
    assert!(report.contains("Table 3"));
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("results.json")).unwrap()).unwrap();
    for key in [
        "budget",
        "options",
        "budget_exact_fraction",
        "white_box",
        "robust",
        "detrimental",
        "transitory_points",
    ] {
        assert!(json.get(key).is_some(), "results.json lacks {key}");
    }
    assert_eq!(json["budget"], 36);
    assert_eq!(json["budget_exact_fraction"], 1.0);
    assert!(json["robust"]["quantized"].is_number() && json["detrimental"]["fp"].is_number());
}
