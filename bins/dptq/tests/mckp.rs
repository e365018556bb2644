//! `dptq mckp` as a process: JSON in, JSON out, one-line errors with exit status 2.

use std::io::Write;
use std::process::{Command, Stdio};

/// Run `dptq mckp <args>` with `stdin`; returns (status code, stdout, stderr).
fn dptq_mckp(args: &[&str], stdin: &str) -> (i32, String, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_dptq"))
        .arg("mckp")
        .args(args)
        .env("RUST_LOG", "off")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("dptq runs");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8(out.stdout).unwrap(),
        String::from_utf8(out.stderr).unwrap(),
    )
}

fn json(text: &str) -> serde_json::Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("{e}: {text}"))
}

#[test]
fn exact_budget_request_gets_bits_choices_and_profit() {
    let request = r#"{"options": [2, 4, 8], "budget": 14, "mode": "exact",
                      "profits": [[[0, 1, 5], [0, 2, 0], [3, 0, 0]],
                                  [[1, 0, 0], [0, 0, 1], [0, 1, 0]]]}"#;
    let (code, stdout, stderr) = dptq_mckp(&[], request);
    assert_eq!(code, 0, "{stderr}");
    // example 0: 8 + 4 + 2 (profit 5 + 2 + 3); example 1: 2 + 8 + 4 (profit 3)
    assert_eq!(
        json(&stdout),
        json(
            r#"{"bits": [[8, 4, 2], [2, 8, 4]], "choices": [[2, 1, 0], [0, 2, 1]], "profit": [10.0, 3.0]}"#
        )
    );
}

#[test]
fn at_most_mode_may_spend_less() {
    let request = r#"{"options": [3, 4, 5], "budget": 20, "mode": "at_most",
                      "profits": [[[1, 0, 0], [1, 0, 0], [0, 0, 1]]]}"#;
    let (code, stdout, stderr) = dptq_mckp(&[], request);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(
        json(&stdout),
        json(r#"{"bits": [[3, 3, 5]], "choices": [[0, 0, 2]], "profit": [3.0]}"#)
    );
}

#[test]
fn mode_defaults_to_exact_and_input_may_come_from_a_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("request.json");
    std::fs::write(
        &path,
        r#"{"options": [1, 2], "budget": 3, "profits": [[[5, 0], [5, 0]]]}"#,
    )
    .unwrap();
    let (code, stdout, stderr) = dptq_mckp(&["--input", path.to_str().unwrap()], "");
    assert_eq!(code, 0, "{stderr}");
    // exactly 3 bits: (1, 2) beats (2, 1) on the tie by the smaller first choice
    assert_eq!(
        json(&stdout),
        json(r#"{"bits": [[1, 2]], "choices": [[0, 1]], "profit": [5.0]}"#)
    );
}

fn assert_fails(request: &str, needle: &str) {
    let (code, stdout, stderr) = dptq_mckp(&[], request);
    assert_eq!(code, 2, "{stderr}");
    assert!(stdout.is_empty(), "stdout: {stdout}");
    assert_eq!(stderr.trim_end().lines().count(), 1, "one line: {stderr}");
    assert!(stderr.contains(needle), "{needle:?} not in {stderr}");
}

#[test]
fn infeasible_budgets_fail_with_the_reachable_range() {
    let profits = r#"[[[0, 0, 0], [0, 0, 0]]]"#;
    assert_fails(
        &format!(r#"{{"options": [2, 4, 8], "budget": 17, "profits": {profits}}}"#),
        "budget 17 is outside the reachable range [4, 16]",
    );
    assert_fails(
        &format!(r#"{{"options": [2, 4, 8], "budget": 11, "profits": {profits}}}"#),
        "budget 11 is inside the reachable range [4, 16] but no choice",
    );
    assert_fails(
        &format!(
            r#"{{"options": [2, 4, 8], "budget": 3, "mode": "at_most", "profits": {profits}}}"#
        ),
        "budget 3 is below the smallest total weight 4",
    );
}

#[test]
fn malformed_requests_fail_with_a_reason() {
    assert_fails("{not json", "malformed request");
    assert_fails(
        r#"{"options": [2, 4], "budget": 4}"#,
        "missing field `profits`",
    );
    assert_fails(
        r#"{"options": [2, 4], "budget": 4, "mode": "exactly", "profits": []}"#,
        "unknown variant `exactly`",
    );
    assert_fails(
        r#"{"options": [2, 4], "budget": 4, "profits": [[[1, 2], [1]]]}"#,
        "profits[0][1] has 1 values, expected 2",
    );
    assert_fails(
        r#"{"options": [2, 4], "budget": 8, "profits": [[[1, 2], [1, 2]], [[1, 2]]]}"#,
        "profits[1] has 1 layers",
    );
    assert_fails(
        r#"{"options": [2, 0], "budget": 4, "profits": [[[1, 2]]]}"#,
        "weight 0",
    );
    assert_fails(
        r#"{"options": [2, 4], "budget": -1, "profits": [[[1, 2]]]}"#,
        "malformed request",
    );
    assert_fails(
        r#"{"options": [2, 4], "budget": 4, "profits": [[[1e999, 2]]]}"#,
        "malformed request",
    );
}

#[test]
fn an_empty_batch_gives_empty_arrays() {
    let (code, stdout, stderr) =
        dptq_mckp(&[], r#"{"options": [2, 4], "budget": 4, "profits": []}"#);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(
        json(&stdout),
        json(r#"{"bits": [], "choices": [], "profit": []}"#)
    );
}
