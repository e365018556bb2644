//! What a forward pass quantizes: the plan, the BatchNorm mode, the activation capture,
//! and the per-pass context that applies them at each quantizable layer (a "tap").

use std::collections::BTreeMap;

use candle_core::{DType, IndexOp, Tensor};
use dptq_quant::{ActivationQuantizer, ExampleBits, RangeMode, WeightQuantizer};

use crate::error::{Error, Result};

/// How BatchNorm layers normalise.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum BnMode {
    /// Running statistics (evaluation). Default.
    #[default]
    Eval,
    /// Batch statistics; running statistics updated with momentum 0.1 and the unbiased
    /// batch variance (PyTorch's convention): `r <- 0.9 r + 0.1 stat`.
    Train,
    /// Batch statistics, running statistics untouched: the quantized student pass of
    /// SPEC §4, so that the running statistics stay those of the full-precision network.
    TrainFrozenStats,
}

impl BnMode {
    /// Whether batch statistics are used.
    pub fn uses_batch_stats(self) -> bool {
        !matches!(self, BnMode::Eval)
    }
}

/// Which bit-width each quantizable activation gets.
#[derive(Clone, Copy, Debug)]
pub enum ActivationPlan<'a> {
    /// No activation is quantized.
    FullPrecision,
    /// `[N, L]` u32: example `n` of layer `l` is quantized at `bits[n, l]` bits.
    Bits(&'a Tensor),
    /// One entry per layer (`L` of them), each for every example or per example (`None`:
    /// that example stays at full precision) — `dptq predict --bits`.
    LayerBits(&'a [ExampleBits]),
    /// `[N, L, K]` straight-through one-hot selection over `options` (`K` bit-widths):
    /// the activation of layer `l` is `sum_j selection[n, l, j] * Q_{options[j]}(x[n])`,
    /// whose value is the chosen quantization and whose gradient reaches the selection.
    Selection {
        selection: &'a Tensor,
        options: &'a [u32],
    },
}

/// Everything a forward pass needs to know about quantization.
#[derive(Clone, Debug)]
pub struct QuantPlan<'a> {
    /// Bits of the symmetric per-tensor fake quantization of every Conv2d and Linear weight
    /// (the stem included; norms and biases untouched). `Some(16)` in the paper; `None`
    /// (default) keeps full-precision weights.
    pub weight_bits: Option<u32>,
    /// Activation bit-widths. Default [`ActivationPlan::FullPrecision`].
    pub activations: ActivationPlan<'a>,
    /// `L` flags; `false` keeps that layer's activation at full precision whatever
    /// `activations` says (the before/after/single sweeps). Default `None`: all layers.
    pub layer_mask: Option<&'a [bool]>,
    /// The activation quantizer (asymmetric, per example). Default min/max range.
    pub quantizer: ActivationQuantizer,
}

impl Default for QuantPlan<'_> {
    fn default() -> Self {
        Self::full_precision()
    }
}

impl<'a> QuantPlan<'a> {
    /// Full-precision weights and activations.
    pub fn full_precision() -> Self {
        Self {
            weight_bits: None,
            activations: ActivationPlan::FullPrecision,
            layer_mask: None,
            quantizer: ActivationQuantizer {
                range: RangeMode::MinMax,
            },
        }
    }

    /// The paper's setting with per-example per-layer bits `[N, L]` (u32) and 16-bit weights.
    pub fn bits(bits: &'a Tensor) -> Self {
        Self {
            weight_bits: Some(16),
            activations: ActivationPlan::Bits(bits),
            ..Self::full_precision()
        }
    }

    /// The paper's training setting: a straight-through selection `[N, L, K]` over
    /// `options`, 16-bit weights.
    pub fn selection(selection: &'a Tensor, options: &'a [u32]) -> Self {
        Self {
            weight_bits: Some(16),
            activations: ActivationPlan::Selection { selection, options },
            ..Self::full_precision()
        }
    }

    /// The same plan with only the layers flagged `true` quantized.
    pub fn with_mask(self, layer_mask: &'a [bool]) -> Self {
        Self {
            layer_mask: Some(layer_mask),
            ..self
        }
    }

    /// Checks the plan against a batch of `n` examples and a model of `l` layers.
    pub fn validate(&self, n: usize, l: usize) -> Result<()> {
        if let Some(mask) = self.layer_mask
            && mask.len() != l
        {
            return Err(Error::PlanShape {
                what: "layer mask",
                found: vec![mask.len()],
                expected: format!("[{l}] (L)"),
            });
        }
        match self.activations {
            ActivationPlan::FullPrecision => {}
            ActivationPlan::Bits(bits) => {
                if bits.dims() != [n, l] {
                    return Err(Error::PlanShape {
                        what: "bits",
                        found: bits.dims().to_vec(),
                        expected: format!("[{n}, {l}] (N, L)"),
                    });
                }
                if bits.dtype() != DType::U32 {
                    return Err(Error::InvalidConfig {
                        what: "bits dtype",
                        detail: format!("expected u32, got {:?}", bits.dtype()),
                    });
                }
            }
            ActivationPlan::LayerBits(per_layer) => {
                if per_layer.len() != l {
                    return Err(Error::PlanShape {
                        what: "layer bits",
                        found: vec![per_layer.len()],
                        expected: format!("[{l}] (L)"),
                    });
                }
                for b in per_layer {
                    if let ExampleBits::PerExample(v) = b
                        && v.len() != n
                    {
                        return Err(Error::PlanShape {
                            what: "per-example layer bits",
                            found: vec![v.len()],
                            expected: format!("[{n}] (N)"),
                        });
                    }
                }
            }
            ActivationPlan::Selection { selection, options } => {
                let k = options.len();
                if selection.dims() != [n, l, k] {
                    return Err(Error::PlanShape {
                        what: "selection",
                        found: selection.dims().to_vec(),
                        expected: format!("[{n}, {l}, {k}] (N, L, K)"),
                    });
                }
            }
        }
        Ok(())
    }
}

/// The full-precision and quantized input of one quantizable layer (detached).
#[derive(Clone, Debug)]
pub struct CapturedActivation {
    /// Layer index in [`crate::Classifier::quant_layers`].
    pub layer: usize,
    /// The input as computed, `[N, ...]`.
    pub fp: Tensor,
    /// The input the layer actually consumed (equal to `fp` when not quantized).
    pub quantized: Tensor,
}

/// Opt-in record of layer inputs during a forward pass (for histograms).
#[derive(Clone, Debug, Default)]
pub struct ActivationCapture {
    wanted: Option<Vec<bool>>,
    records: BTreeMap<usize, CapturedActivation>,
}

impl ActivationCapture {
    /// Captures every layer (memory: one copy of every activation, twice).
    pub fn all() -> Self {
        Self {
            wanted: None,
            records: BTreeMap::new(),
        }
    }

    /// Captures only the listed layer indices.
    pub fn layers(layers: &[usize]) -> Self {
        let len = layers.iter().max().map_or(0, |m| m + 1);
        let mut wanted = vec![false; len];
        for &l in layers {
            wanted[l] = true;
        }
        Self {
            wanted: Some(wanted),
            records: BTreeMap::new(),
        }
    }

    /// Whether layer `l` is captured.
    pub fn wants(&self, l: usize) -> bool {
        self.wanted
            .as_ref()
            .is_none_or(|w| w.get(l).copied().unwrap_or(false))
    }

    /// The record of layer `l`, if captured.
    pub fn get(&self, l: usize) -> Option<&CapturedActivation> {
        self.records.get(&l)
    }

    /// Every record, in layer order.
    pub fn iter(&self) -> impl Iterator<Item = &CapturedActivation> {
        self.records.values()
    }

    /// Number of captured layers.
    pub fn len(&self) -> usize {
        self.records.len()
    }

    /// Whether nothing was captured.
    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }

    /// Drops the records (keeps the selection of layers).
    pub fn clear(&mut self) {
        self.records.clear();
    }

    fn record(&mut self, layer: usize, fp: &Tensor, quantized: &Tensor) {
        self.records.insert(
            layer,
            CapturedActivation {
                layer,
                fp: fp.detach(),
                quantized: quantized.detach(),
            },
        );
    }
}

/// The state of one forward pass: the plan, the BatchNorm mode, the capture. Layers call
/// [`Taps::input`] on the input of each quantizable Conv2d/Linear and [`Taps::weight`] on
/// every Conv2d/Linear weight.
pub struct Taps<'p, 'c> {
    plan: &'p QuantPlan<'p>,
    /// BatchNorm mode of this pass.
    pub bn: BnMode,
    capture: Option<&'c mut ActivationCapture>,
    num_layers: usize,
    weights: WeightQuantizer,
}

impl<'p, 'c> Taps<'p, 'c> {
    /// Validates `plan` against a batch of `n` examples and `num_layers` layers.
    pub fn new(
        plan: &'p QuantPlan<'p>,
        bn: BnMode,
        capture: Option<&'c mut ActivationCapture>,
        n: usize,
        num_layers: usize,
    ) -> Result<Self> {
        plan.validate(n, num_layers)?;
        Ok(Self {
            plan,
            bn,
            capture,
            num_layers,
            weights: WeightQuantizer {
                range: RangeMode::MinMax,
            },
        })
    }

    /// Number of quantizable layers of the model.
    pub fn num_layers(&self) -> usize {
        self.num_layers
    }

    /// The weight a Conv2d/Linear uses: fake-quantized at `weight_bits` when set.
    pub fn weight(&self, w: &Tensor) -> Result<Tensor> {
        match self.plan.weight_bits {
            Some(bits) => Ok(self.weights.fake_quant(w, bits)?),
            None => Ok(w.clone()),
        }
    }

    /// The input layer `l` consumes: `xs` fake-quantized per the plan (unless masked),
    /// recorded when captured. xs: `[N, ...]` -> same shape.
    pub fn input(&mut self, l: usize, xs: &Tensor) -> Result<Tensor> {
        if l >= self.num_layers {
            return Err(Error::InvalidConfig {
                what: "tap index",
                detail: format!(
                    "layer {l} of a model with {} quantizable layers",
                    self.num_layers
                ),
            });
        }
        let active = self.plan.layer_mask.is_none_or(|m| m[l]);
        let q = &self.plan.quantizer;
        let out = if !active {
            xs.clone()
        } else {
            match self.plan.activations {
                ActivationPlan::FullPrecision => xs.clone(),
                ActivationPlan::Bits(bits) => {
                    q.fake_quant_bits(xs, &bits.i((.., l))?.contiguous()?)?
                }
                ActivationPlan::LayerBits(per_layer) => q.fake_quant(xs, &per_layer[l])?,
                ActivationPlan::Selection { selection, options } => {
                    q.mixture(xs, &selection.i((.., l, ..))?.contiguous()?, options)?
                }
            }
        };
        if let Some(capture) = self.capture.as_deref_mut()
            && capture.wants(l)
        {
            capture.record(l, xs, &out);
        }
        Ok(out)
    }
}
