//! `dptq`: the command line of the dptq workspace. Each subcommand lives in its own
//! file under `cmd/`, turns its arguments into a library config and calls one library
//! function; results go to stdout or files, logs and progress bars to stderr.

use clap::{Parser, Subcommand};

mod cmd;
mod progress;

/// candle allocates every activation and gradient afresh; with glibc's malloc, buffers this
/// large go back to the OS when freed and are faulted in again on the next step (15 % of a
/// train step). mimalloc keeps them for reuse: 1.1-1.6x train-step throughput on the CPU
/// (docs/performance.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Assess how badly dynamic post-training quantization can fail.
#[derive(Debug, Parser)]
#[command(name = "dptq", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the paper's pipeline on a preset and print Tables 1-3 (default: tiny, CPU).
    Reproduce(cmd::reproduce::Args),
    /// Solve exact-budget bit allocations (JSON on stdin, JSON on stdout).
    Mckp(cmd::mckp::Args),
    /// Logits of tensors, optionally quantized per layer, or the top classes of a photo.
    Predict(cmd::predict::Args),
    /// The quantizable layers of an architecture (index, timm name, input shape).
    Layers(cmd::layers::Args),
    /// Measure throughput of the solver, the quantizers and the models.
    #[command(subcommand)]
    Bench(cmd::bench::Bench),
    /// Inspect datasets (`info`) and download them (`fetch pets`).
    #[command(subcommand)]
    Data(cmd::data::Data),
    /// Analyse a finished run: layer sweeps, activation histograms, corruptions, transitory
    /// points, cross matrix, policy dynamics, mitigation (figures, CSV/JSON, report, HTML).
    Analyze(cmd::analyze::Args),
    /// Worst-case audit of a model you have: train only an adversarial bit policy at an
    /// exact budget on your data and report how far accuracy falls.
    Audit(cmd::audit::Args),
}

fn main() {
    cmd::init_logging();
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Reproduce(args) => cmd::reproduce::run(args),
        Command::Mckp(args) => cmd::mckp::run(args),
        Command::Predict(args) => cmd::predict::run(args),
        Command::Layers(args) => cmd::layers::run(args),
        Command::Bench(bench) => cmd::bench::run(bench),
        Command::Data(data) => cmd::data::run(data),
        Command::Analyze(args) => cmd::analyze::run(args),
        Command::Audit(args) => cmd::audit::run(args),
    };
    if let Err(err) = result {
        eprintln!("error: {err:#}");
        std::process::exit(2);
    }
}
