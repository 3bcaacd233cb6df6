//! Benchmarks and the side-by-side harness: the load generator (`loadgen`,
//! driven by the `ixload` binary) and the harness (`harness`, the `ix-bench`
//! binary) that compares IX with tokio, nginx and memcached using it.

pub mod harness;
pub mod loadgen;
pub mod relay;
pub mod soak;

/// Logging for this crate's binaries: `tracing` to stderr, filtered by
/// `RUST_LOG` (warnings only when unset).
pub fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).init();
}
