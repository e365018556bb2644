//! `dptq predict` as a library: files in, logits out, in every dtype; `--bits` semantics;
//! a real image through the hub cache and the pretrained preprocessing.

use std::collections::HashMap;
use std::path::Path;

use candle_core::{DType, Device, Tensor};
use dptq_models::hub::{self, HubOptions};
use dptq_models::predict::{self, BitsSpec, PredictConfig};
use dptq_models::{BnMode, ParamStore, QuantPlan, build, seeded};

type Result<T> = std::result::Result<T, Box<dyn std::error::Error>>;

fn write_weights(dir: &Path, classes: usize) -> Result<(std::path::PathBuf, ParamStore)> {
    let store = ParamStore::new(21, DType::F32, &Device::Cpu);
    build("resnet_tiny", classes, &store)?;
    store.set_tensors(
        &seeded::seeded_state_dict(8, &store)?,
        "seeded",
        &Default::default(),
    )?;
    let path = dir.join("w.safetensors");
    store.save(&path)?;
    Ok((path, store))
}

fn config(weights: &Path, dtype: DType, bits: Option<BitsSpec>) -> PredictConfig {
    PredictConfig {
        arch: "resnet_tiny".into(),
        num_classes: 10,
        weights: weights.to_path_buf(),
        bits,
        weight_bits: 16,
        dtype,
        device: Device::Cpu,
    }
}

#[test]
fn predict_files_writes_the_models_logits_in_every_dtype() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let (weights, store) = write_weights(dir.path(), 10)?;
    let images = seeded::seeded_images(4, (3, 3, 28, 28), DType::F32, &Device::Cpu)?;
    let input = dir.path().join("x.safetensors");
    candle_core::safetensors::save(&HashMap::from([("images", images.clone())]), &input)?;
    let reference = build("resnet_tiny", 10, &store)?.forward_fp(&images, BnMode::Eval)?;
    let scale = reference.abs()?.max_all()?.to_scalar::<f32>()?;
    for (dtype, tol) in [
        (DType::F32, 1e-6),
        (DType::F64, 1e-5),
        (DType::F16, 2e-2),
        (DType::BF16, 1e-1),
    ] {
        let output = dir.path().join("y.safetensors");
        predict::predict_files(&config(&weights, dtype, None), &input, &output)?;
        let y = candle_core::safetensors::load(&output, &Device::Cpu)?;
        let logits = y["logits"].to_dtype(DType::F32)?;
        assert_eq!(logits.dims(), &[3, 10]);
        assert_eq!(y["logits"].dtype(), dtype);
        let err = (logits - &reference)?
            .abs()?
            .max_all()?
            .to_scalar::<f32>()?
            / scale;
        assert!(err < tol, "{dtype:?}: relative error {err}");
    }
    Ok(())
}

#[test]
fn bits_file_semantics_match_the_bits_tensor_plan() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let (weights, store) = write_weights(dir.path(), 10)?;
    let images = seeded::seeded_images(4, (2, 3, 28, 28), DType::F64, &Device::Cpu)?;
    let model = build(
        "resnet_tiny",
        10,
        &store.to_dtype_device(DType::F64, &Device::Cpu)?,
    )?;
    let layers = model.quant_layers().to_vec();
    // Every layer listed: example 0 at 4 bits, example 1 at 6 bits.
    let json: String = format!(
        "{{{}}}",
        layers
            .iter()
            .map(|l| format!("\"{l}\": [4, 6]"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    let bits_path = dir.path().join("bits.json");
    std::fs::write(&bits_path, json)?;
    let spec = predict::read_bits_file(&bits_path)?;
    let ours = predict::predict(&config(&weights, DType::F64, Some(spec)), &images)?;
    let bits = Tensor::from_vec(
        [vec![4u32; 9], vec![6u32; 9]].concat(),
        (2, 9),
        &Device::Cpu,
    )?;
    let expected = model.forward(&images, &QuantPlan::bits(&bits), BnMode::Eval, None)?;
    assert!((ours - expected)?.abs()?.max_all()?.to_scalar::<f64>()? < 1e-12);

    // An empty file quantizes no activation, but weights still go to 16 bits.
    let empty = predict::predict(
        &config(&weights, DType::F64, Some(BitsSpec::new())),
        &images,
    )?;
    let w16 = QuantPlan {
        weight_bits: Some(16),
        ..QuantPlan::full_precision()
    };
    let expected = model.forward(&images, &w16, BnMode::Eval, None)?;
    assert!((empty - expected)?.abs()?.max_all()?.to_scalar::<f64>()? < 1e-12);

    std::fs::write(&bits_path, "{\"fc\": \"8\"}")?;
    let err = predict::read_bits_file(&bits_path).unwrap_err().to_string();
    assert!(err.contains("bits.json"), "{err}");
    Ok(())
}

#[test]
fn a_missing_images_tensor_is_an_error_naming_the_file() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let (weights, _) = write_weights(dir.path(), 10)?;
    let input = dir.path().join("x.safetensors");
    candle_core::safetensors::save(
        &HashMap::from([(
            "pixels",
            Tensor::zeros((1, 3, 8, 8), DType::F32, &Device::Cpu)?,
        )]),
        &input,
    )?;
    let err = predict::predict_files(
        &config(&weights, DType::F32, None),
        &input,
        &dir.path().join("y.safetensors"),
    )
    .expect_err("error")
    .to_string();
    assert!(
        err.contains("x.safetensors") && err.contains("\"images\"") && err.contains("pixels"),
        "{err}"
    );
    Ok(())
}

#[test]
fn an_image_is_classified_with_hub_weights_preprocessing_and_imagenet_names() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let (weights, store) = write_weights(dir.path(), 1000)?;
    let config = dir.path().join("config.json");
    std::fs::write(
        &config,
        r#"{"architecture": "resnet_tiny", "num_classes": 1000,
            "pretrained_cfg": {"input_size": [3, 32, 32], "crop_pct": 0.8, "interpolation": "bicubic",
                               "mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225]}}"#,
    )?;
    let cache = dir.path().join("hub");
    let folder = hub::repo_folder(&cache, "timm/resnet_tiny.toy");
    let snap = folder.join("snapshots/abc");
    std::fs::create_dir_all(&snap)?;
    std::fs::create_dir_all(folder.join("refs"))?;
    std::fs::write(folder.join("refs/main"), "abc\n")?;
    std::fs::copy(&weights, snap.join("model.safetensors"))?;
    std::fs::copy(&config, snap.join("config.json"))?;
    let img = image::RgbImage::from_fn(50, 40, |x, y| {
        image::Rgb([(x * 5) as u8, (y * 6) as u8, 128])
    });
    let photo = dir.path().join("photo.png");
    img.save(&photo)?;

    let opts = HubOptions {
        cache_dir: cache,
        offline: true,
        revision: "main".into(),
    };
    let top = predict::classify_image("timm/resnet_tiny.toy", &photo, 5, &opts, &Device::Cpu)?;
    assert_eq!(top.len(), 5);
    assert!(top.windows(2).all(|w| w[0].prob >= w[1].prob));
    assert_eq!(
        top[0].name.as_deref(),
        Some(dptq_models::IMAGENET_CLASSES[top[0].class])
    );

    // The same as preprocessing by hand and running the model.
    let pre = dptq_models::preprocess::Preprocess {
        input_size: (32, 32),
        crop_pct: 0.8,
        interpolation: dptq_models::preprocess::Interpolation::Bicubic,
        ..Default::default()
    };
    let xs = pre.load(&photo, &Device::Cpu)?.unsqueeze(0)?;
    assert_eq!(xs.dims(), &[1, 3, 32, 32]);
    let logits = build("resnet_tiny", 1000, &store)?.forward_fp(&xs, BnMode::Eval)?;
    let best = logits.squeeze(0)?.argmax(0)?.to_scalar::<u32>()? as usize;
    assert_eq!(top[0].class, best);

    let err = predict::classify_image(
        "timm/resnet_tiny.toy",
        &dir.path().join("none.jpg"),
        5,
        &opts,
        &Device::Cpu,
    )
    .expect_err("error")
    .to_string();
    assert!(err.contains("none.jpg"), "{err}");
    Ok(())
}
