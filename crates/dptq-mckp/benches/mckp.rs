//! Instances per second on the paper's problem sizes: ResNet18 (L = 20, options 3..=10,
//! B = 80: version I, budget A) and MobileNetV4 (L = 77, B = 308), batches of 64 and
//! 100 000, on one thread (`solve_batch_into`) and on all threads (`par_solve_batch_into`).
//!
//! `cargo bench -p dptq-mckp --bench mckp`. `dptq bench mckp` prints the same figures as a
//! table, next to a numpy baseline measured in the same run.

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use dptq_mckp::{Mode, Problem, SolverBuilder};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

fn bench(c: &mut Criterion) {
    let options: Vec<u32> = (3..=10).collect();
    let mut rng = ChaCha8Rng::seed_from_u64(0);
    let mut group = c.benchmark_group("mckp");
    group.sample_size(10);
    group.warm_up_time(std::time::Duration::from_millis(500));
    group.measurement_time(std::time::Duration::from_secs(2));
    for (name, layers, budget) in [("resnet18", 20, 80), ("mobilenetv4", 77, 308)] {
        let problem = Problem::uniform(&options, layers, budget, Mode::Exact).unwrap();
        for n in [64usize, 100_000] {
            let profits: Vec<f32> = (0..n * layers * options.len())
                .map(|_| rng.random_range(-1.0..1.0))
                .collect();
            let (mut choices, mut totals) = (vec![0u32; n * layers], vec![0f32; n]);
            let mut solver = SolverBuilder::new().build::<f32>(&problem).unwrap();
            group.throughput(Throughput::Elements(n as u64));
            group.bench_function(BenchmarkId::new(format!("{name}/1-thread"), n), |b| {
                b.iter(|| {
                    solver
                        .solve_batch_into(&profits, &mut choices, &mut totals)
                        .unwrap()
                })
            });
            group.bench_function(BenchmarkId::new(format!("{name}/all-threads"), n), |b| {
                b.iter(|| {
                    solver
                        .par_solve_batch_into(&profits, &mut choices, &mut totals)
                        .unwrap()
                })
            });
        }
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
