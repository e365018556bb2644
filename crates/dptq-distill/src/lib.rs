//! dptq-distill: the paper's training pipeline. Knowledge distillation with a
//! temperature, the robust and detrimental hinge losses, label-smoothing cross-entropy;
//! SGD and AdamW keyed by parameter name with a half-period cosine schedule; the three
//! stages (teacher fine-tune, black-box distillation into a white box, policy-aware
//! self-distillation of robust and detrimental network–policy pairs at an exact bit
//! budget); evaluation into the paper's tables; resumable run directories.

mod config;
mod error;
mod loss;
mod optim;
mod rng;
mod run;
mod schedule;

pub use config::{
    BitVersion, BudgetLevel, DataConfig, EvalConfig, Experiment, PAPER_PRESET, PairsConfig,
    Profits, QuantizedPassBn, RunConfig, RunOptions, TINY_PRESET, TeacherConfig, TrainConfig,
    WhiteBoxConfig,
};
pub use error::{Error, Result};
pub use loss::{
    PairKind, detrimental_hinge, hinge_loss, kd_loss, label_smoothing_ce, log_softmax,
    robust_hinge, soft_target_ce, softmax, top2,
};
pub use optim::{Optimizer, OptimizerConfig};
pub use rng::{derive_seed, stream_rng};
pub use run::{
    CheckpointState, MetricsLog, RunDir, load_safetensors, safetensors_bytes, save_safetensors,
    write_atomic,
};
pub use schedule::CosineSchedule;
