//! Benchmarks and the side-by-side harness: the load generator (`loadgen`,
//! driven by the `ixload` binary) and the harness (`harness`, the `ix-bench`
//! binary) that compares IX with tokio, nginx and memcached using it.

pub mod harness;
pub mod loadgen;
