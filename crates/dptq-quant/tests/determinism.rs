//! Bit-identical results run to run and across thread counts (fixed chunking, reductions
//! combined in chunk order).

mod common;

use candle_core::{DType, Device, Tensor, Var};
use common::{bits_of, random};
use dptq_quant::{ActivationQuantizer, ExampleBits, RangeMode};

/// Forward values and both gradients of a soft mixture plus a per-example fake quant.
fn run(dtype: DType) -> Vec<Vec<u64>> {
    // 3 * 200_000 values: 13 chunks per example.
    let x = Var::from_tensor(&random(&[3, 8, 125, 200], dtype, 61)).unwrap();
    let c = random(&[3, 8, 125, 200], dtype, 62);
    let sel = Tensor::new(
        &[[0.3f64, 0.3, 0.4], [0.0, 1.0, 0.0], [0.9, 0.05, 0.05]],
        &Device::Cpu,
    )
    .unwrap()
    .to_dtype(dtype)
    .unwrap();
    let sel = Var::from_tensor(&sel).unwrap();
    let mut out = Vec::new();
    for range in [RangeMode::MinMax, RangeMode::Percentile(97.0)] {
        let q = ActivationQuantizer::new(range);
        let y = q
            .mixture(x.as_tensor(), sel.as_tensor(), &[2, 4, 7])
            .unwrap();
        let z = q.fake_quant(x.as_tensor(), &ExampleBits::All(5)).unwrap();
        let loss = ((&y * &c).unwrap() + (&z * &c).unwrap())
            .unwrap()
            .sum_all()
            .unwrap();
        let grads = loss.backward().unwrap();
        out.push(bits_of(&y));
        out.push(bits_of(&z));
        out.push(bits_of(grads.get(x.as_tensor()).unwrap()));
        out.push(bits_of(grads.get(sel.as_tensor()).unwrap()));
    }
    out
}

#[test]
fn results_are_bit_identical_across_runs_and_thread_counts() {
    for dtype in [DType::F32, DType::F64] {
        let pool = |n| {
            rayon::ThreadPoolBuilder::new()
                .num_threads(n)
                .build()
                .unwrap()
        };
        let one = pool(1).install(|| run(dtype));
        let again = pool(1).install(|| run(dtype));
        let three = pool(3).install(|| run(dtype));
        assert!(one == again, "{dtype:?}: two runs differ");
        assert!(one == three, "{dtype:?}: 1 and 3 threads differ");
    }
}
