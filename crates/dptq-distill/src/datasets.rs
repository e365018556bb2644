//! From a [`DataConfig`] to the training and test loaders every stage uses.

use candle_core::Device;
use dptq_data::{
    DataSpec, Dataset, EvalTransform, Interpolation, Loader, LoaderConfig, Normalize, OpenOptions,
    Pipeline, Sample, Split, TrainTransform, Transform,
};

use crate::config::DataConfig;
use crate::error::{Error, Result};

/// The opened dataset with the pipelines of the run.
#[derive(Debug, Clone)]
pub struct RunData {
    /// Classes, splits (after the limits), skipped files.
    pub dataset: Dataset,
    /// Training pipeline (augmentation as configured).
    pub train_pipeline: Pipeline,
    /// Evaluation pipeline (resize + center crop).
    pub eval_pipeline: Pipeline,
}

/// Keeps at most `limit` samples, taking classes in turn (round robin, each class in its
/// original order) so that a small subset stays class-balanced. `limit == 0` keeps all.
pub fn balanced_subset(split: &Split, limit: usize, cache_bytes: usize) -> Split {
    if limit == 0 || limit >= split.len() {
        return split.clone();
    }
    let samples = split.samples();
    let mut by_class: std::collections::BTreeMap<u32, std::collections::VecDeque<&Sample>> =
        Default::default();
    for s in samples {
        by_class.entry(s.label).or_default().push_back(s);
    }
    let mut kept: Vec<Sample> = Vec::with_capacity(limit);
    while kept.len() < limit {
        for queue in by_class.values_mut() {
            if kept.len() == limit {
                break;
            }
            if let Some(s) = queue.pop_front() {
                kept.push(s.clone());
            }
        }
    }
    Split::new(split.name().to_string(), kept, cache_bytes)
}

impl RunData {
    /// Opens `cfg.spec` and prepares the pipelines. The embedded Fashion-MNIST subset is
    /// normalised with its own statistics, every other dataset with ImageNet's (the
    /// statistics of timm's pretrained configurations).
    pub fn open(cfg: &DataConfig) -> Result<Self> {
        let spec: DataSpec = cfg
            .spec
            .parse()
            .map_err(|e: dptq_data::Error| Error::Config(format!("data.spec: {e}")))?;
        let options = OpenOptions {
            skip_bad: cfg.skip_bad,
            ..Default::default()
        };
        let mut dataset = Dataset::open(&spec, &options)?;
        dataset.train = balanced_subset(&dataset.train, cfg.train_limit, options.cache_bytes);
        dataset.test = balanced_subset(&dataset.test, cfg.test_limit, options.cache_bytes);
        let normalize = match spec {
            DataSpec::Embedded => Normalize::FASHION_MNIST,
            _ => Normalize::IMAGENET,
        };
        let size = u32::try_from(cfg.image_size)
            .map_err(|_| Error::Config(format!("data.image_size {} too large", cfg.image_size)))?;
        // Small images (Fashion-MNIST at 28 px) are used whole; photographs are resized
        // and center-cropped like timm's evaluation (crop 0.875).
        let crop_pct = if matches!(spec, DataSpec::Embedded | DataSpec::Idx(_)) {
            1.0
        } else {
            0.875
        };
        let eval = EvalTransform {
            size,
            crop_pct,
            interpolation: Interpolation::Bilinear,
        };
        let train = match cfg.augment.as_str() {
            "none" => Transform::Eval(eval),
            // Flip and a padded random crop (pad = size / 14: 2 px at 28 px).
            "light" => Transform::Train(TrainTransform {
                size,
                random_resized_crop: None,
                hflip: 0.5,
                padded_crop: Some((size / 14).max(1)),
                rand_augment: None,
                color_jitter: None,
                interpolation: Interpolation::Bilinear,
            }),
            // SPEC §6: random (resized) crop, RandAugment, colour jitter, flip, padded crop.
            "paper" => Transform::Train(TrainTransform {
                size,
                ..Default::default()
            }),
            other => {
                return Err(Error::Config(format!(
                    "data.augment must be none, light or paper, got {other:?}"
                )));
            }
        };
        Ok(Self {
            dataset,
            train_pipeline: Pipeline {
                transform: train,
                normalize,
                corruption: None,
            },
            eval_pipeline: Pipeline {
                transform: Transform::Eval(eval),
                normalize,
                corruption: None,
            },
        })
    }

    /// Number of classes (from the data).
    pub fn num_classes(&self) -> usize {
        self.dataset.num_classes()
    }

    /// A shuffled, augmented training loader that drops the last incomplete batch
    /// (BatchNorm's batch statistics need more than one example).
    pub fn train_loader(&self, batch_size: usize, seed: u64, device: &Device) -> Result<Loader> {
        let config = LoaderConfig {
            batch_size,
            shuffle: true,
            drop_last: true,
            seed,
            prefetch: 2,
        };
        let loader = Loader::new(&self.dataset.train, self.train_pipeline, config, device)?;
        if loader.is_empty() {
            return Err(Error::invalid(
                "batch size",
                format!(
                    "{batch_size} is larger than the {} training examples",
                    self.dataset.train.len()
                ),
            ));
        }
        Ok(loader)
    }

    /// The test split in order, evaluation transform, every example.
    pub fn test_loader(&self, batch_size: usize, device: &Device) -> Result<Loader> {
        self.eval_loader(&self.dataset.test, batch_size, device)
    }

    /// Any split in order with the evaluation transform.
    pub fn eval_loader(&self, split: &Split, batch_size: usize, device: &Device) -> Result<Loader> {
        let config = LoaderConfig {
            batch_size,
            shuffle: false,
            drop_last: false,
            seed: 0,
            prefetch: 2,
        };
        Ok(Loader::new(split, self.eval_pipeline, config, device)?)
    }
}
