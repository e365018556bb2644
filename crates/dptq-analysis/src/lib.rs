//! dptq-analysis: what a run's networks and policies do, shown rather than told.
//!
//! Reads a `dptq reproduce` run directory and writes CSV/JSON, PNG/SVG plots, a section of
//! the run's `report.md` and one self-contained HTML page. Work in progress.

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
    BatchBits, Bits, EvalBatch, EvalCache, EvalSet, Outcome, accuracy_pct, argmax_rows,
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
