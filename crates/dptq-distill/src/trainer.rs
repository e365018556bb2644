//! The training loop every stage shares: schedule, logging, progress, checkpoints,
//! resume and the step limit that simulates a kill.
//!
//! Resume is exact: a checkpoint holds the stage's models (with BatchNorm running
//! statistics), its optimizer states and its position `(epoch, step)`; the data order,
//! augmentations and mixup draws are functions of `(seed, epoch, batch)` (see
//! `dptq_data::Loader`), so continuing from the checkpoint replays exactly what an
//! uninterrupted run would have computed.

use std::collections::BTreeMap;
use std::time::Instant;

use candle_core::{Device, Tensor};
use dptq_data::{Batch, Loader};
use serde_json::json;

use crate::config::TrainConfig;
use crate::error::{Error, Result};
use crate::progress::{Progress, ProgressSink};
use crate::run::{CheckpointState, RunDir};
use crate::schedule::CosineSchedule;

/// Named tensors of one checkpoint part (a model, an optimizer state).
pub type Part = BTreeMap<String, Tensor>;

/// What a stage trains: it can save and restore itself and take one step.
pub trait StageModel {
    /// The parts of a checkpoint: `(name, tensors)`, e.g. `("model", ...)`, `("optim", ...)`.
    fn parts(&self) -> Result<Vec<(String, Part)>>;

    /// Restores the parts written by [`StageModel::parts`].
    fn restore(&mut self, parts: BTreeMap<String, Part>) -> Result<()>;

    /// One optimizer step on `batch` at learning rate `lr`, at position `(epoch, step)`
    /// of the stage. Returns named scalars to log; the first one is the loss shown in
    /// progress bars.
    fn step(
        &mut self,
        batch: &Batch,
        lr: f64,
        epoch: u64,
        step: u64,
    ) -> Result<Vec<(&'static str, f64)>>;
}

/// The context a run's stages share.
pub struct Session<'a> {
    /// The run directory.
    pub run: &'a RunDir,
    /// The run seed.
    pub seed: u64,
    /// Where tensors live.
    pub device: Device,
    /// Continue from checkpoints found in the run directory.
    pub resume: bool,
    /// Log a metrics record every this many steps.
    pub log_every: u64,
    /// Stop with [`Error::StepLimit`] after this many steps in this process (0 = never).
    pub stop_after: u64,
    /// Steps taken in this process so far, all stages together.
    pub steps_taken: u64,
    /// Progress events go here.
    pub progress: &'a dyn ProgressSink,
}

impl std::fmt::Debug for Session<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("run", &self.run.path())
            .field("seed", &self.seed)
            .field("resume", &self.resume)
            .field("steps_taken", &self.steps_taken)
            .finish()
    }
}

/// How a stage's training went.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct StageOutcome {
    /// Stage name.
    pub stage: String,
    /// Optimizer steps of the whole stage.
    pub steps: u64,
    /// Examples seen by training steps (steps x batch size).
    pub images: u64,
    /// Seconds spent in training steps (over every process that worked on the stage).
    pub train_seconds: f64,
    /// Training throughput: `images / train_seconds`.
    pub images_per_second: f64,
    /// The last logged scalars (mean over the last epoch).
    pub last_epoch: BTreeMap<String, f64>,
}

/// Trains `model` for `recipe.epochs` epochs of `loader` as stage `stage`, writing
/// checkpoints and metrics into the run directory, resuming from the stage's last
/// checkpoint when the session resumes. A stage whose checkpoint is complete is not
/// trained again: its models are restored and its recorded outcome returned.
pub fn train_stage(
    sess: &mut Session<'_>,
    stage: &str,
    loader: &Loader,
    recipe: &TrainConfig,
    model: &mut dyn StageModel,
) -> Result<StageOutcome> {
    let per_epoch = loader.len() as u64;
    let total = per_epoch * recipe.epochs as u64;
    let warmup = (recipe.warmup_epochs * per_epoch as f64).round() as u64;
    let schedule = CosineSchedule {
        base_lr: recipe.lr,
        final_lr: recipe.final_lr,
        total_steps: total,
        warmup_steps: warmup,
    };
    let batch_size = loader.config().batch_size as u64;

    let mut step = 0u64;
    let mut seconds = 0.0f64;
    let mut epoch_sums: BTreeMap<String, (f64, u64)> = BTreeMap::new();
    let mut resumed_last: BTreeMap<String, f64> = BTreeMap::new();
    let checkpoint = if sess.resume {
        sess.run.load_checkpoint(stage, &sess.device)?
    } else {
        None
    };
    if let Some((state, parts)) = checkpoint {
        if state.seed != sess.seed {
            return Err(Error::Checkpoint {
                path: sess.run.path().join("checkpoints").join(stage),
                detail: format!(
                    "written with seed {}, this run has seed {}",
                    state.seed, sess.seed
                ),
            });
        }
        model.restore(parts)?;
        step = state.step;
        seconds = state.extra["train_seconds"].as_f64().unwrap_or(0.0);
        // Sums of the epoch in progress (a mid-epoch checkpoint) and the last means.
        epoch_sums = serde_json::from_value(state.extra["epoch_sums"].clone()).unwrap_or_default();
        resumed_last = serde_json::from_value(state.extra["outcome"]["last_epoch"].clone())
            .unwrap_or_default();
        if state.done {
            let outcome: StageOutcome = serde_json::from_value(state.extra["outcome"].clone())?;
            sess.progress.event(&Progress::StageFinished {
                stage: stage.to_string(),
                seconds: 0.0,
                skipped: true,
            });
            return Ok(outcome);
        }
        // Drop what was logged after the checkpoint: those steps run again.
        sess.run.metrics().retain(|r| {
            r["stage"].as_str() != Some(stage) || r["step"].as_u64().is_some_and(|s| s <= step)
        })?;
        tracing::info!("{stage}: resuming at step {step} of {total}");
    }
    if step == 0 {
        sess.run
            .metrics()
            .retain(|r| r["stage"].as_str() != Some(stage))?;
    }
    sess.progress.event(&Progress::StageStarted {
        stage: stage.to_string(),
        total,
        done: step,
    });
    tracing::info!(
        "{stage}: {} epochs x {per_epoch} steps of {batch_size} examples, lr {} ({} warm-up steps)",
        recipe.epochs,
        recipe.lr,
        warmup
    );

    let started = Instant::now();
    let save = |sess: &Session<'_>,
                model: &dyn StageModel,
                epoch: u64,
                step: u64,
                done: bool,
                seconds: f64,
                last: &BTreeMap<String, f64>,
                sums: &BTreeMap<String, (f64, u64)>|
     -> Result<()> {
        let outcome = StageOutcome {
            stage: stage.to_string(),
            steps: step,
            images: step * batch_size,
            train_seconds: seconds,
            images_per_second: if seconds > 0.0 {
                (step * batch_size) as f64 / seconds
            } else {
                0.0
            },
            last_epoch: last.clone(),
        };
        let state = CheckpointState {
            stage: stage.to_string(),
            epoch,
            step,
            done,
            seed: sess.seed,
            extra: json!({ "train_seconds": seconds, "outcome": outcome, "epoch_sums": sums }),
        };
        let parts = model.parts()?;
        let refs: Vec<(&str, &Part)> = parts.iter().map(|(n, p)| (n.as_str(), p)).collect();
        sess.run.save_checkpoint(&state, &refs)?;
        Ok(())
    };

    let mut last_epoch = resumed_last;
    let first_epoch = step / per_epoch.max(1);
    for epoch in first_epoch..recipe.epochs as u64 {
        let skip = (step - epoch * per_epoch) as usize;
        if skip == 0 {
            epoch_sums.clear();
        }
        for (b, batch) in loader.epoch(epoch).enumerate().skip(skip) {
            let batch = batch?;
            debug_assert_eq!(step, epoch * per_epoch + b as u64);
            let lr = schedule.lr(step);
            let t0 = Instant::now();
            let scalars = model.step(&batch, lr, epoch, step)?;
            seconds += t0.elapsed().as_secs_f64();
            step += 1;
            sess.steps_taken += 1;
            for (k, v) in &scalars {
                if !v.is_finite() {
                    return Err(Error::invalid(
                        "training",
                        format!("{stage}: {k} is {v} at step {step} (lr {lr})"),
                    ));
                }
                let e = epoch_sums.entry(k.to_string()).or_insert((0.0, 0));
                e.0 += v;
                e.1 += 1;
            }
            let loss = scalars.first().map_or(0.0, |s| s.1);
            sess.progress.event(&Progress::Step {
                stage: stage.to_string(),
                step,
                total,
                loss,
            });
            let end_of_epoch = b as u64 + 1 == per_epoch;
            if step.is_multiple_of(sess.log_every.max(1)) || end_of_epoch {
                let mut record = serde_json::Map::new();
                record.insert("stage".into(), json!(stage));
                record.insert("epoch".into(), json!(epoch));
                record.insert("step".into(), json!(step));
                record.insert("lr".into(), json!(lr));
                for (k, v) in &scalars {
                    record.insert((*k).into(), json!(v));
                }
                sess.run
                    .metrics()
                    .append(&serde_json::Value::Object(record))?;
            }
            if end_of_epoch {
                last_epoch = epoch_sums
                    .iter()
                    .map(|(k, (s, n))| (k.clone(), s / *n as f64))
                    .collect();
                let done = epoch + 1 == recipe.epochs as u64;
                let mut record = serde_json::Map::new();
                record.insert("stage".into(), json!(stage));
                record.insert("epoch".into(), json!(epoch));
                record.insert("step".into(), json!(step));
                record.insert("epoch_mean".into(), json!(last_epoch));
                sess.run
                    .metrics()
                    .append(&serde_json::Value::Object(record))?;
                epoch_sums.clear();
                save(
                    sess,
                    model,
                    epoch + 1,
                    step,
                    done,
                    seconds,
                    &last_epoch,
                    &epoch_sums,
                )?;
            } else if recipe.checkpoint_every > 0 && step.is_multiple_of(recipe.checkpoint_every) {
                save(
                    sess,
                    model,
                    epoch,
                    step,
                    false,
                    seconds,
                    &last_epoch,
                    &epoch_sums,
                )?;
            }
            if sess.stop_after > 0 && sess.steps_taken >= sess.stop_after {
                return Err(Error::StepLimit {
                    stage: stage.to_string(),
                    steps: sess.steps_taken,
                });
            }
        }
    }
    if total == 0 {
        save(sess, model, 0, 0, true, 0.0, &last_epoch, &epoch_sums)?;
    }
    sess.progress.event(&Progress::StageFinished {
        stage: stage.to_string(),
        seconds: started.elapsed().as_secs_f64(),
        skipped: false,
    });
    Ok(StageOutcome {
        stage: stage.to_string(),
        steps: step,
        images: step * batch_size,
        train_seconds: seconds,
        images_per_second: if seconds > 0.0 {
            (step * batch_size) as f64 / seconds
        } else {
            0.0
        },
        last_epoch,
    })
}
