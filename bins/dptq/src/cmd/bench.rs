//! `dptq bench`: throughput tables.

#[derive(Debug, clap::Subcommand)]
pub enum Bench {
    /// Fused fake quantizers vs candle's ReLU on [16, 64, 56, 56] f32.
    Quant(super::bench_quant::Args),
    /// The architectures: FP eval, quantized eval, train step, peak RSS (vs PyTorch).
    Models(super::bench_models::Args),
}

pub fn run(bench: Bench) -> anyhow::Result<()> {
    match bench {
        Bench::Quant(args) => super::bench_quant::run(args),
        Bench::Models(args) => super::bench_models::run(args),
    }
}
