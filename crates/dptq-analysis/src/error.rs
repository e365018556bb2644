//! The one error type of dptq-analysis.

use std::path::PathBuf;

/// Everything that can go wrong while analysing a run or auditing a model.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A tensor operation failed (shapes, devices, dtypes).
    #[error(transparent)]
    Candle(#[from] candle_core::Error),

    /// A model could not be built, loaded or run.
    #[error(transparent)]
    Models(#[from] dptq_models::Error),

    /// The data could not be opened or loaded.
    #[error(transparent)]
    Data(#[from] dptq_data::Error),

    /// A bit allocation could not be solved (budget out of reach, bad shapes).
    #[error(transparent)]
    Mckp(#[from] dptq_mckp::Error),

    /// A quantizer rejected its settings.
    #[error(transparent)]
    Quant(#[from] dptq_quant::Error),

    /// A run configuration, loss or optimizer of the pipeline failed.
    #[error(transparent)]
    Distill(#[from] dptq_distill::Error),

    /// Reading or writing a file failed.
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    /// A file of a run directory is missing.
    #[error("{}: missing {what} (is this a finished `dptq reproduce` run directory?)", path.display())]
    Missing { what: String, path: PathBuf },

    /// A file could not be parsed.
    #[error("{}: {detail}", path.display())]
    Parse { path: PathBuf, detail: String },

    /// An option or an input is out of range.
    #[error("invalid {what}: {detail}")]
    Invalid { what: &'static str, detail: String },

    /// A plot could not be drawn or encoded.
    #[error("plot {name:?}: {detail}")]
    Plot { name: String, detail: String },

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

    /// An [`Error::Plot`] for plot `name`.
    pub fn plot(name: impl Into<String>, detail: impl std::fmt::Display) -> Self {
        Error::Plot {
            name: name.into(),
            detail: detail.to_string(),
        }
    }
}

/// `Result` with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl From<serde_json::Error> for Error {
    fn from(err: serde_json::Error) -> Self {
        Error::Invalid {
            what: "json",
            detail: err.to_string(),
        }
    }
}
