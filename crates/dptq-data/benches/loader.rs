//! Loader throughput (images/s) through decode + augment + batch.
//!
//! - `pets_jpeg_224/*`: Pets-sized JPEGs (500x375) to 224 px, no cache (every epoch
//!   decodes). The images come from `DPTQ_BENCH_JPEG_DIR` (an ImageFolder written by
//!   `tools/bench_torch_data.py`, which measures torchvision on the same files) or are
//!   generated here.
//! - `fashion_mnist_memory/*`: the embedded 28x28 subset, in memory, at 28 px.
//!
//! Run: `cargo bench -p dptq-data --bench loader` (2 rayon threads by default on a
//! 2-core machine; set RAYON_NUM_THREADS to change).

use std::path::PathBuf;

use candle_core::Device;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use dptq_data::{
    DataSpec, Dataset, EvalTransform, Loader, LoaderConfig, Normalize, OpenOptions, Pipeline,
    TrainTransform, Transform,
};
use rand::{Rng, SeedableRng};

const BENCH_IMAGES: usize = 64;

/// Writes `n` textured 500x375 JPEGs (quality 90) as an ImageFolder with two classes.
fn synthetic_jpegs(root: &std::path::Path, n: usize) {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(0);
    for split in ["train", "test"] {
        for i in 0..n {
            let dir = root.join(split).join(format!("c{}", i % 2));
            std::fs::create_dir_all(&dir).unwrap();
            let (fx, fy) = (
                rng.random_range(0.01..0.05f32),
                rng.random_range(0.01..0.05f32),
            );
            let img = image::RgbImage::from_fn(500, 375, |x, y| {
                let base = 128.0 + 60.0 * (x as f32 * fx).sin() * (y as f32 * fy).cos();
                let v = |o: f32| {
                    (base + o + (((x * 7 + y * 13) % 17) as f32 - 8.0) * 3.0).clamp(0.0, 255.0)
                        as u8
                };
                image::Rgb([v(-30.0), v(0.0), v(30.0)])
            });
            let mut out = std::fs::File::create(dir.join(format!("{i:04}.jpg"))).unwrap();
            image::codecs::jpeg::JpegEncoder::new_with_quality(&mut out, 90)
                .encode_image(&img)
                .unwrap();
        }
    }
}

fn run_epoch(loader: &Loader, epoch: u64) -> usize {
    loader.epoch(epoch).map(|b| b.unwrap().indices.len()).sum()
}

fn pets_jpeg(c: &mut Criterion) {
    let tmp = tempfile::tempdir().unwrap();
    let root = match std::env::var_os("DPTQ_BENCH_JPEG_DIR") {
        Some(dir) => PathBuf::from(dir),
        None => {
            synthetic_jpegs(tmp.path(), BENCH_IMAGES);
            tmp.path().to_path_buf()
        }
    };
    let options = OpenOptions {
        cache_bytes: 0,
        ..Default::default()
    };
    let ds = Dataset::open(&DataSpec::ImageFolder(root), &options).unwrap();
    let n = ds.train.len();
    let config = LoaderConfig {
        batch_size: 32,
        ..Default::default()
    };
    let mut group = c.benchmark_group("pets_jpeg_224");
    group
        .sample_size(10)
        .throughput(Throughput::Elements(n as u64));
    for (name, transform) in [
        ("crop_flip", TrainTransform::crop_flip(224)),
        ("paper_augment", TrainTransform::default()),
    ] {
        let pipeline = Pipeline {
            transform: Transform::Train(transform),
            ..Default::default()
        };
        let loader = Loader::new(&ds.train, pipeline, config, &Device::Cpu).unwrap();
        let mut epoch = 0;
        group.bench_function(name, |b| {
            b.iter(|| {
                epoch += 1;
                run_epoch(&loader, epoch)
            })
        });
    }
    let eval = Pipeline {
        transform: Transform::Eval(EvalTransform::default()),
        ..Default::default()
    };
    let loader = Loader::new(&ds.test, eval, config, &Device::Cpu).unwrap();
    group.bench_function("eval", |b| b.iter(|| run_epoch(&loader, 0)));
    group.finish();
}

fn fashion_memory(c: &mut Criterion) {
    let ds = Dataset::embedded().unwrap();
    let config = LoaderConfig {
        batch_size: 128,
        ..Default::default()
    };
    let mut group = c.benchmark_group("fashion_mnist_memory");
    group
        .sample_size(10)
        .throughput(Throughput::Elements(ds.test.len() as u64));
    let train = TrainTransform {
        size: 28,
        ..Default::default()
    };
    let light = TrainTransform {
        size: 28,
        random_resized_crop: None,
        rand_augment: None,
        color_jitter: None,
        ..Default::default()
    };
    for (name, transform) in [
        (
            "eval_28",
            Transform::Eval(EvalTransform {
                size: 28,
                crop_pct: 1.0,
                ..Default::default()
            }),
        ),
        ("flip_pad_28", Transform::Train(light)),
        ("paper_augment_28", Transform::Train(train)),
    ] {
        let pipeline = Pipeline {
            transform,
            normalize: Normalize::FASHION_MNIST,
            corruption: None,
        };
        let loader = Loader::new(&ds.test, pipeline, config, &Device::Cpu).unwrap();
        let mut epoch = 0;
        group.bench_function(name, |b| {
            b.iter(|| {
                epoch += 1;
                run_epoch(&loader, epoch)
            })
        });
    }
    group.finish();
}

criterion_group!(benches, pets_jpeg, fashion_memory);
criterion_main!(benches);
