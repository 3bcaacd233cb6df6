//! The IX runtime: one pinned thread per core, each polling its own NIC queue,
//! running the `ix-net` stack to completion on a bounded batch, and running
//! `!Send` tasks that use zero-copy sockets.
//!
//! ```no_run
//! use ix_runtime::{Backend, Runtime, net::TcpListener};
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! Runtime::builder()
//!     .cores(2)
//!     .backend(Backend::Tap { name: "ix0".into() })
//!     .ipv4("10.99.0.2".parse()?, 24)
//!     .build()?
//!     .run(|_core| async {
//!         let listener = TcpListener::bind(7).expect("port 7");
//!         while let Ok((stream, _peer)) = listener.accept().await {
//!             ix_runtime::spawn_local(async move {
//!                 while let Ok(Some(chunk)) = stream.recv().await {
//!                     let reply = bytes::Bytes::copy_from_slice(&chunk);
//!                     if stream.send(reply).await.is_err() {
//!                         break;
//!                     }
//!                 }
//!             });
//!         }
//!     })?;
//! # Ok(())
//! # }
//! ```

// Unsafe code only where a system call needs it: those modules opt out visibly.
#![deny(unsafe_code)]

mod backend;
pub mod blocking;
mod config;
mod core;
mod core_board_link;
mod core_thread;
mod cpu_placement;
mod dataplane;
mod error;
pub mod executor;
mod idle;
mod idle_wait;
mod kernel;
pub mod metrics;
pub mod net;
mod poll_loop;
mod readiness;
mod runtime;
mod stats;
pub mod time;

pub use backend::Backend;
pub use blocking::spawn_blocking;
pub use config::Builder;
pub use cpu_placement::pin_current_thread;
pub use error::RuntimeError;
pub use executor::{Executor, Handle, JoinError, JoinHandle, RemoteJoinHandle, SpawnError, spawn_local, yield_now};
pub use idle::{IdlePolicy, ParseIdlePolicyError};
pub use ix_driver::pool::DEFAULT_POOL_FRAMES;
pub use kernel::reactor::ReactorStats;
pub use runtime::{Runtime, ShutdownHandle};
pub use stats::{CoreStats, LoopStats};

/// The current core's index.
///
/// # Panics
/// Outside a task of an IX runtime.
pub fn core_index() -> usize {
    core::with_core(|c| c.index())
}

/// The current core's counters, read from inside a task: its loop (rounds,
/// batches and their mean size, empty polls, tasks polled), its queue, its
/// stack (connections, retransmits: `stack.tcp`), its executor and, on the
/// `kernel` backend, its reactor.
///
/// # Panics
/// Outside a task of an IX runtime.
pub fn stats() -> CoreStats {
    core::with_core(|c| c.stats())
}
