//! `dptq mckp`: solve exact-budget bit allocations given as JSON on stdin.

#[derive(Debug, clap::Args)]
pub struct Args {}

pub fn run(_args: Args) -> anyhow::Result<()> {
    anyhow::bail!("dptq mckp is not built yet")
}
