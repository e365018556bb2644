//! The deterministic batch loader: per-epoch shuffling, per-sample seeded transforms,
//! parallel decode and augmentation (rayon), a background prefetch thread, and
//! batches as candle tensors.
//!
//! Determinism: the order of epoch `e` is a shuffle seeded by `(seed, e)`; sample `i`
//! of epoch `e` is augmented (and corrupted) with a generator seeded by `(seed, e, i)`,
//! whatever the batch size, thread count or prefetch depth.

use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::thread::JoinHandle;

use candle_core::{Device, Tensor};
use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;

use crate::corrupt::Corruption;
use crate::dataset::Split;
use crate::error::{Error, Result};
use crate::transform::{EvalTransform, Mix, Normalize, Transform, mixup};

/// What the loader does to each image: transform, optional corruption, normalisation.
#[derive(Debug, Clone, Copy, PartialEq, Default, serde::Serialize, serde::Deserialize)]
pub struct Pipeline {
    /// Resize/crop (evaluation) or augmentations (training). Default: eval at 224 px.
    pub transform: Transform,
    /// Mean and std of the model's pretrained config. Default: ImageNet.
    pub normalize: Normalize,
    /// A corruption applied after the transform. Default: none.
    pub corruption: Option<Corruption>,
}

impl Pipeline {
    /// Runs the pipeline on sample `index` of `split`, writing `3 * size * size`
    /// normalised values (CHW) into `out`.
    pub fn write_sample(
        &self,
        split: &Split,
        index: usize,
        seed: u64,
        out: &mut [f32],
    ) -> Result<()> {
        let img = split.image(index)?;
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let img = self.transform.apply(&img, &mut rng);
        match &self.corruption {
            None => self.normalize.write_chw(&img, out),
            Some(c) => {
                let corrupted = c.apply(&img, &self.normalize, &mut rng)?;
                corrupted.normalize.write_chw_f32(&corrupted.pixels, out);
            }
        }
        Ok(())
    }
}

/// How batches are formed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct LoaderConfig {
    /// Examples per batch. Default: 64.
    pub batch_size: usize,
    /// Shuffle the order every epoch. Default: true (set false for evaluation).
    pub shuffle: bool,
    /// Drop the last, incomplete batch. Default: false.
    pub drop_last: bool,
    /// Seed of the shuffles, augmentations and corruptions. Default: 0.
    pub seed: u64,
    /// Batches prepared ahead by the background thread. Default: 2.
    pub prefetch: usize,
}

impl Default for LoaderConfig {
    fn default() -> Self {
        Self {
            batch_size: 64,
            shuffle: true,
            drop_last: false,
            seed: 0,
            prefetch: 2,
        }
    }
}

/// One batch. Feed the very same `images` to teacher and student for consistent
/// distillation (after [`Batch::mixup`] if mixup is on).
#[derive(Debug, Clone)]
pub struct Batch {
    /// `[N, 3, H, W]` f32, normalised.
    pub images: Tensor,
    /// `[N]` u32 class indices.
    pub labels: Tensor,
    /// Dataset indices of the examples, in batch order.
    pub indices: Vec<usize>,
    /// Seed of this batch's own random choices (see [`Batch::rng`]).
    pub seed: u64,
}

impl Batch {
    /// A generator for batch-level randomness (mixup), seeded by `(seed, epoch, batch)`.
    pub fn rng(&self) -> ChaCha8Rng {
        ChaCha8Rng::seed_from_u64(self.seed)
    }

    /// mixup of this batch with its own seeded generator: the mixed images for teacher
    /// and student, and how they were mixed.
    pub fn mixup(&self, alpha: f64) -> Result<(Tensor, Mix)> {
        mixup(&self.images, alpha, &mut self.rng())
    }
}

/// SplitMix64 finaliser: a well-mixed 64-bit hash.
fn mix64(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// Seed for stream `tag` (0: order, 1: samples, 2: batches) of `epoch`, item `item`.
fn derive_seed(seed: u64, tag: u64, epoch: u64, item: u64) -> u64 {
    mix64(mix64(mix64(mix64(seed) ^ tag) ^ epoch) ^ item)
}

/// A batch prepared on the host.
struct HostBatch {
    data: Vec<f32>,
    labels: Vec<u32>,
    indices: Vec<usize>,
    seed: u64,
}

/// Batches of one split through one pipeline.
#[derive(Debug, Clone)]
pub struct Loader {
    split: Split,
    pipeline: Pipeline,
    config: LoaderConfig,
    device: Device,
}

impl Loader {
    /// A loader of `split` (cheap to clone; decoded images are shared through the split).
    pub fn new(
        split: &Split,
        pipeline: Pipeline,
        config: LoaderConfig,
        device: &Device,
    ) -> Result<Self> {
        pipeline.transform.validate()?;
        if config.batch_size == 0 {
            return Err(Error::config("batch size", "0"));
        }
        Ok(Self {
            split: split.clone(),
            pipeline,
            config,
            device: device.clone(),
        })
    }

    /// An evaluation loader (no shuffle, every example) of `split` under `corruption`.
    pub fn corrupted(
        split: &Split,
        eval: EvalTransform,
        normalize: Normalize,
        corruption: Corruption,
        seed: u64,
        batch_size: usize,
        device: &Device,
    ) -> Result<Self> {
        let pipeline = Pipeline {
            transform: Transform::Eval(eval),
            normalize,
            corruption: Some(corruption),
        };
        let config = LoaderConfig {
            batch_size,
            shuffle: false,
            drop_last: false,
            seed,
            ..Default::default()
        };
        Self::new(split, pipeline, config, device)
    }

    /// The split this loader reads.
    pub fn split(&self) -> &Split {
        &self.split
    }

    /// The pipeline.
    pub fn pipeline(&self) -> &Pipeline {
        &self.pipeline
    }

    /// The configuration.
    pub fn config(&self) -> &LoaderConfig {
        &self.config
    }

    /// Batches per epoch.
    pub fn len(&self) -> usize {
        let (n, b) = (self.split.len(), self.config.batch_size);
        if self.config.drop_last {
            n / b
        } else {
            n.div_ceil(b)
        }
    }

    /// Whether an epoch yields no batch.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The dataset order of `epoch` (a seeded shuffle, or `0..n`).
    pub fn order(&self, epoch: u64) -> Vec<usize> {
        let mut order: Vec<usize> = (0..self.split.len()).collect();
        if self.config.shuffle {
            let mut rng = ChaCha8Rng::seed_from_u64(derive_seed(self.config.seed, 0, epoch, 0));
            order.shuffle(&mut rng);
        }
        order
    }

    fn host_batch(&self, epoch: u64, batch: usize, indices: &[usize]) -> Result<HostBatch> {
        let size = self.pipeline.transform.size() as usize;
        let per = 3 * size * size;
        let mut data = vec![0f32; indices.len() * per];
        let seed = self.config.seed;
        data.par_chunks_mut(per)
            .zip(indices.par_iter())
            .try_for_each(|(out, &i)| {
                let s = derive_seed(seed, 1, epoch, i as u64);
                self.pipeline.write_sample(&self.split, i, s, out)
            })?;
        let samples = self.split.samples();
        Ok(HostBatch {
            data,
            labels: indices.iter().map(|&i| samples[i].label).collect(),
            indices: indices.to_vec(),
            seed: derive_seed(seed, 2, epoch, batch as u64),
        })
    }

    fn to_device(&self, host: HostBatch) -> Result<Batch> {
        let size = self.pipeline.transform.size() as usize;
        let n = host.indices.len();
        Ok(Batch {
            images: Tensor::from_vec(host.data, (n, 3, size, size), &self.device)?,
            labels: Tensor::from_vec(host.labels, n, &self.device)?,
            indices: host.indices,
            seed: host.seed,
        })
    }

    /// The `batch`-th batch of `epoch`, prepared on the calling thread.
    pub fn batch(&self, epoch: u64, batch: usize) -> Result<Batch> {
        let order = self.order(epoch);
        let b = self.config.batch_size;
        if batch >= self.len() {
            return Err(Error::config(
                "batch index",
                format!("{batch} >= {} batches", self.len()),
            ));
        }
        let end = ((batch + 1) * b).min(order.len());
        let host = self.host_batch(epoch, batch, &order[batch * b..end])?;
        self.to_device(host)
    }

    /// The batches of `epoch`, prepared `prefetch` ahead by a background thread.
    /// Stops after the first error, which names the file.
    pub fn epoch(&self, epoch: u64) -> Batches {
        let (tx, rx) = sync_channel(self.config.prefetch.max(1) - 1);
        let worker = self.clone();
        let handle = std::thread::Builder::new()
            .name("dptq-data-prefetch".into())
            .spawn(move || worker.produce(epoch, tx))
            .map_err(|e| Error::Worker(e.to_string()));
        Batches {
            loader: self.clone(),
            rx: Some(rx),
            handle: handle.map(Some),
            remaining: self.len(),
        }
    }

    fn produce(&self, epoch: u64, tx: SyncSender<Result<HostBatch>>) {
        let order = self.order(epoch);
        let b = self.config.batch_size;
        for batch in 0..self.len() {
            let end = ((batch + 1) * b).min(order.len());
            let result = self.host_batch(epoch, batch, &order[batch * b..end]);
            let failed = result.is_err();
            if tx.send(result).is_err() || failed {
                return;
            }
        }
    }
}

/// The batches of one epoch (an iterator of `Result<Batch>`).
pub struct Batches {
    loader: Loader,
    rx: Option<Receiver<Result<HostBatch>>>,
    handle: Result<Option<JoinHandle<()>>>,
    remaining: usize,
}

impl std::fmt::Debug for Batches {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Batches")
            .field("remaining", &self.remaining)
            .finish()
    }
}

impl Iterator for Batches {
    type Item = Result<Batch>;

    fn next(&mut self) -> Option<Result<Batch>> {
        if self.remaining == 0 {
            return None;
        }
        if let Err(e) = &self.handle {
            self.remaining = 0;
            return Some(Err(Error::Worker(e.to_string())));
        }
        let received = self.rx.as_ref()?.recv();
        match received {
            Ok(Ok(host)) => {
                self.remaining -= 1;
                Some(self.loader.to_device(host))
            }
            Ok(Err(e)) => {
                self.remaining = 0;
                Some(Err(e))
            }
            Err(_) => {
                self.remaining = 0;
                Some(Err(Error::Worker("the prefetch thread ended early".into())))
            }
        }
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (0, Some(self.remaining))
    }
}

impl Drop for Batches {
    fn drop(&mut self) {
        // Closing the channel stops the worker after its current batch.
        self.rx.take();
        if let Ok(Some(handle)) = std::mem::replace(&mut self.handle, Ok(None)) {
            let _ = handle.join();
        }
    }
}

/// Predictions of a classifier over a whole split, in dataset order.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Evaluation {
    /// Predicted class (argmax of the logits) of each example.
    pub predictions: Vec<u32>,
    /// True class of each example.
    pub labels: Vec<u32>,
}

impl Evaluation {
    /// Number of correct predictions.
    pub fn correct(&self) -> usize {
        self.predictions
            .iter()
            .zip(&self.labels)
            .filter(|(p, l)| p == l)
            .count()
    }

    /// Fraction of correct predictions (0 for an empty split).
    pub fn accuracy(&self) -> f64 {
        if self.labels.is_empty() {
            0.0
        } else {
            self.correct() as f64 / self.labels.len() as f64
        }
    }
}

/// Runs `logits` (images `[N, 3, H, W]` -> logits `[N, C]`) over every batch of
/// epoch 0 of `loader` and returns the predictions in dataset order.
pub fn evaluate(
    loader: &Loader,
    mut logits: impl FnMut(&Tensor) -> candle_core::Result<Tensor>,
) -> Result<Evaluation> {
    let n = loader.split().len();
    let mut predictions = vec![0u32; n];
    let mut seen = 0;
    for batch in loader.epoch(0) {
        let batch = batch?;
        let pred = logits(&batch.images)?.argmax(1)?.to_vec1::<u32>()?;
        if pred.len() != batch.indices.len() {
            return Err(Error::config(
                "logits",
                format!("{} rows for a batch of {}", pred.len(), batch.indices.len()),
            ));
        }
        for (&i, p) in batch.indices.iter().zip(pred) {
            predictions[i] = p;
        }
        seen += batch.indices.len();
    }
    if seen != n && !loader.config().drop_last {
        return Err(Error::Worker(format!("evaluated {seen} of {n} examples")));
    }
    Ok(Evaluation {
        predictions,
        labels: loader.split().labels(),
    })
}

/// Evaluates `logits` on the whole `split` under one `corruption` (seeded), with the
/// evaluation transform and the model's normalisation.
pub fn evaluate_corrupted(
    split: &Split,
    eval: EvalTransform,
    normalize: Normalize,
    corruption: Corruption,
    seed: u64,
    batch_size: usize,
    device: &Device,
    logits: impl FnMut(&Tensor) -> candle_core::Result<Tensor>,
) -> Result<Evaluation> {
    let loader = Loader::corrupted(split, eval, normalize, corruption, seed, batch_size, device)?;
    evaluate(&loader, logits)
}
