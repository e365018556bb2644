//! `dptq bench models`: throughput of the architectures on CPU — full-precision eval,
//! quantized eval (16-bit weights, per-example activation bits at every layer) and a
//! training step — with peak memory, as ratios to PyTorch/timm measured in the same run
//! (`tools/bench_torch.py`, run right after each candle measurement). Each (arch, group)
//! runs in its own process, so that peak RSS is that group's; the two eval modes run in one
//! process, iterations interleaved, so that their ratio is robust to a noisy machine.

use std::path::PathBuf;
use std::process::Command;
use std::time::Instant;

use anyhow::{Context, bail};
use candle_core::{D, DType, Device, Tensor};
use dptq_models::{BnMode, ParamStore, QuantPlan, build, seeded};
use serde::{Deserialize, Serialize};

/// Benchmark the architectures (candle vs PyTorch).
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Architectures, comma-separated.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "resnet_small,resnet18,resnet50,mobilenetv4_conv_medium,regnetx_016"
    )]
    archs: Vec<String>,
    /// Groups, comma-separated: eval (FP and quantized eval, interleaved), train (one SGD
    /// step: forward, cross-entropy, backward, update).
    #[arg(long, value_delimiter = ',', default_value = "eval,train")]
    modes: Vec<String>,
    /// Batch size.
    #[arg(long, default_value_t = 16)]
    batch: usize,
    /// Image side.
    #[arg(long, default_value_t = 224)]
    px: usize,
    /// Timed iterations (the median is reported), after one warm-up.
    #[arg(long, default_value_t = 3)]
    iters: usize,
    /// CPU threads for both frameworks (0: all cores).
    #[arg(long, default_value_t = 0)]
    threads: usize,
    /// Also run PyTorch/timm with this script (e.g. tools/bench_torch.py) and print ratios.
    #[arg(long)]
    torch: Option<PathBuf>,
    /// Python interpreter for --torch.
    #[arg(long, default_value = "python3")]
    python: String,
    /// Internal: measure one arch in this process and print one JSON line.
    #[arg(long, hide = true)]
    single: Option<String>,
}

/// One measurement (also what `tools/bench_torch.py` prints).
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Measurement {
    arch: String,
    mode: String,
    /// Median seconds per iteration.
    seconds: f64,
    img_per_s: f64,
    /// Median seconds of the forward and backward parts of a train step.
    #[serde(default)]
    forward_s: Option<f64>,
    #[serde(default)]
    backward_s: Option<f64>,
    peak_rss_mb: Option<f64>,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    if let Some(arch) = &args.single {
        let mode = args.modes.first().map(String::as_str).unwrap_or("eval");
        let m = measure(arch, mode, &args)?;
        println!("{}", serde_json::to_string(&m)?);
        return Ok(());
    }
    let threads = if args.threads == 0 {
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
    } else {
        args.threads
    };
    let exe = std::env::current_exe()?;
    let mut rows: Vec<(Measurement, Option<Measurement>)> = Vec::new();
    for arch in &args.archs {
        dptq_models::ArchConfig::from_name(arch)?;
        for mode in &args.modes {
            let mut cmd = Command::new(&exe);
            cmd.args(["bench", "models", "--single", arch, "--modes", mode])
                .args([
                    "--batch",
                    &args.batch.to_string(),
                    "--px",
                    &args.px.to_string(),
                ])
                .args(["--iters", &args.iters.to_string()])
                .env("RAYON_NUM_THREADS", threads.to_string());
            let ours = run_json(cmd).with_context(|| format!("candle {arch} {mode}"))?;
            let theirs = match &args.torch {
                Some(script) => {
                    let mut cmd = Command::new(&args.python);
                    cmd.arg(script)
                        .args(["--arch", arch, "--mode", mode])
                        .args([
                            "--batch",
                            &args.batch.to_string(),
                            "--px",
                            &args.px.to_string(),
                        ])
                        .args([
                            "--iters",
                            &args.iters.to_string(),
                            "--threads",
                            &threads.to_string(),
                        ]);
                    Some(run_json(cmd).with_context(|| format!("pytorch {arch} {mode}"))?)
                }
                None => None,
            };
            for m in ours {
                let t = theirs
                    .as_ref()
                    .and_then(|t| t.iter().find(|t| t.mode == m.mode).cloned());
                tracing::info!(
                    "{arch} {}: candle {:.2} img/s{}",
                    m.mode,
                    m.img_per_s,
                    t.as_ref().map_or(String::new(), |t| format!(
                        ", pytorch {:.2} img/s",
                        t.img_per_s
                    ))
                );
                rows.push((m, t));
            }
        }
    }
    print_table(&rows, &args, threads);
    Ok(())
}

fn run_json(mut cmd: Command) -> anyhow::Result<Vec<Measurement>> {
    let out = cmd
        .output()
        .with_context(|| format!("cannot run {cmd:?}"))?;
    if !out.status.success() {
        bail!("{cmd:?} failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    let text = String::from_utf8(out.stdout)?;
    let line = text.lines().last().unwrap_or_default();
    serde_json::from_str(line).with_context(|| format!("unexpected output {line:?}"))
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// Peak resident memory of this process (Linux `VmHWM`), in MiB.
fn peak_rss_mb() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb / 1024.0)
}

fn measure(arch: &str, mode: &str, args: &Args) -> anyhow::Result<Vec<Measurement>> {
    let dev = Device::Cpu;
    let store = ParamStore::new(0, DType::F32, &dev);
    let xs = Tensor::randn(0f32, 1.0, (args.batch, 3, args.px, args.px), &dev)?;
    let measurement = |mode: &str, times: Vec<f64>, fwd: Vec<f64>, bwd: Vec<f64>| {
        let seconds = median(times);
        Measurement {
            arch: arch.to_string(),
            mode: mode.to_string(),
            seconds,
            img_per_s: args.batch as f64 / seconds,
            forward_s: (!fwd.is_empty()).then(|| median(fwd)),
            backward_s: (!bwd.is_empty()).then(|| median(bwd)),
            peak_rss_mb: peak_rss_mb(),
        }
    };
    match mode {
        "eval" => {
            // Frozen store: detached weights, no autograd graph.
            let model = build(arch, 1000, &store.frozen())?;
            let l = model.quant_layers().len();
            let bits = seeded::seeded_bits(0, args.batch, l, 3, 10, &dev)?;
            let plans = [QuantPlan::full_precision(), QuantPlan::bits(&bits)];
            let mut times = [Vec::new(), Vec::new()];
            for i in 0..=args.iters {
                for (plan, times) in plans.iter().zip(&mut times) {
                    let t = Instant::now();
                    let logits = model.forward(&xs, plan, BnMode::Eval, None)?;
                    logits.to_vec2::<f32>()?;
                    if i > 0 {
                        times.push(t.elapsed().as_secs_f64());
                    }
                }
            }
            let [fp, q] = times;
            Ok(vec![
                measurement("fp", fp, vec![], vec![]),
                measurement("q", q, vec![], vec![]),
            ])
        }
        "train" => {
            let model = build(arch, 1000, &store)?;
            let labels =
                Tensor::from_vec((0..args.batch as u32).collect::<Vec<_>>(), args.batch, &dev)?;
            let vars = store.trainable_vars();
            let (mut times, mut fwd, mut bwd) = (Vec::new(), Vec::new(), Vec::new());
            for i in 0..=args.iters {
                let t = Instant::now();
                let logits =
                    model.forward(&xs, &QuantPlan::full_precision(), BnMode::Train, None)?;
                let logp = candle_nn::ops::log_softmax(&logits, D::Minus1)?;
                let loss = logp.gather(&labels.unsqueeze(1)?, 1)?.neg()?.mean_all()?;
                loss.to_scalar::<f32>()?;
                let t_fwd = t.elapsed().as_secs_f64();
                let grads = loss.backward()?;
                let t_bwd = t.elapsed().as_secs_f64() - t_fwd;
                for (_, var) in &vars {
                    if let Some(g) = grads.get(var.as_tensor()) {
                        var.set(&(var.as_tensor() - (g * 0.01)?)?)?;
                    }
                }
                if i > 0 {
                    times.push(t.elapsed().as_secs_f64());
                    fwd.push(t_fwd);
                    bwd.push(t_bwd);
                }
            }
            Ok(vec![measurement("train", times, fwd, bwd)])
        }
        other => bail!("unknown group {other:?} (known: eval, train)"),
    }
}

fn print_table(rows: &[(Measurement, Option<Measurement>)], args: &Args, threads: usize) {
    println!(
        "CPU, {threads} threads, batch {} x {} px, f32, median of {} iterations (after one warm-up).\n",
        args.batch, args.px, args.iters
    );
    println!(
        "| arch | mode | candle img/s | PyTorch img/s | candle / PyTorch | s/iter candle / PyTorch | train fwd / bwd s candle; PyTorch | peak RSS MiB candle / PyTorch |"
    );
    println!("|---|---|---|---|---|---|---|---|");
    let fmt = |v: Option<f64>, p: usize| v.map_or("-".to_string(), |v| format!("{v:.p$}"));
    for (ours, theirs) in rows {
        let split = |m: &Measurement| match (m.forward_s, m.backward_s) {
            (Some(f), Some(b)) => format!("{f:.2} / {b:.2}"),
            _ => "-".to_string(),
        };
        let split = match theirs {
            Some(t) if t.forward_s.is_some() => format!("{}; {}", split(ours), split(t)),
            _ => split(ours),
        };
        println!(
            "| {} | {} | {:.2} | {} | {} | {:.3} / {} | {} | {} / {} |",
            ours.arch,
            ours.mode,
            ours.img_per_s,
            fmt(theirs.as_ref().map(|t| t.img_per_s), 2),
            fmt(theirs.as_ref().map(|t| ours.img_per_s / t.img_per_s), 2),
            ours.seconds,
            fmt(theirs.as_ref().map(|t| t.seconds), 3),
            split,
            fmt(ours.peak_rss_mb, 0),
            fmt(theirs.as_ref().and_then(|t| t.peak_rss_mb), 0),
        );
    }
    // Quantized over full-precision eval time, per arch (target <= 1.3).
    println!();
    let find = |arch: &str, mode: &str| rows.iter().find(|(m, _)| m.arch == arch && m.mode == mode);
    for (fp, fp_torch) in rows.iter().filter(|(m, _)| m.mode == "fp") {
        if let Some((q, q_torch)) = find(&fp.arch, "q") {
            let torch = match (fp_torch, q_torch) {
                (Some(tf), Some(tq)) => format!(", {:.2} (PyTorch)", tq.seconds / tf.seconds),
                _ => String::new(),
            };
            println!(
                "{}: quantized / FP eval time = {:.2} (candle){torch}",
                fp.arch,
                q.seconds / fp.seconds
            );
        }
    }
}
