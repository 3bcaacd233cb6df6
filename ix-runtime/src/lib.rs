//! The per-core executor and, later, the poll loop that drives `ix-driver` queues
//! and the `ix-net` stack. Today it holds the executor ([`executor`]).

pub mod executor;

pub use executor::{Executor, Handle, JoinError, JoinHandle, RemoteJoinHandle, SpawnError, spawn_local};
