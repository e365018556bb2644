//! The configuration of a run: every knob of the three stages and the evaluation, with
//! two presets (`tiny`, the default, and `paper`), overridable from a TOML file and from
//! `key=value` assignments. The resolved configuration is what a run records in
//! `config.toml`; loading that file back gives the same run.
//!
//! Layering: preset, then a TOML file (any subset of the fields, merged table by table),
//! then `--set section.key=value` assignments (the value is TOML: `3`, `0.05`,
//! `"resnet18"`, `[3, 4, 5]`). Unknown keys are errors.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::optim::OptimizerConfig;

/// The `tiny` preset: embedded Fashion-MNIST, small ResNets, CPU, minutes.
pub const TINY_PRESET: &str = include_str!("../presets/tiny.toml");
/// The `paper` preset: Oxford-IIIT Pets, ResNet50 teacher, the paper's students, grids
/// and recipes (SPEC §5-6); meant for a GPU.
pub const PAPER_PRESET: &str = include_str!("../presets/paper.toml");
/// The `smoke` preset, as fields merged over `tiny`: 320 training / 200 test images, one
/// epoch per stage. An end-to-end check of an installation in under a minute.
pub const SMOKE_OVERRIDES: &str = include_str!("../presets/smoke.toml");

/// A whole run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunConfig {
    /// Name of the preset the configuration started from (default `"tiny"`).
    pub preset: String,
    /// Seed of every random draw: initialisation, data order, augmentation, mixup,
    /// random policies (default 0).
    pub seed: u64,
    /// `"cpu"`, `"cuda"` or `"cuda:N"` (default `"cpu"`).
    pub device: String,
    /// Dataset and input pipeline.
    pub data: DataConfig,
    /// Stage 0: the teacher (the black box of stage 1).
    pub teacher: TeacherConfig,
    /// Stage 1: black-box distillation into the white-box students.
    pub white_box: WhiteBoxConfig,
    /// Stage 2: the robust and detrimental network–policy pairs.
    pub pairs: PairsConfig,
    /// Evaluation of W, R, D and the policies.
    pub eval: EvalConfig,
    /// Checkpointing and logging.
    pub run: RunOptions,
}

/// Which data, at what size.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DataConfig {
    /// `embedded` (the committed Fashion-MNIST subset), `pets:DIR`, `imagefolder:DIR`
    /// or `idx:DIR` (default `embedded`). The class count is taken from the data.
    pub spec: String,
    /// Side of the square images the models see (default 28; the paper: 224).
    pub image_size: usize,
    /// Use at most this many training examples, class-balanced order kept (0 = all;
    /// default 0).
    pub train_limit: usize,
    /// Use at most this many test examples (0 = all; default 0).
    pub test_limit: usize,
    /// Training augmentation: `none`, `light` (padded random crop + flip) or `paper`
    /// (random resized crop, RandAugment, colour jitter, flip; default `light`).
    pub augment: String,
    /// Skip unreadable image files instead of failing; they are listed in
    /// `results.json` (default false).
    pub skip_bad: bool,
}

/// One training stage's optimisation recipe.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrainConfig {
    /// Passes over the training set (default 1).
    pub epochs: usize,
    /// Examples per step (default 64).
    pub batch_size: usize,
    /// Peak learning rate of the half-period cosine (default 0.1).
    pub lr: f64,
    /// Learning rate the cosine ends at (default 0).
    pub final_lr: f64,
    /// Linear warm-up, in epochs (may be fractional; default 0).
    pub warmup_epochs: f64,
    /// Update rule (default SGD, momentum 0.9, weight decay 1e-4).
    pub optimizer: OptimizerConfig,
    /// Write a checkpoint every this many steps, and at the end of every epoch
    /// (0 = only at epoch ends; default 0).
    pub checkpoint_every: u64,
}

/// Stage 0.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TeacherConfig {
    /// Architecture (default `resnet_tiny_wide`; the paper: `resnet50`).
    pub arch: String,
    /// Where the weights start: `scratch` (seeded random init), `hub:REPO` (timm weights
    /// such as `hub:timm/resnet50.a1_in1k`, from the local Hugging Face cache or
    /// downloaded; the classifier head is re-initialised for the dataset's classes) or
    /// `file:PATH` (timm-named safetensors; default `scratch`).
    pub init: String,
    /// Label smoothing of the cross-entropy (default 0.1).
    pub label_smoothing: f64,
    /// The recipe.
    pub train: TrainConfig,
}

/// Stage 1.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WhiteBoxConfig {
    /// Student architectures, each distilled from the teacher (default
    /// `["resnet_tiny"]`; the paper: `resnet18`, `mobilenetv4_conv_medium`,
    /// `regnetx_016`).
    pub students: Vec<String>,
    /// KD temperature `T` (default 1.0).
    pub temperature: f64,
    /// Mixup `alpha` of the "patient and consistent" batches (0 = no mixup; default 1.0).
    pub mixup_alpha: f64,
    /// The recipe.
    pub train: TrainConfig,
    /// Per-student batch sizes that differ from `train.batch_size` (the paper: 64 for
    /// MobileNetV4); empty by default.
    pub batch_size_for: BTreeMap<String, usize>,
}

/// How the policy's output becomes MCKP profits (SPEC §5 allows both).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Profits {
    /// The raw logits `[N, L, K]`.
    Logits,
    /// Softmax over the K options of each layer.
    Softmax,
}

/// Which BatchNorm mode the quantized student pass of stage 2 uses. SPEC §4 fixes
/// `frozen_stats`; the others exist to reproduce the ablation that shows why.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum QuantizedPassBn {
    /// Batch statistics, running statistics untouched (SPEC §4; the default).
    FrozenStats,
    /// Batch statistics, running statistics updated by the quantized pass too.
    UpdateStats,
    /// Running statistics (eval-mode BN).
    RunningStats,
}

/// A set of bit options (a "bit version" of the paper: I = 3..10, II = 4..10, III = 5..10).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BitVersion {
    /// Name used in tables (`I`, `II`, `III`).
    pub name: String,
    /// The bit-widths a layer can take, ascending.
    pub options: Vec<u32>,
    /// Bits added to the budget of this version, per student architecture (the paper:
    /// +20 / +30 / +80 for ResNet18 / MobileNetV4 / RegNetX in versions II and III).
    #[serde(default)]
    pub budget_adjust: BTreeMap<String, i64>,
}

/// A budget level: average bits per layer (`B = round(avg · L) + adjust`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BudgetLevel {
    /// Name used in tables (`A`, `B`, `C`).
    pub name: String,
    /// Average bits per quantized layer.
    pub avg_bits: f64,
}

/// Stage 2.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PairsConfig {
    /// Hinge margin `m`, in probability units (default 0.1).
    pub margin: f64,
    /// Weight `alpha` of the KD term (default 1).
    pub kd_weight: f64,
    /// Weight `beta` of the hinge term (default 1).
    pub hinge_weight: f64,
    /// KD temperature of the self-distillation (default 1.0).
    pub temperature: f64,
    /// Weight bit-width of the quantized pass (symmetric, per tensor; default 16).
    pub weight_bits: u32,
    /// Policy output used as MCKP profits (default `logits`).
    pub profits: Profits,
    /// BatchNorm of the quantized pass (default `frozen_stats`, SPEC §4).
    pub quantized_pass_bn: QuantizedPassBn,
    /// Hidden width of the policy CNN (default 16).
    pub policy_width: usize,
    /// Side the policy resizes images to before its convs (0 = the native size;
    /// default 0).
    pub policy_input_size: usize,
    /// Bit versions trained (default `I` = 3..10).
    pub bit_versions: Vec<BitVersion>,
    /// Budget levels trained (default `A` = 4 bits per layer).
    pub budgets: Vec<BudgetLevel>,
    /// The recipe of students and policies alike.
    pub train: TrainConfig,
    /// Learning rate of the policies when it differs from `train.lr` (0 = same;
    /// default 0).
    pub policy_lr: f64,
}

/// Evaluation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EvalConfig {
    /// Examples per evaluation batch (default 256).
    pub batch_size: usize,
    /// Also evaluate the teacher (default true).
    pub teacher: bool,
}

/// Checkpointing, logging, and the step limit used to test resume.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunOptions {
    /// Log a metrics record every this many steps (default 10).
    pub log_every: u64,
    /// Stop with an error after this many optimizer steps in this process, all stages
    /// together (0 = no limit; default 0). Simulates a kill for resume tests.
    pub stop_after_steps: u64,
}

impl Default for TrainConfig {
    fn default() -> Self {
        Self {
            epochs: 1,
            batch_size: 64,
            lr: 0.1,
            final_lr: 0.0,
            warmup_epochs: 0.0,
            optimizer: OptimizerConfig::default(),
            checkpoint_every: 0,
        }
    }
}

impl Default for RunConfig {
    /// The `tiny` preset.
    fn default() -> Self {
        Self::preset("tiny").expect("the tiny preset parses")
    }
}

/// Deep-merges `over` into `base`: tables merge key by key, anything else replaces. A
/// tagged table whose `kind` changes (an optimizer switching from SGD to AdamW) is
/// replaced whole, since the fields of one kind mean nothing to the other.
fn merge(base: &mut toml::Value, over: toml::Value) {
    match (base, over) {
        (toml::Value::Table(b), toml::Value::Table(o))
            if o.get("kind").is_some() && o.get("kind") != b.get("kind") =>
        {
            *b = o;
        }
        (toml::Value::Table(b), toml::Value::Table(o)) => {
            for (k, v) in o {
                match b.get_mut(&k) {
                    Some(slot) => merge(slot, v),
                    None => {
                        b.insert(k, v);
                    }
                }
            }
        }
        (slot, v) => *slot = v,
    }
}

fn parse_table(text: &str, origin: &str) -> Result<toml::Value> {
    let table: toml::Table =
        toml::from_str(text).map_err(|e| Error::Config(format!("{origin}: {e}")))?;
    Ok(toml::Value::Table(table))
}

impl RunConfig {
    /// The named preset: `tiny`, `paper` or `smoke`.
    pub fn preset(name: &str) -> Result<Self> {
        match name {
            "tiny" => Self::from_toml(TINY_PRESET),
            "paper" => Self::from_toml(PAPER_PRESET),
            "smoke" => Self::from_toml(TINY_PRESET)?.merge_toml(SMOKE_OVERRIDES, "smoke preset"),
            other => Err(Error::Config(format!(
                "unknown preset {other:?} (expected \"tiny\", \"paper\" or \"smoke\")"
            ))),
        }
    }

    /// Parses a complete configuration (e.g. a run's `config.toml`).
    pub fn from_toml(text: &str) -> Result<Self> {
        let cfg: RunConfig = toml::from_str(text).map_err(|e| Error::Config(e.to_string()))?;
        cfg.validate()?;
        Ok(cfg)
    }

    /// The configuration as TOML (every field).
    pub fn to_toml(&self) -> Result<String> {
        toml::to_string(self).map_err(|e| Error::Config(e.to_string()))
    }

    /// Applies a TOML file's fields on top of this configuration (tables merge).
    pub fn merge_toml(&self, text: &str, origin: &str) -> Result<Self> {
        let mut base = toml::Value::try_from(self).map_err(|e| Error::Config(e.to_string()))?;
        merge(&mut base, parse_table(text, origin)?);
        let cfg: RunConfig = base
            .try_into()
            .map_err(|e: toml::de::Error| Error::Config(format!("{origin}: {e}")))?;
        cfg.validate()?;
        Ok(cfg)
    }

    /// Applies one `section.key=value` assignment; the value is parsed as TOML, and a
    /// bare word that is not valid TOML is taken as a string (`data.spec=embedded`).
    pub fn set(&self, assignment: &str) -> Result<Self> {
        let (key, value) = assignment.split_once('=').ok_or_else(|| {
            Error::Config(format!(
                "override {assignment:?} is not of the form key=value"
            ))
        })?;
        let key = key.trim();
        let value = value.trim();
        if key.is_empty() || key.split('.').any(|part| part.is_empty()) {
            return Err(Error::Config(format!(
                "override {assignment:?} has an empty key"
            )));
        }
        let parsed: toml::Value = match toml::from_str::<toml::Table>(&format!("v = {value}")) {
            Ok(mut t) => t.remove("v").unwrap_or(toml::Value::String(value.into())),
            Err(_) => toml::Value::String(value.to_string()),
        };
        let mut base = toml::Value::try_from(self).map_err(|e| Error::Config(e.to_string()))?;
        // Reject keys that do not exist: a typo must not silently do nothing.
        {
            let mut cursor = &base;
            let parts: Vec<&str> = key.split('.').collect();
            for (i, part) in parts.iter().enumerate() {
                match cursor.get(part) {
                    Some(next) => cursor = next,
                    None if i + 1 == parts.len()
                        && cursor.is_table()
                        && is_open_map(&parts[..i]) =>
                    {
                        break;
                    }
                    None => {
                        return Err(Error::Config(format!("unknown configuration key {key:?}")));
                    }
                }
            }
        }
        // The value replaces the key's whole value (a table given with --set is complete).
        let parts: Vec<&str> = key.split('.').collect();
        let Some((last, parents)) = parts.split_last() else {
            return Err(Error::Config(format!(
                "override {assignment:?} has an empty key"
            )));
        };
        let mut cursor = &mut base;
        for part in parents {
            cursor = cursor
                .get_mut(part)
                .ok_or_else(|| Error::Config(format!("unknown configuration key {key:?}")))?;
        }
        match cursor.as_table_mut() {
            Some(table) => {
                table.insert(last.to_string(), parsed);
            }
            None => return Err(Error::Config(format!("{key:?} is not inside a table"))),
        }
        let cfg: RunConfig = base
            .try_into()
            .map_err(|e: toml::de::Error| Error::Config(format!("override {assignment:?}: {e}")))?;
        cfg.validate()?;
        Ok(cfg)
    }

    /// Checks values no stage could run with.
    pub fn validate(&self) -> Result<()> {
        let bad = |what: &str| Err(Error::Config(what.to_string()));
        for (name, t) in [
            ("teacher.train", &self.teacher.train),
            ("white_box.train", &self.white_box.train),
            ("pairs.train", &self.pairs.train),
        ] {
            if t.batch_size == 0 {
                return bad(&format!("{name}.batch_size must be positive"));
            }
            if !(t.lr.is_finite() && t.lr >= 0.0) {
                return bad(&format!("{name}.lr must be finite and >= 0, got {}", t.lr));
            }
            if t.warmup_epochs.is_nan() || t.warmup_epochs < 0.0 {
                return bad(&format!("{name}.warmup_epochs must be >= 0"));
            }
        }
        if self.white_box.students.is_empty() {
            return bad("white_box.students is empty");
        }
        if !(self.white_box.temperature > 0.0 && self.pairs.temperature > 0.0) {
            return bad("temperatures must be positive");
        }
        if self.white_box.mixup_alpha.is_nan() || self.white_box.mixup_alpha < 0.0 {
            return bad("white_box.mixup_alpha must be >= 0");
        }
        if !(0.0..1.0).contains(&self.teacher.label_smoothing) {
            return bad("teacher.label_smoothing must be in [0, 1)");
        }
        if self.pairs.bit_versions.is_empty() || self.pairs.budgets.is_empty() {
            return bad("pairs.bit_versions and pairs.budgets must not be empty");
        }
        for v in &self.pairs.bit_versions {
            if v.options.is_empty() || v.options.windows(2).any(|w| w[0] >= w[1]) {
                return bad(&format!(
                    "bit version {:?}: options must be non-empty and strictly ascending, got {:?}",
                    v.name, v.options
                ));
            }
            if v.options.iter().any(|&b| b == 0 || b > 16) {
                return bad(&format!(
                    "bit version {:?}: options must lie in 1..=16",
                    v.name
                ));
            }
        }
        for b in &self.pairs.budgets {
            if !(b.avg_bits.is_finite() && b.avg_bits > 0.0) {
                return bad(&format!("budget {:?}: avg_bits must be positive", b.name));
            }
        }
        if self.pairs.weight_bits < 2 || self.pairs.weight_bits > 32 {
            return bad("pairs.weight_bits must lie in 2..=32");
        }
        if self.eval.batch_size == 0 {
            return bad("eval.batch_size must be positive");
        }
        if self.data.image_size == 0 {
            return bad("data.image_size must be positive");
        }
        if !["none", "light", "paper"].contains(&self.data.augment.as_str()) {
            return bad(&format!(
                "data.augment must be none, light or paper, got {:?}",
                self.data.augment
            ));
        }
        Ok(())
    }

    /// The pair experiments of one student: every bit version x every budget level.
    pub fn experiments_for(&self, student: &str, num_layers: usize) -> Result<Vec<Experiment>> {
        let mut out = Vec::new();
        for v in &self.pairs.bit_versions {
            for b in &self.pairs.budgets {
                let adjust = v.budget_adjust.get(student).copied().unwrap_or(0);
                let raw = (b.avg_bits * num_layers as f64).round() as i64 + adjust;
                let budget = u32::try_from(raw).map_err(|_| {
                    Error::Config(format!(
                        "budget {}/{} for {student} is negative: {raw}",
                        v.name, b.name
                    ))
                })?;
                out.push(Experiment {
                    student: student.to_string(),
                    version: v.name.clone(),
                    options: v.options.clone(),
                    budget_level: b.name.clone(),
                    budget,
                    num_layers,
                });
            }
        }
        Ok(out)
    }
}

/// Maps whose keys are free (e.g. `white_box.batch_size_for.<arch>`), where `--set` may
/// add a key.
fn is_open_map(path: &[&str]) -> bool {
    matches!(path, ["white_box", "batch_size_for"])
        || (path.len() == 3 && path[0] == "pairs" && path[2] == "budget_adjust")
}

/// One robust/detrimental pair training: a student, a bit version and a budget.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Experiment {
    /// Student architecture.
    pub student: String,
    /// Bit-version name (`I`, `II`, `III`).
    pub version: String,
    /// Bit options, ascending.
    pub options: Vec<u32>,
    /// Budget-level name (`A`, `B`, `C`).
    pub budget_level: String,
    /// Exact bit budget per example, `round(avg · L) + adjust`.
    pub budget: u32,
    /// Number of quantized layers `L`.
    pub num_layers: usize,
}

impl Experiment {
    /// `<student>/<version>-<budget level>`, the stage name of its pair training.
    pub fn id(&self) -> String {
        format!("{}/{}-{}", self.student, self.version, self.budget_level)
    }

    /// Whether some choice of one option per layer costs exactly the budget.
    pub fn budget_feasible(&self) -> bool {
        let max_option = self.options.iter().copied().max().unwrap_or(0) as usize;
        let cap = max_option * self.num_layers;
        if self.budget as usize > cap {
            return false;
        }
        let mut reachable = vec![false; cap + 1];
        reachable[0] = true;
        for _ in 0..self.num_layers {
            let mut next = vec![false; cap + 1];
            for (sum, _) in reachable.iter().enumerate().filter(|(_, r)| **r) {
                for &b in &self.options {
                    if sum + (b as usize) <= cap {
                        next[sum + b as usize] = true;
                    }
                }
            }
            reachable = next;
        }
        reachable[self.budget as usize]
    }
}
