//! Fig. 2: which layers a quantization failure comes from. For each quantizable layer
//! `l` (of `L`), the accuracy when only some layers are quantized:
//!
//! - `before(l)`: layers `0..l` quantized (`before(0)` = none, `before(L)` = all);
//! - `after(l)`: layers `l..L` quantized, the complement of `before(l)`
//!   (`after(0)` = all, `after(L)` = none);
//! - `single(l)`: layer `l` alone, `l` in `0..L`.
//!
//! The masks go to the model's `layer_mask` (one implementation of quantization). The
//! bits are a policy's (per example, exact budget; a masked layer stays FP whatever its
//! bits) or one fixed width. Distinct masks are evaluated once per batch (before(L) and
//! after(0) are the same pass, so are single(0) and before(1)), on batches prepared once,
//! with the policy's bits computed once per batch.

use std::collections::HashMap;

use dptq_models::{BnMode, Classifier};
use dptq_quant::RangeMode;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::eval::{BatchBits, Bits, EvalSet, accuracy_pct, argmax_rows};

/// Which layers a sweep point quantizes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SweepKind {
    /// Layers before `l`.
    Before,
    /// Layer `l` and the layers after it.
    After,
    /// Layer `l` alone.
    Single,
}

impl SweepKind {
    /// The three kinds, in the paper's column order.
    pub const ALL: [SweepKind; 3] = [SweepKind::Before, SweepKind::After, SweepKind::Single];

    /// `before`, `after`, `single`.
    pub fn name(self) -> &'static str {
        match self {
            SweepKind::Before => "before",
            SweepKind::After => "after",
            SweepKind::Single => "single",
        }
    }

    /// The positions `l` of a sweep over `num_layers` layers: `0..=L` for before/after,
    /// `0..L` for single.
    pub fn points(self, num_layers: usize) -> std::ops::Range<usize> {
        match self {
            SweepKind::Before | SweepKind::After => 0..num_layers + 1,
            SweepKind::Single => 0..num_layers,
        }
    }
}

/// The layer mask (`true` = quantized) of sweep point `(kind, at)` over `num_layers`
/// layers; an error when `at` is outside [`SweepKind::points`].
pub fn sweep_mask(kind: SweepKind, at: usize, num_layers: usize) -> Result<Vec<bool>> {
    if !kind.points(num_layers).contains(&at) {
        return Err(Error::invalid(
            "sweep position",
            format!(
                "{} at layer {at} of a model with {num_layers} quantizable layers",
                kind.name()
            ),
        ));
    }
    Ok((0..num_layers)
        .map(|l| match kind {
            SweepKind::Before => l < at,
            SweepKind::After => l >= at,
            SweepKind::Single => l == at,
        })
        .collect())
}

/// One curve: accuracy (percent) at each position of one kind on one split.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SweepCurve {
    /// Before, after or single.
    pub kind: SweepKind,
    /// `train` or `test`.
    pub split: String,
    /// `(l, accuracy %)` for every position of the kind.
    pub points: Vec<(usize, f64)>,
}

/// The sweeps of one network under one bit source.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SweepResult {
    /// Network name (`D`, `R`, `W`, `model`).
    pub network: String,
    /// Where the bits came from (`pi_D`, `4 bits`).
    pub bits: String,
    /// The quantizable layers, by timm module name.
    pub layers: Vec<String>,
    /// Weight bits of every pass (`None`: full-precision weights).
    pub weight_bits: Option<u32>,
    /// The curves, kinds x splits.
    pub curves: Vec<SweepCurve>,
    /// Examples of each split evaluated.
    pub examples: Vec<(String, usize)>,
    /// Distinct masks evaluated per split (each one pass over the split).
    pub passes_per_split: usize,
}

impl SweepResult {
    /// The curve of `kind` on `split`.
    pub fn curve(&self, kind: SweepKind, split: &str) -> Option<&SweepCurve> {
        self.curves
            .iter()
            .find(|c| c.kind == kind && c.split == split)
    }

    /// Accuracy at `(kind, at)` on `split`.
    pub fn at(&self, kind: SweepKind, at: usize, split: &str) -> Option<f64> {
        self.curve(kind, split)?
            .points
            .iter()
            .find(|(l, _)| *l == at)
            .map(|(_, a)| *a)
    }

    /// Activations all at full precision (`before(0)`) on `split`.
    pub fn all_fp(&self, split: &str) -> Option<f64> {
        self.at(SweepKind::Before, 0, split)
    }

    /// Every layer quantized (`before(L)`) on `split`.
    pub fn all_quantized(&self, split: &str) -> Option<f64> {
        self.at(SweepKind::Before, self.layers.len(), split)
    }

    /// The layers ranked by how much quantizing them alone costs on `split`:
    /// `(layer index, accuracy drop in points from all-FP)`, largest drop first.
    pub fn vulnerable_layers(&self, split: &str) -> Vec<(usize, f64)> {
        let Some(fp) = self.all_fp(split) else {
            return Vec::new();
        };
        let mut drops: Vec<(usize, f64)> = self
            .curve(SweepKind::Single, split)
            .map(|c| c.points.iter().map(|&(l, a)| (l, fp - a)).collect())
            .unwrap_or_default();
        drops.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
        drops
    }

    /// The layers ranked by the accuracy lost when the "before" sweep adds them:
    /// `(layer index l, before(l) - before(l + 1))`, largest loss first.
    pub fn inflection_layers(&self, split: &str) -> Vec<(usize, f64)> {
        let Some(c) = self.curve(SweepKind::Before, split) else {
            return Vec::new();
        };
        let mut steps: Vec<(usize, f64)> = c
            .points
            .windows(2)
            .map(|w| (w[0].0, w[0].1 - w[1].1))
            .collect();
        steps.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
        steps
    }
}

/// The distinct masks of a full sweep and, for each `(kind, at)`, the mask it uses.
fn sweep_plan(num_layers: usize) -> Result<(Vec<Vec<bool>>, Vec<(SweepKind, usize, usize)>)> {
    let mut masks: Vec<Vec<bool>> = Vec::new();
    let mut index: HashMap<Vec<bool>, usize> = HashMap::new();
    let mut points = Vec::new();
    for kind in SweepKind::ALL {
        for at in kind.points(num_layers) {
            let mask = sweep_mask(kind, at, num_layers)?;
            let i = *index.entry(mask.clone()).or_insert_with(|| {
                masks.push(mask);
                masks.len() - 1
            });
            points.push((kind, at, i));
        }
    }
    Ok((masks, points))
}

/// Runs the three sweeps of `model` on each set (`train`, `test`, ...) with activation
/// bits from `bits`, weights at `weight_bits`, min/max scales, BatchNorm with running
/// statistics. `model` should be built on a frozen store.
pub fn run_sweeps(
    model: &dyn Classifier,
    network: &str,
    bits_name: &str,
    bits: &Bits<'_>,
    weight_bits: Option<u32>,
    sets: &[&EvalSet],
) -> Result<SweepResult> {
    if matches!(bits, Bits::FullPrecision) {
        return Err(Error::invalid(
            "sweep bits",
            "a sweep needs bits to quantize with (a policy, an allocation or a width)",
        ));
    }
    let layers = model.quant_layers().to_vec();
    let l = layers.len();
    let (masks, points) = sweep_plan(l)?;
    let mut curves = Vec::new();
    let mut examples = Vec::new();
    for set in sets {
        // predictions[mask][example]
        let mut predictions: Vec<Vec<u32>> = vec![Vec::with_capacity(set.len()); masks.len()];
        for batch in &set.batches {
            let resolved = BatchBits::resolve(bits, &batch.images, &batch.indices, l)?;
            for (m, mask) in masks.iter().enumerate() {
                let plan = resolved.plan(weight_bits, Some(mask), RangeMode::MinMax);
                let logits = model.forward(&batch.images, &plan, BnMode::Eval, None)?;
                predictions[m].extend(argmax_rows(&logits)?);
            }
        }
        let labels = set.labels();
        let acc: Vec<f64> = predictions
            .iter()
            .map(|p| accuracy_pct(p, &labels))
            .collect();
        for kind in SweepKind::ALL {
            curves.push(SweepCurve {
                kind,
                split: set.name.clone(),
                points: points
                    .iter()
                    .filter(|(k, _, _)| *k == kind)
                    .map(|&(_, at, m)| (at, acc[m]))
                    .collect(),
            });
        }
        examples.push((set.name.clone(), set.len()));
        tracing::debug!(
            "sweeps of {network} ({bits_name}) on {}: {} passes",
            set.name,
            masks.len()
        );
    }
    Ok(SweepResult {
        network: network.to_string(),
        bits: bits_name.to_string(),
        layers,
        weight_bits,
        curves,
        examples,
        passes_per_split: masks.len(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn before_and_after_are_complements_with_the_documented_end_points() {
        let l = 5;
        for at in 0..=l {
            let b = sweep_mask(SweepKind::Before, at, l).unwrap();
            let a = sweep_mask(SweepKind::After, at, l).unwrap();
            assert!(b.iter().zip(&a).all(|(x, y)| x != y));
            assert_eq!(b.iter().filter(|&&x| x).count(), at);
        }
        assert_eq!(sweep_mask(SweepKind::Before, 0, l).unwrap(), vec![false; l]);
        assert_eq!(sweep_mask(SweepKind::Before, l, l).unwrap(), vec![true; l]);
        assert_eq!(sweep_mask(SweepKind::After, 0, l).unwrap(), vec![true; l]);
        assert_eq!(sweep_mask(SweepKind::After, l, l).unwrap(), vec![false; l]);
    }

    #[test]
    fn single_quantizes_exactly_one_layer() {
        for at in 0..4 {
            let m = sweep_mask(SweepKind::Single, at, 4).unwrap();
            assert_eq!(m.iter().filter(|&&x| x).count(), 1);
            assert!(m[at]);
        }
    }

    #[test]
    fn positions_outside_the_sweep_are_errors() {
        assert!(sweep_mask(SweepKind::Single, 4, 4).is_err());
        assert!(sweep_mask(SweepKind::Before, 5, 4).is_err());
        assert!(sweep_mask(SweepKind::After, 4, 4).is_ok());
    }

    #[test]
    fn the_plan_evaluates_each_distinct_mask_once() {
        let l = 9;
        let (masks, points) = sweep_plan(l).unwrap();
        assert_eq!(points.len(), 3 * l + 2);
        // before: L + 1 masks; after adds L - 1 (its ends repeat before's); single adds
        // L - 2 (single(0) = before(1), single(L-1) = after(L-1)).
        assert_eq!(masks.len(), (l + 1) + (l - 1) + (l - 2));
        for &(kind, at, m) in &points {
            assert_eq!(masks[m], sweep_mask(kind, at, l).unwrap());
        }
    }

    #[test]
    fn vulnerable_and_inflection_layers_rank_by_drop() {
        let r = SweepResult {
            network: "D".into(),
            bits: "pi_D".into(),
            layers: vec!["a".into(), "b".into(), "c".into()],
            weight_bits: Some(16),
            curves: vec![
                SweepCurve {
                    kind: SweepKind::Before,
                    split: "test".into(),
                    points: vec![(0, 80.0), (1, 79.0), (2, 40.0), (3, 30.0)],
                },
                SweepCurve {
                    kind: SweepKind::Single,
                    split: "test".into(),
                    points: vec![(0, 79.0), (1, 50.0), (2, 70.0)],
                },
            ],
            examples: vec![("test".into(), 10)],
            passes_per_split: 0,
        };
        assert_eq!(r.all_fp("test"), Some(80.0));
        assert_eq!(r.all_quantized("test"), Some(30.0));
        assert_eq!(r.vulnerable_layers("test")[0], (1, 30.0));
        assert_eq!(r.inflection_layers("test")[0], (1, 39.0));
        assert!(r.vulnerable_layers("train").is_empty());
    }
}
