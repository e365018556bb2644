//! The one error type of dptq-models.

use std::path::PathBuf;

/// Everything that can go wrong building, loading, running or fetching a model.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A tensor operation failed (shapes, devices, dtypes).
    #[error(transparent)]
    Candle(#[from] candle_core::Error),

    /// A quantizer rejected its input.
    #[error(transparent)]
    Quant(#[from] dptq_quant::Error),

    /// `arch` is not a registered architecture.
    #[error("unknown architecture {arch:?}; known: {}", known.join(", "))]
    UnknownArch { arch: String, known: Vec<String> },

    /// A configuration value is out of range.
    #[error("invalid {what}: {detail}")]
    InvalidConfig { what: &'static str, detail: String },

    /// The checkpoint lacks a key the model needs.
    #[error("{file}: missing key {key:?} (the model expects shape {expected:?})")]
    MissingKey {
        file: String,
        key: String,
        expected: Vec<usize>,
    },

    /// The checkpoint holds a key the model does not have.
    #[error("{file}: unexpected key {key:?} with shape {found:?} (not a parameter of this model)")]
    UnexpectedKey {
        file: String,
        key: String,
        found: Vec<usize>,
    },

    /// A checkpoint tensor does not have the shape of the model's parameter.
    #[error("{file}: key {key:?} has shape {found:?}, the model expects {expected:?}")]
    ShapeMismatch {
        file: String,
        key: String,
        expected: Vec<usize>,
        found: Vec<usize>,
    },

    /// A parameter was requested twice with different shapes.
    #[error("parameter {key:?} already exists with shape {existing:?}, requested {requested:?}")]
    ParamConflict {
        key: String,
        existing: Vec<usize>,
        requested: Vec<usize>,
    },

    /// A quantization plan does not fit the batch or the model.
    #[error("quantization plan: {what} has shape {found:?}, expected {expected}")]
    PlanShape {
        what: &'static str,
        found: Vec<usize>,
        expected: String,
    },

    /// A BatchNorm in training mode saw a single value per channel.
    #[error(
        "batch norm {name:?}: training needs more than one value per channel, got input {shape:?}"
    )]
    BatchTooSmall { name: String, shape: Vec<usize> },

    /// Reading or writing a file failed.
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },

    /// A file could not be parsed.
    #[error("{}: {detail}", path.display())]
    Parse { path: PathBuf, detail: String },

    /// The hub could not provide a file.
    #[error("hub {repo}: {detail}")]
    Hub { repo: String, detail: String },
}

/// `Result` with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl From<Error> for candle_core::Error {
    fn from(err: Error) -> Self {
        match err {
            Error::Candle(err) => err,
            other => candle_core::Error::Msg(other.to_string()),
        }
    }
}
