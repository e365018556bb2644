//! `dptq bench`: throughput tables.

#[derive(Debug, clap::Subcommand)]
pub enum Bench {
    /// The architectures: FP eval, quantized eval, train step, peak RSS (vs PyTorch).
    Models(super::bench_models::Args),
}

pub fn run(bench: Bench) -> anyhow::Result<()> {
    match bench {
        Bench::Models(args) => super::bench_models::run(args),
    }
}
