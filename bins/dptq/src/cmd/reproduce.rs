//! `dptq reproduce`: the paper's pipeline end to end (teacher, black-box distillation,
//! robust and detrimental pairs, Tables 1-3) on a preset, into a run directory.

use std::path::PathBuf;

use anyhow::Context;
use dptq_analysis::{AnalysisOptions, analyze_run};
use dptq_distill::RunConfig;

use crate::progress::Bars;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Preset: `tiny` (embedded Fashion-MNIST, CPU, minutes), `paper` (Pets, GPU) or
    /// `smoke` (tiny cut to 320 images and one epoch per stage: an installation check).
    #[arg(long, default_value = "tiny")]
    preset: String,
    /// TOML file whose fields override the preset's (any subset).
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Override one field, e.g. `--set pairs.train.epochs=3` (repeatable; TOML values).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    sets: Vec<String>,
    /// Dataset: `embedded`, `pets:DIR`, `imagefolder:DIR` or `idx:DIR`.
    #[arg(long, value_name = "SPEC")]
    data: Option<String>,
    /// Seed of every random draw of the run.
    #[arg(long)]
    seed: Option<u64>,
    /// Run directory (default `runs/<preset>-<seed>`).
    #[arg(long, value_name = "DIR")]
    out: Option<PathBuf>,
    /// `cpu`, `cuda` or `cuda:N`.
    #[arg(long)]
    device: Option<String>,
    /// Continue the run in `--out` from its checkpoints (its recorded configuration).
    #[arg(long)]
    resume: bool,
    /// Print the resolved configuration (TOML) and exit.
    #[arg(long)]
    print_config: bool,
    /// Stop after Tables 1-3: skip the analyses (`dptq analyze RUN_DIR` runs them later).
    #[arg(long)]
    no_analysis: bool,
    /// No progress bars.
    #[arg(long)]
    quiet: bool,
}

/// Preset, then the run's recorded config (on resume), file, `--set`s, then the flags.
fn resolve(args: &Args) -> anyhow::Result<(RunConfig, PathBuf)> {
    let mut cfg = RunConfig::preset(&args.preset)?;
    if let Some(file) = &args.config {
        let text =
            std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?;
        cfg = cfg.merge_toml(&text, &file.display().to_string())?;
    }
    for s in &args.sets {
        cfg = cfg.set(s)?;
    }
    if let Some(data) = &args.data {
        cfg.data.spec = data.clone();
    }
    if let Some(seed) = args.seed {
        cfg.seed = seed;
    }
    if let Some(device) = &args.device {
        cfg.device = device.clone();
    }
    let out = args
        .out
        .clone()
        .unwrap_or_else(|| PathBuf::from(format!("runs/{}-{}", cfg.preset, cfg.seed)));
    if args.resume {
        let recorded = out.join("config.toml");
        if let Ok(text) = std::fs::read_to_string(&recorded) {
            let mut stored = RunConfig::from_toml(&text)
                .with_context(|| format!("reading {}", recorded.display()))?;
            if args.config.is_none()
                && args.sets.is_empty()
                && args.data.is_none()
                && args.device.is_none()
            {
                // Plain `--resume`: continue exactly the recorded run.
                stored.run = RunConfig::preset(&stored.preset)?.run;
                return Ok((stored, out));
            }
        }
    }
    cfg.validate()?;
    Ok((cfg, out))
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let (cfg, out) = resolve(&args)?;
    if args.print_config {
        print!("{}", cfg.to_toml()?);
        return Ok(());
    }
    tracing::info!("run directory {}", out.display());
    let bars = Bars::new(!args.quiet);
    let results = dptq_distill::reproduce(&cfg, &out, args.resume, &bars)
        .with_context(|| format!("reproducing preset {} into {}", cfg.preset, out.display()))?;
    println!("{}", results.tables());
    print!("{}", results.verdicts());
    eprintln!(
        "wrote {}, {} and the checkpoints under {}",
        out.join("results.json").display(),
        out.join("report.md").display(),
        out.display()
    );
    if args.no_analysis {
        return Ok(());
    }
    // Figs. 2-4, the transitory points, the cross matrix, the policies' dynamics and the
    // mitigation experiment, spliced into report.md. The tables above are already saved:
    // a failure here loses nothing, and `dptq analyze` reruns this step alone.
    let summary = analyze_run(&out, &AnalysisOptions::default(), &bars).with_context(|| {
        format!(
            "analysing {} (the run's results are saved; rerun with `dptq analyze {}`)",
            out.display(),
            out.display()
        )
    })?;
    eprintln!(
        "wrote {} figures and {} tables under {}, {} and the analysis section of {} in {:.0} s",
        summary.figures.len(),
        summary.tables.len(),
        summary.json.parent().unwrap_or(&out).display(),
        summary.html.display(),
        out.join("report.md").display(),
        summary.seconds.get("total").copied().unwrap_or(0.0)
    );
    Ok(())
}
