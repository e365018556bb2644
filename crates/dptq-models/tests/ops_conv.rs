//! The fused convolution against candle's own `conv2d` (values and gradients through
//! autograd), against finite differences in f64, and run to run.

mod ops_support;

use candle_core::{DType, Result, Tensor};
use dptq_models::ops::{self, Conv2dParams, composed};
use ops_support::{bits, max_finite_difference_error, output_and_grads, rel_diff, uniform};

/// `(N, C_in, H, W, C_out, kh, kw, params)`.
type Case = (
    usize,
    usize,
    usize,
    usize,
    usize,
    usize,
    usize,
    Conv2dParams,
);

fn params(stride: usize, padding: usize, dilation: usize, groups: usize) -> Conv2dParams {
    Conv2dParams {
        stride,
        padding,
        dilation,
        groups,
    }
}

fn cases() -> Vec<Case> {
    vec![
        (2, 3, 9, 7, 4, 3, 3, params(1, 1, 1, 1)),   // odd sizes
        (1, 4, 8, 8, 6, 3, 3, params(2, 0, 1, 1)),   // batch 1, stride 2
        (3, 5, 11, 10, 4, 3, 3, params(2, 3, 1, 1)), // padding 3
        (2, 4, 9, 9, 3, 3, 3, params(1, 2, 2, 1)),   // dilation 2
        (2, 6, 7, 7, 8, 1, 1, params(1, 0, 1, 1)),   // 1x1
        (5, 6, 8, 8, 8, 1, 1, params(2, 0, 1, 1)),   // 1x1 stride 2 (downsample)
        (2, 3, 16, 16, 8, 7, 7, params(2, 3, 1, 1)), // 7x7 stem
        (2, 8, 9, 9, 8, 3, 3, params(1, 1, 1, 8)),   // depthwise
        (2, 8, 10, 10, 8, 5, 5, params(2, 2, 1, 8)), // depthwise 5x5 stride 2
        (2, 6, 9, 9, 6, 3, 3, params(2, 1, 2, 6)),   // depthwise, dilated and strided
        (3, 5, 7, 9, 5, 5, 5, params(1, 2, 1, 5)),   // depthwise 5x5 "same"
        (2, 4, 8, 6, 4, 3, 3, params(1, 2, 2, 4)),   // depthwise dilated "same"
        (1, 3, 2, 3, 3, 5, 5, params(1, 2, 1, 3)),   // depthwise kernel wider than the image
        (2, 12, 8, 8, 12, 3, 3, params(1, 1, 1, 3)), // grouped
        (2, 8, 9, 9, 4, 3, 3, params(2, 1, 1, 2)),   // grouped, C_out != C_in
        (2, 4, 6, 6, 8, 3, 3, params(1, 1, 1, 4)),   // channel multiplier 2
        (37, 3, 6, 6, 4, 3, 3, params(1, 1, 1, 1)),  // many images per chunk
        (9, 5, 5, 5, 7, 1, 1, params(1, 0, 1, 1)),   // pointwise, chunked
        (1, 2, 2, 2, 3, 3, 3, params(1, 1, 1, 1)),   // kernel as large as the padded input
        (2, 3, 7, 8, 4, 1, 3, params(1, 1, 1, 1)),   // non-square kernel
        (2, 3, 5, 6, 2, 3, 2, params(3, 2, 1, 1)),   // stride 3, padding past the kernel
        // Wide im2col (many input channels): tiles hold part of one image and cut rows.
        (2, 64, 15, 15, 8, 3, 3, params(1, 1, 1, 1)),
        (2, 64, 29, 29, 4, 3, 3, params(2, 1, 1, 1)),
        (1, 8, 20, 20, 80, 3, 3, params(1, 1, 1, 1)),
        (2, 64, 17, 17, 8, 3, 3, params(1, 2, 2, 1)),
        (2, 96, 13, 13, 96, 3, 3, params(1, 1, 1, 4)),
        (3, 160, 12, 12, 8, 1, 1, params(1, 0, 1, 1)),
        (2, 512, 15, 15, 8, 1, 1, params(1, 0, 1, 1)), // pointwise, tiles inside one image
        (1, 256, 29, 29, 4, 3, 3, params(2, 1, 1, 1)), // gathered im2col, tiles inside one image
        (1, 256, 20, 20, 4, 3, 3, params(1, 0, 1, 1)), // "valid" padding, tiles inside one image
    ]
}

fn inputs(case: &Case, seed: u64, dtype: DType) -> Result<Vec<Tensor>> {
    let &(n, c_in, h, w, c_out, kh, kw, p) = case;
    Ok(vec![
        uniform(&[n, c_in, h, w], seed, dtype)?,
        uniform(&[c_out, c_in / p.groups, kh, kw], seed + 1, dtype)?,
        uniform(&[c_out], seed + 2, dtype)?,
    ])
}

fn compare_with_candle(dtype: DType, tol: f64) -> Result<()> {
    for (i, case) in cases().iter().enumerate() {
        let p = case.7;
        let xs = inputs(case, 100 + i as u64, dtype)?;
        let (y, g) = output_and_grads(&xs, 7, |t| ops::conv2d(&t[0], &t[1], Some(&t[2]), p))?;
        let (y_ref, g_ref) =
            output_and_grads(&xs, 7, |t| composed::conv2d(&t[0], &t[1], Some(&t[2]), p))?;
        let errs = [
            rel_diff(&y, &y_ref)?,
            rel_diff(&g[0], &g_ref[0])?,
            rel_diff(&g[1], &g_ref[1])?,
            rel_diff(&g[2], &g_ref[2])?,
        ];
        for (what, err) in [
            "output",
            "input gradient",
            "weight gradient",
            "bias gradient",
        ]
        .iter()
        .zip(errs)
        {
            assert!(
                err < tol,
                "case {i} {case:?}: {what} differs from candle by {err:e} ({dtype:?})"
            );
        }
    }
    Ok(())
}

#[test]
fn conv2d_matches_candle_in_f32() -> Result<()> {
    compare_with_candle(DType::F32, 1e-5)
}

#[test]
fn conv2d_matches_candle_in_f64() -> Result<()> {
    compare_with_candle(DType::F64, 1e-12)
}

#[test]
fn conv2d_gradients_match_finite_differences() -> Result<()> {
    for (i, case) in cases().iter().enumerate() {
        let p = case.7;
        let xs = inputs(case, 200 + i as u64, DType::F64)?;
        let err =
            max_finite_difference_error(&xs, 11, |t| ops::conv2d(&t[0], &t[1], Some(&t[2]), p))?;
        assert!(
            err < 1e-6,
            "case {i} {case:?}: gradient differs from finite differences by {err:e}"
        );
    }
    Ok(())
}

#[test]
fn conv2d_matches_candle_with_one_thread() -> Result<()> {
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(1)
        .build()
        .map_err(candle_core::Error::wrap)?;
    pool.install(|| compare_with_candle(DType::F32, 1e-5))
}

#[test]
fn conv2d_is_bit_identical_run_to_run() -> Result<()> {
    for case in [
        (8, 16, 14, 14, 16, 3, 3, params(1, 1, 1, 1)),
        (8, 16, 14, 14, 16, 3, 3, params(2, 1, 1, 16)),
        (8, 16, 14, 14, 32, 1, 1, params(1, 0, 1, 1)),
    ] {
        let xs = inputs(&case, 5, DType::F32)?;
        let run = || output_and_grads(&xs, 3, |t| ops::conv2d(&t[0], &t[1], Some(&t[2]), case.7));
        let (y1, g1) = run()?;
        let (y2, g2) = run()?;
        assert_eq!(bits(&y1)?, bits(&y2)?, "{case:?}: output");
        for (a, b) in g1.iter().zip(&g2) {
            assert_eq!(bits(a)?, bits(b)?, "{case:?}: gradient");
        }
    }
    Ok(())
}

#[test]
fn half_precision_runs_on_the_f32_kernels() -> Result<()> {
    let case = &cases()[0];
    let xs = inputs(case, 1, DType::F32)?;
    let y = ops::conv2d(&xs[0], &xs[1], None, case.7)?;
    for dtype in [DType::BF16, DType::F16] {
        let yh = ops::conv2d(
            &xs[0].to_dtype(dtype)?,
            &xs[1].to_dtype(dtype)?,
            None,
            case.7,
        )?;
        assert_eq!(yh.dtype(), dtype);
        let err = rel_diff(&yh, &y)?;
        assert!(err < 3e-2, "{dtype:?} differs by {err}");
    }
    Ok(())
}

#[test]
fn mismatched_shapes_are_errors() -> Result<()> {
    let xs = uniform(&[1, 4, 5, 5], 0, DType::F32)?;
    let w = uniform(&[2, 3, 3, 3], 1, DType::F32)?;
    let err = ops::conv2d(&xs, &w, None, Conv2dParams::default())
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("[1, 4, 5, 5]") && err.contains("[2, 3, 3, 3]"),
        "{err}"
    );
    let w = uniform(&[2, 2, 3, 3], 1, DType::F32)?;
    let err = ops::conv2d(&xs, &w, None, params(1, 0, 1, 3))
        .unwrap_err()
        .to_string();
    assert!(err.contains("3 groups"), "{err}");
    let w = uniform(&[2, 4, 7, 7], 1, DType::F32)?;
    let err = ops::conv2d(&xs, &w, None, Conv2dParams::default())
        .unwrap_err()
        .to_string();
    assert!(err.contains("smaller than the dilated kernel"), "{err}");
    Ok(())
}
