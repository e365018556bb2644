//! Runs a preset through `dptq_distill::reproduce` with `key=value` overrides, without
//! the CLI: `cargo run --release -p dptq-distill --example run_preset -- OUT [--resume] [key=value ...]`.
//! `preset=paper` as the first override switches presets. Prints progress lines every 20
//! steps, the tables and the verdicts (the `dptq reproduce` command does the same with
//! progress bars).

use dptq_distill::{Progress, RunConfig, reproduce};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let out = args
        .next()
        .ok_or("usage: run_preset OUT [--resume] [key=value ...]")?;
    let mut cfg = RunConfig::preset("tiny")?;
    let mut resume = false;
    for a in args {
        if a == "--resume" {
            resume = true;
        } else if let Some(p) = a.strip_prefix("preset=") {
            cfg = RunConfig::preset(p)?;
        } else {
            cfg = cfg.set(&a)?;
        }
    }
    let t0 = std::time::Instant::now();
    let progress = move |e: &Progress| match e {
        Progress::Step {
            stage,
            step,
            total,
            loss,
        } if step % 20 == 0 || step == total => {
            eprintln!(
                "[{:7.1}s] {stage} {step}/{total} loss {loss:.4}",
                t0.elapsed().as_secs_f64()
            );
        }
        Progress::StageFinished {
            stage,
            seconds,
            skipped,
        } => {
            eprintln!(
                "[{:7.1}s] {stage} finished in {seconds:.1}s (skipped: {skipped})",
                t0.elapsed().as_secs_f64()
            );
        }
        Progress::EvalFinished { what, seconds } => {
            eprintln!(
                "[{:7.1}s] eval {what} in {seconds:.1}s",
                t0.elapsed().as_secs_f64()
            );
        }
        _ => {}
    };
    let results = reproduce(&cfg, std::path::Path::new(&out), resume, &progress)?;
    println!("{}", results.tables());
    println!("{}", results.verdicts());
    for s in &results.stages {
        println!(
            "{}: {} steps, {:.1} s, {:.1} images/s",
            s.stage, s.steps, s.train_seconds, s.images_per_second
        );
    }
    println!(
        "teacher {:?}, wall {:.1} s",
        results.teacher, results.wall_seconds
    );
    Ok(())
}
