//! `dptq bench`: throughput tables.

#[derive(Debug, clap::Subcommand)]
pub enum Bench {}

pub fn run(bench: Bench) -> anyhow::Result<()> {
    match bench {}
}
