//! `analyze_run`: every analysis of a finished run directory, written next to it.
//!
//! Output (under `<run>/analysis/` by default): one PNG and one SVG per figure, one CSV per
//! table, `analysis.json` with every number, `index.html` (self-contained, figures inlined
//! as SVG), and a section of `<run>/report.md` between markers (replaced on rerun).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Instant;

use dptq_data::{Split, Transform};
use dptq_distill::{
    EvalPolicy, ExperimentResult, Progress, ProgressSink, balanced_subset, derive_seed,
    evaluate_cross,
};
use dptq_models::Classifier;
use dptq_quant::RangeMode;
use serde::{Deserialize, Serialize};

use crate::artefacts::{ExperimentModels, RunArtefacts};
use crate::corrupt::{CorruptConfig, CorruptResult, corruption_robustness};
use crate::dynamics::{PolicyDynamics, policy_dynamics};
use crate::error::{Error, Result};
use crate::eval::{Bits, EvalCache, EvalSet, PassTiming};
use crate::figures::{self, slug};
use crate::hist::{HistConfig, NetworkHistograms, activation_histograms};
use crate::mitigation::{DEFAULT_PERCENTILES, Mitigation, percentile_mitigation};
use crate::plot::{Figure, SavedFigure};
use crate::report::{Report, ReportFigure, Section, splice_into_file};
use crate::sweep::{SweepResult, run_sweeps};
use crate::table::Table;

/// The analyses `dptq analyze --only` can pick.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AnalysisPart {
    /// Fig. 2: before / after / single layer sweeps.
    Sweeps,
    /// Fig. 3: activation histograms and sparsity.
    Hist,
    /// Fig. 4: accuracy under corruptions.
    Corrupt,
    /// Table 2 and the list of transitory examples.
    Transitory,
    /// Table 3: networks x policies.
    Cross,
    /// How dynamic each policy is; its fixed projection.
    Dynamics,
    /// Percentile scales instead of min/max.
    Mitigation,
}

impl AnalysisPart {
    /// Every part, in report order.
    pub const ALL: [AnalysisPart; 7] = [
        AnalysisPart::Cross,
        AnalysisPart::Transitory,
        AnalysisPart::Sweeps,
        AnalysisPart::Hist,
        AnalysisPart::Dynamics,
        AnalysisPart::Mitigation,
        AnalysisPart::Corrupt,
    ];

    /// The command-line name.
    pub fn name(self) -> &'static str {
        match self {
            AnalysisPart::Sweeps => "sweeps",
            AnalysisPart::Hist => "hist",
            AnalysisPart::Corrupt => "corrupt",
            AnalysisPart::Transitory => "transitory",
            AnalysisPart::Cross => "cross",
            AnalysisPart::Dynamics => "dynamics",
            AnalysisPart::Mitigation => "mitigation",
        }
    }
}

impl FromStr for AnalysisPart {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        Self::ALL
            .into_iter()
            .find(|p| p.name() == s)
            .ok_or_else(|| {
                Error::invalid(
                    "analysis",
                    format!(
                        "{s:?}; expected one of {}",
                        Self::ALL.map(|p| p.name()).join(", ")
                    ),
                )
            })
    }
}

/// The layer sweeps' settings.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SweepConfig {
    /// Networks swept, each under its own policy (default `["D", "R"]`).
    pub networks: Vec<String>,
    /// Quantize with this width at every layer instead of the policies' bits (default
    /// `None`: the policies').
    pub fixed_bits: Option<u32>,
    /// Training examples (class-balanced subset; default 500; 0 = all).
    pub train_examples: usize,
    /// Test examples (class-balanced subset; default 1000; 0 = all).
    pub test_examples: usize,
}

impl Default for SweepConfig {
    fn default() -> Self {
        Self {
            networks: vec!["D".into(), "R".into()],
            fixed_bits: None,
            train_examples: 500,
            test_examples: 1000,
        }
    }
}

/// Everything `analyze_run` does, and how much of the data it uses.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AnalysisOptions {
    /// The parts to run (default: all, see [`AnalysisPart::ALL`]).
    pub parts: Vec<AnalysisPart>,
    /// Experiment ids (`resnet_tiny/I-A`) to analyse; empty (default) = every experiment.
    pub experiments: Vec<String>,
    /// Device override (`cpu`, `cuda:0`); `None` (default) = the run's.
    pub device: Option<String>,
    /// Evaluation batch size; 0 (default) = the run's `eval.batch_size`.
    pub batch_size: usize,
    /// Test examples for the transitory points, dynamics and mitigation (class-balanced;
    /// default 0 = the whole test split, as `results.json`).
    pub test_examples: usize,
    /// Layer sweeps.
    pub sweep: SweepConfig,
    /// Activation histograms.
    pub hist: HistConfig,
    /// Corruptions.
    pub corrupt: CorruptConfig,
    /// Percentiles of the mitigation experiment (default 99.9, 99).
    pub percentiles: Vec<f64>,
    /// Output directory; `None` (default) = `<run>/analysis`.
    pub out_dir: Option<PathBuf>,
    /// Splice the analysis section into `<run>/report.md` (default true).
    pub update_report: bool,
}

impl Default for AnalysisOptions {
    fn default() -> Self {
        Self {
            parts: AnalysisPart::ALL.to_vec(),
            experiments: Vec::new(),
            device: None,
            batch_size: 0,
            test_examples: 0,
            sweep: SweepConfig::default(),
            hist: HistConfig::default(),
            corrupt: CorruptConfig::default(),
            percentiles: DEFAULT_PERCENTILES.to_vec(),
            out_dir: None,
            update_report: true,
        }
    }
}

/// The transitory examples of one experiment, recomputed.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Transitory {
    /// Experiment id.
    pub experiment: String,
    /// Test examples evaluated.
    pub examples: usize,
    /// Test-split indices of the transitory examples.
    pub indices: Vec<usize>,
    /// Their labels.
    pub labels: Vec<u32>,
    /// What D quantized by pi_D predicts for them.
    pub predicted: Vec<u32>,
    /// Percent of the evaluated examples.
    pub percent: f64,
    /// `results.json`'s count, when the whole test split was evaluated and it is present.
    pub reported_count: Option<usize>,
}

/// Everything measured for one experiment.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ExperimentAnalysis {
    /// Experiment id.
    pub experiment: String,
    /// Exact budget.
    pub budget: u32,
    /// Layer names.
    pub layers: Vec<String>,
    /// Table 3 (from `results.json` or recomputed).
    pub cross: Option<dptq_distill::CrossMatrix>,
    /// Transitory examples.
    pub transitory: Option<Transitory>,
    /// Fig. 2.
    pub sweeps: Vec<SweepResult>,
    /// Fig. 3.
    pub histograms: Vec<NetworkHistograms>,
    /// Policy dynamics.
    pub dynamics: Vec<PolicyDynamics>,
    /// Mitigation.
    pub mitigation: Vec<Mitigation>,
    /// Fig. 4.
    pub corrupt: Option<CorruptResult>,
    /// Wall time of each shared pass over the test set (FP, own policy, fixed allocation,
    /// percentile scales): the baseline the other parts' times compare with.
    pub passes: Vec<PassTiming>,
}

/// What `analyze_run` wrote.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AnalysisSummary {
    /// The run directory.
    pub run_dir: PathBuf,
    /// The output directory.
    pub out_dir: PathBuf,
    /// Per experiment, the numbers.
    pub experiments: Vec<ExperimentAnalysis>,
    /// The figures (PNG + SVG).
    pub figures: Vec<SavedFigure>,
    /// The CSV files.
    pub tables: Vec<PathBuf>,
    /// `index.html`.
    pub html: PathBuf,
    /// `analysis.json`.
    pub json: PathBuf,
    /// Seconds spent per part.
    pub seconds: BTreeMap<String, f64>,
}

struct Ctx<'a> {
    run: &'a RunArtefacts,
    options: &'a AnalysisOptions,
    out: PathBuf,
    batch: usize,
    progress: &'a dyn ProgressSink,
    figures: Vec<SavedFigure>,
    tables: Vec<PathBuf>,
    seconds: BTreeMap<String, f64>,
}

impl Ctx<'_> {
    fn figure(&mut self, fig: Figure, section: &mut Section) -> Result<()> {
        let svg = fig.to_svg()?;
        let saved = fig.save(&self.out)?;
        self.figures.push(saved.clone());
        section.figures.push(ReportFigure { saved, svg });
        Ok(())
    }

    fn table(&mut self, table: Table, section: &mut Section, show: bool) -> Result<()> {
        self.tables.push(table.save_csv(&self.out)?);
        if show {
            section.tables.push(table);
        } else {
            section
                .data_files
                .push((table.name.clone(), table.title.clone()));
        }
        Ok(())
    }

    fn eval_set(&self, name: &str, split: &Split, limit: usize) -> Result<EvalSet> {
        let subset = balanced_subset(split, limit, usize::MAX);
        let loader = self
            .run
            .data
            .eval_loader(&subset, self.batch, &self.run.device)?;
        EvalSet::from_loader(name, &loader)
    }

    fn timed<T>(&mut self, what: &str, f: impl FnOnce(&mut Self) -> Result<T>) -> Result<T> {
        self.progress.event(&Progress::EvalStarted {
            what: format!("analysis {what}"),
            total: 1,
        });
        let t0 = Instant::now();
        let out = f(self)?;
        let s = t0.elapsed().as_secs_f64();
        *self.seconds.entry(what.to_string()).or_default() += s;
        self.progress.event(&Progress::EvalFinished {
            what: format!("analysis {what}"),
            seconds: s,
        });
        tracing::info!("analysis {what}: {s:.1} s");
        Ok(out)
    }
}

fn network<'m>(models: &'m ExperimentModels, name: &str) -> Result<&'m dyn Classifier> {
    models
        .networks()
        .into_iter()
        .find(|(n, _)| *n == name)
        .map(|(_, m)| m)
        .ok_or_else(|| Error::invalid("network", format!("{name:?}; expected W, R or D")))
}

/// The policy paired with a network: pi_R for R, pi_D for D (and W, whose own policy does
/// not exist: pi_D, the adversarial one).
fn own_policy<'m>(models: &'m ExperimentModels, name: &str) -> (&'static str, EvalPolicy<'m>) {
    let (pname, net) = if name == "R" {
        ("pi_R", &models.pi_r)
    } else {
        ("pi_D", &models.pi_d)
    };
    (
        pname,
        EvalPolicy::Trained {
            net,
            profits: models.profits,
        },
    )
}

fn part_enabled(options: &AnalysisOptions, part: AnalysisPart) -> bool {
    options.parts.contains(&part)
}

/// Runs the analyses of `options` on the finished run in `run_dir` and writes their
/// figures, tables, `analysis.json`, `index.html` and the `report.md` section.
/// `dptq reproduce` calls this at the end with [`AnalysisOptions::default`].
pub fn analyze_run(
    run_dir: &Path,
    options: &AnalysisOptions,
    progress: &dyn ProgressSink,
) -> Result<AnalysisSummary> {
    let started = Instant::now();
    let run = RunArtefacts::open(run_dir, options.device.as_deref())?;
    let out = options
        .out_dir
        .clone()
        .unwrap_or_else(|| run_dir.join("analysis"));
    std::fs::create_dir_all(&out).map_err(|e| Error::io(&out, e))?;
    let batch = if options.batch_size > 0 {
        options.batch_size
    } else {
        run.config.eval.batch_size
    };
    let mut experiments = run.experiments()?;
    if !options.experiments.is_empty() {
        for want in &options.experiments {
            if !experiments.iter().any(|e| &e.id() == want) {
                return Err(Error::invalid(
                    "experiment",
                    format!(
                        "{want:?} is not in this run; it has {}",
                        experiments
                            .iter()
                            .map(|e| e.id())
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                ));
            }
        }
        experiments.retain(|e| options.experiments.contains(&e.id()));
    }
    let mut ctx = Ctx {
        run: &run,
        options,
        out: out.clone(),
        batch,
        progress,
        figures: Vec::new(),
        tables: Vec::new(),
        seconds: BTreeMap::new(),
    };
    let mut report = Report {
        title: "Analysis".into(),
        intro: vec![format!(
            "Produced by `dptq analyze` (dptq-analysis) from this run directory. Figures are PNG \
             and SVG, every table is also a CSV, every number is in `analysis.json`; \
             `index.html` is this section as one self-contained page. Accuracies in percent; \
             quantized passes use {}-bit weights, per-example min/max activation scales unless \
             said otherwise, BatchNorm with running statistics.",
            run.config.pairs.weight_bits
        )],
        sections: Vec::new(),
    };

    // Tables 1-2 summaries straight from results.json.
    let reported: Vec<&ExperimentResult> = experiments
        .iter()
        .filter_map(|e| run.result_of(e))
        .collect();
    if !reported.is_empty() {
        let mut s = Section::new("Tables 1 and 2 (from results.json)");
        let t1 = figures::table1(&reported)?;
        ctx.table(t1, &mut s, true)?;
        if part_enabled(options, AnalysisPart::Transitory) {
            let t2 = figures::table2(&reported)?;
            ctx.table(t2, &mut s, true)?;
        }
        report.sections.push(s);
    }

    let mut analyses = Vec::new();
    for experiment in &experiments {
        let models = run.load(experiment)?;
        let id = experiment.id();
        let tag = slug(&id);
        let mut result = ExperimentAnalysis {
            experiment: id.clone(),
            budget: experiment.budget,
            layers: models.layers.clone(),
            ..Default::default()
        };
        let weight_bits = Some(models.weight_bits);
        let need_test = [
            AnalysisPart::Transitory,
            AnalysisPart::Dynamics,
            AnalysisPart::Mitigation,
        ]
        .iter()
        .any(|p| part_enabled(options, *p))
            || (part_enabled(options, AnalysisPart::Cross) && run.result_of(experiment).is_none());
        let test = if need_test {
            Some(ctx.timed("load test split", |c| {
                c.eval_set("test", &run.data.dataset.test, options.test_examples)
            })?)
        } else {
            None
        };
        // Passes shared by the transitory points, the dynamics and the mitigation.
        let mut cache = test.as_ref().map(EvalCache::new);
        let policy_bits = |name: &str| -> (String, Bits<'_>) {
            let (pname, policy) = own_policy(&models, name);
            (
                pname.to_string(),
                Bits::Policy {
                    policy,
                    options: &experiment.options,
                    budget: experiment.budget,
                },
            )
        };

        if part_enabled(options, AnalysisPart::Cross) {
            let cross = match run.result_of(experiment) {
                Some(r) => r.cross.clone(),
                None => ctx.timed("cross", |c| {
                    let loader = c.run.data.test_loader(c.batch, &c.run.device)?;
                    let policies = [
                        ("pi_R", own_policy(&models, "R").1),
                        ("pi_D", own_policy(&models, "D").1),
                        (
                            "random",
                            EvalPolicy::Random {
                                seed: derive_seed(
                                    c.run.config.seed,
                                    &format!("random_policy/pairs/{id}"),
                                    0,
                                    0,
                                ),
                            },
                        ),
                    ];
                    let e = evaluate_cross(
                        &loader,
                        &models.networks(),
                        &policies,
                        &experiment.options,
                        experiment.budget,
                        models.weight_bits,
                        &dptq_distill::NoProgress,
                        &id,
                    )?;
                    let mut accuracy = Vec::new();
                    let mut fp = Vec::new();
                    for net in &e.networks {
                        fp.push(e.fp_accuracy(net)?);
                        accuracy.push(
                            e.policies
                                .iter()
                                .map(|p| e.quantized_accuracy(net, p))
                                .collect::<std::result::Result<Vec<_>, _>>()?,
                        );
                    }
                    Ok(dptq_distill::CrossMatrix {
                        networks: e.networks.clone(),
                        policies: e.policies.clone(),
                        accuracy,
                        fp,
                    })
                })?,
            };
            let mut s = Section::new(format!("Table 3: networks x policies ({id})"));
            s.paragraphs.push(
                "Is the damage in the network or in the pairing? Each network quantized by each \
                 policy at the same exact budget; `random` is the MCKP on random profits."
                    .into(),
            );
            ctx.table(
                figures::table3(&id, experiment.budget, &cross)?,
                &mut s,
                true,
            )?;
            report.sections.push(s);
            result.cross = Some(cross);
        }

        if part_enabled(options, AnalysisPart::Transitory) {
            let cache = cache.as_mut().expect("loaded above");
            let test = cache.set();
            let t = ctx.timed("transitory", |_| {
                let (pname, pi_d) = policy_bits("D");
                let rc = cache.fp(models.r.classifier(), "R")?.correct();
                let dc = cache.fp(models.d.classifier(), "D")?.correct();
                let d_q = cache
                    .get(
                        models.d.classifier(),
                        "D",
                        &pname,
                        &pi_d,
                        weight_bits,
                        RangeMode::MinMax,
                    )?
                    .clone();
                let qc = d_q.correct();
                let idx: Vec<usize> = (0..rc.len())
                    .filter(|&i| rc[i] && dc[i] && !qc[i])
                    .collect();
                let order: Vec<usize> = test
                    .batches
                    .iter()
                    .flat_map(|b| b.indices.iter().copied())
                    .collect();
                let whole = test.len() == run.data.dataset.test.len();
                Ok(Transitory {
                    experiment: id.clone(),
                    examples: test.len(),
                    indices: idx.iter().map(|&i| order[i]).collect(),
                    labels: idx.iter().map(|&i| d_q.labels[i]).collect(),
                    predicted: idx.iter().map(|&i| d_q.predictions[i]).collect(),
                    percent: 100.0 * idx.len() as f64 / test.len().max(1) as f64,
                    reported_count: if whole {
                        run.result_of(experiment).map(|r| r.transitory_count)
                    } else {
                        None
                    },
                })
            })?;
            let mut s = Section::new(format!("Transitory points ({id})"));
            s.paragraphs.push(format!(
                "{} of {} test examples ({:.2} %) are classified right by R and by D at full \
                 precision and wrong by D once quantized by pi_D: the examples a deployed D \
                 would fail on.{}",
                t.indices.len(),
                t.examples,
                t.percent,
                match t.reported_count {
                    Some(c) if c == t.indices.len() =>
                        " Recomputed here: the same count as `results.json`.".to_string(),
                    Some(c) => format!(
                        " Recomputed here: {} vs {c} in `results.json` (they should agree).",
                        t.indices.len()
                    ),
                    None => String::new(),
                }
            ));
            let mut table = Table::new(
                format!("transitory_{tag}"),
                "Transitory examples",
                &["test index", "label", "class", "D quantized predicts"],
            );
            let classes = &run.data.dataset.classes;
            for k in 0..t.indices.len() {
                table.push(vec![
                    t.indices[k].to_string(),
                    t.labels[k].to_string(),
                    classes
                        .get(t.labels[k] as usize)
                        .cloned()
                        .unwrap_or_default(),
                    classes
                        .get(t.predicted[k] as usize)
                        .cloned()
                        .unwrap_or_else(|| t.predicted[k].to_string()),
                ])?;
            }
            ctx.table(table, &mut s, false)?;
            let mut per_class = Table::new(
                format!("transitory_classes_{tag}"),
                "Transitory examples per class",
                &["class", "count"],
            );
            for (c, name) in classes.iter().enumerate() {
                let n = t.labels.iter().filter(|&&l| l as usize == c).count();
                per_class.push(vec![name.clone(), n.to_string()])?;
            }
            ctx.table(per_class, &mut s, true)?;
            report.sections.push(s);
            result.transitory = Some(t);
        }

        if part_enabled(options, AnalysisPart::Sweeps) {
            let sweeps = ctx.timed("sweeps", |c| {
                let cfg = &c.options.sweep;
                let train = c.eval_set("train", &c.run.data.dataset.train, cfg.train_examples)?;
                let test = c.eval_set("test", &c.run.data.dataset.test, cfg.test_examples)?;
                let mut out = Vec::new();
                for name in &cfg.networks {
                    let model = network(&models, name)?;
                    let (bits_name, bits) = match cfg.fixed_bits {
                        Some(b) => (format!("{b} bits"), Bits::Uniform(b)),
                        None => policy_bits(name),
                    };
                    out.push(run_sweeps(
                        model,
                        name,
                        &bits_name,
                        &bits,
                        weight_bits,
                        &[&train, &test],
                    )?);
                }
                Ok(out)
            })?;
            let mut s = Section::new(format!("Fig. 2: layer sweeps ({id})"));
            s.paragraphs.push(
                "Which layers does the failure come from? `before`: only layers 1..l quantized; \
                 `after`: only layers l+1..L; `single`: layer l alone (l counted from 1, in \
                 execution order). Solid: test, dashed: train. `before` at 0 is the network with \
                 full-precision activations, `before` at L the fully quantized one."
                    .into(),
            );
            for sw in &sweeps {
                let top: Vec<String> = sw
                    .vulnerable_layers("test")
                    .iter()
                    .take(3)
                    .map(|(l, d)| format!("{} `{}` ({:+.1} points)", l + 1, sw.layers[*l], -d))
                    .collect();
                s.paragraphs.push(format!(
                    "{} under {}: all-FP {:.2} %, all quantized {:.2} % (test, {} examples); most \
                     damaging layers alone: {}.",
                    sw.network,
                    sw.bits,
                    sw.all_fp("test").unwrap_or(f64::NAN),
                    sw.all_quantized("test").unwrap_or(f64::NAN),
                    sw.examples
                        .iter()
                        .find(|e| e.0 == "test")
                        .map_or(0, |e| e.1),
                    top.join(", ")
                ));
            }
            ctx.figure(
                figures::sweep_figure(
                    &format!("fig2_sweeps_{tag}"),
                    &format!("Fig. 2: layer sweeps, {id}"),
                    &sweeps,
                ),
                &mut s,
            )?;
            ctx.table(
                figures::vulnerable_table(&format!("vulnerable_layers_{tag}"), &sweeps, 5)?,
                &mut s,
                true,
            )?;
            ctx.table(
                figures::sweep_table(&format!("sweeps_{tag}"), &sweeps)?,
                &mut s,
                false,
            )?;
            report.sections.push(s);
            result.sweeps = sweeps;
        }

        if part_enabled(options, AnalysisPart::Hist) {
            let hists = ctx.timed("hist", |c| {
                let set = c.eval_set("test", &c.run.data.dataset.test, c.options.hist.examples)?;
                let mut out = Vec::new();
                for name in ["R", "D"] {
                    let (bits_name, bits) = policy_bits(name);
                    out.push(activation_histograms(
                        network(&models, name)?,
                        name,
                        &bits_name,
                        &bits,
                        weight_bits,
                        &set,
                        &c.options.hist,
                    )?);
                }
                Ok(out)
            })?;
            let mut s = Section::new(format!("Fig. 3: activation histograms ({id})"));
            s.paragraphs.push(format!(
                "The values each quantizable layer consumes, at full precision (FP) and once \
                 quantized by the network's own policy (Q), over {} test examples. Bins of width \
                 {} over [{}, {}]; the bin holding zero is removed and the rest renormalised; \
                 its share of all values (the sparsity measure) is printed under each panel.",
                hists.first().map_or(0, |h| h.examples),
                (options.hist.hi - options.hist.lo) / options.hist.bins as f64,
                options.hist.lo,
                options.hist.hi
            ));
            for h in &hists {
                let worst = h
                    .layers
                    .iter()
                    .max_by(|a, b| a.sparsity_change().total_cmp(&b.sparsity_change()));
                if let Some(w) = worst {
                    s.paragraphs.push(format!(
                        "{}: largest sparsity gain at layer {} `{}`: {:.1} % -> {:.1} % of values in the zero bin.",
                        h.network,
                        w.layer + 1,
                        w.name,
                        100.0 * w.fp.sparsity(),
                        100.0 * w.quantized.sparsity()
                    ));
                }
                ctx.figure(
                    figures::hist_figure(
                        &format!("fig3_hist_{}_{tag}", h.network),
                        &format!(
                            "Fig. 3: activations of {} (FP vs Q by {}), {id}",
                            h.network, h.bits
                        ),
                        h,
                    ),
                    &mut s,
                )?;
            }
            ctx.table(
                figures::hist_table(&format!("sparsity_{tag}"), &hists)?,
                &mut s,
                true,
            )?;
            ctx.table(
                figures::hist_bins_table(&format!("histograms_{tag}"), &hists)?,
                &mut s,
                false,
            )?;
            report.sections.push(s);
            result.histograms = hists;
        }

        if part_enabled(options, AnalysisPart::Dynamics) {
            let cache = cache.as_mut().expect("loaded above");
            let dyns = ctx.timed("dynamics", |_| {
                let mut out = Vec::new();
                for name in ["D", "R"] {
                    let (pname, bits) = policy_bits(name);
                    out.push(policy_dynamics(
                        network(&models, name)?,
                        name,
                        &pname,
                        &bits,
                        weight_bits,
                        cache,
                    )?);
                }
                Ok(out)
            })?;
            let mut s = Section::new(format!("How dynamic is each policy? ({id})"));
            s.paragraphs.push(format!(
                "Per layer, the share of test examples given each bit-width. The fixed \
                 allocation is the policy's choices projected back onto the exact budget B = {} \
                 (MCKP with profits = choice frequencies); \"damage share\" is how much of the \
                 policy's accuracy loss that single example-independent allocation reproduces.",
                experiment.budget
            ));
            for d in &dyns {
                s.paragraphs.push(format!(
                    "{} on {}: {:.1} % of examples share its most frequent allocation; fixed \
                     allocation [{}] gives {:.2} % vs {:.2} % per example (FP {:.2} %){}.",
                    d.policy,
                    d.network,
                    100.0 * d.counts.top_allocation_fraction(),
                    d.fixed_allocation
                        .iter()
                        .map(u32::to_string)
                        .collect::<Vec<_>>()
                        .join(", "),
                    d.accuracy_fixed,
                    d.accuracy_dynamic,
                    d.accuracy_fp,
                    d.damage_share()
                        .map_or(String::new(), |x| format!("; damage share {x:.0} %"))
                ));
            }
            ctx.table(
                figures::dynamics_table(&format!("dynamics_{tag}"), &dyns)?,
                &mut s,
                true,
            )?;
            ctx.table(
                figures::choices_table(&format!("bit_choices_{tag}"), &dyns)?,
                &mut s,
                false,
            )?;
            ctx.figure(
                figures::dynamics_figure(
                    &format!("bit_choices_{tag}"),
                    &format!("Bit-widths chosen per layer, {id}"),
                    &dyns,
                ),
                &mut s,
            )?;
            report.sections.push(s);
            result.dynamics = dyns;
        }

        if part_enabled(options, AnalysisPart::Mitigation) {
            let cache = cache.as_mut().expect("loaded above");
            let mits = ctx.timed("mitigation", |c| {
                let mut out = Vec::new();
                for name in ["D", "R"] {
                    let (pname, bits) = policy_bits(name);
                    out.push(percentile_mitigation(
                        network(&models, name)?,
                        name,
                        &pname,
                        &bits,
                        weight_bits,
                        cache,
                        &c.options.percentiles,
                    )?);
                }
                Ok(out)
            })?;
            let mut s = Section::new(format!("Mitigation: percentile scales ({id})"));
            s.paragraphs.push(
                "The same per-example bits, but each example's activation range clipped to the \
                 [100-p, p] percentiles instead of its min/max (paper Sect. 4.2): outliers no \
                 longer stretch the scale and fewer small values collapse to zero."
                    .into(),
            );
            ctx.table(
                figures::mitigation_table(&format!("mitigation_{tag}"), &mits)?,
                &mut s,
                true,
            )?;
            report.sections.push(s);
            result.mitigation = mits;
        }

        if part_enabled(options, AnalysisPart::Corrupt) {
            let c_result = ctx.timed("corrupt", |c| {
                let split = balanced_subset(
                    &c.run.data.dataset.test,
                    c.options.corrupt.examples,
                    usize::MAX,
                );
                let eval = match c.run.data.eval_pipeline.transform {
                    Transform::Eval(e) => e,
                    Transform::Train(_) => {
                        return Err(Error::invalid(
                            "evaluation pipeline",
                            "the run's evaluation transform is a training transform",
                        ));
                    }
                };
                corruption_robustness(
                    &models.networks(),
                    &split,
                    eval,
                    c.run.data.eval_pipeline.normalize,
                    &c.options.corrupt,
                    derive_seed(c.run.config.seed, "analysis/corrupt", 0, 0),
                    c.batch,
                    &c.run.device,
                )
            })?;
            let mut s = Section::new(format!("Fig. 4: corruptions ({id})"));
            s.paragraphs.push(format!(
                "Does the detrimental network already look brittle at full precision? Accuracy of \
                 W, R and D (all at full precision) on {} class-balanced test examples under each \
                 corruption, mean and standard deviation over {} seeds per degree (degree 0: the \
                 clean images).{}",
                c_result.examples,
                c_result.seeds,
                c_result
                    .mean_gap("R", "D")
                    .map_or(String::new(), |g| format!(" Averaged over corruptions and non-zero degrees, R is {g:+.2} points from D."))
            ));
            ctx.figure(
                figures::corrupt_figure(
                    &format!("fig4_corrupt_{tag}"),
                    &format!("Fig. 4: accuracy under corruptions, {id}"),
                    &c_result,
                ),
                &mut s,
            )?;
            ctx.table(
                figures::corrupt_table(&format!("corrupt_{tag}"), &c_result)?,
                &mut s,
                false,
            )?;
            report.sections.push(s);
            result.corrupt = Some(c_result);
        }
        if let Some(c) = &cache {
            result.passes = c.timings().to_vec();
        }
        analyses.push(result);
    }

    let html_path = out.join("index.html");
    std::fs::write(&html_path, report.to_html()).map_err(|e| Error::io(&html_path, e))?;
    ctx.seconds
        .insert("total".into(), started.elapsed().as_secs_f64());
    let summary = AnalysisSummary {
        run_dir: run_dir.to_path_buf(),
        out_dir: out.clone(),
        experiments: analyses,
        figures: ctx.figures,
        tables: ctx.tables,
        html: html_path,
        json: out.join("analysis.json"),
        seconds: ctx.seconds,
    };
    let json = serde_json::to_string_pretty(&summary)?;
    std::fs::write(&summary.json, json).map_err(|e| Error::io(&summary.json, e))?;
    if options.update_report {
        let prefix = match out.strip_prefix(run_dir) {
            Ok(rel) => rel.to_string_lossy().into_owned(),
            Err(_) => out.to_string_lossy().into_owned(),
        };
        splice_into_file(&run_dir.join("report.md"), &report.to_markdown(2, &prefix))?;
    }
    Ok(summary)
}
