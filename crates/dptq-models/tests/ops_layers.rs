//! BatchNorm, ReLU, max-pooling, global average pooling and the linear layer: fused
//! kernels against candle's composed ops, hand-checked max-pool gradients, finite
//! differences in f64, and run-to-run bit identity.

mod ops_support;

use candle_core::{D, DType, Device, Result, Tensor};
use dptq_models::ops::{self, composed};
use ops_support::{bits, max_finite_difference_error, output_and_grads, rel_diff, uniform};

const SHAPES: [[usize; 4]; 5] = [
    [2, 3, 5, 7],
    [1, 4, 6, 6],
    [5, 2, 3, 3],
    [3, 8, 1, 1],
    [16, 6, 9, 11],
];

#[test]
fn batch_norm_train_matches_candle() -> Result<()> {
    for (dtype, tol) in [(DType::F32, 1e-5), (DType::F64, 1e-12)] {
        for (i, dims) in SHAPES.iter().enumerate() {
            let c = dims[1];
            // An offset mean and a spread scale, as real activations have.
            let xs = ((uniform(dims, i as u64, dtype)? * 3.0)? + 0.5)?;
            let inputs = [
                xs,
                uniform(&[c], 50 + i as u64, dtype)?,
                uniform(&[c], 60 + i as u64, dtype)?,
            ];
            let f = |t: &[Tensor]| Ok(ops::batch_norm_train(&t[0], &t[1], &t[2], 1e-5)?.ys);
            let f_ref =
                |t: &[Tensor]| Ok(composed::batch_norm_train(&t[0], &t[1], &t[2], 1e-5)?.ys);
            let (y, g) = output_and_grads(&inputs, 9, f)?;
            let (y_ref, g_ref) = output_and_grads(&inputs, 9, f_ref)?;
            assert!(rel_diff(&y, &y_ref)? < tol, "{dims:?} {dtype:?}: output");
            for (k, (a, b)) in g.iter().zip(&g_ref).enumerate() {
                let err = rel_diff(a, b)?;
                assert!(
                    err < tol,
                    "{dims:?} {dtype:?}: gradient {k} differs by {err:e}"
                );
            }
            let out = ops::batch_norm_train(&inputs[0], &inputs[1], &inputs[2], 1e-5)?;
            let out_ref = composed::batch_norm_train(&inputs[0], &inputs[1], &inputs[2], 1e-5)?;
            assert!(rel_diff(&out.mean, &out_ref.mean)? < tol, "{dims:?}: mean");
            assert!(rel_diff(&out.var, &out_ref.var)? < tol, "{dims:?}: var");
        }
    }
    Ok(())
}

#[test]
fn batch_norm_train_returns_the_biased_batch_statistics() -> Result<()> {
    // Channel 0 holds 1, 2, 3, 4 over two images of 1x2 pixels; channel 1 holds 5 everywhere.
    let xs = Tensor::new(
        &[[[[1f32, 2.]], [[5., 5.]]], [[[3., 4.]], [[5., 5.]]]],
        &Device::Cpu,
    )?;
    let ones = Tensor::ones(2, DType::F32, &Device::Cpu)?;
    let zeros = Tensor::zeros(2, DType::F32, &Device::Cpu)?;
    let out = ops::batch_norm_train(&xs, &ones, &zeros, 0.0)?;
    assert_eq!(out.mean.to_vec1::<f32>()?, [2.5, 5.0]);
    assert_eq!(out.var.to_vec1::<f32>()?, [1.25, 0.0]);
    let expected = [-1.5f32, -0.5, 0.5, 1.5].map(|v| v / 1.25f32.sqrt());
    let got = out.ys.narrow(1, 0, 1)?.flatten_all()?.to_vec1::<f32>()?;
    for (g, e) in got
        .iter()
        .zip([expected[0], expected[1], expected[2], expected[3]])
    {
        assert!((g - e).abs() < 1e-6, "{got:?} vs {expected:?}");
    }
    assert!(
        !out.mean.track_op() && !out.var.track_op(),
        "statistics must be detached"
    );
    Ok(())
}

#[test]
fn batch_norm_eval_matches_candle() -> Result<()> {
    for (dtype, tol) in [(DType::F32, 1e-5), (DType::F64, 1e-12)] {
        for (i, dims) in SHAPES.iter().enumerate() {
            let c = dims[1];
            let var = (uniform(&[c], 70 + i as u64, dtype)? + 1.5)?;
            let inputs = [
                uniform(dims, i as u64, dtype)?,
                uniform(&[c], 80 + i as u64, dtype)?,
                var,
                uniform(&[c], 50 + i as u64, dtype)?,
                uniform(&[c], 60 + i as u64, dtype)?,
            ];
            let f = |t: &[Tensor]| ops::batch_norm_eval(&t[0], &t[1], &t[2], &t[3], &t[4], 1e-5);
            let f_ref =
                |t: &[Tensor]| composed::batch_norm_eval(&t[0], &t[1], &t[2], &t[3], &t[4], 1e-5);
            let (y, g) = output_and_grads(&inputs, 9, f)?;
            let (y_ref, g_ref) = output_and_grads(&inputs, 9, f_ref)?;
            assert!(rel_diff(&y, &y_ref)? < tol, "{dims:?} {dtype:?}: output");
            for (k, (a, b)) in g.iter().zip(&g_ref).enumerate() {
                let err = rel_diff(a, b)?;
                assert!(
                    err < tol,
                    "{dims:?} {dtype:?}: gradient {k} differs by {err:e}"
                );
            }
        }
    }
    Ok(())
}

#[test]
fn batch_norm_gradients_match_finite_differences() -> Result<()> {
    for (i, dims) in SHAPES.iter().enumerate() {
        let c = dims[1];
        let train = [
            uniform(dims, i as u64, DType::F64)?,
            uniform(&[c], 50 + i as u64, DType::F64)?,
            uniform(&[c], 60 + i as u64, DType::F64)?,
        ];
        // A single value per channel has no variance: skip the 1x1 batch-of-one shapes.
        if dims[0] * dims[2] * dims[3] > 1 {
            let err = max_finite_difference_error(&train, 4, |t| {
                Ok(ops::batch_norm_train(&t[0], &t[1], &t[2], 1e-5)?.ys)
            })?;
            assert!(err < 1e-6, "{dims:?}: train gradient off by {err:e}");
        }
        let eval = [
            train[0].clone(),
            uniform(&[c], 80, DType::F64)?,
            (uniform(&[c], 70, DType::F64)? + 1.5)?,
            train[1].clone(),
            train[2].clone(),
        ];
        let err = max_finite_difference_error(&eval, 4, |t| {
            ops::batch_norm_eval(&t[0], &t[1], &t[2], &t[3], &t[4], 1e-5)
        })?;
        assert!(err < 1e-6, "{dims:?}: eval gradient off by {err:e}");
    }
    Ok(())
}

#[test]
fn relu_matches_candle_and_masks_the_gradient() -> Result<()> {
    for dtype in [DType::F32, DType::F64] {
        let xs = uniform(&[3, 4, 5, 6], 1, dtype)?;
        let (y, g) = output_and_grads(std::slice::from_ref(&xs), 2, |t| ops::relu(&t[0]))?;
        let (y_ref, g_ref) = output_and_grads(&[xs], 2, |t| composed::relu(&t[0]))?;
        assert_eq!(rel_diff(&y, &y_ref)?, 0.0);
        assert_eq!(rel_diff(&g[0], &g_ref[0])?, 0.0);
    }
    let xs = Tensor::new(&[-1f32, 0., 2., f32::NAN], &Device::Cpu)?;
    let ys = ops::relu(&xs)?.to_vec1::<f32>()?;
    assert_eq!(&ys[..3], &[0., 0., 2.]);
    assert!(ys[3].is_nan(), "a NaN input stays NaN");
    let (_, g) = output_and_grads(&[xs.narrow(0, 0, 3)?], 0, |t| ops::relu(&t[0]))?;
    let r = uniform(&[3], 0, DType::F32)?.to_vec1::<f32>()?;
    assert_eq!(g[0].to_vec1::<f32>()?, [0., 0., r[2]]);
    Ok(())
}

/// The input gradient of a max-pool over a single `h x w` plane for an all-ones incoming
/// gradient, from the fused op and from the composed one.
fn pool_grads(
    plane: &[f32],
    h: usize,
    w: usize,
    k: usize,
    s: usize,
    p: usize,
) -> Result<[Vec<f32>; 2]> {
    let xs = Tensor::from_slice(plane, (1, 1, h, w), &Device::Cpu)?;
    let grad = |f: fn(&Tensor, usize, usize, usize) -> Result<Tensor>| -> Result<Vec<f32>> {
        let var = candle_core::Var::from_tensor(&xs)?;
        let grads = f(var.as_tensor(), k, s, p)?.sum_all()?.backward()?;
        grads
            .get(var.as_tensor())
            .expect("gradient")
            .flatten_all()?
            .to_vec1::<f32>()
    };
    Ok([grad(ops::max_pool2d)?, grad(composed::max_pool2d)?])
}

#[test]
fn max_pool_gradient_goes_to_the_maximum_whole() -> Result<()> {
    for g in pool_grads(&[1., 2., 3., 4.], 2, 2, 2, 2, 0)? {
        assert_eq!(g, [0., 0., 0., 1.]);
    }
    Ok(())
}

#[test]
fn max_pool_ties_send_the_gradient_to_the_first_maximum() -> Result<()> {
    for g in pool_grads(&[5., 5., 5., 5.], 2, 2, 2, 2, 0)? {
        assert_eq!(g, [1., 0., 0., 0.]);
    }
    // 3x3 windows, stride 1, padding 1 over a constant 3x3 plane: every window sends its
    // gradient to its first (top-left) valid pixel.
    for g in pool_grads(&[7.; 9], 3, 3, 3, 1, 1)? {
        assert_eq!(g, [4., 2., 0., 2., 1., 0., 0., 0., 0.]);
    }
    Ok(())
}

#[test]
fn overlapping_max_pool_windows_accumulate_their_gradients() -> Result<()> {
    // The centre is in all nine 3x3/1 windows (padding 1).
    let mut plane = [0f32; 9];
    plane[4] = 9.;
    for g in pool_grads(&plane, 3, 3, 3, 1, 1)? {
        assert_eq!(g, [0., 0., 0., 0., 9., 0., 0., 0., 0.]);
    }
    // ResNet's 3x3/2 stem pool with padding 1 on 0..16 as a 4x4 plane: the maxima are at
    // 5, 7, 13 and 15.
    let plane: Vec<f32> = (0..16).map(|v| v as f32).collect();
    for g in pool_grads(&plane, 4, 4, 3, 2, 1)? {
        let hot: Vec<usize> = g
            .iter()
            .enumerate()
            .filter(|(_, v)| **v != 0.)
            .map(|(i, _)| i)
            .collect();
        assert_eq!(hot, [5, 7, 13, 15]);
        assert!(hot.iter().all(|&i| g[i] == 1.));
    }
    Ok(())
}

#[test]
fn max_pool_matches_composed_and_candle_forward() -> Result<()> {
    for dtype in [DType::F32, DType::F64] {
        for (i, (dims, k, s, p)) in [
            ([2, 3, 9, 9], 3, 2, 1),
            ([1, 2, 8, 7], 2, 2, 0),
            ([3, 4, 7, 10], 3, 1, 1),
            ([2, 2, 11, 11], 5, 3, 2),
            ([16, 8, 5, 5], 3, 2, 0),
        ]
        .into_iter()
        .enumerate()
        {
            let xs = uniform(&dims, 30 + i as u64, dtype)?;
            let (y, g) = output_and_grads(std::slice::from_ref(&xs), 3, |t| {
                ops::max_pool2d(&t[0], k, s, p)
            })?;
            let (y_ref, g_ref) = output_and_grads(std::slice::from_ref(&xs), 3, |t| {
                composed::max_pool2d(&t[0], k, s, p)
            })?;
            assert_eq!(rel_diff(&y, &y_ref)?, 0.0, "{dims:?} k{k} s{s} p{p}");
            // Overlapping windows add their gradients in a different order.
            assert!(
                rel_diff(&g[0], &g_ref[0])? < 1e-6,
                "{dims:?} k{k} s{s} p{p}"
            );
            // Without a gradient to come the forward records no argmax: same values.
            let y_eval = ops::max_pool2d(&xs, k, s, p)?;
            assert_eq!(
                rel_diff(&y_eval, &y)?,
                0.0,
                "{dims:?}: forward without recording"
            );
            if p == 0 {
                let candle = xs.max_pool2d_with_stride(k, s)?;
                assert_eq!(rel_diff(&y, &candle)?, 0.0, "{dims:?}: candle's forward");
            }
            if dtype == DType::F64 {
                let err =
                    max_finite_difference_error(&[xs], 5, |t| ops::max_pool2d(&t[0], k, s, p))?;
                assert!(err < 1e-6, "{dims:?}: gradient off by {err:e}");
            }
        }
    }
    Ok(())
}

#[test]
fn a_nan_in_the_window_is_its_maximum() -> Result<()> {
    // As in PyTorch: the output is NaN and the NaN receives the gradient.
    let plane = [1f32, f32::NAN, 7., 3.];
    let xs = Tensor::from_slice(&plane, (1, 1, 2, 2), &Device::Cpu)?;
    assert!(
        ops::max_pool2d(&xs, 2, 2, 0)?
            .flatten_all()?
            .to_vec1::<f32>()?[0]
            .is_nan()
    );
    let [fused, _] = pool_grads(&plane, 2, 2, 2, 2, 0)?;
    assert_eq!(fused, [0., 1., 0., 0.]);
    Ok(())
}

#[test]
fn max_pool_rejects_padding_over_half_the_kernel() -> Result<()> {
    let xs = uniform(&[1, 1, 5, 5], 0, DType::F32)?;
    let err = ops::max_pool2d(&xs, 3, 2, 2).unwrap_err().to_string();
    assert!(
        err.contains("padding 2") && err.contains("kernel 3"),
        "{err}"
    );
    Ok(())
}

#[test]
fn global_avg_pool_and_linear_match_candle() -> Result<()> {
    for dtype in [DType::F32, DType::F64] {
        let xs = uniform(&[4, 6, 5, 3], 1, dtype)?;
        let (y, g) = output_and_grads(std::slice::from_ref(&xs), 2, |t| {
            ops::global_avg_pool(&t[0])
        })?;
        let y_ref = xs.mean(D::Minus1)?.mean(D::Minus1)?;
        assert!(rel_diff(&y, &y_ref)? < 1e-6);
        assert_eq!(y.dims(), [4, 6]);
        // d mean / dx = 1 / (H W) times the incoming gradient, broadcast over the plane.
        let r = uniform(&[4, 6], 2, dtype)?;
        let expected = (r.unsqueeze(2)?.unsqueeze(3)?.broadcast_as(xs.dims())? / 15.0)?;
        assert!(rel_diff(&g[0], &expected)? < 1e-6);

        let inputs = [
            uniform(&[5, 7], 3, dtype)?,
            uniform(&[4, 7], 4, dtype)?,
            uniform(&[4], 5, dtype)?,
        ];
        let (y, g) = output_and_grads(&inputs, 6, |t| ops::linear(&t[0], &t[1], Some(&t[2])))?;
        let lin = candle_nn::Linear::new(inputs[1].clone(), Some(inputs[2].clone()));
        let y_ref = candle_core::Module::forward(&lin, &inputs[0])?;
        assert!(rel_diff(&y, &y_ref)? < 1e-6);
        if dtype == DType::F64 {
            let err = max_finite_difference_error(&inputs, 6, |t| {
                ops::linear(&t[0], &t[1], Some(&t[2]))
            })?;
            assert!(err < 1e-6, "linear gradient off by {err:e}");
            assert_eq!(g.len(), 3);
        }
    }
    Ok(())
}

#[test]
fn layers_are_bit_identical_run_to_run() -> Result<()> {
    let xs = uniform(&[16, 8, 14, 14], 1, DType::F32)?;
    let inputs = [
        xs,
        uniform(&[8], 2, DType::F32)?,
        uniform(&[8], 3, DType::F32)?,
    ];
    let f = |t: &[Tensor]| {
        let ys = ops::batch_norm_train(&t[0], &t[1], &t[2], 1e-5)?.ys;
        ops::max_pool2d(&ops::relu(&ys)?, 3, 2, 1)
    };
    let (y1, g1) = output_and_grads(&inputs, 4, f)?;
    let (y2, g2) = output_and_grads(&inputs, 4, f)?;
    assert_eq!(bits(&y1)?, bits(&y2)?);
    for (a, b) in g1.iter().zip(&g2) {
        assert_eq!(bits(a)?, bits(b)?);
    }
    Ok(())
}

#[test]
fn half_precision_layers_run_on_the_cpu() -> Result<()> {
    let xs = uniform(&[2, 3, 6, 6], 1, DType::F32)?;
    let w = uniform(&[3], 2, DType::F32)?;
    let ys = ops::max_pool2d(
        &ops::relu(&ops::batch_norm_train(&xs, &w, &w, 1e-5)?.ys)?,
        3,
        2,
        1,
    )?;
    let h = |t: &Tensor| t.to_dtype(DType::BF16);
    let yh = ops::max_pool2d(
        &ops::relu(&ops::batch_norm_train(&h(&xs)?, &h(&w)?, &h(&w)?, 1e-5)?.ys)?,
        3,
        2,
        1,
    )?;
    assert_eq!(yh.dtype(), DType::BF16);
    assert!(rel_diff(&yh, &ys)? < 3e-2);
    Ok(())
}
