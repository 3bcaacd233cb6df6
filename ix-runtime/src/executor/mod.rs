//! The per-core executor: `!Send` tasks on one thread, driven explicitly by the
//! core's loop, with cross-core spawns and wakes through bounded queues and an eventfd.
//!
//! A runtime builds one [`Handle`] for N cores, starts N threads, and on each
//! creates an [`Executor`] for its core from a clone of the handle. Each thread's
//! loop then repeats: [`Executor::drain_remote`], [`Executor::run_ready`] with a
//! bound, the network work, and when idle blocks on [`Executor::wake_fd`].
//!
//! Wakers are `Send + Sync` and allocation-free to wake and clone. On the owning
//! thread a wake appends the task to the local FIFO ready queue; from another
//! thread it goes through the core's inbound queue and raises its eventfd. A task
//! woken many times before it runs is queued once; a waker of a finished task does nothing.

pub mod coop;
mod join;
mod local;
mod remote;
mod task;
mod yield_now;

pub use join::{JoinHandle, RemoteJoinHandle};
pub(crate) use local::current_stats;
pub(crate) use local::panic_message;
pub use local::{Executor, ExecutorStats, spawn_local};
pub use remote::{Handle, INBOUND_CAPACITY_DEFAULT_TASKS, SpawnError};
pub use task::JoinError;
pub use yield_now::{YieldNow, yield_now};
