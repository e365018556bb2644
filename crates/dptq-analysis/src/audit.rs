//! `audit`: how badly can a model the user already has fail under dynamic quantization?
//!
//! The model is frozen exactly as deployed (its weights, running BatchNorm statistics,
//! 16-bit weights once quantized). Only a bit-width policy is trained, on the user's data:
//! a *detrimental* one, whose hinge loss pushes the quantized prediction away from the
//! model's own full-precision prediction, and a *robust* one for reference. Every bit
//! vector comes from the exact MCKP, so every example costs exactly the budget — the
//! adversary is an allocation a deployment could legitimately produce. The detrimental
//! policy's accuracy is the worst case *this adversary found* (a lower bound on the true
//! worst case): the report gives the drop, the examples it flips (transitory points), the
//! most vulnerable layers (layer sweeps under the detrimental bits), how dynamic the
//! attack is (its fixed projection), the budget check, and a one-line verdict.

use std::path::{Path, PathBuf};
use std::time::Instant;

use candle_core::Device;
use dptq_data::{EvalTransform, Interpolation, Normalize, Split, Transform};
use dptq_distill::{
    CosineSchedule, EvalPolicy, FrozenModel, Network, Optimizer, OptimizerConfig, PairKind, Policy,
    Profits, Progress, ProgressSink, RunConfig, RunData, balanced_subset, derive_seed, hinge_loss,
    parse_device, profits_of,
};
use dptq_mckp::{Mode, select_bits};
use dptq_models::hub::{HubConfig, HubId, HubOptions, PretrainedCfg};
use dptq_models::{ActivationPlan, BnMode, Classifier, LoadOptions, PolicyNet, QuantPlan};
use dptq_quant::RangeMode;
use serde::{Deserialize, Serialize};

use crate::dynamics::{PolicyDynamics, policy_dynamics};
use crate::error::{Error, Result};
use crate::eval::{Bits, EvalCache, EvalSet, budget_check};
use crate::figures;
use crate::plot::{Figure, LinePanel, Panel, SavedFigure, Series};
use crate::report::{Report, ReportFigure, Section};
use crate::sweep::{SweepResult, run_sweeps};
use crate::table::{Table, delta, pct};

/// Where the audited model comes from.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum ModelSource {
    /// A timm-named safetensors file and its architecture (see `dptq_models::ARCH_NAMES`).
    Local {
        /// The weights.
        weights: PathBuf,
        /// The architecture.
        arch: String,
    },
    /// A timm model on the Hugging Face hub (`timm/<arch>.<tag>`): weights and
    /// preprocessing (input size, crop, interpolation, mean, std) from the local cache,
    /// downloaded when absent.
    Hub {
        /// The model id.
        id: String,
        /// The hub cache; `None` = `HF_HUB_CACHE` / `HF_HOME` / `~/.cache/huggingface/hub`.
        cache_dir: Option<PathBuf>,
        /// Never download (also when `HF_HUB_OFFLINE` is set).
        offline: bool,
    },
}

/// A model source resolved to files.
#[derive(Clone, Debug, PartialEq)]
pub struct ResolvedModel {
    /// Architecture.
    pub arch: String,
    /// Weights file.
    pub weights: PathBuf,
    /// The preprocessing that travels with hub weights.
    pub pretrained: Option<PretrainedCfg>,
    /// Classes of the checkpoint's head, when the source says.
    pub num_classes: Option<usize>,
}

impl ModelSource {
    /// The architecture name.
    pub fn arch(&self) -> String {
        match self {
            ModelSource::Local { arch, .. } => arch.clone(),
            ModelSource::Hub { id, .. } => HubId::parse(id)
                .map(|h| h.arch)
                .unwrap_or_else(|_| id.clone()),
        }
    }

    /// A short description for reports.
    pub fn describe(&self) -> String {
        match self {
            ModelSource::Local { weights, arch } => format!("{arch} from {}", weights.display()),
            ModelSource::Hub { id, .. } => format!("{id} (Hugging Face hub)"),
        }
    }

    /// The files of the model: a local path as is; a hub id through the cache.
    pub fn resolve(&self) -> Result<ResolvedModel> {
        match self {
            ModelSource::Local { weights, arch } => {
                if !weights.is_file() {
                    return Err(Error::Missing {
                        what: "weights".into(),
                        path: weights.clone(),
                    });
                }
                Ok(ResolvedModel {
                    arch: arch.clone(),
                    weights: weights.clone(),
                    pretrained: None,
                    num_classes: None,
                })
            }
            ModelSource::Hub {
                id,
                cache_dir,
                offline,
            } => {
                let hub_id = HubId::parse(id)?;
                let mut opts = HubOptions::default();
                if let Some(dir) = cache_dir {
                    opts.cache_dir = dir.clone();
                }
                opts.offline |= *offline;
                let files = dptq_models::hub::fetch(&hub_id.repo, &opts)?;
                let cfg = HubConfig::read(&files.config)?;
                Ok(ResolvedModel {
                    arch: hub_id.arch,
                    weights: files.weights,
                    pretrained: Some(cfg.pretrained_cfg),
                    num_classes: Some(cfg.num_classes),
                })
            }
        }
    }
}

/// Everything an audit does.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AuditConfig {
    /// Data spec: `embedded`, `pets:DIR`, `imagefolder:DIR`, `idx:DIR` (default `embedded`).
    pub data: String,
    /// Side of the images the model sees; 0 (default) = 28 for `embedded` and `idx`, 224
    /// otherwise.
    pub image_size: usize,
    /// Training examples the policies learn from (class-balanced; default 2000; 0 = all).
    pub train_examples: usize,
    /// Test examples evaluated (class-balanced; default 0 = all).
    pub test_examples: usize,
    /// Bit-width options, ascending (default 3..=10).
    pub options: Vec<u32>,
    /// Exact bit budget per example; `None` (default) = `round(avg_bits * L)`.
    pub budget: Option<u32>,
    /// Average bits per layer when `budget` is `None` (default 4.0, the paper's budget A).
    pub avg_bits: f64,
    /// Weight bits of the quantized model (symmetric, per tensor; default 16).
    pub weight_bits: u32,
    /// Passes over the training examples (default 3).
    pub epochs: usize,
    /// Examples per step (default 64).
    pub batch_size: usize,
    /// Peak learning rate of the half-period cosine (default 0.1).
    pub lr: f64,
    /// Policy optimizer (default SGD, momentum 0.9, weight decay 1e-4).
    pub optimizer: OptimizerConfig,
    /// Hinge margin in probability units (default 0.1).
    pub margin: f64,
    /// Policy output used as MCKP profits (default logits).
    pub profits: Profits,
    /// Width of the policy CNN (default 16).
    pub policy_width: usize,
    /// Side the policy resizes images to (0 = native; default 0).
    pub policy_input_size: usize,
    /// Also train a robust policy for reference (default true).
    pub robust_reference: bool,
    /// Training / test examples of the layer sweeps (default 500 / 1000).
    pub sweep_train_examples: usize,
    /// See `sweep_train_examples`.
    pub sweep_test_examples: usize,
    /// Seed of the policies' initialisation, data order and random policy (default 0).
    pub seed: u64,
    /// `cpu`, `cuda`, `cuda:N` (default `cpu`).
    pub device: String,
    /// Evaluation batch size (default 256).
    pub eval_batch_size: usize,
}

impl Default for AuditConfig {
    fn default() -> Self {
        Self {
            data: "embedded".into(),
            image_size: 0,
            train_examples: 2000,
            test_examples: 0,
            options: (3..=10).collect(),
            budget: None,
            avg_bits: 4.0,
            weight_bits: 16,
            epochs: 3,
            batch_size: 64,
            lr: 0.1,
            optimizer: OptimizerConfig::default(),
            margin: 0.1,
            profits: Profits::Logits,
            policy_width: 16,
            policy_input_size: 0,
            robust_reference: true,
            sweep_train_examples: 500,
            sweep_test_examples: 1000,
            seed: 0,
            device: "cpu".into(),
            eval_batch_size: 256,
        }
    }
}

/// How bad, in one word: the accuracy drop under the detrimental policy, in points.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    /// Drop below 3 points.
    Low,
    /// 3 to 10 points.
    Moderate,
    /// 10 to 30 points.
    High,
    /// 30 points or more: catastrophic failure in the paper's sense.
    Critical,
}

impl Severity {
    /// The severity of a drop of `points` (thresholds 3, 10, 30: ours).
    pub fn of(points: f64) -> Self {
        if points >= 30.0 {
            Severity::Critical
        } else if points >= 10.0 {
            Severity::High
        } else if points >= 3.0 {
            Severity::Moderate
        } else {
            Severity::Low
        }
    }

    /// `LOW`, `MODERATE`, `HIGH`, `CRITICAL`.
    pub fn label(self) -> &'static str {
        match self {
            Severity::Low => "LOW",
            Severity::Moderate => "MODERATE",
            Severity::High => "HIGH",
            Severity::Critical => "CRITICAL",
        }
    }
}

/// One logged training step of a policy.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PolicyStep {
    /// Step, from 1.
    pub step: u64,
    /// Hinge loss of the batch.
    pub hinge: f64,
    /// Fraction of the batch whose quantized prediction agrees with the FP prediction.
    pub agreement: f64,
}

/// What an audit measured.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AuditResult {
    /// The model.
    pub model: String,
    /// Architecture.
    pub arch: String,
    /// Data spec.
    pub data: String,
    /// Quantizable layers.
    pub layers: Vec<String>,
    /// Bit options.
    pub options: Vec<u32>,
    /// Exact budget per example.
    pub budget: u32,
    /// Test examples evaluated.
    pub test_examples: usize,
    /// Training examples the policies saw.
    pub train_examples: usize,
    /// Accuracy at full precision (percent).
    pub accuracy_fp: f64,
    /// Quantized by the detrimental policy (percent): the worst case found.
    pub accuracy_detrimental: f64,
    /// Quantized by the robust policy (percent), if trained.
    pub accuracy_robust: Option<f64>,
    /// Quantized by a random exact-budget policy (percent).
    pub accuracy_random: f64,
    /// Quantized at a uniform width closest to the budget's average (percent), when the
    /// budget is a multiple of `L` and that width is an option.
    pub accuracy_uniform: Option<(u32, f64)>,
    /// `accuracy_fp - accuracy_detrimental`, points.
    pub worst_case_drop: f64,
    /// Test examples right at full precision (and under the robust policy, when trained)
    /// and wrong under the detrimental policy: count and percent of the test set.
    pub transitory: (usize, f64),
    /// Bit vectors evaluated that cost exactly the budget / evaluated (every policy).
    pub on_budget: (usize, usize),
    /// Layer sweeps under the detrimental policy's bits.
    pub sweeps: SweepResult,
    /// How dynamic the detrimental (and robust) policies are.
    pub dynamics: Vec<PolicyDynamics>,
    /// Training curves: `(policy, steps)`.
    pub training: Vec<(String, Vec<PolicyStep>)>,
    /// The verdict's severity.
    pub severity: Severity,
    /// One line for people.
    pub verdict: String,
    /// Wall time, seconds.
    pub seconds: f64,
}

/// Files an audit wrote.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AuditFiles {
    /// `audit.json`.
    pub json: PathBuf,
    /// `audit.md`.
    pub markdown: PathBuf,
    /// `index.html`.
    pub html: PathBuf,
    /// Figures.
    pub figures: Vec<SavedFigure>,
    /// CSVs.
    pub tables: Vec<PathBuf>,
}

/// The exact budget of `config` for `layers` quantizable layers, checked reachable.
pub fn audit_budget(config: &AuditConfig, layers: usize) -> Result<u32> {
    let budget = match config.budget {
        Some(b) => b,
        None => {
            if !(config.avg_bits.is_finite() && config.avg_bits > 0.0) {
                return Err(Error::invalid(
                    "average bits",
                    format!("{}", config.avg_bits),
                ));
            }
            (config.avg_bits * layers as f64).round() as u32
        }
    };
    // The MCKP checks reachability with a typed error naming the range.
    dptq_mckp::Problem::uniform(&config.options, layers, budget as u64, Mode::Exact)?;
    Ok(budget)
}

fn validate(config: &AuditConfig) -> Result<()> {
    if config.options.is_empty() || config.options.windows(2).any(|w| w[0] >= w[1]) {
        return Err(Error::invalid(
            "bit options",
            format!(
                "{:?} (need a strictly increasing, non-empty list)",
                config.options
            ),
        ));
    }
    if let Some(b) = config.options.iter().find(|b| !(1..=16).contains(*b)) {
        return Err(Error::invalid(
            "bit options",
            format!("{b} bits (activations take 1..=16)"),
        ));
    }
    if config.batch_size < 2 || config.eval_batch_size == 0 || config.epochs == 0 {
        return Err(Error::invalid(
            "audit schedule",
            format!(
                "batch size {} (>= 2: the policy's BatchNorm needs it), eval batch {}, epochs {}",
                config.batch_size, config.eval_batch_size, config.epochs
            ),
        ));
    }
    if !(config.lr.is_finite()
        && config.lr > 0.0
        && config.margin.is_finite()
        && config.margin > 0.0)
    {
        return Err(Error::invalid(
            "audit training",
            format!(
                "lr {} and margin {} must be positive",
                config.lr, config.margin
            ),
        ));
    }
    Ok(())
}

/// Opens the data of an audit: the pipeline's normalisation and evaluation transform (or
/// the hub weights' own preprocessing), no augmentation, class-balanced limits.
fn open_data(config: &AuditConfig, pretrained: Option<&PretrainedCfg>) -> Result<RunData> {
    let spec: dptq_data::DataSpec = config.data.parse()?;
    let size = if config.image_size > 0 {
        config.image_size
    } else if let Some(p) = pretrained {
        p.input_size[1]
    } else if matches!(
        spec,
        dptq_data::DataSpec::Embedded | dptq_data::DataSpec::Idx(_)
    ) {
        28
    } else {
        224
    };
    let mut data_cfg = RunConfig::default().data;
    data_cfg.spec = config.data.clone();
    data_cfg.image_size = size;
    data_cfg.train_limit = config.train_examples;
    data_cfg.test_limit = config.test_examples;
    data_cfg.augment = "none".into();
    let mut data = RunData::open(&data_cfg)?;
    if let Some(p) = pretrained {
        let eval = EvalTransform {
            size: size as u32,
            crop_pct: p.crop_pct as f32,
            interpolation: Interpolation::from_timm(&p.interpolation)?,
        };
        let normalize = Normalize {
            mean: p.mean.map(|v| v as f32),
            std: p.std.map(|v| v as f32),
        };
        for pipeline in [&mut data.eval_pipeline, &mut data.train_pipeline] {
            pipeline.transform = Transform::Eval(eval);
            pipeline.normalize = normalize;
        }
    }
    Ok(data)
}

/// Loads the model of `source` for `num_classes` classes (strict: a checkpoint for another
/// number of classes is an error, not a re-initialised head), frozen.
pub fn load_model(
    source: &ModelSource,
    num_classes: usize,
    device: &Device,
) -> Result<FrozenModel> {
    load_resolved(&source.resolve()?, num_classes, device)
}

fn load_resolved(
    model: &ResolvedModel,
    num_classes: usize,
    device: &Device,
) -> Result<FrozenModel> {
    if let Some(c) = model.num_classes
        && c != num_classes
    {
        return Err(Error::invalid(
            "model",
            format!(
                "{} has {c} classes but the data has {num_classes}: audit a model on the data it classifies",
                model.weights.display()
            ),
        ));
    }
    let net = Network::new(&model.arch, num_classes, 0, device)?;
    net.store.load(&model.weights, &LoadOptions::default())?;
    Ok(net.frozen()?)
}

/// Trains a policy of `kind` against the frozen `model` on `loader`, policy only.
fn train_policy(
    model: &dyn Classifier,
    kind: PairKind,
    data: &RunData,
    config: &AuditConfig,
    budget: u32,
    device: &Device,
    progress: &dyn ProgressSink,
) -> Result<(Policy, Vec<PolicyStep>)> {
    let layers = model.quant_layers().len();
    let stage = format!("audit/policy_{}", kind.name());
    let input = (config.policy_input_size > 0).then_some(config.policy_input_size);
    let policy = Policy::new(
        layers,
        config.options.len(),
        config.policy_width,
        input,
        derive_seed(config.seed, &stage, 0, 0),
        device,
    )?;
    let loader = data.train_loader(
        config.batch_size,
        derive_seed(config.seed, &format!("data/{stage}"), 0, 0),
        device,
    )?;
    let steps_per_epoch = loader.len() as u64;
    let total = steps_per_epoch * config.epochs as u64;
    let schedule = CosineSchedule::new(config.lr, total);
    let mut opt = Optimizer::new(config.optimizer.clone())?;
    let vars = policy.store.trainable_vars();
    let mut log = Vec::new();
    progress.event(&Progress::StageStarted {
        stage: stage.clone(),
        total,
        done: 0,
    });
    let t0 = Instant::now();
    let mut step = 0u64;
    for epoch in 0..config.epochs as u64 {
        for batch in loader.epoch(epoch) {
            let batch = batch?;
            let images = &batch.images;
            let scores = policy.net.forward(images, BnMode::Train)?;
            let profits = profits_of(&scores, config.profits)?;
            let (selection, _bits) = select_bits(&profits, &config.options, budget, Mode::Exact)?;
            let teacher = model.forward_fp(images, BnMode::Eval)?.detach();
            let plan = QuantPlan {
                weight_bits: Some(config.weight_bits),
                activations: ActivationPlan::Selection {
                    selection: &selection,
                    options: &config.options,
                },
                ..QuantPlan::full_precision()
            };
            let quantized = model.forward(images, &plan, BnMode::Eval, None)?;
            let loss = hinge_loss(kind, &teacher, &quantized, config.margin)?;
            let grads = loss.backward()?;
            opt.step(
                vars.iter().map(|(n, v)| (n.as_str(), v)),
                &grads,
                schedule.lr(step),
            )?;
            step += 1;
            let hinge = loss.to_dtype(candle_core::DType::F64)?.to_scalar::<f64>()?;
            let a = crate::eval::argmax_rows(&teacher)?;
            let b = crate::eval::argmax_rows(&quantized)?;
            let agreement =
                a.iter().zip(&b).filter(|(x, y)| x == y).count() as f64 / a.len().max(1) as f64;
            log.push(PolicyStep {
                step,
                hinge,
                agreement,
            });
            progress.event(&Progress::Step {
                stage: stage.clone(),
                step,
                total,
                loss: hinge,
            });
        }
    }
    progress.event(&Progress::StageFinished {
        stage,
        seconds: t0.elapsed().as_secs_f64(),
        skipped: false,
    });
    Ok((policy, log))
}

fn eval_set(
    data: &RunData,
    split: &Split,
    limit: usize,
    batch: usize,
    device: &Device,
    name: &str,
) -> Result<EvalSet> {
    let subset = balanced_subset(split, limit, usize::MAX);
    EvalSet::from_loader(name, &data.eval_loader(&subset, batch, device)?)
}

/// Audits the model of `source` under `config`: trains the policies, evaluates, sweeps.
pub fn run_audit(
    source: &ModelSource,
    config: &AuditConfig,
    progress: &dyn ProgressSink,
) -> Result<AuditResult> {
    let started = Instant::now();
    validate(config)?;
    let device = parse_device(&config.device)?;
    let resolved = source.resolve()?;
    let data = open_data(config, resolved.pretrained.as_ref())?;
    let frozen = load_resolved(&resolved, data.num_classes(), &device)?;
    let model = frozen.classifier();
    let layers = model.quant_layers().to_vec();
    let budget = audit_budget(config, layers.len())?;
    tracing::info!(
        "audit of {}: L = {}, options {:?}, exact budget {budget} bits per example",
        source.describe(),
        layers.len(),
        config.options
    );

    let (pi_d, log_d) = train_policy(
        model,
        PairKind::Detrimental,
        &data,
        config,
        budget,
        &device,
        progress,
    )?;
    let mut training = vec![("pi_D".to_string(), log_d)];
    let robust = if config.robust_reference {
        let (pi_r, log_r) = train_policy(
            model,
            PairKind::Robust,
            &data,
            config,
            budget,
            &device,
            progress,
        )?;
        training.push(("pi_R".to_string(), log_r));
        Some(pi_r)
    } else {
        None
    };
    let pi_d_net: PolicyNet = pi_d.frozen()?;
    let pi_r_net: Option<PolicyNet> = robust.as_ref().map(|p| p.frozen()).transpose()?;

    let test = eval_set(
        &data,
        &data.dataset.test,
        0,
        config.eval_batch_size,
        &device,
        "test",
    )?;
    let wb = Some(config.weight_bits);
    let policy = |net| Bits::Policy {
        policy: EvalPolicy::Trained {
            net,
            profits: config.profits,
        },
        options: &config.options,
        budget,
    };
    let detrimental = policy(&pi_d_net);
    let mut cache = EvalCache::new(&test);
    let fp = cache.fp(model, "model")?.clone();
    let mm = RangeMode::MinMax;
    let d_q = cache
        .get(model, "model", "pi_D", &detrimental, wb, mm)?
        .clone();
    let random = Bits::Policy {
        policy: EvalPolicy::Random {
            seed: derive_seed(config.seed, "audit/random_policy", 0, 0),
        },
        options: &config.options,
        budget,
    };
    let rand_q = cache
        .get(model, "model", "random", &random, wb, mm)?
        .clone();
    let r_q = match &pi_r_net {
        Some(net) => Some(
            cache
                .get(model, "model", "pi_R", &policy(net), wb, mm)?
                .clone(),
        ),
        None => None,
    };
    let uniform = if (budget as usize).is_multiple_of(layers.len())
        && config.options.contains(&(budget / layers.len() as u32))
    {
        let b = budget / layers.len() as u32;
        let name = format!("uniform {b}");
        Some((
            b,
            cache
                .get(model, "model", &name, &Bits::Uniform(b), wb, mm)?
                .accuracy(),
        ))
    } else {
        None
    };
    let mut on_budget = (0, 0);
    for o in [Some(&d_q), Some(&rand_q), r_q.as_ref()]
        .into_iter()
        .flatten()
    {
        let (ok, n) = budget_check(o.bits.as_deref().unwrap_or(&[]), budget);
        on_budget.0 += ok;
        on_budget.1 += n;
    }
    let (fc, dc) = (fp.correct(), d_q.correct());
    let rc = r_q.as_ref().map(|o| o.correct());
    let transitory = (0..fc.len())
        .filter(|&i| fc[i] && !dc[i] && rc.as_ref().is_none_or(|r| r[i]))
        .count();

    let sweep_train = eval_set(
        &data,
        &data.dataset.train,
        config.sweep_train_examples,
        config.eval_batch_size,
        &device,
        "train",
    )?;
    let sweep_test = eval_set(
        &data,
        &data.dataset.test,
        config.sweep_test_examples,
        config.eval_batch_size,
        &device,
        "test",
    )?;
    let sweeps = run_sweeps(
        model,
        "model",
        "pi_D",
        &detrimental,
        wb,
        &[&sweep_train, &sweep_test],
    )?;

    let mut dynamics = vec![policy_dynamics(
        model,
        "model",
        "pi_D",
        &detrimental,
        wb,
        &mut cache,
    )?];
    if let Some(net) = &pi_r_net {
        dynamics.push(policy_dynamics(
            model,
            "model",
            "pi_R",
            &policy(net),
            wb,
            &mut cache,
        )?);
    }

    let accuracy_fp = fp.accuracy();
    let accuracy_detrimental = d_q.accuracy();
    let drop = accuracy_fp - accuracy_detrimental;
    let severity = Severity::of(drop);
    let avg = budget as f64 / layers.len() as f64;
    let verdict = format!(
        "{}: at exactly {budget} bits per example ({avg:.2} bits per layer on average, {}/{} \
         examples on budget), an adversarial dynamic bit allocation drops {} from {:.2} % to \
         {:.2} % ({:+.2} points){}.",
        severity.label(),
        on_budget.0,
        on_budget.1,
        source.arch(),
        accuracy_fp,
        accuracy_detrimental,
        -drop,
        match r_q.as_ref() {
            Some(r) => format!(
                "; a robust allocation at the same budget keeps {:.2} %",
                r.accuracy()
            ),
            None => String::new(),
        }
    );
    Ok(AuditResult {
        model: source.describe(),
        arch: source.arch(),
        data: config.data.clone(),
        layers,
        options: config.options.clone(),
        budget,
        test_examples: test.len(),
        train_examples: data.dataset.train.len(),
        accuracy_fp,
        accuracy_detrimental,
        accuracy_robust: r_q.as_ref().map(|o| o.accuracy()),
        accuracy_random: rand_q.accuracy(),
        accuracy_uniform: uniform,
        worst_case_drop: drop,
        transitory: (
            transitory,
            100.0 * transitory as f64 / test.len().max(1) as f64,
        ),
        on_budget,
        sweeps,
        dynamics,
        training,
        severity,
        verdict,
        seconds: started.elapsed().as_secs_f64(),
    })
}

/// The audit as a report: summary table, vulnerable layers, sweeps, bit choices, training.
pub fn audit_report(
    result: &AuditResult,
    out: &Path,
) -> Result<(Report, Vec<SavedFigure>, Vec<PathBuf>)> {
    let mut figures_saved = Vec::new();
    let mut tables_saved = Vec::new();
    let mut add_figure = |fig: Figure, s: &mut Section| -> Result<()> {
        let svg = fig.to_svg()?;
        let saved = fig.save(out)?;
        figures_saved.push(saved.clone());
        s.figures.push(ReportFigure { saved, svg });
        Ok(())
    };
    let mut summary = Section::new("Summary");
    summary.paragraphs.push(format!("**{}**", result.verdict));
    let mut t = Table::new(
        "audit_summary",
        "Accuracy (%) on the test split",
        &["setting", "accuracy", "change"],
    );
    t.push(vec![
        "full precision".into(),
        pct(result.accuracy_fp),
        "".into(),
    ])?;
    t.push(vec![
        "detrimental policy (worst case found)".into(),
        pct(result.accuracy_detrimental),
        delta(-result.worst_case_drop),
    ])?;
    if let Some(r) = result.accuracy_robust {
        t.push(vec![
            "robust policy".into(),
            pct(r),
            delta(r - result.accuracy_fp),
        ])?;
    }
    t.push(vec![
        "random policy".into(),
        pct(result.accuracy_random),
        delta(result.accuracy_random - result.accuracy_fp),
    ])?;
    if let Some((b, a)) = result.accuracy_uniform {
        t.push(vec![
            format!("uniform {b} bits"),
            pct(a),
            delta(a - result.accuracy_fp),
        ])?;
    }
    tables_saved.push(t.save_csv(out)?);
    summary.tables.push(t);
    summary.paragraphs.push(format!(
        "Model: {}. Data: `{}` ({} training examples for the policies, {} test examples). \
         L = {} quantizable layers, options {:?}, exact budget {} bits per example; \
         bit vectors on budget: {}/{}. Transitory points (right at full precision{}, wrong \
         under the detrimental policy): {} ({:.2} % of the test set).",
        result.model,
        result.data,
        result.train_examples,
        result.test_examples,
        result.layers.len(),
        result.options,
        result.budget,
        result.on_budget.0,
        result.on_budget.1,
        if result.accuracy_robust.is_some() {
            " and under the robust policy"
        } else {
            ""
        },
        result.transitory.0,
        result.transitory.1
    ));
    summary.paragraphs.push(
        "The detrimental policy is trained with the model frozen; its accuracy is the worst \
         case this adversary found, a lower bound on how badly the model can fail at this \
         budget, not a proof that it cannot fail worse."
            .into(),
    );

    let mut layers = Section::new("Most vulnerable layers");
    layers.paragraphs.push(
        "Layer sweeps under the detrimental policy's bits: `before` quantizes layers 1..l, \
         `after` layers l+1..L, `single` layer l alone. Keeping the layers at the top of \
         this table at full (or higher) precision is the first mitigation to try."
            .into(),
    );
    let vt = figures::vulnerable_table(
        "audit_vulnerable_layers",
        std::slice::from_ref(&result.sweeps),
        5,
    )?;
    tables_saved.push(vt.save_csv(out)?);
    layers.tables.push(vt);
    tables_saved.push(
        figures::sweep_table("audit_sweeps", std::slice::from_ref(&result.sweeps))?
            .save_csv(out)?,
    );
    add_figure(
        figures::sweep_figure(
            "audit_sweeps",
            "Layer sweeps under the detrimental policy",
            std::slice::from_ref(&result.sweeps),
        ),
        &mut layers,
    )?;

    let mut dynamic = Section::new("How dynamic is the attack?");
    dynamic.paragraphs.push(
        "If a single example-independent allocation (the policy's choices projected back \
         onto the budget) does most of the damage, a static per-layer bit assignment is \
         already dangerous; if not, the danger is in the per-example dynamics."
            .into(),
    );
    let dt = figures::dynamics_table("audit_dynamics", &result.dynamics)?;
    tables_saved.push(dt.save_csv(out)?);
    dynamic.tables.push(dt);
    tables_saved
        .push(figures::choices_table("audit_bit_choices", &result.dynamics)?.save_csv(out)?);
    add_figure(
        figures::dynamics_figure(
            "audit_bit_choices",
            "Bit-widths chosen per layer",
            &result.dynamics,
        ),
        &mut dynamic,
    )?;

    let mut training = Section::new("Policy training");
    let series: Vec<Series> = result
        .training
        .iter()
        .enumerate()
        .map(|(i, (name, steps))| {
            Series::new(
                name.clone(),
                steps
                    .iter()
                    .map(|s| (s.step as f64, 100.0 * s.agreement))
                    .collect(),
                if name == "pi_R" { 0 } else { 1 + i },
            )
        })
        .collect();
    add_figure(
        Figure::new(
            "audit_training",
            "Agreement of quantized and FP predictions during policy training",
            vec![Panel::Lines(LinePanel {
                title: "per batch".into(),
                x_label: "step".into(),
                y_label: "agreement (%)".into(),
                series,
                y_range: Some((0.0, 100.0)),
                reference: None,
            })],
            1,
        ),
        &mut training,
    )?;
    let report = Report {
        title: format!("dptq audit: {}", result.model),
        intro: vec![format!(
            "Worst-case dynamic post-training quantization audit, {:.0} s.",
            result.seconds
        )],
        sections: vec![summary, layers, dynamic, training],
    };
    Ok((report, figures_saved, tables_saved))
}

/// Writes `audit.json`, `audit.md`, `index.html`, the figures and the CSVs into `out`.
pub fn write_audit(result: &AuditResult, out: &Path) -> Result<AuditFiles> {
    std::fs::create_dir_all(out).map_err(|e| Error::io(out, e))?;
    let (report, figures, tables) = audit_report(result, out)?;
    let json = out.join("audit.json");
    std::fs::write(&json, serde_json::to_string_pretty(result)?)
        .map_err(|e| Error::io(&json, e))?;
    let markdown = out.join("audit.md");
    std::fs::write(&markdown, report.to_markdown(1, ".")).map_err(|e| Error::io(&markdown, e))?;
    let html = out.join("index.html");
    std::fs::write(&html, report.to_html()).map_err(|e| Error::io(&html, e))?;
    Ok(AuditFiles {
        json,
        markdown,
        html,
        figures,
        tables,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn severity_thresholds_are_3_10_30_points() {
        assert_eq!(Severity::of(2.99), Severity::Low);
        assert_eq!(Severity::of(3.0), Severity::Moderate);
        assert_eq!(Severity::of(10.0), Severity::High);
        assert_eq!(Severity::of(52.0), Severity::Critical);
    }

    #[test]
    fn the_budget_is_the_rounded_average_and_must_be_reachable() {
        let mut c = AuditConfig::default();
        assert_eq!(audit_budget(&c, 9).unwrap(), 36);
        c.avg_bits = 5.5;
        assert_eq!(audit_budget(&c, 9).unwrap(), 50);
        c.budget = Some(20);
        let err = audit_budget(&c, 9).unwrap_err().to_string();
        assert!(err.contains("20"), "{err}");
        c.budget = Some(27);
        assert_eq!(audit_budget(&c, 9).unwrap(), 27);
    }

    #[test]
    fn bad_options_and_schedules_are_refused() {
        let c = AuditConfig {
            options: vec![4, 3],
            ..Default::default()
        };
        assert!(validate(&c).is_err());
        let c = AuditConfig {
            options: vec![3, 17],
            ..Default::default()
        };
        assert!(validate(&c).is_err());
        let c = AuditConfig {
            batch_size: 1,
            ..Default::default()
        };
        assert!(validate(&c).is_err());
        assert!(validate(&AuditConfig::default()).is_ok());
    }
}
