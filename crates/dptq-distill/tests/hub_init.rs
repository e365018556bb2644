//! `teacher.init = "hub:REPO"` reads timm weights from a Hugging Face cache (a hand-made
//! one here, offline) and re-initialises a classifier head of another class count.
//! Its own test binary: it sets `HF_HUB_CACHE` and `HF_HUB_OFFLINE` for the process.

use candle_core::{DType, Device};
use dptq_distill::{NoProgress, RunConfig, load_safetensors, reproduce};
use dptq_models::ParamStore;

#[test]
fn a_hub_teacher_loads_from_the_local_cache_with_a_new_head() {
    let tmp = tempfile::tempdir().unwrap();
    let cache = tmp.path().join("hub");
    let snapshot = cache
        .join("models--timm--resnet_tiny.fixture")
        .join("snapshots")
        .join("abc123");
    std::fs::create_dir_all(&snapshot).unwrap();
    std::fs::create_dir_all(cache.join("models--timm--resnet_tiny.fixture").join("refs")).unwrap();
    // A writer that leaves a newline after the revision.
    std::fs::write(
        cache.join("models--timm--resnet_tiny.fixture/refs/main"),
        "abc123\n",
    )
    .unwrap();
    // "Pretrained" weights: a resnet_tiny with a 7-class head.
    let pretrained = ParamStore::new(99, DType::F32, &Device::Cpu);
    dptq_models::build("resnet_tiny", 7, &pretrained).unwrap();
    pretrained.save(snapshot.join("model.safetensors")).unwrap();
    // SAFETY: this test binary has a single test; nothing else reads the environment.
    unsafe {
        std::env::set_var("HF_HUB_CACHE", &cache);
        std::env::set_var("HF_HUB_OFFLINE", "1");
    }

    let mut cfg = RunConfig::default();
    for s in [
        "teacher.arch=\"resnet_tiny\"",
        "teacher.init=\"hub:timm/resnet_tiny.fixture\"",
        "teacher.train.epochs=0",
        "white_box.train.epochs=0",
        "pairs.train.epochs=0",
        "data.train_limit=64",
        "data.test_limit=32",
        "eval.batch_size=32",
    ] {
        cfg = cfg.set(s).unwrap();
    }
    let out = tmp.path().join("run");
    reproduce(&cfg, &out, false, &NoProgress).unwrap();
    let teacher = load_safetensors(&out.join("teacher.safetensors"), &Device::Cpu).unwrap();
    let source = pretrained.tensors();
    let mut same = 0;
    for (name, t) in &teacher {
        if name.starts_with("fc.") {
            assert_eq!(
                t.dims()[0],
                10,
                "{name}: the head has the data's 10 classes"
            );
            continue;
        }
        let a = t.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        let b = source[name]
            .flatten_all()
            .unwrap()
            .to_vec1::<f32>()
            .unwrap();
        assert_eq!(a, b, "{name} was not loaded from the cache");
        same += 1;
    }
    assert!(same > 20);

    // A repository missing from the cache is an error naming it (offline).
    let missing = cfg
        .set("teacher.init=\"hub:timm/resnet_tiny.absent\"")
        .unwrap();
    let err = reproduce(&missing, &tmp.path().join("run2"), false, &NoProgress)
        .unwrap_err()
        .to_string();
    assert!(err.contains("resnet_tiny.absent"), "{err}");
}
