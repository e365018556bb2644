//! dptq-distill: the paper's training pipeline, from data to the tables.
//!
//! - losses (SPEC §2-3): [`kd_loss`] with a temperature, the robust and detrimental
//!   [`hinge_loss`], [`label_smoothing_ce`];
//! - [`Optimizer`]: SGD (momentum, weight decay) and AdamW keyed by parameter name, with
//!   the half-period [`CosineSchedule`] and optional warm-up;
//! - the stages: teacher fine-tune ([`TeacherTrainer`]), black-box distillation into a
//!   white box ([`BlackBox`], [`WhiteBoxTrainer`]), policy-aware self-distillation of the
//!   robust and detrimental pairs at an exact bit budget ([`PairTrainer`], SPEC §4);
//! - evaluation into Tables 1-3 ([`evaluate_cross`], [`Results`]);
//! - runs: [`RunConfig`] with the `tiny` and `paper` presets, a [`RunDir`] with atomic
//!   checkpoints and bit-identical resume, and [`reproduce`], the whole pipeline.

mod config;
mod datasets;
mod error;
mod eval;
mod loss;
mod optim;
mod pairs;
mod pipeline;
mod progress;
mod results;
mod rng;
mod run;
mod schedule;
mod stages;
mod trainer;

pub use config::{
    BitVersion, BudgetLevel, DataConfig, EvalConfig, Experiment, PAPER_PRESET, PairsConfig,
    Profits, QuantizedPassBn, RunConfig, RunOptions, SMOKE_OVERRIDES, TINY_PRESET, TeacherConfig,
    TrainConfig, WhiteBoxConfig,
};
pub use datasets::{RunData, balanced_subset};
pub use error::{Error, Result};
pub use eval::{
    CrossEval, EvalPolicy, evaluate_cross, evaluate_fp, percent, policy_bits, random_profits,
};
pub use loss::{
    PairKind, detrimental_hinge, hinge_loss, kd_loss, label_smoothing_ce, log_softmax,
    robust_hinge, soft_target_ce, softmax, top2,
};
pub use optim::{Optimizer, OptimizerConfig};
pub use pairs::{
    Pair, PairLosses, PairSettings, PairTrainer, Policy, StepProfile, StepTimes, check_budget,
    pair_losses, profile_pair_step, profits_of,
};
pub use pipeline::{RunLayout, parse_device, reproduce};
pub use progress::{NoProgress, Progress, ProgressSink};
pub use results::{
    CrossMatrix, DETRIMENTAL_CHANGE_BAR, DataSummary, ExperimentResult, FP_GAP_BAR, FpAccuracy,
    PairAccuracy, ROBUST_CHANGE_BAR, Results, Verdict,
};
pub use rng::{derive_seed, stream_rng};
pub use run::{
    CheckpointState, MetricsLog, RunDir, load_safetensors, safetensors_bytes, save_safetensors,
    write_atomic,
};
pub use schedule::CosineSchedule;
pub use stages::{BlackBox, FrozenModel, Network, TeacherTrainer, WhiteBoxTrainer};
pub use trainer::{Part, Session, StageModel, StageOutcome, train_stage};
