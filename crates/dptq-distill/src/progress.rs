//! Progress events: the library reports where a run stands, the binary draws bars.

/// One thing that happened in a run.
#[derive(Debug, Clone, PartialEq)]
pub enum Progress {
    /// A training stage starts, or resumes with `done` of `total` steps behind it.
    StageStarted {
        stage: String,
        total: u64,
        done: u64,
    },
    /// One optimizer step of `stage` finished (`step` counts from 1).
    Step {
        stage: String,
        step: u64,
        total: u64,
        loss: f64,
    },
    /// A stage ended (`skipped`: it was already complete in the run directory).
    StageFinished {
        stage: String,
        seconds: f64,
        skipped: bool,
    },
    /// An evaluation over `total` batches starts.
    EvalStarted { what: String, total: u64 },
    /// One evaluation batch finished.
    EvalStep { what: String, done: u64, total: u64 },
    /// An evaluation ended.
    EvalFinished { what: String, seconds: f64 },
}

/// Receives [`Progress`] events (the `dptq` binary turns them into progress bars).
pub trait ProgressSink {
    /// Called for every event, in order, on the thread that runs the pipeline.
    fn event(&self, event: &Progress);
}

impl<F: Fn(&Progress)> ProgressSink for F {
    fn event(&self, event: &Progress) {
        self(event)
    }
}

/// A sink that ignores every event.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoProgress;

impl ProgressSink for NoProgress {
    fn event(&self, _event: &Progress) {}
}
