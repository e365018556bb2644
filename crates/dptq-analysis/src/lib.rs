//! dptq-analysis: what a run's networks and policies do, shown rather than told, and the
//! worst-case audit of a model someone already deploys.
//!
//! - [`analyze_run`]: the paper's analyses of a `dptq reproduce` run directory — layer
//!   sweeps (Fig. 2, [`run_sweeps`] over the models' layer mask), activation histograms
//!   with the sparsity measure (Fig. 3, [`activation_histograms`]), accuracy under
//!   corruptions over seeds (Fig. 4, [`corruption_robustness`]), Tables 1-3 and the list
//!   of transitory examples, how dynamic each policy is ([`policy_dynamics`], its fixed
//!   projection by the MCKP), and percentile scales as a mitigation
//!   ([`percentile_mitigation`]); written as PNG/SVG ([`Figure`]), CSV ([`Table`]), JSON,
//!   a section of the run's `report.md` and one self-contained HTML page ([`Report`]);
//! - [`run_audit`]: freeze a model (local safetensors or a timm hub id), train only a
//!   detrimental bit policy (and a robust one) at an exact budget on the user's data, and
//!   report the worst-case drop, the transitory points, the vulnerable layers, the budget
//!   check and a verdict ([`write_audit`]).
//!
//! Quantization happens in one place, dptq-quant, reached through
//! `Classifier::forward` and a `QuantPlan` ([`Bits`] decides the plan); evaluation uses
//! frozen (detached) weights, batches prepared once ([`EvalSet`]) and passes shared
//! between analyses ([`EvalCache`]).

mod analyze;
mod artefacts;
mod audit;
mod corrupt;
mod dynamics;
mod error;
mod eval;
mod figures;
mod hist;
mod mitigation;
mod plot;
mod report;
mod stats;
mod sweep;
mod table;

pub use analyze::{
    AnalysisOptions, AnalysisPart, AnalysisSummary, ExperimentAnalysis, SweepConfig, Transitory,
    analyze_run,
};
pub use artefacts::{ExperimentModels, RunArtefacts};
pub use audit::{
    AuditConfig, AuditFiles, AuditResult, ModelSource, PolicyStep, ResolvedModel, Severity,
    audit_budget, audit_report, load_model, run_audit, write_audit,
};
pub use corrupt::{
    CorruptConfig, CorruptCurve, CorruptPoint, CorruptResult, corruption_robustness,
};
pub use dynamics::{PolicyDynamics, fixed_allocation, policy_dynamics};
pub use error::{Error, Result};
pub use eval::{
    BatchBits, Bits, EvalBatch, EvalCache, EvalSet, Outcome, PassTiming, accuracy_pct, argmax_rows,
    budget_check, evaluate,
};
pub use figures::{network_color, slug};
pub use hist::{HistConfig, LayerHistogram, NetworkHistograms, activation_histograms};
pub use mitigation::{DEFAULT_PERCENTILES, Mitigation, MitigationRow, percentile_mitigation};
pub use plot::{
    Bars, Figure, HistPanel, LinePanel, PALETTE, Panel, SavedFigure, Series, StackedPanel,
};
pub use report::{
    BEGIN_MARKER, END_MARKER, Report, ReportFigure, Section, splice_into_file, splice_section,
};
pub use stats::{ChoiceCounts, Histogram, Summary};
pub use sweep::{SweepCurve, SweepKind, SweepResult, run_sweeps, sweep_mask};
pub use table::{Table, delta, escape_html, pct};
