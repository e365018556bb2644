//! Feature `candle`: the straight-through bit selector.
#![cfg(feature = "candle")]

use candle_core::{DType, Device, Tensor, Var};
use dptq_mckp::{Error, Mode, Problem, Solver, select_bits};

/// Deterministic scores in [-1, 1) that are not exactly representable sums of one-hot
/// values (so that `(H - P) + P` rounds).
fn scores(n: usize, seed: u64) -> Vec<f32> {
    let mut state = seed;
    (0..n)
        .map(|_| {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((state >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0 + 0.1
        })
        .collect()
}

const OPTIONS: [u32; 4] = [2, 4, 8, 16];

#[test]
fn forward_is_exactly_the_one_hot_optimum_and_bits_meet_the_budget() -> anyhow::Result<()> {
    let (n, l, k, budget) = (16, 6, 4, 40);
    // negative scores, as logits often are: there `(1 - p) + p` loses the low bits of `1 - p`
    let data: Vec<f32> = scores(n * l * k, 1).iter().map(|s| s - 2.0).collect();
    let p = Tensor::from_vec(data.clone(), (n, l, k), &Device::Cpu)?;
    let (selection, bits) = select_bits(&p, &OPTIONS, budget, Mode::Exact)?;
    assert_eq!(selection.dims(), &[n, l, k]);
    assert_eq!(selection.dtype(), DType::F32);
    assert_eq!((bits.dims(), bits.dtype()), (&[n, l][..], DType::U32));
    let hot = selection.to_vec3::<f32>()?;
    let bits = bits.to_vec2::<u32>()?;
    let mut solver =
        Solver::<f32>::new(&Problem::uniform(&OPTIONS, l, budget as u64, Mode::Exact)?)?;
    for e in 0..n {
        let best = solver.solve(&data[e * l * k..(e + 1) * l * k])?;
        assert_eq!(bits[e].iter().sum::<u32>(), budget);
        for layer in 0..l {
            let expected: Vec<f32> = (0..k)
                .map(|j| if j == best.choices[layer] { 1.0 } else { 0.0 })
                .collect();
            assert_eq!(hot[e][layer], expected, "example {e}, layer {layer}");
            assert_eq!(bits[e][layer], OPTIONS[best.choices[layer]]);
        }
    }
    // the float composition is not exact on these scores: the custom op is what makes it so
    let composed = ((selection.detach() - &p)?.detach() + &p)?.to_vec3::<f32>()?;
    assert!(
        composed
            .iter()
            .flatten()
            .flatten()
            .any(|&v| v != 0.0 && v != 1.0)
    );
    Ok(())
}

#[test]
fn gradient_reaches_the_scores_unchanged() -> anyhow::Result<()> {
    let (n, l, k) = (8, 5, 4);
    for dtype in [DType::F32, DType::F64] {
        let p = Var::from_tensor(
            &Tensor::from_vec(scores(n * l * k, 2), (n, l, k), &Device::Cpu)?.to_dtype(dtype)?,
        )?;
        // d(sum selection) / dP = ones
        let (selection, _) = select_bits(p.as_tensor(), &OPTIONS, 30, Mode::AtMost)?;
        assert_eq!(selection.dtype(), dtype);
        let grads = selection.sum_all()?.backward()?;
        let g = grads.get(p.as_tensor()).expect("P receives a gradient");
        let ones = Tensor::ones((n, l, k), dtype, &Device::Cpu)?;
        assert_eq!(
            g.to_dtype(DType::F64)?.flatten_all()?.to_vec1::<f64>()?,
            ones.to_dtype(DType::F64)?.flatten_all()?.to_vec1::<f64>()?
        );
        // an upstream gradient G passes through as is: d(sum selection * G) / dP = G
        let upstream =
            Tensor::from_vec(scores(n * l * k, 3), (n, l, k), &Device::Cpu)?.to_dtype(dtype)?;
        let (selection, _) = select_bits(p.as_tensor(), &OPTIONS, 30, Mode::AtMost)?;
        let grads = (selection * &upstream)?.sum_all()?.backward()?;
        let g = grads.get(p.as_tensor()).expect("P receives a gradient");
        assert_eq!(
            g.to_dtype(DType::F64)?.flatten_all()?.to_vec1::<f64>()?,
            upstream
                .to_dtype(DType::F64)?
                .flatten_all()?
                .to_vec1::<f64>()?
        );
    }
    Ok(())
}

#[test]
fn gradient_flows_through_a_policy_that_produced_the_scores() -> anyhow::Result<()> {
    // P = x * s with a trainable scale s: dL/ds = sum(G * x) through the estimator
    let (n, l, k) = (4, 3, 4);
    let x = Tensor::from_vec(scores(n * l * k, 4), (n, l, k), &Device::Cpu)?;
    let s = Var::new(&[2.0f32], &Device::Cpu)?;
    let p = x.broadcast_mul(s.as_tensor())?;
    let (selection, _) = select_bits(&p, &OPTIONS, 24, Mode::Exact)?;
    let upstream = Tensor::from_vec(scores(n * l * k, 5), (n, l, k), &Device::Cpu)?;
    let grads = (selection * &upstream)?.sum_all()?.backward()?;
    let ds = grads
        .get(s.as_tensor())
        .expect("the scale receives a gradient")
        .to_vec1::<f32>()?[0];
    let expected = (upstream * &x)?.sum_all()?.to_scalar::<f32>()?;
    assert!(
        (ds - expected).abs() <= 1e-5 * expected.abs().max(1.0),
        "{ds} vs {expected}"
    );
    Ok(())
}

#[test]
fn strided_input_gives_the_same_selection_as_contiguous_input() -> anyhow::Result<()> {
    let (n, l, k) = (3, 4, 4);
    let p = Tensor::from_vec(scores(n * l * k, 6), (n, l, k), &Device::Cpu)?;
    let strided = p.transpose(0, 1)?.contiguous()?.transpose(0, 1)?;
    assert!(!strided.is_contiguous());
    let (a, ab) = select_bits(&p, &OPTIONS, 20, Mode::Exact)?;
    let (b, bb) = select_bits(&strided, &OPTIONS, 20, Mode::Exact)?;
    assert_eq!(a.to_vec3::<f32>()?, b.to_vec3::<f32>()?);
    assert_eq!(ab.to_vec2::<u32>()?, bb.to_vec2::<u32>()?);
    Ok(())
}

#[test]
fn bad_inputs_are_typed_errors() -> anyhow::Result<()> {
    let p = Tensor::zeros((2, 3, 4), DType::F32, &Device::Cpu)?;
    let err = select_bits(&p, &[2, 4, 8], 12, Mode::Exact).unwrap_err();
    assert!(
        matches!(
            err,
            Error::ShapeMismatch {
                expected: 3,
                got: 4,
                ..
            }
        ),
        "{err:?}"
    );
    let err = select_bits(&p, &OPTIONS, 5, Mode::Exact).unwrap_err();
    assert!(
        matches!(
            err,
            Error::BudgetOutOfRange {
                budget: 5,
                min: 6,
                max: 48
            }
        ),
        "{err:?}"
    );
    let err = select_bits(&p, &OPTIONS, 7, Mode::Exact).unwrap_err();
    assert!(matches!(err, Error::BudgetUnreachable { .. }), "{err:?}");
    let err = select_bits(&p.to_dtype(DType::F16)?, &OPTIONS, 12, Mode::Exact).unwrap_err();
    assert!(
        matches!(err, Error::UnsupportedDtype { dtype: DType::F16 }),
        "{err:?}"
    );
    let err = select_bits(
        &Tensor::zeros((2, 12), DType::F32, &Device::Cpu)?,
        &OPTIONS,
        12,
        Mode::Exact,
    )
    .unwrap_err();
    assert!(matches!(err, Error::Candle(_)), "{err:?}");
    let nan = Tensor::from_vec(vec![0.0f32, 0.0, f32::NAN, 0.0], (1, 1, 4), &Device::Cpu)?;
    let err = select_bits(&nan, &OPTIONS, 8, Mode::Exact).unwrap_err();
    assert!(
        matches!(
            err,
            Error::NonFiniteProfit {
                instance: 0,
                group: 0,
                item: 2,
                ..
            }
        ),
        "{err:?}"
    );
    // inside candle code `?` turns it into a candle error carrying the message
    let inside = || -> candle_core::Result<()> {
        select_bits(&p, &OPTIONS, 5, Mode::Exact)?;
        Ok(())
    };
    let msg = inside().unwrap_err().to_string();
    assert!(
        msg.contains("budget 5 is outside the reachable range [6, 48]"),
        "{msg}"
    );
    Ok(())
}
