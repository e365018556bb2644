//! dptq-data: the data the pipeline trains and evaluates on, fed fast and
//! deterministically.
//!
//! - [`Dataset::open`] reads a [`DataSpec`]: the embedded Fashion-MNIST subset (the
//!   default, compiled in), Oxford-IIIT Pets, ImageFolder trees or IDX files, into
//!   `classes`, `train` and `test` splits, recording any skipped file;
//! - [`Loader`] turns a split into normalised `[N, 3, H, W]` batches: seeded shuffles and
//!   augmentations, parallel decode, background prefetch, decoded images cached;
//! - [`TrainTransform`] / [`EvalTransform`] / [`mixup`] are the paper's augmentations,
//!   [`Corruption`] its robustness corruptions (Fig. 4), [`evaluate_corrupted`] runs one;
//! - [`fetch_pets`] downloads the official Pets archives (resume, checksum, extraction).

mod corrupt;
mod dataset;
mod error;
mod fetch;
mod idx;
mod loader;
mod resample;
mod spec;
mod transform;

pub use corrupt::{Corrupted, Corruption, CorruptionKind};
pub use dataset::{
    Dataset, FASHION_MNIST_CLASSES, IMAGE_EXTENSIONS, MemoryImage, OpenOptions, Sample,
    SkippedFile, Source, Split, decode_file,
};
pub use error::{Error, Result};
pub use fetch::{
    Checksum, FetchEvent, PETS_BASE_URL, Resource, download, extract_tar_gz, fetch, fetch_pets,
    pets_resources, verify,
};
pub use idx::{IdxArray, encode_idx, parse_idx, read_idx};
pub use loader::{
    Batch, Batches, Evaluation, Loader, LoaderConfig, Pipeline, evaluate, evaluate_corrupted,
};
pub use spec::DataSpec;
pub use transform::{
    AugmentOp, ColorJitter, EvalTransform, Interpolation, Mix, Normalize, RandAugment,
    RandomResizedCrop, TrainTransform, Transform, adjust_brightness, adjust_contrast, adjust_hue,
    adjust_saturation, center_crop, mixup, resize_shorter, rotate,
};
