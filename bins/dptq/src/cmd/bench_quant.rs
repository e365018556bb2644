//! `dptq bench quant`: the fused fake quantizers against candle's ReLU on one activation
//! tensor, forward and forward+backward, as ratios measured in the same run.

use anyhow::Result;
use candle_core::{DType, Device, Tensor, Var};
use dptq_quant::{ActivationQuantizer, ExampleBits};
use std::time::Instant;

/// Options of `dptq bench quant`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Rounds; every case runs once per round and the median is reported.
    #[arg(long, default_value_t = 15)]
    pub reps: usize,
    /// Batch size of the [N, 64, 56, 56] f32 activation (ResNet18 layer1).
    #[arg(long, default_value_t = 16)]
    pub batch: usize,
    /// Also time the composed-op reference (slow: ~0.2 s per call).
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    pub composed: bool,
}

/// The bit options of the mixture (the paper's version I).
const OPTIONS: [u32; 8] = [3, 4, 5, 6, 7, 8, 9, 10];

type Case<'a> = Box<dyn Fn(bool) -> Result<()> + 'a>;

/// Runs `f` forward, and backward from the output when `bwd`.
fn pass(bwd: bool, out: candle_core::Result<Tensor>) -> Result<()> {
    let out = out?;
    if bwd {
        out.backward()?;
    }
    Ok(())
}

pub fn run(args: Args) -> Result<()> {
    anyhow::ensure!(args.reps > 0, "--reps must be positive, got 0");
    anyhow::ensure!(args.batch > 0, "--batch must be positive, got 0");
    let n = args.batch;
    let device = Device::Cpu;
    let x = Var::from_tensor(&Tensor::randn(0f32, 1.0, (n, 64, 56, 56), &device)?)?;
    let xs = x.as_tensor();
    let q = ActivationQuantizer::default();
    let all4 = ExampleBits::All(4);
    let per_example = ExampleBits::PerExample((0..n).map(|i| Some(OPTIONS[i % 8])).collect());
    let mut one_hot = vec![0f32; n * 8];
    for i in 0..n {
        one_hot[i * 8 + i % 8] = 1.0;
    }
    let one_hot = Tensor::from_vec(one_hot, (n, 8), &device)?;
    let soft = (Tensor::ones((n, 8), DType::F32, &device)? / 8.0)?;

    let mut cases: Vec<(&str, Case<'_>)> = vec![
        (
            "relu (baseline against itself)",
            Box::new(|b| pass(b, xs.relu())),
        ),
        (
            "fake quant, 4 bits",
            Box::new(|b| pass(b, q.fake_quant(xs, &all4).map_err(Into::into))),
        ),
        (
            "fake quant, per-example bits",
            Box::new(|b| pass(b, q.fake_quant(xs, &per_example).map_err(Into::into))),
        ),
        (
            "mixture K=8, one-hot",
            Box::new(|b| pass(b, q.mixture(xs, &one_hot, &OPTIONS).map_err(Into::into))),
        ),
        (
            "mixture K=8, soft (1/8 each)",
            Box::new(|b| pass(b, q.mixture(xs, &soft, &OPTIONS).map_err(Into::into))),
        ),
    ];
    if args.composed {
        cases.push((
            "composed reference, 4 bits",
            Box::new(|b| pass(b, q.fake_quant_composed(xs, &all4).map_err(Into::into))),
        ));
    }

    // Interleaved rounds, and every case is paired with a ReLU timed right before it,
    // so that case and baseline see the same machine load (the machine is shared).
    let time = |f: &Case<'_>, bwd: bool| -> Result<f64> {
        let start = Instant::now();
        f(bwd)?;
        Ok(start.elapsed().as_secs_f64() * 1e3)
    };
    let relu: Case<'_> = Box::new(|b| pass(b, xs.relu()));
    let mut times = vec![[Vec::new(), Vec::new()]; cases.len()];
    let mut baselines = vec![[Vec::new(), Vec::new()]; cases.len()];
    for round in 0..=args.reps {
        for (i, (_, case)) in cases.iter().enumerate() {
            for (k, bwd) in [false, true].into_iter().enumerate() {
                // An untimed ReLU first: the op timed first after a large backward
                // pass runs measurably slower (allocator), so neither timed call is first.
                time(&relu, bwd)?;
                let base = time(&relu, bwd)?;
                let t = time(case, bwd)?;
                if round > 0 {
                    // round 0 warms up
                    baselines[i][k].push(base);
                    times[i][k].push(t);
                }
            }
        }
    }
    let median = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let medians: Vec<[f64; 2]> = times
        .iter_mut()
        .map(|[f, b]| [median(f), median(b)])
        .collect();
    let relu_medians: Vec<[f64; 2]> = baselines
        .iter_mut()
        .map(|[f, b]| [median(f), median(b)])
        .collect();

    println!(
        "[{n}, 64, 56, 56] f32, {} threads, median of {} rounds; each case is timed right \
         after a ReLU (its baseline)",
        candle_core::utils::get_num_threads(),
        args.reps
    );
    println!();
    println!(
        "| case | fwd ms | fwd+bwd ms | ReLU fwd ms | ReLU fwd+bwd ms | fwd / ReLU fwd | fwd+bwd / ReLU fwd+bwd |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|");
    for (((name, _), [f, b]), [rf, rb]) in cases.iter().zip(&medians).zip(&relu_medians) {
        println!(
            "| {name} | {f:.2} | {b:.2} | {rf:.2} | {rb:.2} | {:.2}x | {:.2}x |",
            f / rf,
            b / rb
        );
    }
    if args.composed {
        let [cf, cb] = medians[medians.len() - 1];
        let [ff, fb] = medians[1];
        println!();
        println!(
            "fused vs composed (4 bits): {:.0}x faster forward, {:.0}x faster forward+backward",
            cf / ff,
            cb / fb
        );
    }
    Ok(())
}
