//! The loader: determinism by seed, per-epoch shuffles, shapes and normalisation,
//! prefetching equal to synchronous batches, evaluation, errors mid-epoch.

mod common;

use candle_core::{Device, Tensor};
use dptq_data::{
    Corruption, CorruptionKind, DataSpec, Dataset, EvalTransform, Loader, LoaderConfig, Normalize,
    OpenOptions, Pipeline, TrainTransform, Transform, evaluate, evaluate_corrupted,
};

fn folder_dataset(per_class: usize) -> (tempfile::TempDir, Dataset) {
    let dir = tempfile::tempdir().unwrap();
    common::image_folder(dir.path(), &["a", "b", "c"], per_class);
    let ds = Dataset::open(
        &DataSpec::ImageFolder(dir.path().into()),
        &OpenOptions::default(),
    )
    .unwrap();
    (dir, ds)
}

fn train_pipeline(size: u32) -> Pipeline {
    Pipeline {
        transform: Transform::Train(TrainTransform {
            size,
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn config(batch_size: usize, seed: u64) -> LoaderConfig {
    LoaderConfig {
        batch_size,
        seed,
        ..Default::default()
    }
}

fn epoch(loader: &Loader, e: u64) -> Vec<(Vec<f32>, Vec<u32>, Vec<usize>)> {
    loader
        .epoch(e)
        .map(|b| {
            let b = b.unwrap();
            (
                b.images.flatten_all().unwrap().to_vec1().unwrap(),
                b.labels.to_vec1().unwrap(),
                b.indices,
            )
        })
        .collect()
}

#[test]
fn the_same_seed_gives_the_same_batches_and_augmentations() {
    let (_dir, ds) = folder_dataset(4);
    let a = Loader::new(&ds.train, train_pipeline(16), config(5, 7), &Device::Cpu).unwrap();
    let b = Loader::new(&ds.train, train_pipeline(16), config(5, 7), &Device::Cpu).unwrap();
    assert_eq!(epoch(&a, 3), epoch(&b, 3));
    let c = Loader::new(&ds.train, train_pipeline(16), config(5, 8), &Device::Cpu).unwrap();
    assert_ne!(epoch(&a, 3), epoch(&c, 3));
}

#[test]
fn augmentations_do_not_depend_on_batch_size_or_prefetch() {
    let (_dir, ds) = folder_dataset(4);
    let per_sample = |loader: &Loader| {
        let mut out: Vec<(usize, Vec<f32>)> = Vec::new();
        for (images, _, indices) in epoch(loader, 1) {
            let per = images.len() / indices.len();
            for (k, i) in indices.into_iter().enumerate() {
                out.push((i, images[k * per..(k + 1) * per].to_vec()));
            }
        }
        out.sort_by_key(|x| x.0);
        out
    };
    let a = Loader::new(&ds.train, train_pipeline(12), config(5, 1), &Device::Cpu).unwrap();
    let mut cfg = config(2, 1);
    cfg.prefetch = 5;
    let b = Loader::new(&ds.train, train_pipeline(12), cfg, &Device::Cpu).unwrap();
    assert_eq!(per_sample(&a), per_sample(&b));
}

#[test]
fn shuffling_differs_by_epoch_and_covers_every_example_once() {
    let ds = Dataset::embedded().unwrap();
    let loader = Loader::new(&ds.test, Pipeline::default(), config(64, 0), &Device::Cpu).unwrap();
    let (o0, o1) = (loader.order(0), loader.order(1));
    assert_ne!(o0, o1);
    assert_ne!(o0, (0..o0.len()).collect::<Vec<_>>());
    let mut sorted = o1.clone();
    sorted.sort();
    assert_eq!(sorted, (0..ds.test.len()).collect::<Vec<_>>());
    let unshuffled = LoaderConfig {
        shuffle: false,
        ..config(64, 0)
    };
    let l2 = Loader::new(&ds.test, Pipeline::default(), unshuffled, &Device::Cpu).unwrap();
    assert_eq!(l2.order(5), (0..ds.test.len()).collect::<Vec<_>>());
}

#[test]
fn prefetched_batches_equal_synchronous_ones_and_the_last_batch_is_partial() {
    let (_dir, ds) = folder_dataset(4);
    let loader = Loader::new(&ds.train, train_pipeline(10), config(5, 3), &Device::Cpu).unwrap();
    assert_eq!(loader.len(), 3);
    let batches: Vec<_> = loader.epoch(2).map(|b| b.unwrap()).collect();
    assert_eq!(batches.len(), 3);
    assert_eq!(batches[2].indices.len(), 2);
    for (k, b) in batches.iter().enumerate() {
        let s = loader.batch(2, k).unwrap();
        assert_eq!(s.indices, b.indices);
        assert_eq!(s.seed, b.seed);
        let diff = (s.images - &b.images)
            .unwrap()
            .abs()
            .unwrap()
            .max_all()
            .unwrap();
        assert_eq!(diff.to_scalar::<f32>().unwrap(), 0.0);
    }
    let drop_last = LoaderConfig {
        drop_last: true,
        ..config(5, 3)
    };
    let l2 = Loader::new(&ds.train, train_pipeline(10), drop_last, &Device::Cpu).unwrap();
    assert_eq!(l2.epoch(0).count(), 2);
}

#[test]
fn eval_batches_are_normalised_nchw_with_labels_and_indices() {
    let ds = Dataset::embedded().unwrap();
    let pipeline = Pipeline {
        transform: Transform::Eval(EvalTransform {
            size: 28,
            crop_pct: 1.0,
            ..Default::default()
        }),
        normalize: Normalize::FASHION_MNIST,
        corruption: None,
    };
    let cfg = LoaderConfig {
        shuffle: false,
        ..config(8, 0)
    };
    let loader = Loader::new(&ds.test, pipeline, cfg, &Device::Cpu).unwrap();
    let batch = loader.batch(0, 1).unwrap();
    assert_eq!(batch.images.dims(), &[8, 3, 28, 28]);
    assert_eq!(batch.images.dtype(), candle_core::DType::F32);
    assert_eq!(batch.indices, (8..16).collect::<Vec<_>>());
    let labels: Vec<u32> = batch.labels.to_vec1().unwrap();
    assert_eq!(labels, ds.test.labels()[8..16].to_vec());
    // independent reference: pixel -> (p/255 - mean)/std, channel 1 at (y=14, x=3)
    let img = ds.test.image(10).unwrap();
    let p = img.get_pixel(3, 14)[1] as f32;
    let expected = (p / 255.0 - 0.2860) / 0.3530;
    let got: f32 = batch
        .images
        .get(2)
        .unwrap()
        .get(1)
        .unwrap()
        .get(14)
        .unwrap()
        .get(3)
        .unwrap()
        .to_scalar()
        .unwrap();
    assert!((got - expected).abs() < 1e-6, "{got} vs {expected}");
}

#[test]
fn a_file_that_breaks_mid_epoch_stops_the_epoch_with_an_error_naming_it() {
    let (dir, ds) = folder_dataset(3);
    let victim = dir.path().join("train/b/0.jpg");
    let bytes = std::fs::read(&victim).unwrap();
    std::fs::write(&victim, &bytes[..bytes.len() / 3]).unwrap();
    let cfg = LoaderConfig {
        shuffle: false,
        ..config(2, 0)
    };
    let loader = Loader::new(&ds.train, train_pipeline(8), cfg, &Device::Cpu).unwrap();
    let results: Vec<_> = loader.epoch(0).collect();
    let err = results
        .iter()
        .find_map(|r| r.as_ref().err())
        .expect("an error");
    assert!(
        err.to_string().contains(&victim.display().to_string()),
        "{err}"
    );
    assert!(
        results.last().unwrap().is_err(),
        "the epoch ends at the error"
    );
}

/// A "classifier" that reads the class from the mean brightness of the image: in the
/// fixture, class c has mean level 40 + 50 c.
fn brightness_logits(images: &Tensor) -> candle_core::Result<Tensor> {
    let mean = images
        .mean_keepdim(3)?
        .mean_keepdim(2)?
        .mean_keepdim(1)?
        .flatten_all()?; // [N]
    // undo ImageNet normalisation (approximately: average of the channels)
    let level = ((mean * 0.226)? + 0.449)? * 255.0;
    let centres = Tensor::new(&[40f32, 90.0, 140.0], images.device())?;
    let d = level?.unsqueeze(1)?.broadcast_sub(&centres.unsqueeze(0)?)?;
    d.sqr()?.neg()
}

#[test]
fn evaluate_returns_predictions_in_dataset_order_and_corruptions_cost_accuracy() {
    let (_dir, ds) = folder_dataset(6);
    let eval = EvalTransform {
        size: 16,
        crop_pct: 1.0,
        ..Default::default()
    };
    let pipeline = Pipeline {
        transform: Transform::Eval(eval),
        ..Default::default()
    };
    let cfg = LoaderConfig {
        shuffle: true, // evaluate still returns dataset order
        ..config(4, 0)
    };
    let loader = Loader::new(&ds.test, pipeline, cfg, &Device::Cpu).unwrap();
    let clean = evaluate(&loader, brightness_logits).unwrap();
    assert_eq!(clean.labels, ds.test.labels());
    assert_eq!(clean.accuracy(), 1.0, "{clean:?}");
    let identity = Corruption::new(CorruptionKind::Brightness, 0.0).unwrap();
    let same = evaluate_corrupted(
        &ds.test,
        eval,
        Normalize::IMAGENET,
        identity,
        3,
        5,
        &Device::Cpu,
        brightness_logits,
    );
    assert_eq!(same.unwrap(), clean);
    let dark = Corruption::new(CorruptionKind::Brightness, 5.0).unwrap();
    let run = |seed| {
        evaluate_corrupted(
            &ds.test,
            eval,
            Normalize::IMAGENET,
            dark,
            seed,
            5,
            &Device::Cpu,
            brightness_logits,
        )
        .unwrap()
    };
    let corrupted = run(3);
    assert!(corrupted.accuracy() < 0.8, "{}", corrupted.accuracy());
    assert_eq!(run(3), corrupted, "seeded");
}

#[test]
fn mixup_of_a_batch_is_seeded_by_the_batch() {
    let ds = Dataset::embedded().unwrap();
    let pipeline = Pipeline {
        transform: Transform::Eval(EvalTransform {
            size: 28,
            crop_pct: 1.0,
            ..Default::default()
        }),
        ..Default::default()
    };
    let loader = Loader::new(&ds.train, pipeline, config(6, 0), &Device::Cpu).unwrap();
    let batch = loader.batch(0, 0).unwrap();
    let (m1, mix1) = batch.mixup(1.0).unwrap();
    let (m2, mix2) = loader.batch(0, 0).unwrap().mixup(1.0).unwrap();
    assert_eq!(mix1, mix2);
    let diff = (m1 - m2)
        .unwrap()
        .abs()
        .unwrap()
        .max_all()
        .unwrap()
        .to_scalar::<f32>()
        .unwrap();
    assert_eq!(diff, 0.0);
    let (_, other) = loader.batch(0, 1).unwrap().mixup(1.0).unwrap();
    assert_ne!(mix1, other);
}

#[test]
fn dropping_an_epoch_early_stops_the_prefetch_thread() {
    let ds = Dataset::embedded().unwrap();
    let loader = Loader::new(&ds.train, Pipeline::default(), config(16, 0), &Device::Cpu).unwrap();
    for _ in 0..3 {
        let mut batches = loader.epoch(0);
        let first = batches.next().unwrap().unwrap();
        assert_eq!(first.images.dims(), &[16, 3, 224, 224]);
        // dropped here with most of the epoch unread: must return, not hang
    }
}
