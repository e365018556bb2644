//! Evaluation: networks at full precision and quantized by policies, deterministically.
//!
//! A policy's bits come from the exact MCKP on its profits (the policy in eval mode); a
//! random policy is the same MCKP on seeded uniform profits. Every bit vector used is
//! checked to cost exactly the budget and counted. Networks run with running BatchNorm
//! statistics (`BnMode::Eval`), 16-bit weights when quantized.

use std::time::Instant;

use candle_core::{DType, Tensor};
use dptq_data::Loader;
use dptq_mckp::{Mode, select_bits};
use dptq_models::{ActivationPlan, BnMode, Classifier, PolicyNet, QuantPlan};
use rand::Rng;

use crate::config::Profits;
use crate::error::{Error, Result};
use crate::pairs::profits_of;
use crate::progress::{Progress, ProgressSink};
use crate::rng::stream_rng;

/// Where an evaluation's bits come from.
#[derive(Clone, Copy)]
pub enum EvalPolicy<'a> {
    /// A trained policy (run in eval mode) and how its output becomes profits.
    Trained {
        /// The policy network (built on a frozen store).
        net: &'a PolicyNet,
        /// Logits or softmax profits.
        profits: Profits,
    },
    /// MCKP on uniform random profits, example `i` seeded by `(seed, i)`.
    Random {
        /// Seed of the profits.
        seed: u64,
    },
}

impl std::fmt::Debug for EvalPolicy<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            EvalPolicy::Trained { profits, .. } => write!(f, "Trained({profits:?})"),
            EvalPolicy::Random { seed } => write!(f, "Random({seed})"),
        }
    }
}

/// Per-example outcome of evaluating networks x policies on a split.
#[derive(Debug, Clone, PartialEq)]
pub struct CrossEval {
    /// Network names, in the order given.
    pub networks: Vec<String>,
    /// Policy names, in the order given.
    pub policies: Vec<String>,
    /// `fp[net][i]`: network `net` classifies example `i` right at full precision.
    pub fp: Vec<Vec<bool>>,
    /// `quantized[net][policy][i]`: right when quantized by `policy`.
    pub quantized: Vec<Vec<Vec<bool>>>,
    /// Bit vectors checked against the budget (examples x policies).
    pub budget_checked: usize,
    /// Of those, how many cost exactly the budget.
    pub budget_exact: usize,
    /// `mean_bits[policy][layer]`: average bit-width the policy gives each layer.
    pub mean_bits: Vec<Vec<f64>>,
}

/// Percentage of `true`.
pub fn percent(flags: &[bool]) -> f64 {
    if flags.is_empty() {
        return 0.0;
    }
    100.0 * flags.iter().filter(|&&b| b).count() as f64 / flags.len() as f64
}

impl CrossEval {
    fn index(names: &[String], name: &str) -> Result<usize> {
        names.iter().position(|n| n == name).ok_or_else(|| {
            Error::invalid("evaluation name", format!("{name:?} not among {names:?}"))
        })
    }

    /// Full-precision accuracy of `net`, in percent.
    pub fn fp_accuracy(&self, net: &str) -> Result<f64> {
        Ok(percent(&self.fp[Self::index(&self.networks, net)?]))
    }

    /// Accuracy of `net` quantized by `policy`, in percent.
    pub fn quantized_accuracy(&self, net: &str, policy: &str) -> Result<f64> {
        let n = Self::index(&self.networks, net)?;
        let p = Self::index(&self.policies, policy)?;
        Ok(percent(&self.quantized[n][p]))
    }

    /// Transitory points (paper Table 2): the percentage of examples that `a` and `b` both
    /// classify right at full precision but `b` gets wrong once quantized by `policy`.
    pub fn transitory_points(&self, a: &str, b: &str, policy: &str) -> Result<(usize, f64)> {
        let ia = Self::index(&self.networks, a)?;
        let ib = Self::index(&self.networks, b)?;
        let ip = Self::index(&self.policies, policy)?;
        let n = self.fp[ia].len();
        let count = (0..n)
            .filter(|&i| self.fp[ia][i] && self.fp[ib][i] && !self.quantized[ib][ip][i])
            .count();
        Ok((
            count,
            if n == 0 {
                0.0
            } else {
                100.0 * count as f64 / n as f64
            },
        ))
    }

    /// Fraction of checked bit vectors that cost exactly the budget.
    pub fn budget_exact_fraction(&self) -> f64 {
        if self.budget_checked == 0 {
            0.0
        } else {
            self.budget_exact as f64 / self.budget_checked as f64
        }
    }
}

/// Uniform random profits `[N, L, K]` for the examples `indices`, each example seeded
/// by `(seed, index)` so that the draw does not depend on the batch size.
pub fn random_profits(
    indices: &[usize],
    layers: usize,
    k: usize,
    seed: u64,
    device: &candle_core::Device,
) -> Result<Tensor> {
    let mut values = Vec::with_capacity(indices.len() * layers * k);
    for &i in indices {
        let mut rng = stream_rng(seed, "random_policy", 0, i as u64);
        values.extend((0..layers * k).map(|_| rng.random::<f32>()));
    }
    Ok(Tensor::from_vec(
        values,
        (indices.len(), layers, k),
        device,
    )?)
}

/// The bits `[N, L]` u32 `policy` assigns to `images` (examples `indices`).
pub fn policy_bits(
    policy: &EvalPolicy<'_>,
    images: &Tensor,
    indices: &[usize],
    layers: usize,
    options: &[u32],
    budget: u32,
) -> Result<Tensor> {
    let profits = match policy {
        EvalPolicy::Trained { net, profits } => {
            profits_of(&net.forward(images, BnMode::Eval)?, *profits)?
        }
        EvalPolicy::Random { seed } => {
            random_profits(indices, layers, options.len(), *seed, images.device())?
        }
    };
    let (_selection, bits) = select_bits(&profits.detach(), options, budget, Mode::Exact)?;
    Ok(bits)
}

/// Evaluates every network at full precision and quantized by every policy over the
/// whole split of `loader` (in order).
pub fn evaluate_cross(
    loader: &Loader,
    networks: &[(&str, &dyn Classifier)],
    policies: &[(&str, EvalPolicy<'_>)],
    options: &[u32],
    budget: u32,
    weight_bits: u32,
    progress: &dyn ProgressSink,
    what: &str,
) -> Result<CrossEval> {
    let n = loader.split().len();
    let layers = networks
        .first()
        .map(|(_, m)| m.quant_layers().len())
        .ok_or_else(|| Error::invalid("evaluation", "no network to evaluate"))?;
    for (name, m) in networks {
        if m.quant_layers().len() != layers {
            return Err(Error::invalid(
                "evaluation",
                format!(
                    "{name} has {} quantized layers, expected {layers}",
                    m.quant_layers().len()
                ),
            ));
        }
    }
    let labels = loader.split().labels();
    let mut out = CrossEval {
        networks: networks.iter().map(|(n, _)| n.to_string()).collect(),
        policies: policies.iter().map(|(n, _)| n.to_string()).collect(),
        fp: vec![vec![false; n]; networks.len()],
        quantized: vec![vec![vec![false; n]; policies.len()]; networks.len()],
        budget_checked: 0,
        budget_exact: 0,
        mean_bits: vec![vec![0.0; layers]; policies.len()],
    };
    let mut bit_sums = vec![vec![0u64; layers]; policies.len()];
    let total = loader.len() as u64;
    progress.event(&Progress::EvalStarted {
        what: what.to_string(),
        total,
    });
    let started = Instant::now();
    let correct = |logits: &Tensor, idx: &[usize]| -> Result<Vec<bool>> {
        let pred = logits.argmax(1)?.to_vec1::<u32>()?;
        Ok(pred
            .iter()
            .zip(idx)
            .map(|(p, &i)| *p == labels[i])
            .collect())
    };
    for (b, batch) in loader.epoch(0).enumerate() {
        let batch = batch?;
        let idx = &batch.indices;
        let mut all_bits = Vec::with_capacity(policies.len());
        for (p, (_, policy)) in policies.iter().enumerate() {
            let bits = policy_bits(policy, &batch.images, idx, layers, options, budget)?;
            let rows = bits.to_dtype(DType::U32)?.to_vec2::<u32>()?;
            for row in &rows {
                out.budget_checked += 1;
                if row.iter().sum::<u32>() == budget {
                    out.budget_exact += 1;
                }
                for (l, &v) in row.iter().enumerate() {
                    bit_sums[p][l] += v as u64;
                }
            }
            all_bits.push(bits);
        }
        for (m, (_, net)) in networks.iter().enumerate() {
            let fp = net.forward_fp(&batch.images, BnMode::Eval)?;
            for (j, ok) in correct(&fp, idx)?.into_iter().enumerate() {
                out.fp[m][idx[j]] = ok;
            }
            for (p, bits) in all_bits.iter().enumerate() {
                let plan = QuantPlan {
                    weight_bits: Some(weight_bits),
                    activations: ActivationPlan::Bits(bits),
                    ..QuantPlan::full_precision()
                };
                let q = net.forward(&batch.images, &plan, BnMode::Eval, None)?;
                for (j, ok) in correct(&q, idx)?.into_iter().enumerate() {
                    out.quantized[m][p][idx[j]] = ok;
                }
            }
        }
        progress.event(&Progress::EvalStep {
            what: what.to_string(),
            done: b as u64 + 1,
            total,
        });
    }
    for (mean, sums) in out.mean_bits.iter_mut().zip(&bit_sums) {
        for (m, &s) in mean.iter_mut().zip(sums) {
            *m = s as f64 / n.max(1) as f64;
        }
    }
    progress.event(&Progress::EvalFinished {
        what: what.to_string(),
        seconds: started.elapsed().as_secs_f64(),
    });
    Ok(out)
}

/// Full-precision correctness of one classifier over the split of `loader`.
pub fn evaluate_fp(
    loader: &Loader,
    net: &dyn Classifier,
    progress: &dyn ProgressSink,
    what: &str,
) -> Result<Vec<bool>> {
    let total = loader.len() as u64;
    progress.event(&Progress::EvalStarted {
        what: what.to_string(),
        total,
    });
    let started = Instant::now();
    let eval = dptq_data::evaluate(loader, |images| {
        net.forward_fp(images, BnMode::Eval)
            .map_err(|e| candle_core::Error::Msg(e.to_string()))
    })?;
    progress.event(&Progress::EvalFinished {
        what: what.to_string(),
        seconds: started.elapsed().as_secs_f64(),
    });
    Ok(eval
        .predictions
        .iter()
        .zip(&eval.labels)
        .map(|(p, l)| p == l)
        .collect())
}
