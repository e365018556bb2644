//! The CUDA kernels give the CPU's results (feature `cuda`, needs a GPU):
//! `cargo test -p dptq-quant --features cuda --test cuda`.
#![cfg(feature = "cuda")]

mod common;

use candle_core::{DType, Device, Tensor, Var};
use common::{bits_of, random, tensor, vec_f64};
use dptq_quant::{ActivationQuantizer, Error, ExampleBits, RangeMode, WeightQuantizer};

fn gpu() -> Device {
    Device::new_cuda(0).expect("the cuda feature's tests need a CUDA device")
}

#[test]
fn cuda_fake_quant_equals_cpu_bit_for_bit() {
    let gpu = gpu();
    for dtype in [DType::F32, DType::F64] {
        let xs = random(&[5, 16, 60, 60], dtype, 71);
        let on_gpu = xs.to_device(&gpu).unwrap();
        for range in [RangeMode::MinMax, RangeMode::Percentile(99.0)] {
            let q = ActivationQuantizer::new(range);
            let bits = ExampleBits::PerExample(vec![Some(1), Some(4), None, Some(8), Some(16)]);
            let cpu = q.fake_quant(&xs, &bits).unwrap();
            let cuda = q.fake_quant(&on_gpu, &bits).unwrap();
            assert!(cuda.device().is_cuda());
            assert_eq!(
                bits_of(&cuda.to_device(&Device::Cpu).unwrap()),
                bits_of(&cpu)
            );
            let w = WeightQuantizer::new(range);
            let cpu = w.fake_quant(&xs, 6).unwrap();
            let cuda = w.fake_quant(&on_gpu, 6).unwrap();
            assert_eq!(
                bits_of(&cuda.to_device(&Device::Cpu).unwrap()),
                bits_of(&cpu)
            );
        }
    }
}

#[test]
fn cuda_mixture_and_gradients_equal_cpu() {
    let gpu = gpu();
    let options = [2, 3, 5, 8];
    for dtype in [DType::F32, DType::F64] {
        let xs = random(&[3, 8, 50, 50], dtype, 72);
        let c = random(&[3, 8, 50, 50], dtype, 73);
        let sel = tensor(
            &[
                0.0, 1.0, 0.0, 0.0, 0.25, 0.25, 0.25, 0.25, 0.1, 0.2, 0.3, 0.4,
            ],
            &[3, 4],
            dtype,
        );
        let q = ActivationQuantizer::default();
        let run = |device: &Device| {
            let x = Var::from_tensor(&xs.to_device(device).unwrap()).unwrap();
            let s = Var::from_tensor(&sel.to_device(device).unwrap()).unwrap();
            let y = q.mixture(x.as_tensor(), s.as_tensor(), &options).unwrap();
            let c = c.to_device(device).unwrap();
            let grads = (&y * &c).unwrap().sum_all().unwrap().backward().unwrap();
            let cpu = |t: &Tensor| t.to_device(&Device::Cpu).unwrap();
            (
                cpu(&y),
                cpu(grads.get(x.as_tensor()).unwrap()),
                cpu(grads.get(s.as_tensor()).unwrap()),
            )
        };
        let (y, gx, gs) = run(&Device::Cpu);
        let (cy, cgx, cgs) = run(&gpu);
        assert_eq!(bits_of(&cy), bits_of(&y), "{dtype:?} forward");
        assert_eq!(bits_of(&cgx), bits_of(&gx), "{dtype:?} d/dx");
        // The selection gradient sums in another order on the GPU.
        for (a, b) in vec_f64(&cgs).iter().zip(vec_f64(&gs)) {
            assert!((a - b).abs() <= 1e-9 * b.abs().max(1.0), "{a} vs {b}");
        }
    }
}

#[test]
fn cuda_non_finite_values_name_the_example() {
    let mut v = vec![0.5; 4 * 1000];
    v[3 * 1000 + 7] = f64::NAN;
    let xs = tensor(&v, &[4, 1000], DType::F32)
        .to_device(&gpu())
        .unwrap();
    let err = ActivationQuantizer::default()
        .fake_quant(&xs, &ExampleBits::All(4))
        .unwrap_err();
    assert!(
        matches!(err, Error::NonFiniteExample { example: 3 }),
        "{err}"
    );
}
