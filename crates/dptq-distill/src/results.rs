//! What a run measured: `results.json`, `report.md` and the tables printed to stdout.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::{Deserialize, Serialize};

use crate::eval::CrossEval;
use crate::pairs::StepTimes;
use crate::trainer::StageOutcome;

/// The bars the default run must clear to show the phenomenon (issue 5, item 7).
pub const FP_GAP_BAR: f64 = 2.0;
/// R's accuracy change once quantized must be at least this (points).
pub const ROBUST_CHANGE_BAR: f64 = -3.0;
/// D's accuracy change once quantized must be at most this (points).
pub const DETRIMENTAL_CHANGE_BAR: f64 = -30.0;

/// Full-precision accuracy, percent.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct FpAccuracy {
    /// Top-1 accuracy at full precision, percent.
    pub fp: f64,
}

/// A pair's network at full precision and quantized by its own policy, percent.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct PairAccuracy {
    /// Full precision.
    pub fp: f64,
    /// Quantized by its own policy (16-bit weights, exact budget).
    pub quantized: f64,
    /// `quantized - fp`, points.
    pub change: f64,
}

impl PairAccuracy {
    fn new(fp: f64, quantized: f64) -> Self {
        Self {
            fp,
            quantized,
            change: quantized - fp,
        }
    }
}

/// Table 3: accuracy of networks x policies, percent.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CrossMatrix {
    /// Row names: `W`, `R`, `D`.
    pub networks: Vec<String>,
    /// Column names: `pi_R`, `pi_D`, `random`.
    pub policies: Vec<String>,
    /// `accuracy[network][policy]`.
    pub accuracy: Vec<Vec<f64>>,
    /// Full-precision accuracy of each row.
    pub fp: Vec<f64>,
}

/// Whether a pair shows the phenomenon, bar by bar.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Verdict {
    /// `|R_fp - W_fp| <= 2` and `|D_fp - W_fp| <= 2`.
    pub fp_within_2_points: bool,
    /// R's change once quantized `>= -3` points.
    pub robust_holds: bool,
    /// D's change once quantized `<= -30` points.
    pub detrimental_collapses: bool,
    /// All three, with every example on budget.
    pub shown: bool,
}

/// One robust/detrimental experiment (a student, a bit version, a budget).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExperimentResult {
    /// `<student>/<version>-<budget level>`.
    pub id: String,
    /// Student architecture.
    pub student: String,
    /// Bit version name.
    pub version: String,
    /// Budget level name.
    pub budget_level: String,
    /// Bit options.
    pub options: Vec<u32>,
    /// Exact bit budget per example.
    pub budget: u32,
    /// The quantized layers (timm module names, execution order).
    pub layers: Vec<String>,
    /// W.
    pub white_box: FpAccuracy,
    /// R under pi_R.
    pub robust: PairAccuracy,
    /// D under pi_D.
    pub detrimental: PairAccuracy,
    /// Table 2: percent of test examples R and D both get right at FP and D_q gets wrong.
    pub transitory_points: f64,
    /// The same, as a count.
    pub transitory_count: usize,
    /// Test examples evaluated.
    pub test_examples: usize,
    /// Bit vectors checked against the budget (test examples x 3 policies).
    pub budget_checked: usize,
    /// Bit vectors that cost exactly the budget.
    pub budget_exact: usize,
    /// `budget_exact / budget_checked` (1.0 is the guarantee).
    pub budget_exact_fraction: f64,
    /// Table 3.
    pub cross: CrossMatrix,
    /// Average bits per layer under each policy.
    pub mean_bits: BTreeMap<String, Vec<f64>>,
    /// The bars of the phenomenon.
    pub verdict: Verdict,
    /// Where the stage-2 step spent its time (seconds over the steps of this process).
    pub step_times: StepTimes,
}

impl ExperimentResult {
    /// Builds the tables of an experiment from its per-example evaluation (rows `W`, `R`,
    /// `D`; columns `pi_R`, `pi_D`, `random`).
    pub fn from_eval(
        experiment: &crate::config::Experiment,
        layers: Vec<String>,
        eval: &CrossEval,
        step_times: StepTimes,
    ) -> crate::Result<Self> {
        let w = eval.fp_accuracy("W")?;
        let robust = PairAccuracy::new(
            eval.fp_accuracy("R")?,
            eval.quantized_accuracy("R", "pi_R")?,
        );
        let detrimental = PairAccuracy::new(
            eval.fp_accuracy("D")?,
            eval.quantized_accuracy("D", "pi_D")?,
        );
        let (transitory_count, transitory_points) = eval.transitory_points("R", "D", "pi_D")?;
        let mut accuracy = Vec::new();
        let mut fp = Vec::new();
        for net in &eval.networks {
            fp.push(eval.fp_accuracy(net)?);
            let mut row = Vec::new();
            for pol in &eval.policies {
                row.push(eval.quantized_accuracy(net, pol)?);
            }
            accuracy.push(row);
        }
        let budget_exact_fraction = eval.budget_exact_fraction();
        let fp_ok = (robust.fp - w).abs() <= FP_GAP_BAR && (detrimental.fp - w).abs() <= FP_GAP_BAR;
        let r_ok = robust.change >= ROBUST_CHANGE_BAR;
        let d_ok = detrimental.change <= DETRIMENTAL_CHANGE_BAR;
        Ok(Self {
            id: experiment.id(),
            student: experiment.student.clone(),
            version: experiment.version.clone(),
            budget_level: experiment.budget_level.clone(),
            options: experiment.options.clone(),
            budget: experiment.budget,
            layers,
            white_box: FpAccuracy { fp: w },
            robust,
            detrimental,
            transitory_points,
            transitory_count,
            test_examples: eval.fp.first().map_or(0, |v| v.len()),
            budget_checked: eval.budget_checked,
            budget_exact: eval.budget_exact,
            budget_exact_fraction,
            cross: CrossMatrix {
                networks: eval.networks.clone(),
                policies: eval.policies.clone(),
                accuracy,
                fp,
            },
            mean_bits: eval
                .policies
                .iter()
                .cloned()
                .zip(eval.mean_bits.iter().cloned())
                .collect(),
            verdict: Verdict {
                fp_within_2_points: fp_ok,
                robust_holds: r_ok,
                detrimental_collapses: d_ok,
                shown: fp_ok && r_ok && d_ok && budget_exact_fraction == 1.0,
            },
            step_times,
        })
    }
}

/// The dataset a run used.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DataSummary {
    /// The data spec (`embedded`, `pets:DIR`, ...).
    pub spec: String,
    /// Number of classes.
    pub classes: usize,
    /// Training examples used.
    pub train: usize,
    /// Test examples evaluated.
    pub test: usize,
    /// Files skipped while opening, with the reason.
    pub skipped: Vec<dptq_data::SkippedFile>,
}

/// Everything a run measured (`results.json`). The top-level `budget` ... `transitory_points`
/// fields repeat the first experiment (the only one of the tiny preset).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Results {
    /// Preset name.
    pub preset: String,
    /// Run seed.
    pub seed: u64,
    /// Exact bit budget of the first experiment.
    pub budget: u32,
    /// Bit options of the first experiment.
    pub options: Vec<u32>,
    /// Fraction of evaluated bit vectors that cost exactly the budget, over every
    /// experiment (1.0 is the guarantee).
    pub budget_exact_fraction: f64,
    /// Bit vectors checked, over every experiment.
    pub budget_checked: usize,
    /// W of the first experiment.
    pub white_box: FpAccuracy,
    /// R of the first experiment.
    pub robust: PairAccuracy,
    /// D of the first experiment.
    pub detrimental: PairAccuracy,
    /// Transitory points of the first experiment, percent.
    pub transitory_points: f64,
    /// The teacher (stage 0), if evaluated.
    pub teacher: Option<FpAccuracy>,
    /// Every experiment.
    pub experiments: Vec<ExperimentResult>,
    /// The data.
    pub data: DataSummary,
    /// Training stages: steps, images/s, seconds.
    pub stages: Vec<StageOutcome>,
    /// Seconds per evaluation.
    pub eval_seconds: BTreeMap<String, f64>,
    /// Wall-clock seconds of this process's `reproduce` call.
    pub wall_seconds: f64,
}

impl Results {
    /// `results.json` text.
    pub fn to_json(&self) -> crate::Result<String> {
        Ok(serde_json::to_string_pretty(self)?)
    }

    /// The tables as Markdown (printed by `dptq reproduce`, and the core of `report.md`).
    pub fn tables(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(
            s,
            "Table 1: full-precision accuracy and change once quantized by the pair's own policy (%)\n"
        );
        let _ = writeln!(
            s,
            "| student | bits | budget | W fp | R fp | R change | D fp | D change | on budget |"
        );
        let _ = writeln!(s, "|---|---|---|---|---|---|---|---|---|");
        for e in &self.experiments {
            let _ = writeln!(
                s,
                "| {} | {} ({}..{}) | {} {} | {:.2} | {:.2} | {:+.2} | {:.2} | {:+.2} | {}/{} |",
                e.student,
                e.version,
                e.options.first().unwrap_or(&0),
                e.options.last().unwrap_or(&0),
                e.budget_level,
                e.budget,
                e.white_box.fp,
                e.robust.fp,
                e.robust.change,
                e.detrimental.fp,
                e.detrimental.change,
                e.budget_exact,
                e.budget_checked,
            );
        }
        let _ = writeln!(
            s,
            "\nTable 2: transitory points (R and D right at FP, D quantized wrong; % of test examples)\n"
        );
        let _ = writeln!(
            s,
            "| experiment | transitory points | count / test examples |"
        );
        let _ = writeln!(s, "|---|---|---|");
        for e in &self.experiments {
            let _ = writeln!(
                s,
                "| {} | {:.2} | {} / {} |",
                e.id, e.transitory_points, e.transitory_count, e.test_examples
            );
        }
        for e in &self.experiments {
            let _ = writeln!(
                s,
                "\nTable 3 ({}): accuracy of network x policy (%), every policy at budget {}\n",
                e.id, e.budget
            );
            let _ = write!(s, "| network | fp |");
            for p in &e.cross.policies {
                let _ = write!(s, " {p} |");
            }
            let _ = writeln!(s);
            let _ = writeln!(s, "|---|---|{}", "---|".repeat(e.cross.policies.len()));
            for (i, n) in e.cross.networks.iter().enumerate() {
                let _ = write!(s, "| {n} | {:.2} |", e.cross.fp[i]);
                for a in &e.cross.accuracy[i] {
                    let _ = write!(s, " {a:.2} |");
                }
                let _ = writeln!(s);
            }
        }
        s
    }

    /// The phenomenon's bars, one line per experiment.
    pub fn verdicts(&self) -> String {
        let mut s = String::new();
        let mark = |b: bool| if b { "yes" } else { "NO" };
        for e in &self.experiments {
            let _ = writeln!(
                s,
                "{}: FP within {FP_GAP_BAR} points of W: {} (R {:+.2}, D {:+.2}); R change >= {ROBUST_CHANGE_BAR}: {} ({:+.2}); D change <= {DETRIMENTAL_CHANGE_BAR}: {} ({:+.2}); every example on budget: {} ({}/{}) => phenomenon {}",
                e.id,
                mark(e.verdict.fp_within_2_points),
                e.robust.fp - e.white_box.fp,
                e.detrimental.fp - e.white_box.fp,
                mark(e.verdict.robust_holds),
                e.robust.change,
                mark(e.verdict.detrimental_collapses),
                e.detrimental.change,
                mark(e.budget_exact_fraction == 1.0),
                e.budget_exact,
                e.budget_checked,
                if e.verdict.shown {
                    "SHOWN"
                } else {
                    "NOT SHOWN"
                },
            );
        }
        s
    }

    /// `report.md`: the tables, the verdicts, the pairing, per-layer bits, timings.
    pub fn report(&self, config_toml: &str) -> String {
        let mut s = String::new();
        let _ = writeln!(s, "# dptq run report\n");
        let _ = writeln!(
            s,
            "Preset `{}`, seed {}, data `{}` ({} classes, {} train / {} test examples, {} files skipped).\n",
            self.preset,
            self.seed,
            self.data.spec,
            self.data.classes,
            self.data.train,
            self.data.test,
            self.data.skipped.len()
        );
        if let Some(t) = &self.teacher {
            let _ = writeln!(
                s,
                "Teacher (black box of stage 1): {:.2} % at full precision.\n",
                t.fp
            );
        }
        let _ = writeln!(s, "## Tables\n");
        s.push_str(&self.tables());
        let _ = writeln!(s, "\n## The phenomenon\n");
        for line in self.verdicts().lines() {
            let _ = writeln!(s, "- {line}");
        }
        let _ = writeln!(s, "\n## How specific is the pairing\n");
        for e in &self.experiments {
            let acc = |net: &str, pol: &str| -> Option<f64> {
                let i = e.cross.networks.iter().position(|n| n == net)?;
                let j = e.cross.policies.iter().position(|p| p == pol)?;
                Some(e.cross.accuracy[i][j])
            };
            if let (Some(d_d), Some(d_r), Some(d_rand), Some(r_d)) = (
                acc("D", "pi_D"),
                acc("D", "pi_R"),
                acc("D", "random"),
                acc("R", "pi_D"),
            ) {
                let _ = writeln!(
                    s,
                    "- {}: D under pi_D {:.2} %, under pi_R {:.2} %, under a random policy {:.2} % (D at FP {:.2} %); R under pi_D {:.2} %.",
                    e.id, d_d, d_r, d_rand, e.detrimental.fp, r_d
                );
            }
        }
        let _ = writeln!(s, "\n## Average bits per layer\n");
        for e in &self.experiments {
            let _ = writeln!(
                s,
                "{} (budget {} over {} layers):\n",
                e.id,
                e.budget,
                e.layers.len()
            );
            let _ = writeln!(
                s,
                "| layer | {} |",
                e.mean_bits.keys().cloned().collect::<Vec<_>>().join(" | ")
            );
            let _ = writeln!(s, "|---|{}", "---|".repeat(e.mean_bits.len()));
            for (l, name) in e.layers.iter().enumerate() {
                let cells: Vec<String> = e
                    .mean_bits
                    .values()
                    .map(|v| format!("{:.2}", v[l]))
                    .collect();
                let _ = writeln!(s, "| {name} | {} |", cells.join(" | "));
            }
            let _ = writeln!(s);
        }
        let _ = writeln!(s, "## Timings\n");
        let _ = writeln!(s, "| stage | steps | images | seconds | images/s |");
        let _ = writeln!(s, "|---|---|---|---|---|");
        for st in &self.stages {
            let _ = writeln!(
                s,
                "| {} | {} | {} | {:.1} | {:.1} |",
                st.stage, st.steps, st.images, st.train_seconds, st.images_per_second
            );
        }
        for (what, secs) in &self.eval_seconds {
            let _ = writeln!(s, "| eval {what} | | | {secs:.1} | |");
        }
        let _ = writeln!(
            s,
            "\nWall time of the last `reproduce` call: {:.1} s.\n",
            self.wall_seconds
        );
        for e in &self.experiments {
            let t = &e.step_times;
            let total = t.total();
            if t.steps > 0 && total > 0.0 {
                let pct = |x: f64| 100.0 * x / total;
                let _ = writeln!(
                    s,
                    "Stage-2 step of {} ({} steps): teacher {:.1} %, policies {:.1} %, MCKP {:.2} %, student FP passes {:.1} %, quantized passes {:.1} %, losses + backward {:.1} %, optimizer {:.1} %.\n",
                    e.id,
                    t.steps,
                    pct(t.teacher),
                    pct(t.policy),
                    pct(t.mckp),
                    pct(t.student_fp),
                    pct(t.student_quantized),
                    pct(t.backward),
                    pct(t.optimizer)
                );
            }
        }
        let _ = writeln!(s, "## Configuration\n\n```toml\n{config_toml}```");
        s
    }
}
