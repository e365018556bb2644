//! `dptq analyze`: the paper's analyses of a finished run directory (layer sweeps,
//! activation histograms, corruptions, transitory points, the cross matrix, how dynamic
//! the policies are, percentile mitigation), as PNG/SVG figures, CSV/JSON data, a section
//! of the run's `report.md` and one self-contained `index.html`.

use std::path::PathBuf;

use anyhow::Context;
use dptq_analysis::{AnalysisOptions, AnalysisPart, analyze_run};

use crate::progress::Bars;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The run directory (`dptq reproduce --out`).
    run_dir: PathBuf,
    /// Only these analyses (comma-separated or repeated): sweeps, hist, corrupt,
    /// transitory, cross, dynamics, mitigation.
    #[arg(long, value_delimiter = ',', value_name = "PART")]
    only: Vec<String>,
    /// Only this experiment (`resnet_tiny/I-A`; repeatable). Default: every experiment.
    #[arg(long = "experiment", value_name = "ID")]
    experiments: Vec<String>,
    /// Output directory (default `RUN_DIR/analysis`).
    #[arg(long, value_name = "DIR")]
    out: Option<PathBuf>,
    /// `cpu`, `cuda` or `cuda:N` (default: the run's device).
    #[arg(long)]
    device: Option<String>,
    /// Evaluation batch size (default: the run's).
    #[arg(long)]
    batch_size: Option<usize>,
    /// Test examples of the layer sweeps (class-balanced; 0 = all).
    #[arg(long)]
    sweep_test_examples: Option<usize>,
    /// Training examples of the layer sweeps (class-balanced; 0 = all).
    #[arg(long)]
    sweep_train_examples: Option<usize>,
    /// Sweep with this width at every layer instead of the policies' bits.
    #[arg(long, value_name = "BITS")]
    sweep_fixed_bits: Option<u32>,
    /// Test examples of the activation histograms (0 = all).
    #[arg(long)]
    hist_examples: Option<usize>,
    /// Test examples of the corruption study (class-balanced; 0 = all).
    #[arg(long)]
    corrupt_examples: Option<usize>,
    /// Seeds per corruption and degree.
    #[arg(long)]
    corrupt_seeds: Option<usize>,
    /// Corruption degrees, strictly increasing (e.g. `0,1,3,5`).
    #[arg(long, value_delimiter = ',')]
    corrupt_degrees: Vec<f32>,
    /// Test examples of the transitory points, dynamics and mitigation (0 = all).
    #[arg(long)]
    test_examples: Option<usize>,
    /// Percentiles of the mitigation experiment (e.g. `99.9,99`).
    #[arg(long, value_delimiter = ',')]
    percentiles: Vec<f64>,
    /// Do not touch the run's `report.md`.
    #[arg(long)]
    no_report: bool,
    /// No progress bars.
    #[arg(long)]
    quiet: bool,
}

fn options(args: &Args) -> anyhow::Result<AnalysisOptions> {
    let mut o = AnalysisOptions::default();
    if !args.only.is_empty() {
        o.parts = args
            .only
            .iter()
            .map(|s| s.trim().parse::<AnalysisPart>())
            .collect::<Result<_, _>>()?;
    }
    o.experiments = args.experiments.clone();
    o.out_dir = args.out.clone();
    o.device = args.device.clone();
    o.batch_size = args.batch_size.unwrap_or(0);
    if let Some(n) = args.sweep_test_examples {
        o.sweep.test_examples = n;
    }
    if let Some(n) = args.sweep_train_examples {
        o.sweep.train_examples = n;
    }
    o.sweep.fixed_bits = args.sweep_fixed_bits;
    if let Some(n) = args.hist_examples {
        o.hist.examples = n;
    }
    if let Some(n) = args.corrupt_examples {
        o.corrupt.examples = n;
    }
    if let Some(n) = args.corrupt_seeds {
        o.corrupt.seeds = n;
    }
    if !args.corrupt_degrees.is_empty() {
        o.corrupt.degrees = args.corrupt_degrees.clone();
    }
    if let Some(n) = args.test_examples {
        o.test_examples = n;
    }
    if !args.percentiles.is_empty() {
        o.percentiles = args.percentiles.clone();
    }
    o.update_report = !args.no_report;
    Ok(o)
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let opts = options(&args)?;
    let bars = Bars::new(!args.quiet);
    let summary = analyze_run(&args.run_dir, &opts, &bars)
        .with_context(|| format!("analysing {}", args.run_dir.display()))?;
    for f in &summary.figures {
        println!("{}", f.png.display());
    }
    println!("{}", summary.html.display());
    eprintln!(
        "wrote {} figures, {} tables, {} and {}{} in {:.0} s",
        summary.figures.len(),
        summary.tables.len(),
        summary.json.display(),
        summary.html.display(),
        if opts.update_report {
            format!(
                ", and the analysis section of {}",
                args.run_dir.join("report.md").display()
            )
        } else {
            String::new()
        },
        summary.seconds.get("total").copied().unwrap_or(0.0)
    );
    Ok(())
}
