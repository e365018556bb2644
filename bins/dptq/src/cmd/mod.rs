//! One module per subcommand.

pub mod analyze;
pub mod audit;
pub mod bench;
pub mod bench_models;
pub mod bench_quant;
pub mod data;
pub mod layers;
pub mod mckp;
pub mod predict;
pub mod reproduce;

/// Logs (`tracing`) go to stderr; `RUST_LOG` overrides the default `info` level.
pub fn init_logging() {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .try_init();
}
