//! Mitigation (paper Sect. 4.2): the same bits, another scale. A detrimental policy
//! exploits layers whose activations are long-tailed — a few outliers stretch the
//! min/max range and the bulk of small values collapses to zero. Percentile scales clip
//! the outliers instead (`RangeMode::Percentile(p)`: the range `[P_{100-p}, P_p]` of each
//! example). This re-evaluates a network under its own policy's bits with percentile
//! scales and reports how much of the min/max loss they recover.

use dptq_models::Classifier;
use dptq_quant::RangeMode;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::eval::{Bits, EvalCache};

/// The default percentiles tried.
pub const DEFAULT_PERCENTILES: [f64; 2] = [99.9, 99.0];

/// One scale of the mitigation experiment.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct MitigationRow {
    /// Network name.
    pub network: String,
    /// `min-max` or `p99.9`.
    pub scale: String,
    /// The percentile (`None` for min/max).
    pub percentile: Option<f64>,
    /// Accuracy quantized by the policy with this scale (percent).
    pub accuracy: f64,
    /// Share (percent) of the min/max loss recovered:
    /// `(acc - acc_minmax) / (acc_fp - acc_minmax)`; `None` when min/max loses < 1 point.
    pub recovered: Option<f64>,
}

/// The mitigation experiment of one network.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Mitigation {
    /// Network name.
    pub network: String,
    /// Policy name.
    pub policy: String,
    /// Full-precision accuracy (percent).
    pub accuracy_fp: f64,
    /// Min/max first, then each percentile.
    pub rows: Vec<MitigationRow>,
}

/// Evaluates `model` at full precision, then quantized by `policy` (named `policy_name`
/// in `cache`) with min/max scales and with each of `percentiles` (in (50, 100]).
pub fn percentile_mitigation(
    model: &dyn Classifier,
    network: &str,
    policy_name: &str,
    policy: &Bits<'_>,
    weight_bits: Option<u32>,
    cache: &mut EvalCache<'_>,
    percentiles: &[f64],
) -> Result<Mitigation> {
    if let Some(bad) = percentiles.iter().find(|p| !(**p > 50.0 && **p <= 100.0)) {
        return Err(Error::invalid(
            "percentile",
            format!("{bad} (activation percentiles must lie in (50, 100])"),
        ));
    }
    let fp = cache.fp(model, network)?.accuracy();
    let minmax = cache
        .get(
            model,
            network,
            policy_name,
            policy,
            weight_bits,
            RangeMode::MinMax,
        )?
        .accuracy();
    let recovered = |acc: f64| {
        let lost = fp - minmax;
        (lost >= 1.0).then(|| 100.0 * (acc - minmax) / lost)
    };
    let mut rows = vec![MitigationRow {
        network: network.to_string(),
        scale: "min-max".into(),
        percentile: None,
        accuracy: minmax,
        recovered: recovered(minmax),
    }];
    for &p in percentiles {
        let acc = cache
            .get(
                model,
                network,
                policy_name,
                policy,
                weight_bits,
                RangeMode::Percentile(p),
            )?
            .accuracy();
        rows.push(MitigationRow {
            network: network.to_string(),
            scale: format!("p{p}"),
            percentile: Some(p),
            accuracy: acc,
            recovered: recovered(acc),
        });
    }
    Ok(Mitigation {
        network: network.to_string(),
        policy: policy_name.to_string(),
        accuracy_fp: fp,
        rows,
    })
}
