//! The side-by-side harness: a test network, each server pinned to its CPU, a
//! sweep of offered load per server with `ixload`, then a table, a plot per
//! workload and the raw data as JSON.

pub mod interrupt;
pub mod machine;
pub mod network;
pub mod plot;
pub mod receive_trace;
pub mod search;
pub mod servers;
pub mod stalls;
pub mod stats;
pub mod sweep;
pub mod table;
