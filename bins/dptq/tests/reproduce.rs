//! `dptq reproduce` as a new user runs it, on the `smoke` preset (the tiny preset cut to
//! 320 training / 200 test images, one epoch per stage): the tables are printed, the run
//! directory holds results, config, checkpoints and the analysis report, and a bad
//! override is a one-line error that writes nothing.

use std::process::Command;

fn dptq(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_dptq"))
        .args(args)
        .env("RUST_LOG", "off")
        .env("HF_HUB_OFFLINE", "1")
        .output()
        .expect("dptq runs");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8(out.stdout).unwrap(),
        String::from_utf8(out.stderr).unwrap(),
    )
}

#[test]
fn reproduce_writes_tables_results_and_the_analysis_report() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("run");
    let (code, stdout, stderr) = dptq(&[
        "reproduce",
        "--preset",
        "smoke",
        "--quiet",
        "--seed",
        "3",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "stderr: {stderr}");
    assert!(stdout.contains("Table 1"), "stdout: {stdout}");

    let results: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("results.json")).unwrap()).unwrap();
    // Every evaluated bit vector costs exactly the budget (the run asserts it; so do we).
    assert_eq!(
        results
            .pointer("/budget_exact_fraction")
            .and_then(|v| v.as_f64()),
        Some(1.0),
        "results.json: {results}"
    );
    for key in [
        "/white_box/fp",
        "/robust/quantized",
        "/detrimental/quantized",
    ] {
        let acc = results.pointer(key).and_then(|v| v.as_f64());
        assert!(
            acc.is_some_and(|a| (0.0..=100.0).contains(&a)),
            "{key}: {acc:?}"
        );
    }
    let config = std::fs::read_to_string(out.join("config.toml")).unwrap();
    assert!(config.contains("seed = 3"), "config.toml: {config}");

    // The analyses ran at the end: figures on disk and their section in report.md.
    let report = std::fs::read_to_string(out.join("report.md")).unwrap();
    assert!(report.contains("Table 1"), "report.md: {report}");
    let pngs: Vec<_> = std::fs::read_dir(out.join("analysis"))
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.path().extension().is_some_and(|x| x == "png"))
        .collect();
    assert!(!pngs.is_empty(), "no figure under {}", out.display());
    for png in &pngs {
        let name = png.file_name().to_string_lossy().to_string();
        assert!(report.contains(&name), "report.md does not show {name}");
    }
}

#[test]
fn a_bad_override_is_a_one_line_error_and_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("run");
    let (code, stdout, stderr) = dptq(&[
        "reproduce",
        "--quiet",
        "--out",
        out.to_str().unwrap(),
        "--set",
        "pairs.no_such_field=1",
    ]);
    assert_ne!(code, 0);
    assert!(stdout.is_empty(), "stdout: {stdout}");
    assert!(stderr.contains("no_such_field"), "stderr: {stderr}");
    assert!(!out.exists(), "{} was created", out.display());
}
