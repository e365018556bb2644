//! `dptq predict`: logits of a batch of tensors (optionally quantized per layer), or the
//! top classes of a photo with timm weights from the hub.

use std::path::PathBuf;

use anyhow::Context;
use dptq_models::hub::HubOptions;
use dptq_models::predict::{self, PredictConfig};

/// Run a classifier on tensors (`--arch ... --input X --output Y`) or on a photo
/// (`--hub timm/<arch>.<tag> --image photo.jpg`).
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Architecture (see `dptq layers --list`).
    #[arg(long, required_unless_present = "hub", conflicts_with = "hub", requires_all = ["num_classes", "weights", "input", "output"])]
    arch: Option<String>,
    /// Classes of the head.
    #[arg(long)]
    num_classes: Option<usize>,
    /// timm-named safetensors weights.
    #[arg(long)]
    weights: Option<PathBuf>,
    /// Safetensors file with tensor `images` [N, 3, H, W] (normalised).
    #[arg(long)]
    input: Option<PathBuf>,
    /// Safetensors file to write tensor `logits` [N, C] to.
    #[arg(long)]
    output: Option<PathBuf>,
    /// JSON: quantizable layer -> bits (every example) or [bits | null, ...] (per example);
    /// unlisted layers stay at full precision; weights then go to --weight-bits.
    #[arg(long)]
    bits: Option<PathBuf>,
    /// Symmetric per-tensor weight bits, with --bits.
    #[arg(long, default_value_t = 16)]
    weight_bits: u32,
    /// f32, f64, f16 or bf16.
    #[arg(long, default_value = "f32")]
    dtype: String,
    /// cpu, cuda[:i] or metal[:i].
    #[arg(long, default_value = "cpu")]
    device: String,
    /// Hub model id, e.g. timm/resnet18.a1_in1k (cache: HF_HUB_CACHE / HF_HOME; HF_HUB_OFFLINE=1
    /// forbids downloads).
    #[arg(long, requires = "image")]
    hub: Option<String>,
    /// Image file (JPEG or PNG), preprocessed as the pretrained config says.
    #[arg(long, requires = "hub")]
    image: Option<PathBuf>,
    /// How many classes to print.
    #[arg(long, default_value_t = 5)]
    top_k: usize,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let device = predict::parse_device(&args.device)?;
    if let (Some(id), Some(image)) = (&args.hub, &args.image) {
        let ranked =
            predict::classify_image(id, image, args.top_k, &HubOptions::default(), &device)?;
        println!("rank\tclass\tprob\tname");
        for (i, r) in ranked.iter().enumerate() {
            println!(
                "{}\t{}\t{:.4}\t{}",
                i + 1,
                r.class,
                r.prob,
                r.name.as_deref().unwrap_or("-")
            );
        }
        return Ok(());
    }
    let missing = |what: &str| anyhow::anyhow!("--{what} is required with --arch");
    let arch = args.arch.ok_or_else(|| missing("arch"))?;
    let input = args.input.ok_or_else(|| missing("input"))?;
    let output = args.output.ok_or_else(|| missing("output"))?;
    let bits = args
        .bits
        .as_deref()
        .map(predict::read_bits_file)
        .transpose()?;
    let cfg = PredictConfig {
        arch,
        num_classes: args.num_classes.ok_or_else(|| missing("num-classes"))?,
        weights: args.weights.ok_or_else(|| missing("weights"))?,
        bits,
        weight_bits: args.weight_bits,
        dtype: predict::parse_dtype(&args.dtype)?,
        device,
    };
    let logits = predict::predict_files(&cfg, &input, &output)
        .with_context(|| format!("predict {} on {}", cfg.arch, input.display()))?;
    tracing::info!("wrote logits {:?} to {}", logits.dims(), output.display());
    Ok(())
}
