//! `dptq bench`: throughput tables.

#[derive(Debug, clap::Subcommand)]
pub enum Bench {
    /// The exact-budget knapsack solver: instances/s on the paper's sizes (vs numpy).
    Mckp(MckpArgs),
    /// Fused fake quantizers vs candle's ReLU on [16, 64, 56, 56] f32.
    Quant(super::bench_quant::Args),
    /// The architectures: FP eval, quantized eval, train step, peak RSS (vs PyTorch).
    Models(super::bench_models::Args),
}

pub fn run(bench: Bench) -> anyhow::Result<()> {
    match bench {
        Bench::Mckp(args) => run_mckp(args),
        Bench::Quant(args) => super::bench_quant::run(args),
        Bench::Models(args) => super::bench_models::run(args),
    }
}

/// Options of `dptq bench mckp`.
#[derive(Debug, clap::Args)]
pub struct MckpArgs {
    /// Instances in the large batch.
    #[arg(long, default_value_t = 100_000)]
    pub large: usize,
    /// Seconds spent on each measurement (whole batches are repeated until then).
    #[arg(long, default_value_t = 1.0)]
    pub seconds: f64,
    /// Instances the numpy baseline solves per case (it is the slow side).
    #[arg(long, default_value_t = 20_000)]
    pub numpy_batch: usize,
    /// Python interpreter that runs the numpy baseline.
    #[arg(long, default_value = "python3")]
    pub python: String,
    /// The numpy baseline script (run from the repository root).
    #[arg(long, default_value = "tools/mckp_numpy_baseline.py")]
    pub baseline: std::path::PathBuf,
    /// Skip the numpy baseline.
    #[arg(long)]
    pub no_numpy: bool,
    /// Seed of the random scores.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
}

/// The paper's problem sizes: (name, layers, budget), bit options 3..=10.
const MCKP_CASES: [(&str, usize, u64); 2] = [("resnet18", 20, 80), ("mobilenetv4", 77, 308)];

/// `dptq bench mckp`: instances per second of `dptq-mckp` on the ResNet18 (L = 20, B = 80)
/// and MobileNetV4 (L = 77, B = 308) problems, batches of 64 and `--large`, on one thread
/// and on all threads; the numpy baseline of `tools/mckp_numpy_baseline.py` is timed in the
/// same run (when `python3` with numpy is available) and checked to give the same answers.
fn run_mckp(args: MckpArgs) -> anyhow::Result<()> {
    use dptq_mckp::{Mode, Problem, SolverBuilder};
    use std::time::Instant;

    anyhow::ensure!(args.large > 0, "--large must be positive, got 0");
    anyhow::ensure!(
        args.seconds > 0.0,
        "--seconds must be positive, got {}",
        args.seconds
    );
    let options: Vec<u32> = (3..=10).collect();
    // rayon's global pool: RAYON_NUM_THREADS, else one thread per core
    let threads = std::env::var("RAYON_NUM_THREADS")
        .ok()
        .and_then(|t| t.parse::<usize>().ok())
        .filter(|&t| t > 0)
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    let numpy = if args.no_numpy {
        Err("--no-numpy".to_string())
    } else {
        numpy_available(&args)
    };
    let mut rows: Vec<(String, Rate)> = Vec::new();
    let mut notes = Vec::new();
    for (case, (name, layers, budget)) in MCKP_CASES.into_iter().enumerate() {
        let problem = Problem::uniform(&options, layers, budget, Mode::Exact)?;
        // numpy runs before and after this case's rows; the faster run is the baseline
        let before = match &numpy {
            Ok(()) => Some(numpy_rate(&args, layers, budget)?),
            Err(_) => None,
        };
        let first_row = rows.len();
        let profits = random_scores(
            args.large * layers * options.len(),
            args.seed + 100 + case as u64,
        );
        let mut solver = SolverBuilder::new().build::<f32>(&problem)?;
        for batch in [64, args.large] {
            let profits = &profits[..batch * layers * options.len()];
            let (mut choices, mut totals) = (vec![0u32; batch * layers], vec![0f32; batch]);
            for parallel in [false, true] {
                // one untimed pass: page-in, and the per-thread buffers of the parallel path
                solve_once(&mut solver, parallel, profits, &mut choices, &mut totals)?;
                // CPU time of this thread (1 thread) or of the whole process (all threads)
                let scope = if parallel { "self" } else { "thread-self" };
                let (start, cpu_start, mut solved) = (Instant::now(), cpu_seconds(scope), 0usize);
                while solved == 0 || start.elapsed().as_secs_f64() < args.seconds {
                    solve_once(&mut solver, parallel, profits, &mut choices, &mut totals)?;
                    solved += batch;
                }
                let wall = solved as f64 / start.elapsed().as_secs_f64();
                let cpu = match (cpu_start, cpu_seconds(scope)) {
                    (Some(a), Some(b)) if b > a => Some(solved as f64 / (b - a)),
                    _ => None,
                };
                let threads = if parallel {
                    format!("all ({threads})")
                } else {
                    "1".to_string()
                };
                let row = format!("| {name} | {layers} | {budget} | {batch} | {threads} |");
                rows.push((row, Rate { wall, cpu }));
            }
        }
        let baseline = match before {
            Some(before) => {
                let after = numpy_rate(&args, layers, budget)?;
                let check =
                    numpy_compare(&args, &options, layers, budget, args.seed + case as u64)?;
                notes.push(format!(
                    "{name}: numpy {} instances/s ({} per CPU-second) before the rows, {} ({}) after; \
                     the faster run is the baseline; answers of {check}",
                    si(before.wall),
                    before.cpu.map_or("-".into(), si),
                    si(after.wall),
                    after.cpu.map_or("-".into(), si),
                ));
                Some(Rate {
                    wall: before.wall.max(after.wall),
                    cpu: before.cpu.zip(after.cpu).map(|(a, b)| a.max(b)),
                })
            }
            None => None,
        };
        for (row, rate) in &mut rows[first_row..] {
            let ratio = |ours: Option<f64>, theirs: Option<f64>| match (ours, theirs) {
                (Some(a), Some(b)) => format!("{:.0}x", a / b),
                _ => "-".to_string(),
            };
            row.push_str(&format!(
                " {} | {} | {} | {} |",
                si(rate.wall),
                ratio(Some(rate.wall), baseline.map(|b| b.wall)),
                rate.cpu.map_or("-".into(), si),
                ratio(rate.cpu, baseline.and_then(|b| b.cpu)),
            ));
        }
    }
    println!(
        "dptq-mckp, options 3..=10, exact budget, f32 scores uniform in [-1, 1), seed {}",
        args.seed
    );
    println!();
    println!(
        "| case | L | B | batch | threads | instances/s | vs numpy | instances per CPU-s | vs numpy (CPU) |"
    );
    println!("|---|---|---|---|---|---|---|---|---|");
    for (row, _) in rows {
        println!("{row}");
    }
    println!();
    match numpy {
        Ok(()) => {
            println!(
                "numpy baseline ({}, batch {}, float32, whole batches for at least {} s), same run:",
                args.baseline.display(),
                args.numpy_batch,
                args.seconds
            );
            for note in notes {
                println!("- {note}");
            }
        }
        Err(why) => println!("numpy baseline skipped: {why}"),
    }
    Ok(())
}

/// Instances per second of wall-clock time and per second of CPU time (when known).
#[derive(Debug, Clone, Copy)]
struct Rate {
    wall: f64,
    cpu: Option<f64>,
}

/// User + system CPU seconds of `/proc/<scope>/stat` (`self`: the process, `thread-self`:
/// the calling thread), in clock ticks of 1/100 s; `None` where there is no procfs.
fn cpu_seconds(scope: &str) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{scope}/stat")).ok()?;
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let ticks = |i: usize| fields.get(i)?.parse::<f64>().ok();
    Some((ticks(11)? + ticks(12)?) / 100.0)
}

fn solve_once(
    solver: &mut dptq_mckp::Solver<f32>,
    parallel: bool,
    profits: &[f32],
    choices: &mut [u32],
    totals: &mut [f32],
) -> anyhow::Result<()> {
    if parallel {
        solver.par_solve_batch_into(profits, choices, totals)?;
    } else {
        solver.solve_batch_into(profits, choices, totals)?;
    }
    Ok(())
}

/// `len` scores uniform in [-1, 1) from a seeded splitmix64 stream.
fn random_scores(len: usize, seed: u64) -> Vec<f32> {
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ 0xD1B5_4A32_D192_ED03;
    (0..len)
        .map(|_| {
            state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = state;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^= z >> 31;
            (z >> 40) as f32 / (1u64 << 23) as f32 - 1.0
        })
        .collect()
}

/// `Ok` when the baseline script exists and the interpreter imports numpy.
fn numpy_available(args: &MckpArgs) -> Result<(), String> {
    if !args.baseline.is_file() {
        return Err(format!(
            "{} not found (run from the repository root)",
            args.baseline.display()
        ));
    }
    match std::process::Command::new(&args.python)
        .args(["-c", "import numpy"])
        .output()
    {
        Ok(out) if out.status.success() => Ok(()),
        Ok(_) => Err(format!("{} cannot import numpy", args.python)),
        Err(err) => Err(format!("{} not available ({err})", args.python)),
    }
}

/// Run the baseline script with `args` and `stdin`; its stdout parsed as JSON.
fn numpy_run(
    args: &MckpArgs,
    script_args: &[String],
    stdin: &str,
) -> anyhow::Result<serde_json::Value> {
    use std::io::Write;
    use std::process::{Command, Stdio};
    let mut child = Command::new(&args.python)
        .arg(&args.baseline)
        .args(script_args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    child
        .stdin
        .take()
        .expect("piped stdin")
        .write_all(stdin.as_bytes())?;
    let out = child.wait_with_output()?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let value = serde_json::from_str(stdout.trim()).map_err(|err| {
        anyhow::anyhow!(
            "numpy baseline gave no JSON ({err}): {}",
            String::from_utf8_lossy(&out.stderr).trim()
        )
    })?;
    Ok(value)
}

/// The baseline's instances per second (wall clock and CPU time) on the case, measured now.
fn numpy_rate(args: &MckpArgs, layers: usize, budget: u64) -> anyhow::Result<Rate> {
    let script_args = [
        "bench",
        "--groups",
        &layers.to_string(),
        "--options",
        "3..10",
        "--budget",
        &budget.to_string(),
        "--batch",
        &args.numpy_batch.to_string(),
        "--seed",
        &args.seed.to_string(),
        "--dtype",
        "float32",
        "--seconds",
        &args.seconds.to_string(),
    ];
    let out = numpy_run(args, &script_args.map(String::from), "")?;
    let wall = out["instances_per_s"]
        .as_f64()
        .ok_or_else(|| anyhow::anyhow!("numpy baseline: no instances_per_s in {out}"))?;
    Ok(Rate {
        wall,
        cpu: out["instances_per_cpu_s"].as_f64(),
    })
}

/// Solve 256 random f64 instances with `dptq mckp`'s code path and let the baseline check
/// every answer; returns a sentence for the report.
fn numpy_compare(
    args: &MckpArgs,
    options: &[u32],
    layers: usize,
    budget: u64,
    seed: u64,
) -> anyhow::Result<String> {
    let n = 256;
    let k = options.len();
    let flat = random_scores(n * layers * k, seed ^ 0x5eed);
    // half of the examples with integer scores: many exact ties
    let profits = (0..n)
        .map(|e| {
            (0..layers)
                .map(|l| {
                    let row = &flat[(e * layers + l) * k..(e * layers + l + 1) * k];
                    row.iter()
                        .map(|&x| {
                            if e % 2 == 0 {
                                x as f64
                            } else {
                                (x * 2.0).round() as f64
                            }
                        })
                        .collect()
                })
                .collect()
        })
        .collect();
    let request = super::mckp::Request {
        options: options.to_vec(),
        budget,
        mode: super::mckp::ModeArg::Exact,
        profits,
    };
    let response = super::mckp::solve(&request)?;
    let pair = serde_json::json!({ "request": request, "response": response });
    let out = numpy_run(args, &["compare".to_string()], &pair.to_string())?;
    let (examples, mismatches) = (
        out["examples"].as_u64().unwrap_or(0),
        out["mismatches"].as_u64().unwrap_or(u64::MAX),
    );
    anyhow::ensure!(
        mismatches == 0,
        "numpy baseline disagrees with dptq-mckp on {mismatches} of {examples} examples"
    );
    Ok(format!(
        "{examples} examples (half with tied integer scores) identical to dptq-mckp"
    ))
}

/// `1234567.0` -> `1.23M`.
fn si(x: f64) -> String {
    if x >= 1e6 {
        format!("{:.2}M", x / 1e6)
    } else if x >= 1e3 {
        format!("{:.1}k", x / 1e3)
    } else {
        format!("{x:.0}")
    }
}
