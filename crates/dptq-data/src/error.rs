//! The crate's one error type.

use std::path::PathBuf;

/// Everything that can go wrong while reading, decoding, transforming or fetching data.
/// Every variant that concerns a file names it.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A file or folder could not be read or written.
    #[error("cannot access {path}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A file exists but is not a decodable image (corrupt, truncated, unknown format).
    #[error("cannot decode image {path}: {reason}")]
    Decode { path: PathBuf, reason: String },
    /// An IDX file whose header or length is wrong.
    #[error("bad IDX file {path}: {reason}")]
    Idx { path: PathBuf, reason: String },
    /// A malformed line of a split or annotation file.
    #[error("{path}:{line}: {reason}")]
    Annotation {
        path: PathBuf,
        line: usize,
        reason: String,
    },
    /// A test sample whose class is absent from the training classes.
    #[error("unknown class {class:?} in {path}")]
    UnknownClass { class: String, path: PathBuf },
    /// A required file or folder is missing.
    #[error("missing {what}: {path}")]
    Missing { what: &'static str, path: PathBuf },
    /// A folder, class or split that holds no sample.
    #[error("no {what} found in {path}")]
    Empty { what: &'static str, path: PathBuf },
    /// A dataset specification that does not parse.
    #[error(
        "invalid data spec {spec:?}: {reason} (expected embedded, pets:DIR, imagefolder:DIR or idx:DIR)"
    )]
    Spec { spec: String, reason: String },
    /// A configuration value out of its range.
    #[error("invalid {what}: {reason}")]
    Config { what: &'static str, reason: String },
    /// The server could not be reached (offline, DNS failure, connection refused).
    #[error("cannot reach {url} (offline?): {reason}")]
    Offline { url: String, reason: String },
    /// The server answered, but not with the file.
    #[error("download of {url} failed: {reason}")]
    Download { url: String, reason: String },
    /// A downloaded file whose checksum differs from the recorded one.
    #[error("checksum mismatch for {path}: expected {algorithm} {expected}, got {actual}")]
    Checksum {
        path: PathBuf,
        algorithm: &'static str,
        expected: String,
        actual: String,
    },
    /// The background loader thread stopped unexpectedly.
    #[error("loader thread stopped: {0}")]
    Worker(String),
    /// A tensor operation failed.
    #[error(transparent)]
    Candle(#[from] candle_core::Error),
}

/// The crate's result type.
pub type Result<T> = std::result::Result<T, Error>;

impl Error {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            source,
        }
    }

    pub(crate) fn config(what: &'static str, reason: impl Into<String>) -> Self {
        Error::Config {
            what,
            reason: reason.into(),
        }
    }
}
