//! Learning-rate schedule: linear warm-up, then a half-period cosine decay.

/// `lr(t)` for optimizer step `t = 0 .. total_steps`:
///
/// - warm-up, `t < W`: `lr = base · (t + 1) / W`;
/// - then, with `u = (t - W) / (total - W)`: `lr = final + (base - final) · (1 + cos(π u)) / 2`.
///
/// The cosine spans half a period: from `base` at the end of the warm-up down to
/// `final` at `total_steps` (the first step after the last one).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CosineSchedule {
    /// Peak learning rate, reached at the end of the warm-up.
    pub base_lr: f64,
    /// Learning rate the cosine ends at (default 0).
    pub final_lr: f64,
    /// Number of optimizer steps of the whole stage.
    pub total_steps: u64,
    /// Number of warm-up steps (default 0: start at `base_lr`).
    pub warmup_steps: u64,
}

impl CosineSchedule {
    /// Half-period cosine from `base_lr` to 0 over `total_steps`, no warm-up.
    pub fn new(base_lr: f64, total_steps: u64) -> Self {
        Self {
            base_lr,
            final_lr: 0.0,
            total_steps,
            warmup_steps: 0,
        }
    }

    /// The same schedule with `warmup_steps` of linear warm-up.
    pub fn with_warmup(self, warmup_steps: u64) -> Self {
        Self {
            warmup_steps,
            ..self
        }
    }

    /// The learning rate of step `step` (0-based).
    pub fn lr(&self, step: u64) -> f64 {
        let warmup = self.warmup_steps.min(self.total_steps);
        if step < warmup {
            return self.base_lr * (step + 1) as f64 / warmup as f64;
        }
        let span = self.total_steps.saturating_sub(warmup).max(1) as f64;
        let u = ((step - warmup) as f64 / span).min(1.0);
        self.final_lr
            + (self.base_lr - self.final_lr) * 0.5 * (1.0 + (std::f64::consts::PI * u).cos())
    }
}
