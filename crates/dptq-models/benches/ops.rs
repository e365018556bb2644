//! Training kernels of `dptq_models::ops` against candle's own ops on the shapes that
//! dominate a ResNet/MobileNetV4/RegNetX train step (224 px, batch 16) and the tiny preset
//! (28 px, batch 64).
//!
//! Each case times the forward pass (`fwd`, no graph) and the backward pass alone (`bwd`:
//! the graph is built outside the clock, then `backward()` is timed), for `ours` and for
//! `candle` (candle's tensor ops; for max-pooling, whose candle backward is wrong or
//! missing, the exact composition in `ops::composed`). `tools/bench_torch_ops.py` times the
//! same cases in PyTorch and prints the table of ratios from criterion's estimates:
//!
//! ```text
//! cargo bench -p dptq-models --bench ops
//! python3 tools/bench_torch_ops.py --criterion target/criterion
//! ```
//!
//! On a shared machine wall time swings with the other processes; with one thread, process
//! CPU time does not (other processes do not add to it):
//!
//! ```text
//! RAYON_NUM_THREADS=1 DPTQ_BENCH_CLOCK=cpu cargo bench -p dptq-models --bench ops
//! python3 tools/bench_torch_ops.py --threads 1 --clock cpu
//! ```

use std::time::{Duration, Instant};

/// The allocator of the `dptq` binary, so that the backward timings include what a
/// training step pays for fresh gradient buffers there, not glibc's page faults.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use candle_core::{Device, Result, Tensor, Var};
use criterion::measurement::{Measurement, ValueFormatter, WallTime};
use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use dptq_models::ops::{self, Conv2dParams, composed};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// Wall time, or with `DPTQ_BENCH_CLOCK=cpu` the CPU time of the whole process (meaningful
/// with one thread: idle threads that spin would add to it).
struct Clock {
    cpu: bool,
    epoch: Instant,
}

impl Clock {
    fn from_env() -> Self {
        Self {
            cpu: std::env::var("DPTQ_BENCH_CLOCK").is_ok_and(|v| v == "cpu"),
            epoch: Instant::now(),
        }
    }

    fn now(&self) -> Duration {
        if self.cpu {
            process_cpu_time()
        } else {
            self.epoch.elapsed()
        }
    }
}

#[cfg(target_os = "linux")]
fn process_cpu_time() -> Duration {
    #[repr(C)]
    struct Timespec {
        tv_sec: i64,
        tv_nsec: i64,
    }
    unsafe extern "C" {
        fn clock_gettime(clock: i32, tp: *mut Timespec) -> i32;
    }
    const CLOCK_PROCESS_CPUTIME_ID: i32 = 2;
    let mut ts = Timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec for the duration of the call.
    let rc = unsafe { clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &mut ts) };
    assert_eq!(rc, 0, "clock_gettime(CLOCK_PROCESS_CPUTIME_ID) failed");
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

#[cfg(not(target_os = "linux"))]
fn process_cpu_time() -> Duration {
    panic!("DPTQ_BENCH_CLOCK=cpu is only implemented on Linux")
}

impl Measurement for Clock {
    type Intermediate = Duration;
    type Value = Duration;

    fn start(&self) -> Duration {
        self.now()
    }
    fn end(&self, start: Duration) -> Duration {
        self.now().saturating_sub(start)
    }
    fn add(&self, a: &Duration, b: &Duration) -> Duration {
        *a + *b
    }
    fn zero(&self) -> Duration {
        Duration::ZERO
    }
    fn to_f64(&self, value: &Duration) -> f64 {
        value.as_nanos() as f64
    }
    fn formatter(&self) -> &dyn ValueFormatter {
        static WALL: WallTime = WallTime;
        WALL.formatter()
    }
}

type Bench = Criterion<Clock>;

fn uniform(dims: &[usize], seed: u64) -> Tensor {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let n: usize = dims.iter().product();
    let data: Vec<f32> = (0..n).map(|_| rng.random_range(-1.0..1.0)).collect();
    Tensor::from_vec(data, dims, &Device::Cpu).expect("tensor")
}

/// Times `f` forward on plain tensors, and its backward with gradients for the inputs
/// flagged in `grad`.
fn fwd_bwd(
    c: &mut Bench,
    case: &str,
    imp: &str,
    inputs: &[Tensor],
    grad: &[bool],
    f: impl Fn(&[Tensor]) -> Result<Tensor>,
) {
    let mut group = c.benchmark_group(case);
    group.sample_size(10);
    group.bench_function(format!("fwd-{imp}"), |b| {
        b.iter(|| f(inputs).expect("forward"))
    });
    let graph = || {
        let ts: Vec<Tensor> = inputs
            .iter()
            .zip(grad)
            .map(|(t, &g)| {
                if g {
                    Var::from_tensor(t).expect("var").as_tensor().clone()
                } else {
                    t.clone()
                }
            })
            .collect();
        f(&ts).expect("forward")
    };
    group.bench_function(format!("bwd-{imp}"), |b| {
        b.iter_batched(
            graph,
            |ys| ys.backward().expect("backward"),
            BatchSize::PerIteration,
        )
    });
    group.finish();
}

fn conv_case(
    c: &mut Bench,
    case: &str,
    x: [usize; 4],
    w: [usize; 4],
    p: Conv2dParams,
    grad: [bool; 2],
) {
    let inputs = [uniform(&x, 1), uniform(&w, 2)];
    fwd_bwd(c, case, "ours", &inputs, &grad, |t| {
        ops::conv2d(&t[0], &t[1], None, p)
    });
    fwd_bwd(c, case, "candle", &inputs, &grad, |t| {
        t[0].conv2d(&t[1], p.padding, p.stride, p.dilation, p.groups)
    });
}

fn params(stride: usize, padding: usize, groups: usize) -> Conv2dParams {
    Conv2dParams {
        stride,
        padding,
        dilation: 1,
        groups,
    }
}

fn resnet_convs(c: &mut Bench) {
    let (x, w) = ([16, 64, 56, 56], [64, 64, 3, 3]);
    conv_case(
        c,
        "conv3x3_64_56_b16_input_grad",
        x,
        w,
        params(1, 1, 1),
        [true, false],
    );
    conv_case(
        c,
        "conv3x3_64_56_b16_weight_grad",
        x,
        w,
        params(1, 1, 1),
        [false, true],
    );
    conv_case(
        c,
        "conv7x7s2_stem_224_b16",
        [16, 3, 224, 224],
        [64, 3, 7, 7],
        params(2, 3, 1),
        [false, true],
    );
}

fn grouped_convs(c: &mut Bench) {
    conv_case(
        c,
        "depthwise3x3_480_28_b16",
        [16, 480, 28, 28],
        [480, 1, 3, 3],
        params(1, 1, 480),
        [true, true],
    );
    // RegNetX-1.6GF stage 2: 168 channels in groups of 24 at 28x28.
    conv_case(
        c,
        "grouped3x3_168g7_28_b16",
        [16, 168, 28, 28],
        [168, 24, 3, 3],
        params(1, 1, 7),
        [true, true],
    );
}

fn tiny_convs(c: &mut Bench) {
    for (ch, px) in [(16, 28), (32, 14), (64, 7), (128, 4)] {
        let case = format!("tiny_conv3x3_{ch}_{px}_b64");
        conv_case(
            c,
            &case,
            [64, ch, px, px],
            [ch, ch, 3, 3],
            params(1, 1, 1),
            [true, true],
        );
    }
    let (x, w) = ([64, 16, 28, 28], [16, 16, 3, 3]);
    conv_case(
        c,
        "tiny_conv3x3_16_28_b64_input_grad",
        x,
        w,
        params(1, 1, 1),
        [true, false],
    );
    conv_case(
        c,
        "tiny_conv3x3_16_28_b64_weight_grad",
        x,
        w,
        params(1, 1, 1),
        [false, true],
    );
    conv_case(
        c,
        "tiny_conv3x3s2_16to32_28_b64",
        [64, 16, 28, 28],
        [32, 16, 3, 3],
        params(2, 1, 1),
        [true, true],
    );
    conv_case(
        c,
        "tiny_stem3x3_1to16_28_b64",
        [64, 1, 28, 28],
        [16, 1, 3, 3],
        params(1, 1, 1),
        [false, true],
    );
}

fn norm_and_pool(c: &mut Bench) {
    for (case, dims) in [
        ("bn_train_64_56_b16", [16, 64, 56, 56]),
        ("tiny_bn_train_16_28_b64", [64, 16, 28, 28]),
    ] {
        let ch = dims[1];
        let inputs = [uniform(&dims, 1), uniform(&[ch], 2), uniform(&[ch], 3)];
        let grad = [true, true, true];
        fwd_bwd(c, case, "ours", &inputs, &grad, |t| {
            Ok(ops::batch_norm_train(&t[0], &t[1], &t[2], 1e-5)?.ys)
        });
        fwd_bwd(c, case, "candle", &inputs, &grad, |t| {
            Ok(composed::batch_norm_train(&t[0], &t[1], &t[2], 1e-5)?.ys)
        });
    }
    let inputs = [uniform(&[16, 64, 56, 56], 1)];
    fwd_bwd(c, "relu_64_56_b16", "ours", &inputs, &[true], |t| {
        ops::relu(&t[0])
    });
    fwd_bwd(c, "relu_64_56_b16", "candle", &inputs, &[true], |t| {
        t[0].relu()
    });
    let inputs = [uniform(&[16, 64, 112, 112], 1)];
    fwd_bwd(
        c,
        "maxpool3x3s2_64_112_b16",
        "ours",
        &inputs,
        &[true],
        |t| ops::max_pool2d(&t[0], 3, 2, 1),
    );
    fwd_bwd(
        c,
        "maxpool3x3s2_64_112_b16",
        "candle",
        &inputs,
        &[true],
        |t| composed::max_pool2d(&t[0], 3, 2, 1),
    );
    // The training forward of max-pooling also records each output's argmax.
    let mut group = c.benchmark_group("maxpool3x3s2_64_112_b16");
    group.sample_size(10);
    let x = Var::from_tensor(&inputs[0]).expect("var");
    group.bench_function("fwd_train-ours", |b| {
        b.iter(|| ops::max_pool2d(x.as_tensor(), 3, 2, 1).expect("forward"))
    });
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().with_measurement(Clock::from_env());
    targets = resnet_convs, grouped_convs, tiny_convs, norm_and_pool
}
criterion_main!(benches);
