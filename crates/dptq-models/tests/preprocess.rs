//! The evaluation preprocessing against timm's own transform (PIL resize of the shorter
//! side, center crop, normalise) on `fixtures/timm/preprocess_input.png`; the expected
//! tensors were written by `python3 tools/timm_reference.py` (timm 1.0.31, Pillow).

use std::collections::HashMap;
use std::path::PathBuf;

use candle_core::{DType, Device};
use dptq_models::preprocess::{Interpolation, Preprocess};

type Result<T> = std::result::Result<T, Box<dyn std::error::Error>>;

#[test]
fn preprocessing_matches_timms_eval_transform() -> Result<()> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/timm");
    let bytes = std::fs::read(dir.join("preprocess.safetensors"))?;
    let (_, header) = safetensors::SafeTensors::read_metadata(&bytes)?;
    let meta: HashMap<String, String> = header.metadata().clone().unwrap_or_default();
    let expected = candle_core::safetensors::load_buffer(&bytes, &Device::Cpu)?;
    for name in ["bicubic_32", "bilinear_40"] {
        let case: serde_json::Value = serde_json::from_str(&meta[name])?;
        let size = case["size"].as_u64().expect("size") as usize;
        let pre = Preprocess {
            input_size: (size, size),
            crop_pct: case["crop_pct"].as_f64().expect("crop_pct"),
            interpolation: Interpolation::parse(
                case["interpolation"].as_str().expect("interpolation"),
            )?,
            ..Default::default()
        };
        let ours = pre.load(&dir.join("preprocess_input.png"), &Device::Cpu)?;
        let theirs = expected[name].to_dtype(DType::F32)?;
        assert_eq!(ours.dims(), theirs.dims(), "{name}");
        // Resampling rounds differently from PIL's fixed-point filters: allow one grey level
        // (1/255/0.224 ~ 0.0175 after normalisation) at worst, far less on average.
        let diff = (ours - theirs)?.abs()?;
        let max = diff.max_all()?.to_scalar::<f32>()?;
        let mean = diff.mean_all()?.to_scalar::<f32>()?;
        assert!(max < 0.02 && mean < 0.005, "{name}: max {max}, mean {mean}");
    }
    Ok(())
}
