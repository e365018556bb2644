//! Losses against PyTorch (`golden/make_golden.py` wrote `golden/losses.json` with
//! `torch.manual_seed(19551105)`, float64) and against closed forms.

use candle_core::{DType, Device, Tensor, Var};
use dptq_distill::{PairKind, hinge_loss, kd_loss, label_smoothing_ce, soft_target_ce};
use serde_json::Value;

fn golden() -> Value {
    serde_json::from_str(include_str!("golden/losses.json")).unwrap()
}

fn matrix(v: &Value) -> Tensor {
    let rows: Vec<Vec<f64>> = serde_json::from_value(v.clone()).unwrap();
    let (n, c) = (rows.len(), rows[0].len());
    Tensor::from_vec(rows.concat(), (n, c), &Device::Cpu).unwrap()
}

fn assert_close(actual: &Tensor, expected: &Tensor, tol: f64) {
    let diff = (actual - expected)
        .unwrap()
        .abs()
        .unwrap()
        .flatten_all()
        .unwrap()
        .max(0)
        .unwrap()
        .to_scalar::<f64>()
        .unwrap();
    assert!(diff <= tol, "max abs difference {diff} > {tol}");
}

/// Loss value and gradient w.r.t. the student logits.
fn loss_and_grad(
    f: impl Fn(&Tensor) -> dptq_distill::Result<Tensor>,
    student: &Tensor,
) -> (f64, Tensor) {
    let s = Var::from_tensor(student).unwrap();
    let loss = f(s.as_tensor()).unwrap();
    let grads = loss.backward().unwrap();
    (
        loss.to_scalar::<f64>().unwrap(),
        grads
            .get(s.as_tensor())
            .expect("student gets a gradient")
            .clone(),
    )
}

fn check(name: &str, f: impl Fn(&Tensor) -> dptq_distill::Result<Tensor>) {
    let g = golden();
    let (loss, grad) = loss_and_grad(f, &matrix(&g["student"]));
    let want = g[name]["loss"].as_f64().unwrap();
    assert!(
        (loss - want).abs() < 1e-10,
        "{name}: loss {loss} vs PyTorch {want}"
    );
    assert_close(&grad, &matrix(&g[name]["grad"]), 1e-10);
}

#[test]
fn kd_loss_matches_pytorch_kl_div_at_two_temperatures() {
    let t = matrix(&golden()["teacher"]);
    check("kd_T1.0", |s| kd_loss(&t, s, 1.0));
    check("kd_T2.5", |s| kd_loss(&t, s, 2.5));
}

#[test]
fn kd_loss_is_zero_with_zero_gradient_when_student_equals_teacher() {
    let t = matrix(&golden()["teacher"]);
    let (loss, grad) = loss_and_grad(|s| kd_loss(&t, s, 2.0), &t);
    assert!(loss.abs() < 1e-12, "loss {loss}");
    assert_close(&grad, &t.zeros_like().unwrap(), 1e-12);
}

#[test]
fn kd_gradient_is_temperature_times_probability_difference_over_batch() {
    // Closed form: dL/ds = T (softmax(s/T) - softmax(t/T)) / N.
    let g = golden();
    let (t, s) = (matrix(&g["teacher"]), matrix(&g["student"]));
    let temp = 3.0;
    let (_, grad) = loss_and_grad(|s| kd_loss(&t, s, temp), &s);
    let ps = candle_nn::ops::softmax_last_dim(&(&s / temp).unwrap()).unwrap();
    let pt = candle_nn::ops::softmax_last_dim(&(&t / temp).unwrap()).unwrap();
    let want = ((ps - pt).unwrap() * (temp / 4.0)).unwrap();
    assert_close(&grad, &want, 1e-12);
}

#[test]
fn teacher_logits_receive_no_gradient_from_kd() {
    let g = golden();
    let t = Var::from_tensor(&matrix(&g["teacher"])).unwrap();
    let s = Var::from_tensor(&matrix(&g["student"])).unwrap();
    let grads = kd_loss(t.as_tensor(), s.as_tensor(), 1.0)
        .unwrap()
        .backward()
        .unwrap();
    assert!(grads.get(t.as_tensor()).is_none());
    assert!(grads.get(s.as_tensor()).is_some());
}

#[test]
fn robust_and_detrimental_hinges_match_pytorch() {
    let t = matrix(&golden()["teacher"]);
    for kind in [PairKind::Robust, PairKind::Detrimental] {
        for m in [0.1, 2.0] {
            check(&format!("{}_m{m:?}", kind.name()), |s| {
                hinge_loss(kind, &t, s, m)
            });
        }
    }
}

#[test]
fn robust_hinge_vanishes_once_teacher_class_leads_by_the_margin() {
    // Teacher: class 2 first, class 0 second. Student puts almost all mass on class 2.
    let t = Tensor::new(&[[1.0f64, 0.0, 3.0, -1.0]], &Device::Cpu).unwrap();
    let s = Tensor::new(&[[0.0f64, 0.0, 8.0, 0.0]], &Device::Cpu).unwrap();
    let (loss, grad) = loss_and_grad(|s| hinge_loss(PairKind::Robust, &t, s, 0.1), &s);
    assert_eq!(loss, 0.0);
    assert_close(&grad, &s.zeros_like().unwrap(), 0.0);
    // The same student is maximally wrong for the detrimental loss: p[yq] - p[y1] ~ -1.
    let (loss, _) = loss_and_grad(|s| hinge_loss(PairKind::Detrimental, &t, s, 0.1), &s);
    assert!(loss > 1.0 && loss < 1.1, "detrimental loss {loss}");
}

#[test]
fn detrimental_hinge_vanishes_once_another_class_leads_by_the_margin() {
    let t = Tensor::new(&[[1.0f64, 0.0, 3.0, -1.0]], &Device::Cpu).unwrap();
    let s = Tensor::new(&[[0.0f64, 0.0, 0.0, 8.0]], &Device::Cpu).unwrap();
    let (loss, grad) = loss_and_grad(|s| hinge_loss(PairKind::Detrimental, &t, s, 0.1), &s);
    assert_eq!(loss, 0.0);
    assert_close(&grad, &s.zeros_like().unwrap(), 0.0);
}

#[test]
fn label_smoothing_ce_matches_pytorch_cross_entropy() {
    let labels = Tensor::new(&[0u32, 3, 4, 1], &Device::Cpu).unwrap();
    check("ce_ls0.0", |s| label_smoothing_ce(s, &labels, 0.0));
    check("ce_ls0.1", |s| label_smoothing_ce(s, &labels, 0.1));
}

#[test]
fn soft_target_ce_with_one_hot_targets_equals_plain_cross_entropy() {
    let g = golden();
    let s = matrix(&g["student"]);
    let labels = Tensor::new(&[0u32, 3, 4, 1], &Device::Cpu).unwrap();
    let one_hot = Tensor::from_vec(
        (0..20)
            .map(|i| {
                if [0, 3, 4, 1][i / 5] == i % 5 {
                    1.0
                } else {
                    0.0
                }
            })
            .collect::<Vec<f64>>(),
        (4, 5),
        &Device::Cpu,
    )
    .unwrap();
    let a = soft_target_ce(&s, &one_hot)
        .unwrap()
        .to_scalar::<f64>()
        .unwrap();
    let b = label_smoothing_ce(&s, &labels, 0.0)
        .unwrap()
        .to_scalar::<f64>()
        .unwrap();
    assert!((a - b).abs() < 1e-12, "{a} vs {b}");
}

#[test]
fn losses_reject_bad_inputs_with_errors() {
    let t = Tensor::zeros((2, 3), DType::F32, &Device::Cpu).unwrap();
    let wrong = Tensor::zeros((2, 4), DType::F32, &Device::Cpu).unwrap();
    assert!(kd_loss(&t, &wrong, 1.0).is_err());
    assert!(kd_loss(&t, &t, 0.0).is_err());
    assert!(hinge_loss(PairKind::Robust, &t, &wrong, 0.1).is_err());
    let labels = Tensor::new(&[0u32, 3], &Device::Cpu).unwrap();
    let err = label_smoothing_ce(&t, &labels, 0.1)
        .unwrap_err()
        .to_string();
    assert!(err.contains("class 3"), "{err}");
    assert!(label_smoothing_ce(&t, &Tensor::new(&[0u32, 1], &Device::Cpu).unwrap(), 1.0).is_err());
}

#[test]
fn losses_work_in_f32_like_the_models() {
    let g = golden();
    let t = matrix(&g["teacher"]).to_dtype(DType::F32).unwrap();
    let s = matrix(&g["student"]).to_dtype(DType::F32).unwrap();
    let want = g["kd_T1.0"]["loss"].as_f64().unwrap();
    let got = kd_loss(&t, &s, 1.0).unwrap().to_scalar::<f32>().unwrap() as f64;
    assert!((got - want).abs() < 1e-5, "{got} vs {want}");
}
