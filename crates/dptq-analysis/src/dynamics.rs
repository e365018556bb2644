//! How dynamic is a policy? Per layer, the distribution of the bit-widths it chose across
//! examples; and how much of its damage one fixed, example-independent allocation with the
//! same exact budget does.
//!
//! The fixed allocation is the policy's choices projected back onto the budget: the exact
//! MCKP over the layers with profits = the frequency with which the policy chose each
//! width at each layer (`max sum_l freq[l][k_l]` s.t. `sum_l options[k_l] == B`). A policy
//! that picks nearly the same allocation for every example loses nothing by the
//! projection; a truly per-example policy does.

use dptq_mckp::{Mode, Problem, Solver};
use dptq_models::Classifier;
use dptq_quant::RangeMode;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::eval::{Bits, EvalCache, budget_check};
use crate::stats::ChoiceCounts;

/// A policy's choices and the damage of its fixed projection, for one network.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PolicyDynamics {
    /// Network name (`D`).
    pub network: String,
    /// Policy name (`pi_D`).
    pub policy: String,
    /// The exact budget.
    pub budget: u32,
    /// Per-layer choice counts over the set.
    pub counts: ChoiceCounts,
    /// The fixed allocation (bits per layer, sums to the budget).
    pub fixed_allocation: Vec<u32>,
    /// Accuracy at full precision (percent).
    pub accuracy_fp: f64,
    /// Accuracy quantized by the policy, per example (percent).
    pub accuracy_dynamic: f64,
    /// Accuracy quantized by the fixed allocation (percent).
    pub accuracy_fixed: f64,
    /// Policy bit vectors on budget / evaluated.
    pub on_budget: (usize, usize),
}

impl PolicyDynamics {
    /// Share (percent) of the policy's accuracy loss that the fixed allocation reproduces,
    /// `(fp - fixed) / (fp - dynamic)`; `None` when the policy loses under one point.
    pub fn damage_share(&self) -> Option<f64> {
        let lost = self.accuracy_fp - self.accuracy_dynamic;
        (lost >= 1.0).then(|| 100.0 * (self.accuracy_fp - self.accuracy_fixed) / lost)
    }
}

/// The exact-budget allocation that agrees most with the choice frequencies of `counts`.
pub fn fixed_allocation(counts: &ChoiceCounts, budget: u32) -> Result<Vec<u32>> {
    let l = counts.num_layers();
    if l == 0 {
        return Err(Error::invalid("choice counts", "no layer"));
    }
    let problem = Problem::uniform(&counts.options, l, budget as u64, Mode::Exact)?;
    let mut solver = Solver::<f64>::new(&problem)?;
    let profits: Vec<f64> = counts.frequencies().into_iter().flatten().collect();
    let best = solver.solve(&profits)?;
    Ok(best.choices.iter().map(|&k| counts.options[k]).collect())
}

/// Measures the dynamics of `policy` (bits per example by the exact-budget MCKP, named
/// `policy_name` in `cache`) for `model` on the cache's set: choice counts, the fixed
/// projection and the three accuracies.
pub fn policy_dynamics(
    model: &dyn Classifier,
    network: &str,
    policy_name: &str,
    policy: &Bits<'_>,
    weight_bits: Option<u32>,
    cache: &mut EvalCache<'_>,
) -> Result<PolicyDynamics> {
    let Bits::Policy {
        options, budget, ..
    } = *policy
    else {
        return Err(Error::invalid(
            "policy dynamics",
            format!("{policy:?} is not a policy"),
        ));
    };
    let accuracy_fp = cache.fp(model, network)?.accuracy();
    let dynamic = cache.get(
        model,
        network,
        policy_name,
        policy,
        weight_bits,
        RangeMode::MinMax,
    )?;
    let accuracy_dynamic = dynamic.accuracy();
    let rows = dynamic.bits.clone().unwrap_or_default();
    let on_budget = budget_check(&rows, budget);
    let flat: Vec<u32> = rows.iter().flatten().copied().collect();
    let counts = ChoiceCounts::from_bits(&flat, model.quant_layers().len(), options)?;
    let allocation = fixed_allocation(&counts, budget)?;
    let name = format!("fixed {allocation:?}");
    let accuracy_fixed = cache
        .get(
            model,
            network,
            &name,
            &Bits::Allocation(&allocation),
            weight_bits,
            RangeMode::MinMax,
        )?
        .accuracy();
    Ok(PolicyDynamics {
        network: network.to_string(),
        policy: policy_name.to_string(),
        budget,
        counts,
        fixed_allocation: allocation,
        accuracy_fp,
        accuracy_dynamic,
        accuracy_fixed,
        on_budget,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Brute force over every allocation: the most frequency-agreeing one on budget.
    fn brute(counts: &ChoiceCounts, budget: u32) -> (f64, Vec<u32>) {
        let f = counts.frequencies();
        let k = counts.options.len();
        let l = counts.num_layers();
        let mut best = (f64::NEG_INFINITY, Vec::new());
        for code in 0..k.pow(l as u32) {
            let mut c = code;
            let choice: Vec<usize> = (0..l)
                .map(|_| {
                    let v = c % k;
                    c /= k;
                    v
                })
                .collect();
            let bits: Vec<u32> = choice.iter().map(|&j| counts.options[j]).collect();
            if bits.iter().sum::<u32>() != budget {
                continue;
            }
            let p: f64 = choice.iter().enumerate().map(|(i, &j)| f[i][j]).sum();
            if p > best.0 {
                best = (p, bits);
            }
        }
        best
    }

    #[test]
    fn a_constant_policy_projects_onto_itself() {
        let options = [3, 4, 5, 6];
        let row = [3, 6, 3, 4];
        let bits: Vec<u32> = row.iter().cycle().take(4 * 10).copied().collect();
        let counts = ChoiceCounts::from_bits(&bits, 4, &options).unwrap();
        assert_eq!(fixed_allocation(&counts, 16).unwrap(), row.to_vec());
    }

    #[test]
    fn the_projection_matches_brute_force_and_meets_the_budget() {
        let options = [3, 4, 5, 6];
        // Mixed choices over 3 layers; the modal allocation (3, 6, 6) = 15 is off budget 12.
        let bits = [3, 6, 6, 3, 6, 5, 4, 6, 6, 3, 3, 6, 3, 5, 6];
        let counts = ChoiceCounts::from_bits(&bits, 3, &options).unwrap();
        for budget in [9, 12, 15, 18] {
            let got = fixed_allocation(&counts, budget).unwrap();
            assert_eq!(got.iter().sum::<u32>(), budget);
            let (best, _) = brute(&counts, budget);
            let f = counts.frequencies();
            let p: f64 = got
                .iter()
                .enumerate()
                .map(|(l, b)| f[l][options.iter().position(|o| o == b).unwrap()])
                .sum();
            assert!((p - best).abs() < 1e-12, "budget {budget}: {p} vs {best}");
        }
        assert!(fixed_allocation(&counts, 8).is_err());
    }

    #[test]
    fn damage_share_compares_fixed_with_dynamic_losses() {
        let counts = ChoiceCounts::from_bits(&[3], 1, &[3]).unwrap();
        let mut d = PolicyDynamics {
            network: "D".into(),
            policy: "pi_D".into(),
            budget: 3,
            counts,
            fixed_allocation: vec![3],
            accuracy_fp: 80.0,
            accuracy_dynamic: 20.0,
            accuracy_fixed: 50.0,
            on_budget: (1, 1),
        };
        assert_eq!(d.damage_share(), Some(50.0));
        d.accuracy_dynamic = 79.5;
        assert_eq!(d.damage_share(), None);
    }
}
