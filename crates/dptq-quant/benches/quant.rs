//! Fake quantization vs candle's ReLU on a ResNet-sized activation, [16, 64, 56, 56] f32,
//! forward and forward+backward. Run: `cargo bench -p dptq-quant --bench quant`; the
//! ratios to ReLU measured in one run come from `dptq bench quant`.

use candle_core::{DType, Device, Tensor, Var};
use criterion::{Criterion, criterion_group, criterion_main};
use dptq_quant::{ActivationQuantizer, ExampleBits};

const SHAPE: (usize, usize, usize, usize) = (16, 64, 56, 56);
const OPTIONS: [u32; 8] = [3, 4, 5, 6, 7, 8, 9, 10];

fn inputs() -> (Var, ExampleBits, Tensor, Tensor) {
    let device = Device::Cpu;
    let xs = Tensor::randn(0f32, 1.0, SHAPE, &device).unwrap();
    let per_example = ExampleBits::PerExample((0..16).map(|n| Some(OPTIONS[n % 8])).collect());
    let mut one_hot = vec![0f32; 16 * 8];
    for n in 0..16 {
        one_hot[n * 8 + n % 8] = 1.0;
    }
    let one_hot = Tensor::from_vec(one_hot, (16, 8), &device).unwrap();
    let soft = (Tensor::ones((16, 8), DType::F32, &device).unwrap() / 8.0).unwrap();
    (Var::from_tensor(&xs).unwrap(), per_example, one_hot, soft)
}

fn bench(c: &mut Criterion) {
    let (x, per_example, one_hot, soft) = inputs();
    let xs = x.as_tensor();
    let q = ActivationQuantizer::default();
    let all4 = ExampleBits::All(4);
    let mut g = c.benchmark_group("quant_16x64x56x56_f32");
    g.sample_size(20);
    g.bench_function("relu/fwd", |b| b.iter(|| xs.relu().unwrap()));
    g.bench_function("relu/fwd+bwd", |b| {
        b.iter(|| xs.relu().unwrap().backward().unwrap())
    });
    g.bench_function("fake_quant/fwd", |b| {
        b.iter(|| q.fake_quant(xs, &all4).unwrap())
    });
    g.bench_function("fake_quant/fwd+bwd", |b| {
        b.iter(|| q.fake_quant(xs, &all4).unwrap().backward().unwrap())
    });
    g.bench_function("fake_quant_per_example_bits/fwd", |b| {
        b.iter(|| q.fake_quant(xs, &per_example).unwrap())
    });
    g.bench_function("fake_quant_per_example_bits/fwd+bwd", |b| {
        b.iter(|| q.fake_quant(xs, &per_example).unwrap().backward().unwrap())
    });
    g.bench_function("mixture_k8_one_hot/fwd", |b| {
        b.iter(|| q.mixture(xs, &one_hot, &OPTIONS).unwrap())
    });
    g.bench_function("mixture_k8_one_hot/fwd+bwd", |b| {
        b.iter(|| {
            q.mixture(xs, &one_hot, &OPTIONS)
                .unwrap()
                .backward()
                .unwrap()
        })
    });
    g.bench_function("mixture_k8_soft/fwd", |b| {
        b.iter(|| q.mixture(xs, &soft, &OPTIONS).unwrap())
    });
    g.sample_size(10);
    g.bench_function("composed_fake_quant/fwd", |b| {
        b.iter(|| q.fake_quant_composed(xs, &all4).unwrap())
    });
    g.bench_function("composed_fake_quant/fwd+bwd", |b| {
        b.iter(|| {
            q.fake_quant_composed(xs, &all4)
                .unwrap()
                .backward()
                .unwrap()
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
