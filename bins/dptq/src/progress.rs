//! Progress bars (stderr) driven by the library's progress events: one bar per training
//! stage and per evaluation, with throughput and ETA.

use std::cell::RefCell;

use dptq_distill::{Progress, ProgressSink};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// Draws a bar for the stage or evaluation in progress.
pub struct Bars {
    current: RefCell<Option<ProgressBar>>,
    enabled: bool,
}

impl Bars {
    /// Bars on stderr; `enabled = false` draws nothing (logs still go to stderr).
    pub fn new(enabled: bool) -> Self {
        Self {
            current: RefCell::new(None),
            enabled,
        }
    }

    fn start(&self, name: &str, total: u64, done: u64, unit: &str) {
        if !self.enabled {
            return;
        }
        let style = ProgressStyle::with_template(&format!(
            "{{msg:28}} [{{bar:30}}] {{pos}}/{{len}} {unit} {{per_sec}} ETA {{eta}}"
        ))
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> ");
        let bar = ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr())
            .with_style(style);
        bar.set_message(name.to_string());
        bar.set_position(done);
        if let Some(old) = self.current.replace(Some(bar)) {
            old.finish_and_clear();
        }
    }

    fn finish(&self, summary: String) {
        if let Some(bar) = self.current.borrow_mut().take() {
            bar.finish_and_clear();
        }
        if self.enabled {
            eprintln!("{summary}");
        }
    }
}

impl ProgressSink for Bars {
    fn event(&self, event: &Progress) {
        match event {
            Progress::StageStarted { stage, total, done } => {
                self.start(stage, *total, *done, "steps")
            }
            Progress::Step { step, loss, .. } => {
                if let Some(bar) = self.current.borrow().as_ref() {
                    bar.set_position(*step);
                    if step % 5 == 0 {
                        bar.set_message(format!(
                            "{} loss {loss:.3}",
                            bar.message().split(' ').next().unwrap_or("")
                        ));
                    }
                }
            }
            Progress::StageFinished {
                stage,
                seconds,
                skipped,
            } => self.finish(if *skipped {
                format!("{stage}: complete in the run directory, restored")
            } else {
                format!("{stage}: trained in {seconds:.1} s")
            }),
            Progress::EvalStarted { what, total } => {
                self.start(&format!("eval {what}"), *total, 0, "batches")
            }
            Progress::EvalStep { done, .. } => {
                if let Some(bar) = self.current.borrow().as_ref() {
                    bar.set_position(*done);
                }
            }
            Progress::EvalFinished { what, seconds } => {
                self.finish(format!("eval {what}: {seconds:.1} s"))
            }
        }
    }
}
