//! The hub, offline: an HF-style cache folder built here (`models--timm--<name>/{refs/main,
//! snapshots/<rev>/, blobs/}`) serves weights and config; timm-named checkpoints load
//! strictly; a 1000-class head is re-initialised for another number of classes.

use std::path::Path;

use candle_core::{DType, Device, Tensor};
use dptq_models::hub::{self, HubConfig, HubOptions};
use dptq_models::{BnMode, ParamStore, build, load_weights, seeded};

type Result<T> = std::result::Result<T, Box<dyn std::error::Error>>;

const REV: &str = "0123456789abcdef0123456789abcdef01234567";

const CONFIG: &str = r#"{
    "architecture": "resnet_tiny",
    "num_classes": 10,
    "pretrained_cfg": {"input_size": [3, 28, 28], "crop_pct": 1.0, "interpolation": "bilinear",
                       "mean": [0.5, 0.5, 0.5], "std": [0.25, 0.25, 0.25], "num_classes": 10}
}"#;

/// Writes a cache entry the way huggingface_hub does: content in `blobs/`, the snapshot
/// file a symlink to it, `refs/main` the revision (here with the trailing newline some
/// writers leave).
fn cache_repo(cache: &Path, repo: &str, files: &[(&str, &Path)]) -> Result<()> {
    let folder = hub::repo_folder(cache, repo);
    std::fs::create_dir_all(folder.join("refs"))?;
    std::fs::create_dir_all(folder.join("blobs"))?;
    std::fs::create_dir_all(folder.join("snapshots").join(REV))?;
    std::fs::write(folder.join("refs/main"), format!("{REV}\n"))?;
    for (i, (name, src)) in files.iter().enumerate() {
        let blob = folder.join("blobs").join(format!("blob{i}"));
        std::fs::copy(src, &blob)?;
        let link = folder.join("snapshots").join(REV).join(name);
        #[cfg(unix)]
        std::os::unix::fs::symlink(format!("../../blobs/blob{i}"), &link)?;
        #[cfg(not(unix))]
        std::fs::copy(&blob, &link)?;
    }
    Ok(())
}

fn trained_store() -> Result<ParamStore> {
    let store = ParamStore::new(11, DType::F32, &Device::Cpu);
    build("resnet_tiny", 10, &store)?;
    store.set_tensors(
        &seeded::seeded_state_dict(5, &store)?,
        "seeded",
        &Default::default(),
    )?;
    Ok(store)
}

#[test]
fn cached_weights_load_offline_and_reproduce_the_logits() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let source = trained_store()?;
    let weights = dir.path().join("w.safetensors");
    source.save(&weights)?;
    let config = dir.path().join("config.json");
    std::fs::write(&config, CONFIG)?;
    let cache = dir.path().join("hub");
    cache_repo(
        &cache,
        "timm/resnet_tiny.test",
        &[("model.safetensors", &weights), ("config.json", &config)],
    )?;

    let opts = HubOptions {
        cache_dir: cache.clone(),
        offline: true,
        revision: "main".into(),
    };
    let files = hub::fetch("timm/resnet_tiny.test", &opts)?;
    let cfg = HubConfig::read(&files.config)?;
    assert_eq!(
        (cfg.architecture.as_str(), cfg.num_classes),
        ("resnet_tiny", 10)
    );

    let store = ParamStore::new(0, DType::F32, &Device::Cpu);
    let model = build(&cfg.architecture, cfg.num_classes, &store)?;
    let report = load_weights(&cfg.architecture, &store, &files.weights)?;
    assert!(report.reinitialized.is_empty());
    assert_eq!(report.loaded.len(), source.len());

    let reference = build("resnet_tiny", 10, &source)?;
    let xs = seeded::seeded_images(2, (2, 3, 28, 28), DType::F32, &Device::Cpu)?;
    let a = model.forward_fp(&xs, BnMode::Eval)?;
    let b = reference.forward_fp(&xs, BnMode::Eval)?;
    assert_eq!((a - b)?.abs()?.max_all()?.to_scalar::<f32>()?, 0.0);

    // Pinned to the commit itself, too.
    let pinned = HubOptions {
        revision: REV.to_string(),
        ..opts
    };
    assert!(hub::fetch("timm/resnet_tiny.test", &pinned).is_ok());
    Ok(())
}

#[test]
fn a_file_missing_from_the_cache_offline_is_an_error_naming_repo_and_cache() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let opts = HubOptions {
        cache_dir: dir.path().to_path_buf(),
        offline: true,
        revision: "main".into(),
    };
    let err = hub::fetch("timm/resnet18.a1_in1k", &opts)
        .expect_err("offline miss")
        .to_string();
    assert!(
        err.contains("timm/resnet18.a1_in1k") && err.contains("models--timm--resnet18.a1_in1k"),
        "{err}"
    );
    assert!(err.contains("HF_HUB_OFFLINE"), "{err}");
    Ok(())
}

#[test]
fn an_imagenet_head_is_reinitialised_for_another_number_of_classes() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let imagenet = ParamStore::new(1, DType::F32, &Device::Cpu);
    build("resnet_tiny", 1000, &imagenet)?;
    let path = dir.path().join("in1k.safetensors");
    imagenet.save(&path)?;

    let store = ParamStore::new(2, DType::F32, &Device::Cpu);
    build("resnet_tiny", 37, &store)?;
    let fresh_fc = store.get("fc.weight").expect("fc");
    let report = load_weights("resnet_tiny", &store, &path)?;
    let names: Vec<&str> = report
        .reinitialized
        .iter()
        .map(|(k, _, _)| k.as_str())
        .collect();
    assert_eq!(names, vec!["fc.bias", "fc.weight"]);
    assert_eq!(report.reinitialized[1].1, vec![1000, 64]);
    assert_eq!(report.reinitialized[1].2, vec![37, 64]);
    let diff = (store.get("fc.weight").expect("fc") - fresh_fc)?
        .abs()?
        .max_all()?
        .to_scalar::<f32>()?;
    assert_eq!(diff, 0.0, "the head keeps its seeded initialisation");
    let body = (store.get("layer1.0.conv1.weight").expect("w")
        - imagenet.get("layer1.0.conv1.weight").expect("w"))?;
    assert_eq!(
        body.abs()?.max_all()?.to_scalar::<f32>()?,
        0.0,
        "the body is loaded"
    );

    // A body mismatch is still an error naming the key and both shapes.
    let other = ParamStore::new(3, DType::F32, &Device::Cpu);
    build("resnet_small", 37, &other)?;
    let err = load_weights("resnet_small", &other, &path)
        .expect_err("mismatch")
        .to_string();
    assert!(err.contains("in1k.safetensors"), "{err}");
    Ok(())
}

#[test]
fn weights_saved_by_a_store_are_valid_safetensors_with_timm_names() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let store = trained_store()?;
    let path = dir.path().join("m.safetensors");
    store.save(&path)?;
    let loaded = candle_core::safetensors::load(&path, &Device::Cpu)?;
    assert_eq!(loaded.len(), store.len());
    assert!(loaded.contains_key("layer2.0.downsample.1.running_var"));
    let t: &Tensor = &loaded["fc.weight"];
    assert_eq!(t.dims(), &[10, 64]);
    Ok(())
}
