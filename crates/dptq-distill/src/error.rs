//! The one error type of dptq-distill.

use std::path::PathBuf;

/// Everything that can go wrong while distilling, training or writing a run.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A tensor operation failed (shape mismatch, dtype, device).
    #[error(transparent)]
    Candle(#[from] candle_core::Error),

    /// The data could not be opened or loaded.
    #[error(transparent)]
    Data(#[from] dptq_data::Error),

    /// A model could not be built, loaded or run.
    #[error(transparent)]
    Models(#[from] dptq_models::Error),

    /// The exact-budget bit selection failed (infeasible budget, bad scores).
    #[error(transparent)]
    Mckp(#[from] dptq_mckp::Error),

    /// Reading or writing a file of the run directory failed.
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    /// A configuration file or an override could not be parsed or does not fit the schema.
    #[error("invalid configuration: {0}")]
    Config(String),

    /// A value is outside what a loss, optimizer or stage accepts.
    #[error("invalid {what}: {detail}")]
    Invalid { what: &'static str, detail: String },

    /// Two tensors that must agree in shape do not.
    #[error("shape mismatch in {op}: {lhs:?} vs {rhs:?}")]
    Shape {
        op: &'static str,
        lhs: Vec<usize>,
        rhs: Vec<usize>,
    },

    /// A checkpoint or a run directory is missing a file, a key or is inconsistent.
    #[error("checkpoint {path}: {detail}")]
    Checkpoint { path: PathBuf, detail: String },

    /// A JSON record could not be written or read.
    #[error("json: {0}")]
    Json(#[from] serde_json::Error),

    /// A run was stopped on purpose after a step limit (used to test resume).
    #[error("stopped after {steps} steps of stage {stage} (step limit)")]
    StepLimit { stage: String, steps: u64 },

    /// An evaluated example did not cost exactly the bit budget.
    #[error("budget violated: {count} of {total} examples do not cost exactly {budget} bits")]
    BudgetViolated {
        budget: u32,
        count: usize,
        total: usize,
    },
}

impl Error {
    /// An [`Error::Io`] carrying the path that failed.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            source,
        }
    }

    /// An [`Error::Invalid`] for a bad argument.
    pub fn invalid(what: &'static str, detail: impl Into<String>) -> Self {
        Error::Invalid {
            what,
            detail: detail.into(),
        }
    }
}

/// `Result` with this crate's [`Error`].
pub type Result<T> = std::result::Result<T, Error>;
