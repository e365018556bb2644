//! The analyses' data turned into figures and tables (Figs. 2-4, the policy dynamics,
//! Tables 2-3, the mitigation experiment).

use dptq_distill::{CrossMatrix, ExperimentResult};

use crate::corrupt::CorruptResult;
use crate::dynamics::PolicyDynamics;
use crate::error::Result;
use crate::hist::NetworkHistograms;
use crate::mitigation::Mitigation;
use crate::plot::{Bars, Figure, HistPanel, LegendEntry, LinePanel, Panel, Series, StackedPanel};
use crate::sweep::{SweepKind, SweepResult};
use crate::table::{Table, delta, pct};

/// The palette index of a network: R blue, D vermillion, W green, others by position.
pub fn network_color(name: &str, fallback: usize) -> usize {
    match name {
        "R" => 0,
        "D" => 1,
        "W" => 2,
        _ => 3 + fallback,
    }
}

/// The x coordinate of a sweep point: `before`/`after` at `l` (layers `< l` / `>= l`
/// quantized, 0..=L), `single` at the layer's 1-based number.
fn sweep_x(kind: SweepKind, at: usize) -> f64 {
    match kind {
        SweepKind::Single => (at + 1) as f64,
        _ => at as f64,
    }
}

/// Fig. 2: one panel per kind (before, after, single); test solid, train dashed.
pub fn sweep_figure(name: &str, title: &str, sweeps: &[SweepResult]) -> Figure {
    let panels = SweepKind::ALL
        .iter()
        .map(|&kind| {
            let mut series = Vec::new();
            for (i, s) in sweeps.iter().enumerate() {
                for c in s.curves.iter().filter(|c| c.kind == kind) {
                    let mut line = Series::new(
                        format!("{} ({}) {}", s.network, s.bits, c.split),
                        c.points
                            .iter()
                            .map(|&(at, a)| (sweep_x(kind, at), a))
                            .collect(),
                        network_color(&s.network, i),
                    );
                    line.dashed = c.split != "test";
                    series.push(line);
                }
            }
            let x_label = match kind {
                SweepKind::Before => "l: layers 1..l quantized",
                SweepKind::After => "l: layers l+1..L quantized",
                SweepKind::Single => "l: layer l alone quantized",
            };
            Panel::Lines(LinePanel {
                title: kind.name().to_string(),
                x_label: x_label.into(),
                y_label: "accuracy (%)".into(),
                series,
                y_range: Some((0.0, 100.0)),
                reference: None,
            })
        })
        .collect();
    let mut fig = Figure::new(name, title, panels, 3);
    for (i, s) in sweeps.iter().enumerate() {
        for split in s
            .curves
            .iter()
            .filter(|c| c.kind == SweepKind::Before)
            .map(|c| c.split.as_str())
        {
            fig.legend.push(LegendEntry {
                name: format!("{} ({}) {split}", s.network, s.bits),
                color: network_color(&s.network, i),
                dashed: split != "test",
                filled: false,
            });
        }
    }
    fig
}

/// Fig. 3: one panel per layer, FP and quantized histograms with the zero bin removed,
/// the sparsity measures printed under each.
pub fn hist_figure(name: &str, title: &str, h: &NetworkHistograms) -> Figure {
    let panels = h
        .layers
        .iter()
        .map(|lh| {
            Panel::Hist(HistPanel {
                title: format!("{} {}", lh.layer + 1, lh.name),
                lo: lh.fp.lo,
                width: lh.fp.bin_width(),
                bars: vec![
                    Bars {
                        name: "FP".into(),
                        heights: lh.fp.without_zero_bin(),
                        color: 0,
                    },
                    Bars {
                        name: format!("Q ({})", h.bits),
                        heights: lh.quantized.without_zero_bin(),
                        color: 1,
                    },
                ],
                note: format!(
                    "zero bin: FP {:.1} % -> Q {:.1} %",
                    100.0 * lh.fp.sparsity(),
                    100.0 * lh.quantized.sparsity()
                ),
            })
        })
        .collect();
    let mut fig = Figure::new(name, title, panels, 3);
    fig.panel_size = (380, 240);
    fig.legend = vec![
        LegendEntry {
            name: "FP".into(),
            color: 0,
            dashed: false,
            filled: true,
        },
        LegendEntry {
            name: format!("Q ({})", h.bits),
            color: 1,
            dashed: false,
            filled: true,
        },
    ];
    fig
}

/// Fig. 4: one panel per corruption, accuracy vs degree per network, error bars = the
/// standard deviation over seeds.
pub fn corrupt_figure(name: &str, title: &str, c: &CorruptResult) -> Figure {
    let mut kinds = Vec::new();
    for curve in &c.curves {
        if !kinds.contains(&curve.kind) {
            kinds.push(curve.kind);
        }
    }
    let panels = kinds
        .iter()
        .map(|&kind| {
            let series = c
                .networks
                .iter()
                .enumerate()
                .filter_map(|(i, net)| {
                    let curve = c.curve(kind, net)?;
                    let mut s = Series::new(
                        net.clone(),
                        curve
                            .points
                            .iter()
                            .map(|p| (p.degree as f64, p.summary.mean))
                            .collect(),
                        network_color(net, i),
                    );
                    s.err = Some(curve.points.iter().map(|p| p.summary.std).collect());
                    Some(s)
                })
                .collect();
            Panel::Lines(LinePanel {
                title: kind.name().to_string(),
                x_label: "degree".into(),
                y_label: "accuracy (%)".into(),
                series,
                y_range: None,
                reference: None,
            })
        })
        .collect();
    let mut fig = Figure::new(name, title, panels, 3);
    fig.legend = c
        .networks
        .iter()
        .enumerate()
        .map(|(i, n)| {
            LegendEntry::line(
                format!("{n} (mean ± std over {} seeds)", c.seeds),
                network_color(n, i),
            )
        })
        .collect();
    fig
}

/// How dynamic each policy is: per layer, the share of examples choosing each width.
pub fn dynamics_figure(name: &str, title: &str, dynamics: &[PolicyDynamics]) -> Figure {
    let panels = dynamics
        .iter()
        .map(|d| {
            let freq = d.counts.frequencies();
            let stacks = d
                .counts
                .options
                .iter()
                .enumerate()
                .map(|(k, &b)| {
                    (
                        format!("{b} bits"),
                        freq.iter().map(|row| 100.0 * row[k]).collect(),
                    )
                })
                .collect();
            Panel::Stacked(StackedPanel {
                title: format!("{} on {}", d.policy, d.network),
                x_label: "layer".into(),
                y_label: "examples (%)".into(),
                categories: (1..=d.counts.num_layers()).map(|l| l.to_string()).collect(),
                stacks,
            })
        })
        .collect();
    let mut fig = Figure::new(name, title, panels, 2);
    if let Some(d) = dynamics.first() {
        fig.legend = d
            .counts
            .options
            .iter()
            .enumerate()
            .map(|(k, b)| LegendEntry {
                name: format!("{b} bits"),
                color: k,
                dashed: false,
                filled: true,
            })
            .collect();
    }
    fig
}

/// Table 1 rows of the experiments (from `results.json`).
pub fn table1(results: &[&ExperimentResult]) -> Result<Table> {
    let mut t = Table::new(
        "table1_pairs",
        "Table 1: full-precision accuracy and change once quantized by the own policy (%)",
        &[
            "experiment",
            "B",
            "W fp",
            "R fp",
            "R change",
            "D fp",
            "D change",
            "on budget",
        ],
    );
    for e in results {
        t.push(vec![
            e.id.clone(),
            e.budget.to_string(),
            pct(e.white_box.fp),
            pct(e.robust.fp),
            delta(e.robust.change),
            pct(e.detrimental.fp),
            delta(e.detrimental.change),
            format!("{}/{}", e.budget_exact, e.budget_checked),
        ])?;
    }
    Ok(t)
}

/// Table 2: transitory points per experiment (from `results.json`).
pub fn table2(results: &[&ExperimentResult]) -> Result<Table> {
    let mut t = Table::new(
        "table2_transitory",
        "Table 2: transitory points, % of test examples R and D both get right at FP and D gets wrong once quantized by pi_D",
        &["experiment", "transitory (%)", "count", "test examples"],
    );
    for e in results {
        t.push(vec![
            e.id.clone(),
            pct(e.transitory_points),
            e.transitory_count.to_string(),
            e.test_examples.to_string(),
        ])?;
    }
    Ok(t)
}

/// Table 3: networks x policies accuracy of one experiment.
pub fn table3(id: &str, budget: u32, cross: &CrossMatrix) -> Result<Table> {
    let mut headers = vec!["network", "FP"];
    headers.extend(cross.policies.iter().map(String::as_str));
    let mut t = Table::new(
        format!("table3_cross_{}", slug(id)),
        format!(
            "Table 3 ({id}): accuracy (%) of each network quantized by each policy, B = {budget}"
        ),
        &headers,
    );
    for (i, net) in cross.networks.iter().enumerate() {
        let mut row = vec![
            net.clone(),
            pct(cross.fp.get(i).copied().unwrap_or(f64::NAN)),
        ];
        row.extend(cross.accuracy.get(i).into_iter().flatten().map(|&a| pct(a)));
        t.push(row)?;
    }
    Ok(t)
}

/// Sweep curves as a long table: one row per (network, kind, split, l).
pub fn sweep_table(name: &str, sweeps: &[SweepResult]) -> Result<Table> {
    let mut t = Table::new(
        name,
        "Layer sweeps (accuracy %)",
        &["network", "bits", "kind", "split", "l", "layer", "accuracy"],
    );
    for s in sweeps {
        for c in &s.curves {
            for &(at, a) in &c.points {
                let layer = match c.kind {
                    SweepKind::Single => s.layers[at].clone(),
                    _ => String::new(),
                };
                t.push(vec![
                    s.network.clone(),
                    s.bits.clone(),
                    c.kind.name().into(),
                    c.split.clone(),
                    at.to_string(),
                    layer,
                    format!("{a:.4}"),
                ])?;
            }
        }
    }
    Ok(t)
}

/// The most vulnerable layers of each sweep (single-layer drop on test, and the layer the
/// "before" sweep loses most at).
pub fn vulnerable_table(name: &str, sweeps: &[SweepResult], top: usize) -> Result<Table> {
    let mut t = Table::new(
        name,
        "Most vulnerable layers: accuracy lost when quantizing the layer alone (test)",
        &[
            "network",
            "rank",
            "layer",
            "name",
            "drop alone (points)",
            "drop when added to before (points)",
        ],
    );
    for s in sweeps {
        let split = if s.curve(SweepKind::Single, "test").is_some() {
            "test"
        } else {
            s.curves.first().map_or("test", |c| c.split.as_str())
        };
        let steps = s.inflection_layers(split);
        for (rank, (l, drop)) in s.vulnerable_layers(split).into_iter().take(top).enumerate() {
            let step = steps.iter().find(|(i, _)| *i == l).map_or(0.0, |x| x.1);
            t.push(vec![
                s.network.clone(),
                (rank + 1).to_string(),
                (l + 1).to_string(),
                s.layers[l].clone(),
                format!("{drop:.2}"),
                format!("{step:.2}"),
            ])?;
        }
    }
    Ok(t)
}

/// Histogram summary: sparsity measures per layer and network.
pub fn hist_table(name: &str, hists: &[NetworkHistograms]) -> Result<Table> {
    let mut t = Table::new(
        name,
        "Sparsity measure per layer: % of values in the zero bin, FP vs quantized",
        &[
            "network",
            "layer",
            "name",
            "FP zero bin (%)",
            "Q zero bin (%)",
            "change (points)",
            "FP outside range (%)",
            "Q exact zeros (%)",
        ],
    );
    for h in hists {
        for lh in &h.layers {
            let total = lh.fp.total();
            let over = if total > 0 {
                100.0 * (lh.fp.overflow + lh.fp.underflow) as f64 / total as f64
            } else {
                0.0
            };
            t.push(vec![
                h.network.clone(),
                (lh.layer + 1).to_string(),
                lh.name.clone(),
                format!("{:.2}", 100.0 * lh.fp.sparsity()),
                format!("{:.2}", 100.0 * lh.quantized.sparsity()),
                delta(lh.sparsity_change()),
                format!("{over:.2}"),
                format!("{:.2}", 100.0 * lh.quantized.exact_zero_fraction()),
            ])?;
        }
    }
    Ok(t)
}

/// Histogram bins as a long table (the data behind Fig. 3).
pub fn hist_bins_table(name: &str, hists: &[NetworkHistograms]) -> Result<Table> {
    let mut t = Table::new(
        name,
        "Activation histogram counts",
        &[
            "network", "layer", "name", "bin_lo", "bin_hi", "fp_count", "q_count",
        ],
    );
    for h in hists {
        for lh in &h.layers {
            for i in 0..lh.fp.counts.len() {
                t.push(vec![
                    h.network.clone(),
                    (lh.layer + 1).to_string(),
                    lh.name.clone(),
                    format!("{:.6}", lh.fp.edge(i)),
                    format!("{:.6}", lh.fp.edge(i + 1)),
                    lh.fp.counts[i].to_string(),
                    lh.quantized.counts[i].to_string(),
                ])?;
            }
        }
    }
    Ok(t)
}

/// Fig. 4's data as a long table.
pub fn corrupt_table(name: &str, c: &CorruptResult) -> Result<Table> {
    let mut t = Table::new(
        name,
        "Accuracy under corruptions (%)",
        &[
            "corruption",
            "degree",
            "network",
            "mean",
            "std",
            "seeds",
            "per seed",
        ],
    );
    for curve in &c.curves {
        for p in &curve.points {
            t.push(vec![
                curve.kind.name().into(),
                format!("{}", p.degree),
                curve.network.clone(),
                format!("{:.2}", p.summary.mean),
                format!("{:.2}", p.summary.std),
                p.summary.n.to_string(),
                p.accuracies
                    .iter()
                    .map(|a| format!("{a:.2}"))
                    .collect::<Vec<_>>()
                    .join(" "),
            ])?;
        }
    }
    Ok(t)
}

/// The dynamics summary: per policy, how concentrated its choices are and what the fixed
/// projection does.
pub fn dynamics_table(name: &str, dynamics: &[PolicyDynamics]) -> Result<Table> {
    let mut t = Table::new(
        name,
        "How dynamic each policy is, and the damage of its fixed projection (same exact budget)",
        &[
            "network",
            "policy",
            "FP (%)",
            "dynamic (%)",
            "fixed (%)",
            "damage share (%)",
            "modal width share (%)",
            "top allocation (%)",
            "fixed allocation",
        ],
    );
    for d in dynamics {
        let modal = d.counts.modal_fractions();
        let mean_modal = 100.0 * modal.iter().sum::<f64>() / modal.len().max(1) as f64;
        t.push(vec![
            d.network.clone(),
            d.policy.clone(),
            pct(d.accuracy_fp),
            pct(d.accuracy_dynamic),
            pct(d.accuracy_fixed),
            d.damage_share().map_or("-".into(), |s| format!("{s:.1}")),
            format!("{mean_modal:.1}"),
            format!("{:.1}", 100.0 * d.counts.top_allocation_fraction()),
            d.fixed_allocation
                .iter()
                .map(u32::to_string)
                .collect::<Vec<_>>()
                .join(" "),
        ])?;
    }
    Ok(t)
}

/// Per layer and policy: the choice distribution.
pub fn choices_table(name: &str, dynamics: &[PolicyDynamics]) -> Result<Table> {
    let options = dynamics
        .first()
        .map(|d| d.counts.options.clone())
        .unwrap_or_default();
    let mut headers: Vec<String> = vec![
        "policy".into(),
        "network".into(),
        "layer".into(),
        "mean bits".into(),
        "entropy (bits)".into(),
    ];
    headers.extend(options.iter().map(|b| format!("{b} bits (%)")));
    let headers: Vec<&str> = headers.iter().map(String::as_str).collect();
    let mut t = Table::new(name, "Bit-width chosen per layer (% of examples)", &headers);
    for d in dynamics {
        let freq = d.counts.frequencies();
        let mean = d.counts.mean_bits();
        let ent = d.counts.entropies();
        for (l, row) in freq.iter().enumerate() {
            let mut cells = vec![
                d.policy.clone(),
                d.network.clone(),
                (l + 1).to_string(),
                format!("{:.2}", mean[l]),
                format!("{:.3}", ent[l]),
            ];
            cells.extend(row.iter().map(|f| format!("{:.1}", 100.0 * f)));
            t.push(cells)?;
        }
    }
    Ok(t)
}

/// The mitigation rows.
pub fn mitigation_table(name: &str, m: &[Mitigation]) -> Result<Table> {
    let mut t = Table::new(
        name,
        "Mitigation: percentile instead of min/max activation scales, same bits (%)",
        &[
            "network",
            "policy",
            "FP",
            "scale",
            "quantized",
            "recovered (% of the min/max loss)",
        ],
    );
    for mit in m {
        for r in &mit.rows {
            t.push(vec![
                mit.network.clone(),
                mit.policy.clone(),
                pct(mit.accuracy_fp),
                r.scale.clone(),
                pct(r.accuracy),
                r.recovered.map_or("-".into(), |x| format!("{x:.1}")),
            ])?;
        }
    }
    Ok(t)
}

/// A file-name-safe form of an experiment id (`resnet_tiny/I-A` -> `resnet_tiny_I-A`).
pub fn slug(id: &str) -> String {
    id.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect()
}
