//! Fig. 4: accuracy under input corruptions of growing degree, robust vs detrimental
//! network (and the white box), at full precision, over several seeds.
//!
//! The question of the paper's Sect. 4.3: does a network that a policy can break once
//! quantized already look brittle at full precision? Each corruption of dptq-data is
//! applied at each degree with each seed (the seed fixes every random choice: signs,
//! positions, noise); the networks see the very same corrupted batch.

use candle_core::Device;
use dptq_data::{Corruption, CorruptionKind, EvalTransform, Loader, Normalize, Split};
use dptq_models::{BnMode, Classifier};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::eval::{accuracy_pct, argmax_rows};
use crate::stats::Summary;

/// Which corruptions, degrees and seeds.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CorruptConfig {
    /// Corruption kinds (default: all nine of the paper, in its order).
    pub kinds: Vec<CorruptionKind>,
    /// Degrees, strictly increasing, `>= 0` (default `[0, 1, 3, 5]`; 0 is the clean test
    /// set and is evaluated once).
    pub degrees: Vec<f32>,
    /// Seeds per (kind, degree) (default 3): the error bars are their standard deviation.
    pub seeds: usize,
    /// Test examples used, class-balanced (default 300; 0 = all).
    pub examples: usize,
}

impl Default for CorruptConfig {
    fn default() -> Self {
        Self {
            kinds: CorruptionKind::ALL.to_vec(),
            degrees: vec![0.0, 1.0, 3.0, 5.0],
            seeds: 3,
            examples: 300,
        }
    }
}

impl CorruptConfig {
    /// Checks degrees (finite, `>= 0`, strictly increasing), seeds and kinds.
    pub fn validate(&self) -> Result<()> {
        if self.kinds.is_empty() || self.degrees.is_empty() || self.seeds == 0 {
            return Err(Error::invalid(
                "corruption config",
                format!(
                    "need kinds, degrees and seeds: {} kinds, {} degrees, {} seeds",
                    self.kinds.len(),
                    self.degrees.len(),
                    self.seeds
                ),
            ));
        }
        for w in self.degrees.windows(2) {
            if w[0] >= w[1] || w[0].is_nan() || w[1].is_nan() {
                return Err(Error::invalid(
                    "corruption degrees",
                    format!("{:?} must be strictly increasing", self.degrees),
                ));
            }
        }
        if self.degrees.iter().any(|d| !(d.is_finite() && *d >= 0.0)) {
            return Err(Error::invalid(
                "corruption degrees",
                format!("{:?} must be finite and >= 0", self.degrees),
            ));
        }
        Ok(())
    }
}

/// Accuracy of one network at one (kind, degree), over the seeds.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CorruptPoint {
    /// Degree.
    pub degree: f32,
    /// Accuracy (percent) of each seed.
    pub accuracies: Vec<f64>,
    /// Their mean and spread.
    pub summary: Summary,
}

/// One network's curve under one corruption.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CorruptCurve {
    /// Corruption kind.
    pub kind: CorruptionKind,
    /// Network name.
    pub network: String,
    /// One point per degree, in increasing degree.
    pub points: Vec<CorruptPoint>,
}

/// Fig. 4's data.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CorruptResult {
    /// Network names, in the order given.
    pub networks: Vec<String>,
    /// One curve per kind and network.
    pub curves: Vec<CorruptCurve>,
    /// Test examples per evaluation.
    pub examples: usize,
    /// Seeds per point.
    pub seeds: usize,
}

impl CorruptResult {
    /// The curve of `network` under `kind`.
    pub fn curve(&self, kind: CorruptionKind, network: &str) -> Option<&CorruptCurve> {
        self.curves
            .iter()
            .find(|c| c.kind == kind && c.network == network)
    }

    /// Mean over kinds and non-zero degrees of `a`'s accuracy minus `b`'s (points): how
    /// much more robust `a` is than `b` on average.
    pub fn mean_gap(&self, a: &str, b: &str) -> Option<f64> {
        let mut gaps = Vec::new();
        for ca in self.curves.iter().filter(|c| c.network == a) {
            let cb = self.curve(ca.kind, b)?;
            for (pa, pb) in ca.points.iter().zip(&cb.points) {
                if pa.degree > 0.0 {
                    gaps.push(pa.summary.mean - pb.summary.mean);
                }
            }
        }
        (!gaps.is_empty()).then(|| gaps.iter().sum::<f64>() / gaps.len() as f64)
    }
}

/// Evaluates every network at full precision on `split` under every corruption of
/// `config`, with the evaluation transform `eval` and normalisation `normalize` of the run.
/// `networks` should be built on frozen stores. Seed `s` of a point uses loader seed
/// `base_seed + s`.
pub fn corruption_robustness(
    networks: &[(&str, &dyn Classifier)],
    split: &Split,
    eval: EvalTransform,
    normalize: Normalize,
    config: &CorruptConfig,
    base_seed: u64,
    batch_size: usize,
    device: &Device,
) -> Result<CorruptResult> {
    config.validate()?;
    if networks.is_empty() {
        return Err(Error::invalid("corruption networks", "none given"));
    }
    let labels = split.labels();
    // acc[net] for one loader pass.
    let run = |corruption: Corruption, seed: u64| -> Result<Vec<f64>> {
        let loader =
            Loader::corrupted(split, eval, normalize, corruption, seed, batch_size, device)?;
        let mut preds: Vec<Vec<u32>> = vec![vec![0; split.len()]; networks.len()];
        for batch in loader.epoch(0) {
            let batch = batch?;
            for (n, (_, model)) in networks.iter().enumerate() {
                let p = argmax_rows(&model.forward_fp(&batch.images, BnMode::Eval)?)?;
                for (&i, v) in batch.indices.iter().zip(p) {
                    preds[n][i] = v;
                }
            }
        }
        Ok(preds.iter().map(|p| accuracy_pct(p, &labels)).collect())
    };
    // Degree 0 is the identity for every kind: one clean pass.
    let clean = if config.degrees.contains(&0.0) {
        Some(run(Corruption::new(config.kinds[0], 0.0)?, base_seed)?)
    } else {
        None
    };
    let mut curves = Vec::new();
    for &kind in &config.kinds {
        // points[net][degree]
        let mut points: Vec<Vec<CorruptPoint>> = vec![Vec::new(); networks.len()];
        for &degree in &config.degrees {
            let per_seed: Vec<Vec<f64>> = if degree == 0.0 {
                vec![clean.clone().unwrap_or_default()]
            } else {
                (0..config.seeds as u64)
                    .map(|s| run(Corruption::new(kind, degree)?, base_seed + s))
                    .collect::<Result<_>>()?
            };
            for n in 0..networks.len() {
                let accuracies: Vec<f64> = per_seed.iter().map(|a| a[n]).collect();
                points[n].push(CorruptPoint {
                    degree,
                    summary: Summary::of(&accuracies)?,
                    accuracies,
                });
            }
            tracing::debug!("corruption {kind} degree {degree}: done");
        }
        for (n, pts) in points.into_iter().enumerate() {
            curves.push(CorruptCurve {
                kind,
                network: networks[n].0.to_string(),
                points: pts,
            });
        }
    }
    Ok(CorruptResult {
        networks: networks.iter().map(|(n, _)| n.to_string()).collect(),
        curves,
        examples: split.len(),
        seeds: config.seeds,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn degrees_must_increase_strictly_and_be_non_negative() {
        let mut c = CorruptConfig::default();
        assert!(c.validate().is_ok());
        c.degrees = vec![0.0, 2.0, 2.0];
        assert!(
            c.validate()
                .unwrap_err()
                .to_string()
                .contains("strictly increasing")
        );
        c.degrees = vec![-1.0, 2.0];
        assert!(c.validate().is_err());
        c.degrees = vec![1.0];
        c.seeds = 0;
        assert!(c.validate().is_err());
    }

    #[test]
    fn the_default_covers_the_nine_corruptions_of_the_paper() {
        let c = CorruptConfig::default();
        assert_eq!(c.kinds.len(), 9);
        assert_eq!(c.degrees[0], 0.0);
    }
}
