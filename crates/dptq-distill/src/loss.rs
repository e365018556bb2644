//! The losses of the paper (SPEC §2-3): knowledge distillation with a temperature, the
//! robust and detrimental hinge losses on the quantized student, and label-smoothing
//! cross-entropy for the teacher fine-tune.
//!
//! Every loss takes logits `[N, C]` and returns a scalar tensor (the batch mean) that
//! carries gradients to the student's logits. Softmaxes are composed from
//! differentiable candle ops (`candle_nn::ops::softmax_last_dim` has no backward).

use candle_core::{D, DType, Tensor};

use crate::error::{Error, Result};

/// Which hinge loss trains a network–policy pair (SPEC §3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PairKind {
    /// `L_R = mean(max(0, m - (p[y1] - p[y2])))`: keep the teacher's class on top.
    Robust,
    /// `L_D = mean(max(0, m - (p[yq] - p[y1])))`: any other class above the teacher's.
    Detrimental,
}

impl PairKind {
    /// `"robust"` or `"detrimental"`.
    pub fn name(self) -> &'static str {
        match self {
            PairKind::Robust => "robust",
            PairKind::Detrimental => "detrimental",
        }
    }
}

fn check_logits(op: &'static str, a: &Tensor, b: &Tensor) -> Result<(usize, usize)> {
    if a.rank() != 2 || a.dims() != b.dims() {
        return Err(Error::Shape {
            op,
            lhs: a.dims().to_vec(),
            rhs: b.dims().to_vec(),
        });
    }
    let (n, c) = a.dims2()?;
    if n == 0 || c < 2 {
        return Err(Error::invalid(
            "logits",
            format!("{op} needs at least one example and two classes, got [{n}, {c}]"),
        ));
    }
    Ok((n, c))
}

/// `log softmax(xs)` over the last dimension, differentiable.
pub fn log_softmax(xs: &Tensor) -> Result<Tensor> {
    let max = xs.max_keepdim(D::Minus1)?.detach();
    let diff = xs.broadcast_sub(&max)?;
    let log_sum = diff.exp()?.sum_keepdim(D::Minus1)?.log()?;
    Ok(diff.broadcast_sub(&log_sum)?)
}

/// `softmax(xs)` over the last dimension, differentiable.
pub fn softmax(xs: &Tensor) -> Result<Tensor> {
    let max = xs.max_keepdim(D::Minus1)?.detach();
    let num = xs.broadcast_sub(&max)?.exp()?;
    let den = num.sum_keepdim(D::Minus1)?;
    Ok(num.broadcast_div(&den)?)
}

/// Knowledge-distillation loss (SPEC §2, paper Eq. 3):
///
/// `L_KD = T² · (1/N) Σ_n KL( softmax(t_n / T) ‖ softmax(s_n / T) )`
///
/// - `teacher`: `[N, C]` logits, treated as constants (detached);
/// - `student`: `[N, C]` logits, the gradient flows here;
/// - `temperature`: `T > 0` (the paper's default is 1).
///
/// The `T²` factor keeps the gradient's scale independent of `T` (Hinton et al.).
pub fn kd_loss(teacher: &Tensor, student: &Tensor, temperature: f64) -> Result<Tensor> {
    check_logits("kd_loss", teacher, student)?;
    if !(temperature.is_finite() && temperature > 0.0) {
        return Err(Error::invalid(
            "temperature",
            format!("must be positive and finite, got {temperature}"),
        ));
    }
    let log_pt = log_softmax(&(teacher.detach() / temperature)?)?;
    let log_ps = log_softmax(&(student / temperature)?)?;
    let pt = log_pt.exp()?;
    let kl = (pt * (log_pt - log_ps)?)?.sum(D::Minus1)?.mean(0)?;
    Ok((kl * (temperature * temperature))?)
}

/// Index of the largest value of `row`, skipping `skip`; the first index wins a tie.
fn argmax_except(row: &[f32], skip: Option<usize>) -> usize {
    let mut best = usize::MAX;
    for (j, &v) in row.iter().enumerate() {
        if Some(j) == skip {
            continue;
        }
        if best == usize::MAX || v > row[best] {
            best = j;
        }
    }
    best
}

/// The teacher's top class and runner-up per example: `(y1, y2)`, each `[N]`.
pub fn top2(logits: &Tensor) -> Result<(Vec<u32>, Vec<u32>)> {
    let rows = logits.to_dtype(DType::F32)?.to_vec2::<f32>()?;
    let mut y1 = Vec::with_capacity(rows.len());
    let mut y2 = Vec::with_capacity(rows.len());
    for row in &rows {
        let a = argmax_except(row, None);
        y1.push(a as u32);
        y2.push(argmax_except(row, Some(a)) as u32);
    }
    Ok((y1, y2))
}

/// `p[n, idx[n]]` for every example, `[N]`, differentiable in `p`.
fn pick(p: &Tensor, idx: &[u32]) -> Result<Tensor> {
    let idx = Tensor::from_slice(idx, (idx.len(), 1), p.device())?;
    Ok(p.gather(&idx, 1)?.squeeze(1)?)
}

/// Robust or detrimental hinge loss on the quantized student (SPEC §3, Eq. 7-8).
///
/// With `p = softmax(student_q)`, `y1`/`y2` the teacher's argmax and second argmax, and
/// `yq` the argmax of `p` over every class but `y1`:
///
/// - robust: `L_R = (1/N) Σ_n max(0, m - (p[y1] - p[y2]))`
/// - detrimental: `L_D = (1/N) Σ_n max(0, m - (p[yq] - p[y1]))`
///
/// - `teacher`: `[N, C]` logits (constants);
/// - `student_q`: `[N, C]` logits of the quantized student (gradient flows here);
/// - `margin`: `m`, in probability units (default 0.1).
///
/// The class choices (`y1`, `y2`, `yq`) are indices and carry no gradient; the
/// gradient reaches the student through the two picked probabilities.
pub fn hinge_loss(
    kind: PairKind,
    teacher: &Tensor,
    student_q: &Tensor,
    margin: f64,
) -> Result<Tensor> {
    check_logits("hinge_loss", teacher, student_q)?;
    if !margin.is_finite() {
        return Err(Error::invalid(
            "margin",
            format!("must be finite, got {margin}"),
        ));
    }
    let (y1, y2) = top2(teacher)?;
    let p = softmax(student_q)?;
    let p_y1 = pick(&p, &y1)?;
    let diff = match kind {
        PairKind::Robust => (p_y1 - pick(&p, &y2)?)?,
        PairKind::Detrimental => {
            let rows = student_q.to_dtype(DType::F32)?.to_vec2::<f32>()?;
            let yq: Vec<u32> = rows
                .iter()
                .zip(&y1)
                .map(|(row, &a)| argmax_except(row, Some(a as usize)) as u32)
                .collect();
            (pick(&p, &yq)? - p_y1)?
        }
    };
    Ok(diff.neg()?.affine(1.0, margin)?.relu()?.mean(0)?)
}

/// Robust hinge loss `L_R` (see [`hinge_loss`]).
pub fn robust_hinge(teacher: &Tensor, student_q: &Tensor, margin: f64) -> Result<Tensor> {
    hinge_loss(PairKind::Robust, teacher, student_q, margin)
}

/// Detrimental hinge loss `L_D` (see [`hinge_loss`]).
pub fn detrimental_hinge(teacher: &Tensor, student_q: &Tensor, margin: f64) -> Result<Tensor> {
    hinge_loss(PairKind::Detrimental, teacher, student_q, margin)
}

/// Cross-entropy with label smoothing `ε` (PyTorch's `CrossEntropyLoss(label_smoothing=ε)`):
///
/// `L = (1/N) Σ_n [ (1 - ε) · (-log p[n, y_n]) + ε · (1/C) Σ_c (-log p[n, c]) ]`
///
/// - `logits`: `[N, C]`;
/// - `labels`: `[N]` class indices (u32), each `< C`;
/// - `smoothing`: `ε ∈ [0, 1)`.
pub fn label_smoothing_ce(logits: &Tensor, labels: &Tensor, smoothing: f64) -> Result<Tensor> {
    if logits.rank() != 2 || labels.rank() != 1 || labels.dim(0)? != logits.dim(0)? {
        return Err(Error::Shape {
            op: "label_smoothing_ce",
            lhs: logits.dims().to_vec(),
            rhs: labels.dims().to_vec(),
        });
    }
    if !(0.0..1.0).contains(&smoothing) {
        return Err(Error::invalid(
            "label smoothing",
            format!("must be in [0, 1), got {smoothing}"),
        ));
    }
    let c = logits.dim(1)?;
    let ids = labels.to_dtype(DType::U32)?;
    if let Some(&bad) = ids.to_vec1::<u32>()?.iter().find(|&&y| y as usize >= c) {
        return Err(Error::invalid(
            "label",
            format!("class {bad} out of range for {c} classes"),
        ));
    }
    let log_p = log_softmax(logits)?;
    let nll = log_p.gather(&ids.unsqueeze(1)?, 1)?.squeeze(1)?.neg()?;
    let smooth = log_p.mean(D::Minus1)?.neg()?;
    let per_example = ((nll * (1.0 - smoothing))? + (smooth * smoothing)?)?;
    Ok(per_example.mean(0)?)
}

/// Cross-entropy against soft targets (mixup labels): `L = -(1/N) Σ_n Σ_c q[n,c] log p[n,c]`.
///
/// - `logits`, `targets`: `[N, C]`; each row of `targets` sums to 1.
pub fn soft_target_ce(logits: &Tensor, targets: &Tensor) -> Result<Tensor> {
    check_logits("soft_target_ce", logits, targets)?;
    let log_p = log_softmax(logits)?;
    Ok((targets.detach() * log_p)?.sum(D::Minus1)?.neg()?.mean(0)?)
}
