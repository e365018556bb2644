//! `dptq data`: inspect and fetch datasets.
//!
//! - `dptq data info --data SPEC [--skip-bad] [--verify]`: classes with their train and
//!   test counts (a table on stdout, or JSON with `--json`), and any skipped file;
//! - `dptq data fetch pets --dir D`: download Oxford-IIIT Pets (official archives,
//!   checksum, resume with HTTP Range, extraction); progress bars on stderr.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::path::PathBuf;

use anyhow::Context;
use dptq_data::{DataSpec, Dataset, FetchEvent, OpenOptions, fetch_pets};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

#[derive(Debug, clap::Subcommand)]
pub enum Data {
    /// Classes and their train/test counts, and any skipped file.
    Info(InfoArgs),
    /// Download a dataset's official archives (checksum, resume, extraction).
    #[command(subcommand)]
    Fetch(Fetch),
}

#[derive(Debug, clap::Args)]
pub struct InfoArgs {
    /// embedded (default), pets:DIR, imagefolder:DIR or idx:DIR.
    #[arg(long, default_value = "embedded")]
    data: DataSpec,
    /// Skip unreadable or corrupt files (listed) instead of failing.
    #[arg(long)]
    skip_bad: bool,
    /// Decode every image now to find corrupt or truncated files.
    #[arg(long)]
    verify: bool,
    /// Print JSON instead of a table.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, clap::Subcommand)]
pub enum Fetch {
    /// Oxford-IIIT Pets (images.tar.gz, annotations.tar.gz; about 800 MB).
    Pets {
        /// Target folder; open it afterwards with `--data pets:DIR`.
        #[arg(long)]
        dir: PathBuf,
        /// Draw no progress bar.
        #[arg(long)]
        quiet: bool,
    },
}

pub fn run(data: Data) -> anyhow::Result<()> {
    match data {
        Data::Info(args) => info(args),
        Data::Fetch(Fetch::Pets { dir, quiet }) => {
            let mut bars = Bars::new(!quiet);
            let dir = fetch_pets(&dir, &mut |e| bars.event(e))
                .with_context(|| format!("fetching Oxford-IIIT Pets into {}", dir.display()))?;
            let spec = DataSpec::Pets(dir);
            let ds = Dataset::open(&spec, &OpenOptions::default())
                .with_context(|| format!("opening {spec}"))?;
            println!(
                "{spec}: {} classes, {} train / {} test images",
                ds.num_classes(),
                ds.train.len(),
                ds.test.len()
            );
            Ok(())
        }
    }
}

fn info(args: InfoArgs) -> anyhow::Result<()> {
    let options = OpenOptions {
        skip_bad: args.skip_bad,
        verify: args.verify,
        ..Default::default()
    };
    let ds =
        Dataset::open(&args.data, &options).with_context(|| format!("opening {}", args.data))?;
    if args.json {
        let train = ds.train.class_counts(ds.num_classes());
        let test = ds.test.class_counts(ds.num_classes());
        let classes: Vec<_> = ds
            .classes
            .iter()
            .enumerate()
            .map(|(i, name)| serde_json::json!({"index": i, "name": name, "train": train[i], "test": test[i]}))
            .collect();
        let out = serde_json::json!({
            "data": args.data.to_string(),
            "classes": classes,
            "train": ds.train.len(),
            "test": ds.test.len(),
            "skipped": ds.skipped,
        });
        println!("{}", serde_json::to_string_pretty(&out)?);
    } else {
        print!("{}", info_table(&ds));
    }
    Ok(())
}

/// The class table of `dptq data info`.
fn info_table(ds: &Dataset) -> String {
    let k = ds.num_classes();
    let (train, test) = (ds.train.class_counts(k), ds.test.class_counts(k));
    let width = ds.classes.iter().map(|c| c.len()).max().unwrap_or(5).max(5);
    let mut out = String::new();
    let _ = writeln!(out, "{}: {k} classes", ds.spec);
    let _ = writeln!(
        out,
        "{:>5}  {:width$}  {:>7}  {:>7}",
        "index", "class", "train", "test"
    );
    for (i, name) in ds.classes.iter().enumerate() {
        let _ = writeln!(
            out,
            "{i:>5}  {name:width$}  {:>7}  {:>7}",
            train[i], test[i]
        );
    }
    let _ = writeln!(
        out,
        "{:>5}  {:width$}  {:>7}  {:>7}",
        "",
        "total",
        ds.train.len(),
        ds.test.len()
    );
    if !ds.skipped.is_empty() {
        let _ = writeln!(out, "skipped {} file(s):", ds.skipped.len());
        for s in &ds.skipped {
            let _ = writeln!(out, "  {}: {}", s.path.display(), s.reason);
        }
    }
    out
}

/// One progress bar per downloaded file, on stderr.
struct Bars {
    enabled: bool,
    bars: HashMap<String, ProgressBar>,
}

impl Bars {
    fn new(enabled: bool) -> Self {
        Self {
            enabled,
            bars: HashMap::new(),
        }
    }

    fn event(&mut self, event: &FetchEvent) {
        if !self.enabled {
            return;
        }
        match event {
            FetchEvent::Start {
                file,
                total,
                resumed_from,
            } => {
                let style = ProgressStyle::with_template(
                    "{msg:20} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} ETA {eta}",
                )
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .progress_chars("=> ");
                let bar = ProgressBar::with_draw_target(*total, ProgressDrawTarget::stderr())
                    .with_style(style);
                bar.set_message(file.clone());
                bar.set_position(*resumed_from);
                self.bars.insert(file.clone(), bar);
            }
            FetchEvent::Progress { file, done } => {
                if let Some(bar) = self.bars.get(file) {
                    bar.set_position(*done);
                }
            }
            FetchEvent::Verified { file } => {
                if let Some(bar) = self.bars.remove(file) {
                    bar.finish_and_clear();
                }
                eprintln!("{file}: downloaded, checksum verified");
            }
            FetchEvent::AlreadyThere { file } => {
                eprintln!("{file}: already downloaded and verified")
            }
            FetchEvent::Extracting { file } => eprintln!("{file}: extracting"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn info_table_lists_every_embedded_class_with_its_counts() {
        let ds = Dataset::embedded().unwrap();
        let table = info_table(&ds);
        let lines: Vec<&str> = table.lines().collect();
        assert_eq!(lines[0], "embedded: 10 classes");
        assert_eq!(lines.len(), 2 + 10 + 1);
        assert!(
            lines[11].contains("Ankle boot") && lines[11].ends_with("   1000      500"),
            "{table}"
        );
        assert!(lines[12].ends_with("  10000     5000"), "{table}");
    }
}
