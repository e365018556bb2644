//! The evaluation engine every analysis shares: a split's batches prepared once and kept,
//! bit-widths from a policy (exact-budget MCKP), a random policy, a fixed allocation or
//! one width everywhere, and forward passes under a layer mask with detached weights.
//!
//! There is one implementation of quantization, dptq-quant's, reached through
//! [`Classifier::forward`] and a [`QuantPlan`]; this module only decides the plan.

use candle_core::{DType, Tensor};
use dptq_data::Loader;
use dptq_distill::{EvalPolicy, policy_bits};
use dptq_models::{ActivationPlan, BnMode, Classifier, QuantPlan};
use dptq_quant::{ActivationQuantizer, ExampleBits, RangeMode};

use crate::error::{Error, Result};

/// One prepared batch: images, labels and dataset indices.
#[derive(Clone, Debug)]
pub struct EvalBatch {
    /// `[N, 3, H, W]`, normalised.
    pub images: Tensor,
    /// `N` labels.
    pub labels: Vec<u32>,
    /// Position of each example in its split.
    pub indices: Vec<usize>,
}

/// The batches of one split (in order, evaluation transform), prepared once and kept in
/// memory so that the many passes of a sweep pay the decoding once.
#[derive(Clone, Debug)]
pub struct EvalSet {
    /// `train`, `test`, ...
    pub name: String,
    /// The batches, in order.
    pub batches: Vec<EvalBatch>,
}

impl EvalSet {
    /// Reads every batch of epoch 0 of `loader` (which must not shuffle).
    pub fn from_loader(name: impl Into<String>, loader: &Loader) -> Result<Self> {
        if loader.config().shuffle {
            return Err(Error::invalid(
                "evaluation loader",
                "shuffles; evaluation needs the split in order",
            ));
        }
        let mut batches = Vec::with_capacity(loader.len());
        for batch in loader.epoch(0) {
            let batch = batch?;
            let labels = batch.labels.to_dtype(DType::U32)?.to_vec1::<u32>()?;
            batches.push(EvalBatch {
                images: batch.images,
                labels,
                indices: batch.indices,
            });
        }
        Ok(Self {
            name: name.into(),
            batches,
        })
    }

    /// Number of examples.
    pub fn len(&self) -> usize {
        self.batches.iter().map(|b| b.labels.len()).sum()
    }

    /// Whether the set holds no example.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Every label, in order.
    pub fn labels(&self) -> Vec<u32> {
        self.batches
            .iter()
            .flat_map(|b| b.labels.iter().copied())
            .collect()
    }
}

/// Where the activation bit-widths of an evaluation come from.
#[derive(Clone, Copy)]
pub enum Bits<'a> {
    /// No activation quantized (weights too stay at full precision).
    FullPrecision,
    /// A policy (trained or random) through the exact-budget MCKP, per example.
    Policy {
        /// The policy.
        policy: EvalPolicy<'a>,
        /// The bit options, ascending.
        options: &'a [u32],
        /// The exact budget per example.
        budget: u32,
    },
    /// One bit-width per layer, the same for every example (a fixed allocation).
    Allocation(&'a [u32]),
    /// One bit-width for every layer and example.
    Uniform(u32),
}

impl std::fmt::Debug for Bits<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Bits::FullPrecision => write!(f, "FullPrecision"),
            Bits::Policy { policy, budget, .. } => write!(f, "Policy({policy:?}, B = {budget})"),
            Bits::Allocation(a) => write!(f, "Allocation({a:?})"),
            Bits::Uniform(b) => write!(f, "Uniform({b})"),
        }
    }
}

/// The bits of one batch, resolved: what a [`QuantPlan`] borrows.
#[derive(Clone, Debug)]
pub enum BatchBits {
    /// No quantization.
    FullPrecision,
    /// `[N, L]` u32 per example.
    PerExample(Tensor),
    /// One entry per layer.
    PerLayer(Vec<ExampleBits>),
}

impl BatchBits {
    /// Resolves `bits` for a batch of `images` (examples `indices`) of a model with
    /// `layers` quantizable layers.
    pub fn resolve(
        bits: &Bits<'_>,
        images: &Tensor,
        indices: &[usize],
        layers: usize,
    ) -> Result<Self> {
        Ok(match bits {
            Bits::FullPrecision => BatchBits::FullPrecision,
            Bits::Policy {
                policy,
                options,
                budget,
            } => BatchBits::PerExample(policy_bits(
                policy, images, indices, layers, options, *budget,
            )?),
            Bits::Allocation(per_layer) => {
                if per_layer.len() != layers {
                    return Err(Error::invalid(
                        "bit allocation",
                        format!("{} widths for {layers} layers", per_layer.len()),
                    ));
                }
                BatchBits::PerLayer(per_layer.iter().map(|&b| ExampleBits::All(b)).collect())
            }
            Bits::Uniform(b) => BatchBits::PerLayer(vec![ExampleBits::All(*b); layers]),
        })
    }

    /// The per-example rows `[N][L]`, when the bits are per example.
    pub fn rows(&self) -> Result<Option<Vec<Vec<u32>>>> {
        match self {
            BatchBits::PerExample(t) => Ok(Some(t.to_dtype(DType::U32)?.to_vec2::<u32>()?)),
            _ => Ok(None),
        }
    }

    /// The plan: `weight_bits` on the weights when anything is quantized, the activations
    /// per these bits, only the layers of `mask` (all when `None`), `range` scales.
    pub fn plan<'a>(
        &'a self,
        weight_bits: Option<u32>,
        mask: Option<&'a [bool]>,
        range: RangeMode,
    ) -> QuantPlan<'a> {
        let activations = match self {
            BatchBits::FullPrecision => ActivationPlan::FullPrecision,
            BatchBits::PerExample(t) => ActivationPlan::Bits(t),
            BatchBits::PerLayer(v) => ActivationPlan::LayerBits(v),
        };
        QuantPlan {
            weight_bits: match self {
                BatchBits::FullPrecision => None,
                _ => weight_bits,
            },
            activations,
            layer_mask: mask,
            quantizer: ActivationQuantizer { range },
        }
    }
}

/// Predicted classes of a logits batch `[N, C]`.
pub fn argmax_rows(logits: &Tensor) -> Result<Vec<u32>> {
    Ok(logits.argmax(1)?.to_dtype(DType::U32)?.to_vec1::<u32>()?)
}

/// What one evaluation of a set produced.
#[derive(Clone, Debug, PartialEq)]
pub struct Outcome {
    /// Predicted class of each example, in set order.
    pub predictions: Vec<u32>,
    /// True class of each example.
    pub labels: Vec<u32>,
    /// Bits of each example (`[N][L]`) when a policy chose them.
    pub bits: Option<Vec<Vec<u32>>>,
}

impl Outcome {
    /// Whether each example is classified right.
    pub fn correct(&self) -> Vec<bool> {
        self.predictions
            .iter()
            .zip(&self.labels)
            .map(|(p, l)| p == l)
            .collect()
    }

    /// Top-1 accuracy in percent (0 for an empty set).
    pub fn accuracy(&self) -> f64 {
        accuracy_pct(&self.predictions, &self.labels)
    }
}

/// Percentage of `predictions` equal to `labels`.
pub fn accuracy_pct(predictions: &[u32], labels: &[u32]) -> f64 {
    if labels.is_empty() {
        return 0.0;
    }
    let ok = predictions
        .iter()
        .zip(labels)
        .filter(|(p, l)| p == l)
        .count();
    100.0 * ok as f64 / labels.len() as f64
}

/// Evaluates `model` on every batch of `set` with the activation bits of `bits`, the layers
/// of `mask`, `weight_bits` on the weights (when quantized) and `range` scales; BatchNorm
/// with running statistics. Build `model` on a frozen store: no graph is recorded.
pub fn evaluate(
    model: &dyn Classifier,
    set: &EvalSet,
    bits: &Bits<'_>,
    weight_bits: Option<u32>,
    mask: Option<&[bool]>,
    range: RangeMode,
) -> Result<Outcome> {
    let layers = model.quant_layers().len();
    let mut predictions = Vec::with_capacity(set.len());
    let mut all_bits: Option<Vec<Vec<u32>>> = None;
    for batch in &set.batches {
        let resolved = BatchBits::resolve(bits, &batch.images, &batch.indices, layers)?;
        if let Some(rows) = resolved.rows()? {
            all_bits.get_or_insert_with(Vec::new).extend(rows);
        }
        let plan = resolved.plan(weight_bits, mask, range);
        let logits = model.forward(&batch.images, &plan, BnMode::Eval, None)?;
        predictions.extend(argmax_rows(&logits)?);
    }
    Ok(Outcome {
        predictions,
        labels: set.labels(),
        bits: all_bits,
    })
}

/// Checks every row of `bits` against `budget`: `(on budget, total)`.
pub fn budget_check(bits: &[Vec<u32>], budget: u32) -> (usize, usize) {
    let ok = bits
        .iter()
        .filter(|r| r.iter().sum::<u32>() == budget)
        .count();
    (ok, bits.len())
}

/// Evaluations of one set, kept by name so that analyses sharing a pass (the FP network,
/// a network under its own policy) run it once.
#[derive(Debug)]
pub struct EvalCache<'s> {
    set: &'s EvalSet,
    outcomes: std::collections::HashMap<String, Outcome>,
    timings: Vec<PassTiming>,
}

/// The wall time of one pass over a set.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct PassTiming {
    /// `network|bits|weight bits|range`.
    pub key: String,
    /// Examples evaluated.
    pub examples: usize,
    /// Seconds.
    pub seconds: f64,
}

impl<'s> EvalCache<'s> {
    /// An empty cache over `set`.
    pub fn new(set: &'s EvalSet) -> Self {
        Self {
            set,
            outcomes: Default::default(),
            timings: Vec::new(),
        }
    }

    /// The set evaluated.
    pub fn set(&self) -> &'s EvalSet {
        self.set
    }

    /// Passes actually run so far (cache misses).
    pub fn passes(&self) -> usize {
        self.timings.len()
    }

    /// The wall time of every pass run, in order.
    pub fn timings(&self) -> &[PassTiming] {
        &self.timings
    }

    /// The outcome of [`evaluate`] for `network` under the bits named `bits_name` — names
    /// must identify the bits: the same `(network, bits_name, weight_bits, range)` returns
    /// the stored outcome without a pass.
    pub fn get(
        &mut self,
        model: &dyn Classifier,
        network: &str,
        bits_name: &str,
        bits: &Bits<'_>,
        weight_bits: Option<u32>,
        range: RangeMode,
    ) -> Result<&Outcome> {
        let key = format!("{network}|{bits_name}|{weight_bits:?}|{range:?}");
        if !self.outcomes.contains_key(&key) {
            let t0 = std::time::Instant::now();
            let outcome = evaluate(model, self.set, bits, weight_bits, None, range)?;
            self.timings.push(PassTiming {
                key: key.clone(),
                examples: self.set.len(),
                seconds: t0.elapsed().as_secs_f64(),
            });
            self.outcomes.insert(key.clone(), outcome);
        }
        Ok(&self.outcomes[&key])
    }

    /// The full-precision outcome of `network`.
    pub fn fp(&mut self, model: &dyn Classifier, network: &str) -> Result<&Outcome> {
        self.get(
            model,
            network,
            "fp",
            &Bits::FullPrecision,
            None,
            RangeMode::MinMax,
        )
    }
}
