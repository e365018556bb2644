//! `DataSpec`: which dataset to open, as written on the command line.

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

use crate::error::Error;

/// Where the data comes from. Parses from (and displays as) the command-line forms
/// `embedded`, `pets:DIR`, `imagefolder:DIR` and `idx:DIR`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum DataSpec {
    /// The class-balanced Fashion-MNIST subset compiled into the crate (10,000 train,
    /// 5,000 test, 28x28 grey, 10 classes). The default: needs no file.
    #[default]
    Embedded,
    /// Oxford-IIIT Pets in its official layout: `DIR/images/*.jpg` and
    /// `DIR/annotations/{trainval,test}.txt` (37 classes).
    Pets(PathBuf),
    /// One torchvision-style ImageFolder per split: `DIR/{train,test}/<class>/*.{jpg,jpeg,png}`.
    ImageFolder(PathBuf),
    /// IDX files of the MNIST family in `DIR` (`train-images-idx3-ubyte[.gz]`,
    /// `train-labels-idx1-ubyte[.gz]`, `t10k-...` or `test-...`), optional `classes.txt`.
    Idx(PathBuf),
}

impl FromStr for DataSpec {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self, Error> {
        let bad = |reason: &str| Error::Spec {
            spec: s.to_string(),
            reason: reason.to_string(),
        };
        if s == "embedded" {
            return Ok(DataSpec::Embedded);
        }
        let (kind, dir) = s.split_once(':').ok_or_else(|| bad("no kind given"))?;
        if dir.is_empty() {
            return Err(bad("empty directory"));
        }
        let dir = PathBuf::from(dir);
        match kind {
            "pets" => Ok(DataSpec::Pets(dir)),
            "imagefolder" => Ok(DataSpec::ImageFolder(dir)),
            "idx" => Ok(DataSpec::Idx(dir)),
            _ => Err(bad(&format!("unknown kind {kind:?}"))),
        }
    }
}

impl fmt::Display for DataSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DataSpec::Embedded => write!(f, "embedded"),
            DataSpec::Pets(dir) => write!(f, "pets:{}", dir.display()),
            DataSpec::ImageFolder(dir) => write!(f, "imagefolder:{}", dir.display()),
            DataSpec::Idx(dir) => write!(f, "idx:{}", dir.display()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_form_round_trips_through_display() {
        for s in [
            "embedded",
            "pets:/data/pets",
            "imagefolder:rel/dir",
            "idx:C:/x",
        ] {
            let spec: DataSpec = s.parse().unwrap();
            assert_eq!(spec.to_string(), s);
        }
        assert_eq!(
            "idx:C:/x".parse::<DataSpec>().unwrap(),
            DataSpec::Idx("C:/x".into())
        );
    }

    #[test]
    fn unknown_kinds_and_empty_dirs_are_rejected_with_the_spec() {
        let err = "cifar:/x".parse::<DataSpec>().unwrap_err().to_string();
        assert!(
            err.contains("\"cifar:/x\"") && err.contains("unknown kind"),
            "{err}"
        );
        assert!("pets:".parse::<DataSpec>().is_err());
        assert!("mnist".parse::<DataSpec>().is_err());
    }
}
