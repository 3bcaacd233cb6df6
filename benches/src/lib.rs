//! Benchmarks and the side-by-side harness. Micro benchmarks live in each crate's
//! `benches/`; the harness and its load generator arrive with the benchmark issue (#8).
