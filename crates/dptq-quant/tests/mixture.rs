//! The option mixture: one-hot forward, the composed oracle, gradients (finite
//! differences in f64).

mod common;

use candle_core::{DType, Device, Tensor, Var};
use common::{bits_of, random, vec_f64};
use dptq_quant::{ActivationQuantizer, Error, ExampleBits, RangeMode};

const OPTIONS: [u32; 4] = [2, 3, 5, 8];

fn one_hot(choices: &[usize], k: usize, dtype: DType) -> Tensor {
    let mut v = vec![0.0f64; choices.len() * k];
    for (n, &j) in choices.iter().enumerate() {
        v[n * k + j] = 1.0;
    }
    Tensor::from_vec(v, (choices.len(), k), &Device::Cpu)
        .unwrap()
        .to_dtype(dtype)
        .unwrap()
}

#[test]
fn one_hot_forward_is_exactly_the_chosen_quantizer() {
    for dtype in [DType::F32, DType::F64] {
        for range in [RangeMode::MinMax, RangeMode::Percentile(98.0)] {
            let q = ActivationQuantizer::new(range);
            let xs = random(&[3, 4, 30, 30], dtype, 21);
            let choices = [1, 3, 0];
            let sel = one_hot(&choices, OPTIONS.len(), dtype);
            let mixed = q.mixture(&xs, &sel, &OPTIONS).unwrap();
            let bits = ExampleBits::PerExample(choices.iter().map(|&j| Some(OPTIONS[j])).collect());
            let direct = q.fake_quant(&xs, &bits).unwrap();
            assert_eq!(bits_of(&mixed), bits_of(&direct), "{dtype:?} {range:?}");
            let composed = q.mixture_composed(&xs, &sel, &OPTIONS).unwrap();
            assert_eq!(vec_f64(&mixed), vec_f64(&composed), "{dtype:?} {range:?}");
        }
    }
}

#[test]
fn soft_selection_forward_equals_the_composed_reference() {
    for dtype in [DType::F32, DType::F64] {
        let q = ActivationQuantizer::default();
        let xs = random(&[2, 3, 50, 50], dtype, 22);
        let sel = Tensor::new(
            &[[0.1f64, 0.2, 0.3, 0.4], [0.0, 1.0, 0.5, -0.25]],
            &Device::Cpu,
        )
        .unwrap()
        .to_dtype(dtype)
        .unwrap();
        let fused = q.mixture(&xs, &sel, &OPTIONS).unwrap();
        let composed = q.mixture_composed(&xs, &sel, &OPTIONS).unwrap();
        assert_eq!(vec_f64(&fused), vec_f64(&composed), "{dtype:?}");
        // And it is the weighted sum of the single quantizers.
        let mut expected = vec![0.0; fused.elem_count()];
        for (j, &b) in OPTIONS.iter().enumerate() {
            let qj = vec_f64(&q.fake_quant(&xs, &ExampleBits::All(b)).unwrap());
            let w = vec_f64(&sel.narrow(1, j, 1).unwrap());
            let dim = qj.len() / 2;
            for (i, e) in expected.iter_mut().enumerate() {
                *e += w[i / dim] * qj[i];
            }
        }
        for (a, e) in vec_f64(&fused).iter().zip(&expected) {
            assert!((a - e).abs() <= 1e-5 * e.abs().max(1.0), "{a} vs {e}");
        }
    }
}

/// `L = sum(c * mixture(x, sel))`.
fn loss(q: &ActivationQuantizer, xs: &Tensor, sel: &Tensor, c: &Tensor) -> Tensor {
    (q.mixture(xs, sel, &OPTIONS).unwrap() * c)
        .unwrap()
        .sum_all()
        .unwrap()
}

#[test]
fn selection_gradient_matches_finite_differences() {
    for range in [RangeMode::MinMax, RangeMode::Percentile(90.0)] {
        let q = ActivationQuantizer::new(range);
        let xs = random(&[2, 3, 40, 40], DType::F64, 23);
        let c = random(&[2, 3, 40, 40], DType::F64, 24);
        let sel0 = [[0.7, 0.1, 0.15, 0.05], [0.0, 0.0, 1.0, 0.0]];
        let sel = Var::from_tensor(&Tensor::new(&sel0, &Device::Cpu).unwrap()).unwrap();
        let grads = loss(&q, &xs, sel.as_tensor(), &c).backward().unwrap();
        let g = grads
            .get(sel.as_tensor())
            .expect("selection receives a gradient");
        let g = g.to_vec2::<f64>().unwrap();
        let eps = 1e-3;
        for n in 0..2 {
            for j in 0..OPTIONS.len() {
                let at = |d: f64| {
                    let mut s = sel0;
                    s[n][j] += d;
                    let s = Tensor::new(&s, &Device::Cpu).unwrap();
                    loss(&q, &xs, &s, &c).to_scalar::<f64>().unwrap()
                };
                let fd = (at(eps) - at(-eps)) / (2.0 * eps);
                assert!(
                    (fd - g[n][j]).abs() <= 1e-8 * fd.abs().max(1.0),
                    "{range:?} d/dsel[{n},{j}]: {} vs finite difference {fd}",
                    g[n][j]
                );
            }
        }
    }
}

#[test]
fn gradients_equal_the_composed_reference() {
    for dtype in [DType::F32, DType::F64] {
        for range in [RangeMode::MinMax, RangeMode::Percentile(95.0)] {
            let q = ActivationQuantizer::new(range);
            let x = Var::from_tensor(&random(&[3, 2, 30, 30], dtype, 25)).unwrap();
            let c = random(&[3, 2, 30, 30], dtype, 26);
            let sel = Tensor::new(
                &[
                    [0.5f64, 0.25, 0.0, 0.25],
                    [0.0, 0.0, 0.0, 1.0],
                    [0.3, 0.3, 0.3, 0.3],
                ],
                &Device::Cpu,
            )
            .unwrap()
            .to_dtype(dtype)
            .unwrap();
            let sel = Var::from_tensor(&sel).unwrap();
            let run = |composed: bool| {
                let y = if composed {
                    q.mixture_composed(x.as_tensor(), sel.as_tensor(), &OPTIONS)
                } else {
                    q.mixture(x.as_tensor(), sel.as_tensor(), &OPTIONS)
                }
                .unwrap();
                let grads = (y * &c).unwrap().sum_all().unwrap().backward().unwrap();
                (
                    vec_f64(grads.get(x.as_tensor()).unwrap()),
                    vec_f64(grads.get(sel.as_tensor()).unwrap()),
                )
            };
            let (gx, gs) = run(false);
            let (rx, rs) = run(true);
            assert_eq!(gx, rx, "{dtype:?} {range:?}: d/dx");
            let tol = if dtype == DType::F32 { 1e-4 } else { 1e-10 };
            for (a, b) in gs.iter().zip(&rs) {
                assert!(
                    (a - b).abs() <= tol * b.abs().max(1.0),
                    "{dtype:?} {range:?}: {a} vs {b}"
                );
            }
        }
    }
}

#[test]
fn input_gradient_is_the_row_sum_times_the_output_gradient() {
    let q = ActivationQuantizer::default();
    let x = Var::from_tensor(&random(&[2, 5, 7], DType::F64, 27)).unwrap();
    let c = random(&[2, 5, 7], DType::F64, 28);
    let sel = Tensor::new(
        &[[0.0f64, 1.0, 0.0, 0.0], [0.5, 0.5, 0.5, 0.0]],
        &Device::Cpu,
    )
    .unwrap();
    let y = q.mixture(x.as_tensor(), &sel, &OPTIONS).unwrap();
    let grads = (y * &c).unwrap().sum_all().unwrap().backward().unwrap();
    let g = vec_f64(grads.get(x.as_tensor()).unwrap());
    let c = vec_f64(&c);
    for i in 0..35 {
        assert_eq!(g[i], c[i]);
        assert_eq!(g[35 + i], 1.5 * c[35 + i]);
    }
}

#[test]
fn mixture_settings_are_checked() {
    let q = ActivationQuantizer::default();
    let xs = random(&[2, 8], DType::F32, 1);
    let sel = one_hot(&[0, 1], 3, DType::F32);
    let err = q.mixture(&xs, &sel, &OPTIONS).unwrap_err();
    assert!(
        matches!(
            err,
            Error::SelectionShape {
                batch: 2,
                options: 4,
                ..
            }
        ),
        "{err}"
    );
    assert!(matches!(
        q.mixture(&xs, &one_hot(&[0, 0], 1, DType::F32), &[])
            .unwrap_err(),
        Error::NoOptions
    ));
    let err = q
        .mixture(&xs, &one_hot(&[0, 1], 2, DType::F32), &[4, 17])
        .unwrap_err();
    assert!(
        matches!(err, Error::UnsupportedBits { bits: 17, .. }),
        "{err}"
    );
}
