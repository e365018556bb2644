//! `dptq audit`: how badly can a model you already have fail under dynamic quantization?
//! Freezes it, trains only a detrimental bit-width policy (and a robust one for
//! reference) at an exact bit budget on your data, and reports the worst-case accuracy
//! drop, the transitory points, the most vulnerable layers, the budget check and a
//! one-line verdict (JSON + Markdown + HTML + plots).

use std::path::PathBuf;

use anyhow::Context;
use dptq_analysis::{AuditConfig, ModelSource, Severity, run_audit, write_audit};

use crate::progress::Bars;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// timm-named safetensors weights of the model (with `--arch`).
    #[arg(long, value_name = "FILE", conflicts_with = "hub", requires = "arch")]
    weights: Option<PathBuf>,
    /// Architecture of `--weights` (`dptq layers` lists them).
    #[arg(long)]
    arch: Option<String>,
    /// A timm model on the Hugging Face hub, e.g. `timm/resnet18.a1_in1k` (the local cache
    /// first; `HF_HUB_OFFLINE=1` or `--offline` forbid downloads).
    #[arg(long, value_name = "ID", required_unless_present = "weights")]
    hub: Option<String>,
    /// Hub cache folder (default: `HF_HUB_CACHE`, `HF_HOME/hub`, `~/.cache/huggingface/hub`).
    #[arg(long, value_name = "DIR", requires = "hub")]
    hub_cache: Option<PathBuf>,
    /// Never download from the hub.
    #[arg(long)]
    offline: bool,
    /// The data the model classifies: `embedded`, `pets:DIR`, `imagefolder:DIR`, `idx:DIR`.
    #[arg(long, default_value = "embedded", value_name = "SPEC")]
    data: String,
    /// Image side (default: the hub config's, else 28 for embedded/idx and 224 otherwise).
    #[arg(long)]
    image_size: Option<usize>,
    /// Bit-width options: a range `3..10` (inclusive) or a list `4,6,8`.
    #[arg(long, default_value = "3..10")]
    options: String,
    /// Exact bit budget per example (default: round(avg_bits x L)).
    #[arg(long, conflicts_with = "avg_bits")]
    budget: Option<u32>,
    /// Average bits per layer of the budget.
    #[arg(long)]
    avg_bits: Option<f64>,
    /// Policy training epochs.
    #[arg(long)]
    epochs: Option<usize>,
    /// Training examples the policies learn from (class-balanced; 0 = all).
    #[arg(long)]
    train_examples: Option<usize>,
    /// Test examples evaluated (class-balanced; 0 = all).
    #[arg(long)]
    test_examples: Option<usize>,
    /// Policy batch size.
    #[arg(long)]
    batch_size: Option<usize>,
    /// Peak learning rate of the policies.
    #[arg(long)]
    lr: Option<f64>,
    /// Hinge margin (probability units).
    #[arg(long)]
    margin: Option<f64>,
    /// Skip the robust reference policy.
    #[arg(long)]
    no_robust: bool,
    /// Seed of the policies and the data order.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// `cpu`, `cuda` or `cuda:N`.
    #[arg(long, default_value = "cpu")]
    device: String,
    /// Output directory (default `audits/<arch>-<seed>`).
    #[arg(long, value_name = "DIR")]
    out: Option<PathBuf>,
    /// Exit with an error when the verdict is at least this severe: low, moderate, high,
    /// critical.
    #[arg(long, value_name = "LEVEL")]
    fail_on: Option<String>,
    /// No progress bars.
    #[arg(long)]
    quiet: bool,
}

/// `3..10` (inclusive) or `4,6,8`.
fn parse_options(s: &str) -> anyhow::Result<Vec<u32>> {
    if let Some((a, b)) = s.split_once("..") {
        let a: u32 = a
            .trim()
            .parse()
            .with_context(|| format!("bit options {s:?}"))?;
        let b: u32 = b
            .trim()
            .trim_start_matches('=')
            .parse()
            .with_context(|| format!("bit options {s:?}"))?;
        anyhow::ensure!(a <= b, "bit options {s:?}: empty range");
        return Ok((a..=b).collect());
    }
    s.split(',')
        .map(|v| {
            v.trim()
                .parse::<u32>()
                .with_context(|| format!("bit options {s:?}"))
        })
        .collect()
}

fn parse_severity(s: &str) -> anyhow::Result<Severity> {
    Ok(match s.to_ascii_lowercase().as_str() {
        "low" => Severity::Low,
        "moderate" => Severity::Moderate,
        "high" => Severity::High,
        "critical" => Severity::Critical,
        other => anyhow::bail!("--fail-on {other:?}: expected low, moderate, high or critical"),
    })
}

fn rank(s: Severity) -> u8 {
    match s {
        Severity::Low => 0,
        Severity::Moderate => 1,
        Severity::High => 2,
        Severity::Critical => 3,
    }
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let source = match (&args.weights, &args.arch, &args.hub) {
        (Some(weights), Some(arch), None) => ModelSource::Local {
            weights: weights.clone(),
            arch: arch.clone(),
        },
        (None, _, Some(id)) => ModelSource::Hub {
            id: id.clone(),
            cache_dir: args.hub_cache.clone(),
            offline: args.offline,
        },
        _ => anyhow::bail!("give either --weights FILE --arch ARCH or --hub ID"),
    };
    let fail_on = args.fail_on.as_deref().map(parse_severity).transpose()?;
    let mut cfg = AuditConfig {
        data: args.data.clone(),
        options: parse_options(&args.options)?,
        budget: args.budget,
        robust_reference: !args.no_robust,
        seed: args.seed,
        device: args.device.clone(),
        ..Default::default()
    };
    if let Some(v) = args.image_size {
        cfg.image_size = v;
    }
    if let Some(v) = args.avg_bits {
        cfg.avg_bits = v;
    }
    if let Some(v) = args.epochs {
        cfg.epochs = v;
    }
    if let Some(v) = args.train_examples {
        cfg.train_examples = v;
    }
    if let Some(v) = args.test_examples {
        cfg.test_examples = v;
    }
    if let Some(v) = args.batch_size {
        cfg.batch_size = v;
    }
    if let Some(v) = args.lr {
        cfg.lr = v;
    }
    if let Some(v) = args.margin {
        cfg.margin = v;
    }
    let out = args
        .out
        .clone()
        .unwrap_or_else(|| PathBuf::from(format!("audits/{}-{}", source.arch(), args.seed)));
    let bars = Bars::new(!args.quiet);
    let result = run_audit(&source, &cfg, &bars)
        .with_context(|| format!("auditing {}", source.describe()))?;
    let files = write_audit(&result, &out)
        .with_context(|| format!("writing the audit into {}", out.display()))?;
    println!("{}", result.verdict);
    println!(
        "FP {:.2} % | detrimental {:.2} %{} | random {:.2} % | transitory {} ({:.2} %) | on budget {}/{}",
        result.accuracy_fp,
        result.accuracy_detrimental,
        result
            .accuracy_robust
            .map_or(String::new(), |r| format!(" | robust {r:.2} %")),
        result.accuracy_random,
        result.transitory.0,
        result.transitory.1,
        result.on_budget.0,
        result.on_budget.1
    );
    let vulnerable: Vec<String> = result
        .sweeps
        .vulnerable_layers("test")
        .into_iter()
        .take(3)
        .map(|(l, d)| format!("{} ({:+.1})", result.layers[l], -d))
        .collect();
    println!(
        "most vulnerable layers (alone, test): {}",
        vulnerable.join(", ")
    );
    eprintln!(
        "wrote {}, {}, {} and {} figures",
        files.json.display(),
        files.markdown.display(),
        files.html.display(),
        files.figures.len()
    );
    if let Some(level) = fail_on
        && rank(result.severity) >= rank(level)
    {
        anyhow::bail!(
            "verdict {} is at least --fail-on {}",
            result.severity.label(),
            level.label()
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_parse_as_inclusive_ranges_or_lists() {
        assert_eq!(
            parse_options("3..10").unwrap(),
            (3..=10).collect::<Vec<_>>()
        );
        assert_eq!(parse_options("3..=5").unwrap(), vec![3, 4, 5]);
        assert_eq!(parse_options("4, 6,8").unwrap(), vec![4, 6, 8]);
        assert!(parse_options("5..3").is_err());
        assert!(parse_options("a,b").is_err());
    }

    #[test]
    fn fail_on_levels_are_ordered() {
        assert!(rank(parse_severity("critical").unwrap()) > rank(parse_severity("HIGH").unwrap()));
        assert!(parse_severity("severe").is_err());
    }
}
