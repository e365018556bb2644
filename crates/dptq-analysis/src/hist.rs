//! Fig. 3: per-layer activation histograms, full precision vs quantized.
//!
//! For each quantizable layer, the histogram of the values the layer consumes: "FP" from
//! the network at full precision, "Q" from the network quantized by its policy (the
//! quantized values the layer actually consumed). Bins span a fixed range (the paper's
//! choice); the bin that holds zero is removed and the rest renormalised for the plot,
//! and its share of all values is the *sparsity measure* — post-ReLU activations are
//! mostly zero, and small values collapsing to zero under quantization is one way a
//! quantized network fails.

use dptq_models::{ActivationCapture, BnMode, Classifier};
use dptq_quant::RangeMode;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::eval::{BatchBits, Bits, EvalSet};
use crate::stats::Histogram;

/// Bins of the activation histograms.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct HistConfig {
    /// Lower edge of the range (default 0: the inputs of ResNet's convs are post-ReLU).
    pub lo: f64,
    /// Upper edge (default 4; larger values are counted as overflow and reported).
    pub hi: f64,
    /// Number of bins (default 80, i.e. width 0.05; the paper's values were lost in
    /// extraction, these are ours).
    pub bins: usize,
    /// Test examples whose activations are counted (default 500; 0 = the whole set).
    pub examples: usize,
}

impl Default for HistConfig {
    fn default() -> Self {
        Self {
            lo: 0.0,
            hi: 4.0,
            bins: 80,
            examples: 500,
        }
    }
}

/// The two histograms of one layer.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LayerHistogram {
    /// Layer index.
    pub layer: usize,
    /// timm module name.
    pub name: String,
    /// Full-precision network.
    pub fp: Histogram,
    /// Quantized network (the values the layer consumed).
    pub quantized: Histogram,
}

impl LayerHistogram {
    /// Change of the sparsity measure once quantized, in points.
    pub fn sparsity_change(&self) -> f64 {
        100.0 * (self.quantized.sparsity() - self.fp.sparsity())
    }
}

/// The histograms of every layer of one network.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct NetworkHistograms {
    /// Network name (`R`, `D`).
    pub network: String,
    /// Where the quantized pass's bits came from (`pi_D`).
    pub bits: String,
    /// One entry per quantizable layer, in order.
    pub layers: Vec<LayerHistogram>,
    /// Examples counted.
    pub examples: usize,
}

/// Counts the activations of every quantizable layer of `model` over `set` (the first
/// `config.examples` examples of it), at full precision and quantized with `bits`
/// (weights at `weight_bits`), BatchNorm with running statistics.
pub fn activation_histograms(
    model: &dyn Classifier,
    network: &str,
    bits_name: &str,
    bits: &Bits<'_>,
    weight_bits: Option<u32>,
    set: &EvalSet,
    config: &HistConfig,
) -> Result<NetworkHistograms> {
    if matches!(bits, Bits::FullPrecision) {
        return Err(Error::invalid(
            "histogram bits",
            "the quantized pass needs bits",
        ));
    }
    let names = model.quant_layers().to_vec();
    let l = names.len();
    let empty = Histogram::new(config.lo, config.hi, config.bins)?;
    let mut layers: Vec<LayerHistogram> = names
        .iter()
        .enumerate()
        .map(|(i, n)| LayerHistogram {
            layer: i,
            name: n.clone(),
            fp: empty.clone(),
            quantized: empty.clone(),
        })
        .collect();
    let limit = if config.examples == 0 {
        usize::MAX
    } else {
        config.examples
    };
    let mut seen = 0;
    for batch in &set.batches {
        if seen >= limit {
            break;
        }
        let take = batch.labels.len().min(limit - seen);
        let images = batch.images.narrow(0, 0, take)?;
        let indices = &batch.indices[..take];
        // Full precision.
        let mut capture = ActivationCapture::all();
        let fp_plan = BatchBits::FullPrecision.plan(None, None, RangeMode::MinMax);
        model.forward(&images, &fp_plan, BnMode::Eval, Some(&mut capture))?;
        for rec in capture.iter() {
            let values = rec
                .fp
                .flatten_all()?
                .to_dtype(candle_core::DType::F32)?
                .to_vec1::<f32>()?;
            layers[rec.layer].fp.add(&values);
        }
        // Quantized by `bits`.
        let resolved = BatchBits::resolve(bits, &images, indices, l)?;
        let plan = resolved.plan(weight_bits, None, RangeMode::MinMax);
        let mut capture = ActivationCapture::all();
        model.forward(&images, &plan, BnMode::Eval, Some(&mut capture))?;
        for rec in capture.iter() {
            let values = rec
                .quantized
                .flatten_all()?
                .to_dtype(candle_core::DType::F32)?
                .to_vec1::<f32>()?;
            layers[rec.layer].quantized.add(&values);
        }
        seen += take;
    }
    Ok(NetworkHistograms {
        network: network.to_string(),
        bits: bits_name.to_string(),
        layers,
        examples: seen,
    })
}
