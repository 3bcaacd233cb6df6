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

mod core;
pub mod executor;
pub mod net;
mod reactor;
mod runtime;
pub mod time;

pub use executor::{Executor, Handle, JoinError, JoinHandle, RemoteJoinHandle, SpawnError, spawn_local, yield_now};
pub use ix_driver::pool::DEFAULT_POOL_FRAMES;
pub use reactor::ReactorStats;
pub use runtime::{
    Backend, Builder, CoreStats, IdlePolicy, LoopStats, Runtime, RuntimeError, ShutdownHandle, pin_current_thread,
    stats,
};

/// The current core's index.
///
/// # Panics
/// Outside a task of an IX runtime.
pub fn core_index() -> usize {
    core::with_core(|c| c.index())
}
