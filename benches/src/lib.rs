//! Benchmarks and the side-by-side harness: the load generator (`loadgen`,
//! driven by the `ixload` binary) and the harness that compares servers with it.

pub mod loadgen;
