//! `reproduce`: the paper's pipeline end to end, from data to the tables.
//!
//! Stage 0 trains (or fine-tunes) the teacher; stage 1 distils it, as a black box, into
//! each white-box student; stage 2 trains the robust and detrimental pairs of every
//! experiment (student x bit version x budget); the evaluation fills Tables 1-3. Every
//! stage checkpoints into the run directory and is skipped on resume once complete.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use candle_core::Device;

use crate::config::{Experiment, RunConfig};
use crate::datasets::RunData;
use crate::error::{Error, Result};
use crate::eval::{EvalPolicy, evaluate_cross, evaluate_fp, percent};
use crate::pairs::{PairSettings, PairTrainer};
use crate::progress::ProgressSink;
use crate::results::{DataSummary, ExperimentResult, FpAccuracy, Results};
use crate::rng::derive_seed;
use crate::run::RunDir;
use crate::stages::{Network, TeacherTrainer, WhiteBoxTrainer};
use crate::trainer::{Session, train_stage};

/// The device named by `--device`: `cpu`, `cuda` or `cuda:N`.
pub fn parse_device(name: &str) -> Result<Device> {
    match name {
        "cpu" => Ok(Device::Cpu),
        "cuda" => Ok(Device::new_cuda(0)?),
        other => match other.strip_prefix("cuda:").map(str::parse::<usize>) {
            Some(Ok(n)) => Ok(Device::new_cuda(n)?),
            _ => Err(Error::Config(format!(
                "device {other:?}: expected cpu, cuda or cuda:N"
            ))),
        },
    }
}

/// Where the files of a run live (see [`crate::RunDir`] for the checkpoints).
#[derive(Debug, Clone)]
pub struct RunLayout {
    root: PathBuf,
}

impl RunLayout {
    /// The layout under `root`.
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    /// `<out>/teacher.safetensors`.
    pub fn teacher(&self) -> PathBuf {
        self.root.join("teacher.safetensors")
    }

    /// `<out>/white_box/<arch>.safetensors`.
    pub fn white_box(&self, arch: &str) -> PathBuf {
        self.root
            .join("white_box")
            .join(format!("{arch}.safetensors"))
    }

    /// `<out>/pairs/<student>/<version>-<budget>/<part>.safetensors`, part one of
    /// `robust`, `detrimental`, `policy_robust`, `policy_detrimental`.
    pub fn pair_part(&self, experiment: &Experiment, part: &str) -> PathBuf {
        self.root
            .join("pairs")
            .join(&experiment.student)
            .join(format!(
                "{}-{}",
                experiment.version, experiment.budget_level
            ))
            .join(format!("{part}.safetensors"))
    }

    /// `<out>/results.json`.
    pub fn results(&self) -> PathBuf {
        self.root.join("results.json")
    }
}

/// Saves a store's tensors (timm names) to `path`, creating its directory.
fn save_store(store: &dptq_models::ParamStore, path: &Path) -> Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    }
    Ok(store.save(path)?)
}

/// Checks that a resumed run continues the configuration it was started with (the
/// `run` section, which only controls logging and the step limit, may differ).
fn check_same_run(stored: &RunConfig, cfg: &RunConfig) -> Result<()> {
    let mut a = stored.clone();
    a.run = cfg.run.clone();
    if &a != cfg {
        return Err(Error::Config(
            "the configuration differs from the run directory's config.toml; resume with the \
             recorded configuration (no --preset/--config/--set) or choose another --out"
                .into(),
        ));
    }
    Ok(())
}

/// Initialises the teacher's weights as `teacher.init` says.
fn init_teacher(cfg: &RunConfig, net: &Network) -> Result<()> {
    let init = cfg.teacher.init.as_str();
    if init == "scratch" {
        return Ok(());
    }
    if let Some(path) = init.strip_prefix("file:") {
        let report = dptq_models::load_weights(&net.arch, &net.store, path)?;
        tracing::info!(
            "teacher: {} tensors from {path}, {} re-initialised",
            report.loaded.len(),
            report.reinitialized.len()
        );
        return Ok(());
    }
    if let Some(repo) = init.strip_prefix("hub:") {
        // The local Hugging Face cache first, a download otherwise (unless HF_HUB_OFFLINE).
        let weights = dptq_models::hub::fetch_file(
            repo,
            dptq_models::hub::WEIGHTS_FILE,
            &dptq_models::hub::HubOptions::default(),
        )?;
        let report = dptq_models::load_weights(&net.arch, &net.store, &weights)?;
        tracing::info!(
            "teacher: {} tensors from {repo}, {} re-initialised (new classifier head)",
            report.loaded.len(),
            report.reinitialized.len()
        );
        return Ok(());
    }
    Err(Error::Config(format!(
        "teacher.init must be scratch, hub:REPO (timm/<arch>.<tag>) or file:PATH, got {init:?}"
    )))
}

/// Runs the whole pipeline of `cfg` into the run directory `out` and returns (and
/// writes) the results. With `resume`, completed stages are restored from their
/// checkpoints and an interrupted stage continues from its last checkpoint.
pub fn reproduce(
    cfg: &RunConfig,
    out: &Path,
    resume: bool,
    progress: &dyn ProgressSink,
) -> Result<Results> {
    let started = Instant::now();
    cfg.validate()?;
    let run = RunDir::create(out)?;
    match run.read_text("config.toml")? {
        Some(text) if resume => check_same_run(&RunConfig::from_toml(&text)?, cfg)?,
        Some(_) if run.path().join("checkpoints").exists() => {
            return Err(Error::Config(format!(
                "{} already holds a run; pass --resume to continue it or choose another --out",
                out.display()
            )));
        }
        _ => {}
    }
    let config_toml = cfg.to_toml()?;
    run.write_text("config.toml", &config_toml)?;
    let layout = RunLayout::new(out);
    let device = parse_device(&cfg.device)?;
    let data = RunData::open(&cfg.data)?;
    let classes = data.num_classes();
    let test = data.test_loader(cfg.eval.batch_size, &device)?;
    let mut sess = Session {
        run: &run,
        seed: cfg.seed,
        device: device.clone(),
        resume,
        log_every: cfg.run.log_every,
        stop_after: cfg.run.stop_after_steps,
        steps_taken: 0,
        progress,
    };
    let mut stages = Vec::new();
    let mut eval_seconds = BTreeMap::new();

    // Stage 0: the teacher.
    let teacher = Network::new(
        &cfg.teacher.arch,
        classes,
        derive_seed(cfg.seed, "init/teacher", 0, 0),
        &device,
    )?;
    init_teacher(cfg, &teacher)?;
    {
        let loader = data.train_loader(
            cfg.teacher.train.batch_size,
            derive_seed(cfg.seed, "data/teacher", 0, 0),
            &device,
        )?;
        let mut trainer = TeacherTrainer::new(
            &teacher,
            cfg.teacher.train.optimizer.clone(),
            cfg.teacher.label_smoothing,
        )?;
        stages.push(train_stage(
            &mut sess,
            "teacher",
            &loader,
            &cfg.teacher.train,
            &mut trainer,
        )?);
    }
    save_store(&teacher.store, &layout.teacher())?;
    let black_box = teacher.frozen()?;
    let teacher_acc = if cfg.eval.teacher {
        let t0 = Instant::now();
        let correct = evaluate_fp(&test, black_box.classifier(), progress, "teacher")?;
        eval_seconds.insert("teacher".to_string(), t0.elapsed().as_secs_f64());
        Some(FpAccuracy {
            fp: percent(&correct),
        })
    } else {
        None
    };

    let mut experiments = Vec::new();
    for student in &cfg.white_box.students {
        // Stage 1: black-box distillation into a randomly initialised student.
        let stage = format!("white_box/{student}");
        let white_box = Network::new(
            student,
            classes,
            derive_seed(cfg.seed, &format!("init/{stage}"), 0, 0),
            &device,
        )?;
        {
            let batch = cfg
                .white_box
                .batch_size_for
                .get(student)
                .copied()
                .unwrap_or(cfg.white_box.train.batch_size);
            let loader = data.train_loader(
                batch,
                derive_seed(cfg.seed, &format!("data/{stage}"), 0, 0),
                &device,
            )?;
            let mut trainer = WhiteBoxTrainer {
                teacher: &black_box,
                student: &white_box,
                opt: crate::optim::Optimizer::new(cfg.white_box.train.optimizer.clone())?,
                temperature: cfg.white_box.temperature,
                mixup_alpha: cfg.white_box.mixup_alpha,
            };
            stages.push(train_stage(
                &mut sess,
                &stage,
                &loader,
                &cfg.white_box.train,
                &mut trainer,
            )?);
        }
        save_store(&white_box.store, &layout.white_box(student))?;
        let layers = white_box.model.quant_layers().to_vec();
        tracing::info!("{student}: L = {} quantized layers", layers.len());
        let w_frozen = white_box.frozen()?;

        let planned = cfg.experiments_for(student, layers.len())?;
        if let Some(bad) = planned.iter().find(|e| !e.budget_feasible()) {
            return Err(Error::Config(format!(
                "experiment {}: budget {} is not reachable with options {:?} over {} layers",
                bad.id(),
                bad.budget,
                bad.options,
                bad.num_layers
            )));
        }
        for experiment in planned {
            // Stage 2: the robust and detrimental pairs.
            let stage = format!("pairs/{}", experiment.id());
            let settings = PairSettings::new(&cfg.pairs, &experiment);
            let policy_input =
                (cfg.pairs.policy_input_size > 0).then_some(cfg.pairs.policy_input_size);
            let mut trainer = PairTrainer::new(
                &w_frozen,
                &white_box,
                &cfg.pairs,
                settings,
                policy_input,
                derive_seed(cfg.seed, &stage, 0, 0),
            )?;
            let loader = data.train_loader(
                cfg.pairs.train.batch_size,
                derive_seed(cfg.seed, &format!("data/{stage}"), 0, 0),
                &device,
            )?;
            stages.push(train_stage(
                &mut sess,
                &stage,
                &loader,
                &cfg.pairs.train,
                &mut trainer,
            )?);
            let [r, d] = &trainer.pairs;
            for (part, store) in [
                ("robust", &r.net.store),
                ("detrimental", &d.net.store),
                ("policy_robust", &r.policy.store),
                ("policy_detrimental", &d.policy.store),
            ] {
                save_store(store, &layout.pair_part(&experiment, part))?;
            }

            // Evaluation: W, R, D x pi_R, pi_D, random.
            let t0 = Instant::now();
            let r_frozen = r.net.frozen()?;
            let d_frozen = d.net.frozen()?;
            let pi_r = r.policy.frozen()?;
            let pi_d = d.policy.frozen()?;
            let networks: [(&str, &dyn dptq_models::Classifier); 3] = [
                ("W", w_frozen.classifier()),
                ("R", r_frozen.classifier()),
                ("D", d_frozen.classifier()),
            ];
            let policies = [
                (
                    "pi_R",
                    EvalPolicy::Trained {
                        net: &pi_r,
                        profits: cfg.pairs.profits,
                    },
                ),
                (
                    "pi_D",
                    EvalPolicy::Trained {
                        net: &pi_d,
                        profits: cfg.pairs.profits,
                    },
                ),
                (
                    "random",
                    EvalPolicy::Random {
                        seed: derive_seed(cfg.seed, &format!("random_policy/{stage}"), 0, 0),
                    },
                ),
            ];
            let eval = evaluate_cross(
                &test,
                &networks,
                &policies,
                &experiment.options,
                experiment.budget,
                cfg.pairs.weight_bits,
                progress,
                &experiment.id(),
            )?;
            eval_seconds.insert(experiment.id(), t0.elapsed().as_secs_f64());
            let result = ExperimentResult::from_eval(
                &experiment,
                layers.clone(),
                &eval,
                trainer.times.clone(),
            )?;
            tracing::info!(
                "{}: W {:.2} | R {:.2} -> {:.2} | D {:.2} -> {:.2} | on budget {}/{}",
                result.id,
                result.white_box.fp,
                result.robust.fp,
                result.robust.quantized,
                result.detrimental.fp,
                result.detrimental.quantized,
                result.budget_exact,
                result.budget_checked
            );
            experiments.push(result);
        }
    }

    let first = experiments
        .first()
        .ok_or_else(|| Error::Config("no experiment to run".into()))?
        .clone();
    let budget_checked: usize = experiments.iter().map(|e| e.budget_checked).sum();
    let budget_exact: usize = experiments.iter().map(|e| e.budget_exact).sum();
    let results = Results {
        preset: cfg.preset.clone(),
        seed: cfg.seed,
        budget: first.budget,
        options: first.options.clone(),
        budget_exact_fraction: if budget_checked == 0 {
            0.0
        } else {
            budget_exact as f64 / budget_checked as f64
        },
        budget_checked,
        white_box: first.white_box,
        robust: first.robust,
        detrimental: first.detrimental,
        transitory_points: first.transitory_points,
        teacher: teacher_acc,
        experiments,
        data: DataSummary {
            spec: cfg.data.spec.clone(),
            classes,
            train: data.dataset.train.len(),
            test: data.dataset.test.len(),
            skipped: data.dataset.skipped.clone(),
        },
        stages,
        eval_seconds,
        wall_seconds: started.elapsed().as_secs_f64(),
    };
    run.write_text("results.json", &results.to_json()?)?;
    run.write_text("report.md", &results.report(&config_toml))?;
    if budget_exact != budget_checked {
        return Err(Error::BudgetViolated {
            budget: first.budget,
            count: budget_checked - budget_exact,
            total: budget_checked,
        });
    }
    Ok(results)
}
