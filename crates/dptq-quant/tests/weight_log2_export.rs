//! The symmetric weight quantizer, the log2 quantizer and integer export.

mod common;

use candle_core::{DType, Device, Tensor, Var};
use common::{bits_of, random, tensor, vec_f64};
use dptq_quant::{
    ActivationQuantizer, Error, ExampleBits, Log2Quantizer, RangeMode, WeightQuantizer,
};

#[test]
fn symmetric_weights_hand_computed_with_ties_to_even() {
    // max|w| = 3, b = 3: s = 3 / 3 = 1; 0.5 -> 0, 1.5 -> 2, 2.5 -> 2, -2.5 -> -2.
    for dtype in [DType::F32, DType::F64] {
        let w = tensor(&[-3.0, 0.5, 1.5, 2.5, -0.5, -2.5, 0.7], &[7], dtype);
        let out = WeightQuantizer::default().fake_quant(&w, 3).unwrap();
        assert_eq!(vec_f64(&out), [-3.0, 0.0, 2.0, 2.0, 0.0, -2.0, 1.0]);
    }
    // b = 2: one level each side, s = max|w|.
    let w = tensor(&[0.2, -0.6, 1.0, -0.4], &[2, 2], DType::F64);
    let out = WeightQuantizer::default().fake_quant(&w, 2).unwrap();
    assert_eq!(vec_f64(&out), [0.0, -1.0, 1.0, 0.0]);
}

#[test]
fn weight_fused_equals_composed_and_gradient_is_identity() {
    for dtype in [DType::F32, DType::F64] {
        for range in [RangeMode::MinMax, RangeMode::Percentile(99.5)] {
            let q = WeightQuantizer::new(range);
            let w = Var::from_tensor(&random(&[64, 32, 3, 3], dtype, 31)).unwrap();
            for bits in [2, 4, 8, 16] {
                let a = q.fake_quant(w.as_tensor(), bits).unwrap();
                let b = q.fake_quant_composed(w.as_tensor(), bits).unwrap();
                assert_eq!(bits_of(&a), bits_of(&b), "{dtype:?} {range:?} {bits}");
            }
            let y = q.fake_quant(w.as_tensor(), 4).unwrap();
            let g = y.sum_all().unwrap().backward().unwrap();
            let g = vec_f64(g.get(w.as_tensor()).unwrap());
            let m = q.range_of(w.as_tensor()).unwrap();
            for (gi, wi) in g.iter().zip(vec_f64(w.as_tensor())) {
                assert_eq!(*gi, if wi.abs() <= m { 1.0 } else { 0.0 });
            }
        }
    }
}

#[test]
fn weight_errors_name_the_value() {
    let w = random(&[4, 4], DType::F32, 1);
    let err = WeightQuantizer::default().fake_quant(&w, 1).unwrap_err();
    assert!(err.to_string().starts_with("1-bit symmetric"), "{err}");
    let mut v = vec![0.1; 8];
    v[5] = f64::NAN;
    let err = WeightQuantizer::default()
        .fake_quant(&tensor(&v, &[2, 4], DType::F32), 8)
        .unwrap_err();
    assert!(matches!(err, Error::NonFiniteWeight { .. }), "{err}");
    let zeros = Tensor::zeros((3, 3), DType::F32, &Device::Cpu).unwrap();
    let out = WeightQuantizer::default().fake_quant(&zeros, 8).unwrap();
    assert_eq!(vec_f64(&out), [0.0; 9]);
    let err = WeightQuantizer::new(RangeMode::Percentile(0.0))
        .fake_quant(&w, 8)
        .unwrap_err();
    assert!(matches!(err, Error::Percentile { .. }), "{err}");
}

#[test]
fn log2_levels_are_signed_powers_of_two() {
    // M = 8: e_max = 3. b = 3: 3 exponents {1, 2, 3}; log2(3) = 1.58 -> 2; -1 -> e = 0 < 1 -> 0.
    let x = tensor(&[8.0, 3.0, -1.0, 0.2, 0.0, -5.0], &[1, 6], DType::F32);
    let q = Log2Quantizer::default();
    let out = q.fake_quant(&x, &ExampleBits::All(3)).unwrap();
    assert_eq!(vec_f64(&out), [8.0, 4.0, 0.0, 0.0, 0.0, -4.0]);
    // b = 4: 7 exponents {-3, ..., 3}; 0.2 -> log2 = -2.32 -> 2^-2.
    let out = q.fake_quant(&x, &ExampleBits::All(4)).unwrap();
    assert_eq!(vec_f64(&out), [8.0, 4.0, -1.0, 0.25, 0.0, -4.0]);
    // Every output of a random batch is 0 or a signed power of two; examples independent.
    let xs = random(&[2, 1000], DType::F64, 41);
    let out = q
        .fake_quant(&xs, &ExampleBits::PerExample(vec![Some(5), None]))
        .unwrap();
    for v in vec_f64(&out.narrow(0, 0, 1).unwrap()) {
        assert!(v == 0.0 || v.abs().log2().fract() == 0.0, "{v}");
    }
    assert_eq!(
        bits_of(&out.narrow(0, 1, 1).unwrap()),
        bits_of(&xs.narrow(0, 1, 1).unwrap())
    );
}

#[test]
fn log2_gradient_and_errors() {
    let x = Var::from_tensor(&tensor(&[1.0, -2.0, 4.0, 100.0], &[1, 4], DType::F64)).unwrap();
    // |x| = 1, 2, 4, 100: P_50 of |x| = 3 (interpolated); 4 and 100 lie outside.
    let q = Log2Quantizer::new(RangeMode::Percentile(50.0));
    let y = q.fake_quant(x.as_tensor(), &ExampleBits::All(4)).unwrap();
    let g = y.sum_all().unwrap().backward().unwrap();
    assert_eq!(vec_f64(g.get(x.as_tensor()).unwrap()), [1.0, 1.0, 0.0, 0.0]);
    // e_max = round(log2 3) = 2: 100 clamps to 4.
    assert_eq!(vec_f64(&y), [1.0, -2.0, 4.0, 4.0]);
    let err = q
        .fake_quant(x.as_tensor(), &ExampleBits::All(1))
        .unwrap_err();
    assert!(
        matches!(err, Error::UnsupportedBits { bits: 1, .. }),
        "{err}"
    );
    let bad = tensor(&[1.0, f64::INFINITY], &[2, 1], DType::F32);
    assert!(matches!(
        Log2Quantizer::default()
            .fake_quant(&bad, &ExampleBits::All(4))
            .unwrap_err(),
        Error::NonFiniteExample { example: 1 }
    ));
}

#[test]
fn activation_export_dequantizes_to_the_fake_quantized_tensor() {
    for dtype in [DType::F32, DType::F64] {
        let q = ActivationQuantizer::default();
        let mut xs = random(&[4, 3, 9, 9], dtype, 51);
        // Example 3 is a negative constant.
        xs = Tensor::cat(
            &[
                xs.narrow(0, 0, 3).unwrap(),
                (xs.narrow(0, 3, 1).unwrap().zeros_like().unwrap() - 2.5).unwrap(),
            ],
            0,
        )
        .unwrap();
        let bits = ExampleBits::PerExample(vec![Some(1), Some(4), Some(16), Some(8)]);
        let exported = q.export(&xs, &bits).unwrap();
        assert_eq!(exported.q.dtype(), DType::U32);
        assert_eq!(exported.bits, [1, 4, 16, 8]);
        let fake = q.fake_quant(&xs, &bits).unwrap();
        assert_eq!(
            bits_of(&exported.dequantize().unwrap()),
            bits_of(&fake),
            "{dtype:?}"
        );
        let codes = exported
            .q
            .flatten_from(1)
            .unwrap()
            .to_vec2::<u32>()
            .unwrap();
        for (n, b) in [1u32, 4, 16, 8].into_iter().enumerate() {
            let qmax = (1u32 << b) - 1;
            assert!(codes[n].iter().all(|&c| c <= qmax));
            assert!(exported.zero_point[n] <= qmax);
        }
        assert_eq!((exported.scale[3], exported.zero_point[3]), (2.5, 1));
    }
    let err = ActivationQuantizer::default()
        .export(
            &random(&[2, 4], DType::F32, 1),
            &ExampleBits::PerExample(vec![Some(4), None]),
        )
        .unwrap_err();
    assert!(
        matches!(err, Error::ExportFullPrecision { example: 1 }),
        "{err}"
    );
}

#[test]
fn weight_export_dequantizes_to_the_fake_quantized_tensor() {
    for dtype in [DType::F32, DType::F64] {
        let w = random(&[16, 8, 3, 3], dtype, 52);
        for bits in [2, 5, 16] {
            let q = WeightQuantizer::default();
            let e = q.export(&w, bits).unwrap();
            let fake = q.fake_quant(&w, bits).unwrap();
            assert_eq!(bits_of(&e.dequantize().unwrap()), bits_of(&fake));
            let qmax = (1i64 << (bits - 1)) - 1;
            let codes = e.q.flatten_all().unwrap().to_vec1::<i64>().unwrap();
            assert!(codes.iter().all(|c| c.abs() <= qmax));
            assert!(codes.iter().any(|c| c.abs() == qmax));
        }
    }
}
