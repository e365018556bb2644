//! The asymmetric per-example quantizer: hand-computed values, the composed oracle,
//! gradients, percentiles, errors.

mod common;

use candle_core::{DType, Device, Tensor, Var};
use common::{bits_of, random, tensor, vec_f64};
use dptq_quant::{ActivationQuantizer, Error, ExampleBits, RangeMode};

const DTYPES: [DType; 2] = [DType::F32, DType::F64];

fn quant(x: &[f64], shape: &[usize], bits: u32, dtype: DType) -> Vec<f64> {
    let xs = tensor(x, shape, dtype);
    let q = ActivationQuantizer::default();
    vec_f64(&q.fake_quant(&xs, &ExampleBits::All(bits)).unwrap())
}

#[test]
fn ties_round_to_even() {
    // s = (3 - 0) / 3 = 1, z = 0: 0.5 -> 0, 1.5 -> 2, 2.5 -> 2 (away from zero: 1, 2, 3).
    for dtype in DTYPES {
        let out = quant(&[0.0, 0.5, 1.5, 2.5, 3.0], &[1, 5], 2, dtype);
        assert_eq!(out, [0.0, 0.0, 2.0, 2.0, 3.0], "{dtype:?}");
    }
}

#[test]
fn hand_computed_values_with_a_zero_point() {
    // min -1, max 2, b = 2: s = 1, z = round(1) = 1, q = clamp(round(x) + 1, 0, 3).
    // -1 -> 0 -> -1; -0.5 -> round(-0.5) = -0 -> 1 -> 0; 0.7 -> 1 -> 2 -> 1; 2 -> 3 -> 2.
    for dtype in DTYPES {
        let out = quant(&[-1.0, -0.5, 0.7, 2.0], &[1, 4], 2, dtype);
        assert_eq!(out, [-1.0, 0.0, 1.0, 2.0], "{dtype:?}");
    }
    // b = 3 on [0, 7]: s = 1, every integer is a level, 3.5 -> 4 (even), 4.5 -> 4.
    let out = quant(&[0.0, 3.5, 4.5, 6.2, 7.0], &[1, 5], 3, DType::F32);
    assert_eq!(out, [0.0, 4.0, 4.0, 6.0, 7.0]);
}

#[test]
fn zero_point_clamps_for_one_signed_ranges() {
    // All positive: z = clamp(round(-2), 0, 3) = 0, so the grid is {0, 1, 2, 3} and the
    // maximum 5 clamps to 3 (SPEC §1 exactly).
    assert_eq!(
        quant(&[2.0, 3.0, 5.0], &[1, 3], 2, DType::F64),
        [2.0, 3.0, 3.0]
    );
    // All negative: z = clamp(round(5), 0, 3) = 3, the grid is {-3, ..., 0}.
    assert_eq!(
        quant(&[-5.0, -3.0, -2.0], &[1, 3], 2, DType::F64),
        [-3.0, -3.0, -2.0]
    );
}

#[test]
fn one_bit_has_two_levels() {
    // b = 1: s = 4, z = clamp(round(0.25), 0, 1) = 0, so the levels are 0 and 4.
    let out = quant(&[-1.0, -0.2, 0.4, 3.0], &[1, 4], 1, DType::F32);
    assert_eq!(out, [0.0, 0.0, 0.0, 4.0]);
}

#[test]
fn constant_input_passes_unchanged() {
    for dtype in DTYPES {
        let x = [1.25; 6];
        assert_eq!(quant(&x, &[2, 3], 4, dtype), x);
        let zeros = [0.0; 4];
        assert_eq!(quant(&zeros, &[1, 4], 8, dtype), zeros);
    }
}

#[test]
fn examples_are_quantized_independently() {
    let q = ActivationQuantizer::default();
    for dtype in DTYPES {
        let xs = random(&[3, 4, 5, 5], dtype, 7);
        let bits = ExampleBits::PerExample(vec![Some(3), Some(5), Some(8)]);
        let batch = q.fake_quant(&xs, &bits).unwrap();
        for (n, b) in [3, 5, 8].into_iter().enumerate() {
            let alone = q
                .fake_quant(&xs.narrow(0, n, 1).unwrap(), &ExampleBits::All(b))
                .unwrap();
            assert_eq!(bits_of(&batch.narrow(0, n, 1).unwrap()), bits_of(&alone));
        }
        // Scaling example 2 leaves the others untouched.
        let scaled = Tensor::cat(
            &[
                xs.narrow(0, 0, 2).unwrap(),
                (xs.narrow(0, 2, 1).unwrap() * 100.0).unwrap(),
            ],
            0,
        )
        .unwrap();
        let out = q.fake_quant(&scaled, &bits).unwrap();
        assert_eq!(
            bits_of(&out.narrow(0, 0, 2).unwrap()),
            bits_of(&batch.narrow(0, 0, 2).unwrap())
        );
    }
}

#[test]
fn full_precision_examples_pass_unchanged() {
    let q = ActivationQuantizer::default();
    let xs = random(&[3, 50], DType::F32, 3);
    let out = q
        .fake_quant(&xs, &ExampleBits::PerExample(vec![Some(4), None, Some(2)]))
        .unwrap();
    assert_eq!(
        bits_of(&out.narrow(0, 1, 1).unwrap()),
        bits_of(&xs.narrow(0, 1, 1).unwrap())
    );
    assert_ne!(
        bits_of(&out.narrow(0, 0, 1).unwrap()),
        bits_of(&xs.narrow(0, 0, 1).unwrap())
    );
}

#[test]
fn output_takes_at_most_two_to_the_bits_values_per_example() {
    let q = ActivationQuantizer::default();
    let xs = random(&[2, 3000], DType::F64, 11);
    for b in [1, 2, 3, 5] {
        let out = q.fake_quant(&xs, &ExampleBits::All(b)).unwrap();
        for n in 0..2 {
            let mut v = vec_f64(&out.narrow(0, n, 1).unwrap());
            v.sort_by(f64::total_cmp);
            v.dedup();
            assert!(v.len() <= 1 << b, "{} levels at {b} bits", v.len());
            assert!(v.len() >= (1 << b) - 1, "{} levels at {b} bits", v.len());
        }
    }
}

#[test]
fn fused_kernels_equal_the_composed_reference() {
    for dtype in DTYPES {
        for range in [
            RangeMode::MinMax,
            RangeMode::Percentile(99.0),
            RangeMode::Percentile(75.5),
        ] {
            let q = ActivationQuantizer::new(range);
            // 5 * 4 * 70 * 70 = 98000 values per example: several chunks per example.
            let xs = random(&[3, 20, 70, 70], dtype, 5);
            for bits in [
                ExampleBits::All(1),
                ExampleBits::All(4),
                ExampleBits::All(16),
                ExampleBits::PerExample(vec![Some(3), None, Some(10)]),
            ] {
                let fused = q.fake_quant(&xs, &bits).unwrap();
                let composed = q.fake_quant_composed(&xs, &bits).unwrap();
                assert_eq!(
                    bits_of(&fused),
                    bits_of(&composed),
                    "{dtype:?} {range:?} {bits:?}"
                );
            }
        }
    }
}

#[test]
fn per_example_bits_tensor_equals_the_list() {
    let q = ActivationQuantizer::default();
    let xs = random(&[4, 2, 6, 6], DType::F32, 2);
    let bits = Tensor::new(&[3u32, 8, 1, 16], &Device::Cpu).unwrap();
    let a = q.fake_quant_bits(&xs, &bits).unwrap();
    let list = ExampleBits::PerExample(vec![Some(3), Some(8), Some(1), Some(16)]);
    assert_eq!(bits_of(&a), bits_of(&q.fake_quant(&xs, &list).unwrap()));
}

#[test]
fn half_precision_goes_through_f32() {
    let q = ActivationQuantizer::default();
    for dtype in [DType::F16, DType::BF16] {
        let xs = random(&[2, 64], DType::F32, 4).to_dtype(dtype).unwrap();
        let out = q.fake_quant(&xs, &ExampleBits::All(4)).unwrap();
        assert_eq!(out.dtype(), dtype);
        let via_f32 = q
            .fake_quant(&xs.to_dtype(DType::F32).unwrap(), &ExampleBits::All(4))
            .unwrap()
            .to_dtype(dtype)
            .unwrap();
        assert_eq!(vec_f64(&out), vec_f64(&via_f32));
    }
}

#[test]
fn straight_through_gradient_is_the_identity() {
    for dtype in DTYPES {
        for bits in [
            ExampleBits::All(2),
            ExampleBits::PerExample(vec![Some(3), None]),
        ] {
            let x = Var::from_tensor(&random(&[2, 3, 4], dtype, 9)).unwrap();
            let w = random(&[2, 3, 4], dtype, 10);
            let y = ActivationQuantizer::default()
                .fake_quant(x.as_tensor(), &bits)
                .unwrap();
            let grads = (y * &w).unwrap().sum_all().unwrap().backward().unwrap();
            let g = grads.get(x.as_tensor()).expect("xs receives a gradient");
            assert_eq!(bits_of(g), bits_of(&w));
        }
    }
}

#[test]
fn percentile_clamps_outliers_and_stops_their_gradient() {
    // 0, 1, ..., 100: the 90th percentile is 90 and the 10th is 10.
    let v: Vec<f64> = (0..=100).map(f64::from).collect();
    let q = ActivationQuantizer::new(RangeMode::Percentile(90.0));
    let x = Var::from_tensor(&tensor(&v, &[1, 101], DType::F64)).unwrap();
    assert_eq!(q.ranges(x.as_tensor()).unwrap(), [(10.0, 90.0)]);
    // b = 3: s = 80 / 7, z = round(-10 / s) = -1 -> 0 (clamped), grid s * {0..7}.
    let y = q.fake_quant(x.as_tensor(), &ExampleBits::All(3)).unwrap();
    let out = vec_f64(&y);
    assert_eq!(out[100], 80.0, "clamped to the top of the grid");
    assert_eq!(out[0], 0.0);
    let grads = y.sum_all().unwrap().backward().unwrap();
    let g = vec_f64(grads.get(x.as_tensor()).unwrap());
    for (i, gi) in g.iter().enumerate() {
        let inside = (10..=90).contains(&i);
        assert_eq!(*gi, if inside { 1.0 } else { 0.0 }, "value {i}");
    }
    // Interpolated percentile: 4 values, p = 75 -> position 2.25 between 2 and 3.
    let x = tensor(&[3.0, 0.0, 2.0, 1.0], &[1, 4], DType::F64);
    assert_eq!(
        ActivationQuantizer::new(RangeMode::Percentile(75.0))
            .ranges(&x)
            .unwrap(),
        [(0.75, 2.25)]
    );
}

#[test]
fn percentile_one_hundred_is_min_max() {
    let xs = random(&[2, 500], DType::F32, 12);
    let a = ActivationQuantizer::new(RangeMode::Percentile(100.0))
        .fake_quant(&xs, &ExampleBits::All(3))
        .unwrap();
    let b = ActivationQuantizer::default()
        .fake_quant(&xs, &ExampleBits::All(3))
        .unwrap();
    assert_eq!(bits_of(&a), bits_of(&b));
}

#[test]
fn non_finite_values_are_an_error_naming_the_example() {
    let q = ActivationQuantizer::default();
    for bad in [f64::NAN, f64::INFINITY, f64::NEG_INFINITY] {
        for dtype in DTYPES {
            let mut v = vec![0.5; 3 * 40_000];
            v[2 * 40_000 + 39_999] = bad;
            let xs = tensor(&v, &[3, 40_000], dtype);
            for result in [
                q.fake_quant(&xs, &ExampleBits::All(4)),
                q.fake_quant_composed(&xs, &ExampleBits::All(4)),
                ActivationQuantizer::new(RangeMode::Percentile(99.0))
                    .fake_quant(&xs, &ExampleBits::All(4)),
            ] {
                let err = result.unwrap_err();
                assert!(
                    matches!(err, Error::NonFiniteExample { example: 2 }),
                    "{err}"
                );
                assert!(err.to_string().contains("example 2"), "{err}");
            }
        }
    }
}

#[test]
fn full_precision_examples_are_not_inspected() {
    let q = ActivationQuantizer::default();
    let mut v = vec![0.25; 3 * 10];
    v[15] = f64::NAN;
    for dtype in DTYPES {
        let xs = tensor(&v, &[3, 10], dtype);
        let bits = ExampleBits::PerExample(vec![Some(4), None, Some(4)]);
        for out in [
            q.fake_quant(&xs, &bits).unwrap(),
            q.fake_quant_composed(&xs, &bits).unwrap(),
            ActivationQuantizer::new(RangeMode::Percentile(90.0))
                .fake_quant(&xs, &bits)
                .unwrap(),
        ] {
            let out = vec_f64(&out);
            assert!(out[15].is_nan());
            assert_eq!(out.iter().filter(|v| v.is_nan()).count(), 1);
        }
        // Nothing quantized: the input itself comes back.
        let none = ExampleBits::PerExample(vec![None; 3]);
        let out = q.fake_quant(&xs, &none).unwrap();
        assert_eq!(out.id(), xs.id());
        // The NaN example quantized: an error naming it.
        let err = q
            .fake_quant(&xs, &ExampleBits::PerExample(vec![None, Some(4), None]))
            .unwrap_err();
        assert!(
            matches!(err, Error::NonFiniteExample { example: 1 }),
            "{err}"
        );
    }
}

#[test]
fn a_range_overflowing_the_dtype_is_an_error() {
    let xs = tensor(&[-3e38, 3e38, 0.0, 1.0, 2.0, 3.0], &[2, 3], DType::F32);
    let q = ActivationQuantizer::default();
    for result in [
        q.fake_quant(&xs, &ExampleBits::All(8)),
        q.fake_quant_composed(&xs, &ExampleBits::All(8)),
    ] {
        let err = result.unwrap_err();
        assert!(
            matches!(err, Error::RangeOverflow { example: 0, .. }),
            "{err}"
        );
    }
    // The same values in f64 are fine.
    let out = q
        .fake_quant(&xs.to_dtype(DType::F64).unwrap(), &ExampleBits::All(8))
        .unwrap();
    assert!(vec_f64(&out).iter().all(|v| v.is_finite()));
}

#[test]
fn empty_tensors_are_fine() {
    let q = ActivationQuantizer::default();
    for shape in [[0usize, 3, 4], [2, 0, 4]] {
        let xs = Tensor::zeros(&shape, DType::F32, &Device::Cpu).unwrap();
        let out = q.fake_quant(&xs, &ExampleBits::All(4)).unwrap();
        assert_eq!(out.dims(), shape);
        let composed = q.fake_quant_composed(&xs, &ExampleBits::All(4)).unwrap();
        assert_eq!(composed.dims(), shape);
    }
}

#[test]
fn unsupported_settings_are_errors_naming_the_value() {
    let q = ActivationQuantizer::default();
    let xs = random(&[2, 8], DType::F32, 1);
    for b in [0, 17, 32] {
        let err = q.fake_quant(&xs, &ExampleBits::All(b)).unwrap_err();
        assert!(
            matches!(err, Error::UnsupportedBits { bits, .. } if bits == b),
            "{err}"
        );
        assert!(err.to_string().starts_with(&format!("{b}-bit")), "{err}");
    }
    let err = q
        .fake_quant(&xs, &ExampleBits::PerExample(vec![Some(4)]))
        .unwrap_err();
    assert!(
        err.to_string()
            .contains("cover 1 examples but the batch has 2"),
        "{err}"
    );
    let bad_bits = Tensor::new(&[4u32, 0], &Device::Cpu).unwrap();
    assert!(matches!(
        q.fake_quant_bits(&xs, &bad_bits).unwrap_err(),
        Error::UnsupportedBits { bits: 0, .. }
    ));
    let wrong_dtype = Tensor::new(&[4i64, 4], &Device::Cpu).unwrap();
    assert!(matches!(
        q.fake_quant_bits(&xs, &wrong_dtype).unwrap_err(),
        Error::BitsTensor { .. }
    ));
    for p in [49.0, 100.5, f64::NAN] {
        let err = ActivationQuantizer::new(RangeMode::Percentile(p))
            .fake_quant(&xs, &ExampleBits::All(4))
            .unwrap_err();
        assert!(matches!(err, Error::Percentile { .. }), "{err}");
    }
    let scalar = Tensor::new(1.0f32, &Device::Cpu).unwrap();
    assert!(matches!(
        q.fake_quant(&scalar, &ExampleBits::All(4)).unwrap_err(),
        Error::NoBatchDim { .. }
    ));
    let ints = Tensor::new(&[[1u32, 2]], &Device::Cpu).unwrap();
    assert!(matches!(
        q.fake_quant(&ints, &ExampleBits::All(4)).unwrap_err(),
        Error::UnsupportedDType { dtype: DType::U32 }
    ));
    // dptq_quant::Error converts into candle's error for `?` in forward passes.
    let as_candle: candle_core::Error = q.fake_quant(&xs, &ExampleBits::All(0)).unwrap_err().into();
    assert!(as_candle.to_string().contains("0-bit"));
}

#[test]
fn non_contiguous_inputs_are_quantized_like_their_copy() {
    let q = ActivationQuantizer::default();
    let xs = random(&[6, 4, 5], DType::F32, 8).transpose(0, 2).unwrap();
    assert!(!xs.is_contiguous());
    let a = q.fake_quant(&xs, &ExampleBits::All(3)).unwrap();
    let b = q
        .fake_quant(&xs.contiguous().unwrap(), &ExampleBits::All(3))
        .unwrap();
    assert_eq!(bits_of(&a), bits_of(&b));
}
