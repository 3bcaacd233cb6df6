//! Blocking work off the polling cores: [`spawn_blocking`] runs a closure on a
//! bounded pool of ordinary threads and wakes the awaiting task on its own core.
//!
//! # How it compares with `tokio::task::spawn_blocking`
//!
//! The contract is tokio's: the closure runs once on another thread, the
//! returned handle is a future of its result, a panic comes back as
//! [`JoinError::Panicked`], dropping the handle detaches the closure (it still
//! runs), and a running closure cannot be aborted. The differences:
//!
//! - **Pool size.** Threads are started on demand up to
//!   [`BlockingConfig::max_threads`] (default [`BLOCKING_THREADS_DEFAULT`] = 64;
//!   tokio's default is 512) and an idle thread exits after
//!   [`BlockingConfig::keep_alive`] (10 s, as tokio). The pool is one per
//!   process, shared by every runtime, rather than one per runtime.
//! - **Queueing.** Work waiting for a thread is bounded by
//!   [`BlockingConfig::queue_capacity`] (default [`BLOCKING_QUEUE_DEFAULT_JOBS`]);
//!   tokio's queue is unbounded. Past the bound the closure is dropped unrun and
//!   the handle resolves to [`JoinError::Rejected`], so that a flood of requests
//!   becomes an error answer instead of unbounded memory.
//! - **Shutdown.** The cores do not wait for blocking work: when
//!   [`Runtime::run`](crate::Runtime::run) returns, closures already running go
//!   on (their results are dropped) and queued ones still run. tokio instead
//!   drops queued closures and waits for running ones when the runtime shuts
//!   down. [`BlockingPool::shutdown`] does what tokio does, for a pool of one's
//!   own: queued closures are dropped unrun (their handles give
//!   [`JoinError::Cancelled`]) and it waits, up to a timeout, for running ones.
//!
//! The awaiting task is woken through its waker, which from a pool thread goes
//! through the core's inbound queue and eventfd: the task resumes on the core
//! that spawned it, never on the pool thread.

use std::collections::VecDeque;
use std::fmt;
use std::future::Future;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock, PoisonError};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use futures::channel::oneshot;

use crate::executor::JoinError;
use crate::executor::panic_message;

/// Threads the process-wide pool starts at most.
pub const BLOCKING_THREADS_DEFAULT: usize = 64;
/// Closures the process-wide pool queues at most while every thread is busy.
pub const BLOCKING_QUEUE_DEFAULT_JOBS: usize = 4096;
/// How long an idle pool thread waits for work before it exits.
pub const BLOCKING_KEEP_ALIVE_DEFAULT: Duration = Duration::from_secs(10);

/// The shape of a [`BlockingPool`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlockingConfig {
    /// Threads started at most (at least 1).
    pub max_threads: usize,
    /// Closures queued at most while every thread is busy; more are rejected.
    pub queue_capacity: usize,
    /// How long an idle thread waits for work before it exits.
    pub keep_alive: Duration,
    /// Name of the pool's threads.
    pub thread_name: String,
}

impl Default for BlockingConfig {
    fn default() -> Self {
        Self {
            max_threads: BLOCKING_THREADS_DEFAULT,
            queue_capacity: BLOCKING_QUEUE_DEFAULT_JOBS,
            keep_alive: BLOCKING_KEEP_ALIVE_DEFAULT,
            thread_name: "ix-blocking".to_owned(),
        }
    }
}

/// Counters of a [`BlockingPool`], read with [`BlockingPool::stats`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BlockingStats {
    /// Threads alive now.
    pub threads: u64,
    /// Threads running a closure now.
    pub busy: u64,
    /// Closures waiting for a thread now.
    pub queued: u64,
    /// Closures that ran to the end (or panicked) since the pool started.
    pub completed: u64,
    /// Closures rejected because the queue was full.
    pub rejected: u64,
    /// Closures dropped unrun by [`BlockingPool::shutdown`].
    pub cancelled: u64,
    /// Threads started since the pool started.
    pub threads_started: u64,
}

type Job = Box<dyn FnOnce() + Send>;

struct PoolState {
    queue: VecDeque<Job>,
    threads: usize,
    idle: usize,
    shut_down: bool,
}

struct PoolShared {
    config: BlockingConfig,
    state: Mutex<PoolState>,
    /// Idle threads wait here for work.
    work: Condvar,
    /// [`BlockingPool::shutdown`] waits here for the last thread to exit.
    exited: Condvar,
    completed: AtomicU64,
    rejected: AtomicU64,
    cancelled: AtomicU64,
    threads_started: AtomicU64,
}

fn lock(mutex: &Mutex<PoolState>) -> MutexGuard<'_, PoolState> {
    // Nothing panics while holding the lock (closures run outside it).
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A bounded pool of ordinary threads for blocking closures. Cheap to clone
/// (one `Arc`). [`spawn_blocking`] uses the process-wide one,
/// [`BlockingPool::global`]; make one of your own to shut it down on your terms.
#[derive(Clone)]
pub struct BlockingPool {
    shared: Arc<PoolShared>,
}

impl fmt::Debug for BlockingPool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BlockingPool").field("config", &self.shared.config).field("stats", &self.stats()).finish()
    }
}

static GLOBAL: OnceLock<BlockingPool> = OnceLock::new();

/// The process-wide blocking pool exists already with another configuration;
/// returned by [`BlockingPool::configure_global`].
#[derive(Debug, Clone, thiserror::Error)]
#[error(
    "the process-wide blocking pool was already started with {} threads and a queue of {} closures; \
     configure it before the first spawn_blocking, once per process",
    existing.max_threads,
    existing.queue_capacity
)]
pub struct GlobalPoolConfigured {
    /// The configuration the pool has.
    pub existing: BlockingConfig,
}

impl BlockingPool {
    /// A pool with no thread yet: threads start as closures arrive.
    ///
    /// # Panics
    /// When `config.max_threads` is zero.
    pub fn new(config: BlockingConfig) -> Self {
        assert!(config.max_threads > 0, "a blocking pool needs at least one thread");
        let state = PoolState { queue: VecDeque::new(), threads: 0, idle: 0, shut_down: false };
        Self {
            shared: Arc::new(PoolShared {
                config,
                state: Mutex::new(state),
                work: Condvar::new(),
                exited: Condvar::new(),
                completed: AtomicU64::new(0),
                rejected: AtomicU64::new(0),
                cancelled: AtomicU64::new(0),
                threads_started: AtomicU64::new(0),
            }),
        }
    }

    /// The process-wide pool, made on first use: with the configuration given
    /// to [`BlockingPool::configure_global`] (or
    /// [`Builder::blocking_pool`](crate::Builder::blocking_pool)) if that came
    /// first, else with [`BlockingConfig::default`].
    pub fn global() -> &'static BlockingPool {
        GLOBAL.get_or_init(|| BlockingPool::new(BlockingConfig::default()))
    }

    /// Makes the process-wide pool with `config`, unless it exists already.
    /// Asking again for the configuration the pool has is not an error, so
    /// several runtimes built with the same setting all succeed.
    ///
    /// # Errors
    /// [`GlobalPoolConfigured`] when the process-wide pool was already made
    /// (by an earlier call, or by a [`spawn_blocking`] that came first) with
    /// another configuration; the error carries that configuration.
    ///
    /// # Panics
    /// When `config.max_threads` is zero (as [`BlockingPool::new`]).
    pub fn configure_global(config: BlockingConfig) -> Result<&'static BlockingPool, GlobalPoolConfigured> {
        let mut made_here = false;
        let pool = GLOBAL.get_or_init(|| {
            made_here = true;
            BlockingPool::new(config.clone())
        });
        if made_here || pool.shared.config == config {
            Ok(pool)
        } else {
            Err(GlobalPoolConfigured { existing: pool.shared.config.clone() })
        }
    }

    /// Runs `f` on one of the pool's threads; the handle resolves to its result.
    /// Callable from any thread, inside a runtime or not. Never blocks.
    ///
    /// The handle resolves to [`JoinError::Rejected`] when the queue is full,
    /// [`JoinError::Cancelled`] when the pool is shut down before `f` starts
    /// (or when no thread can be started), [`JoinError::Panicked`] when `f` panics.
    pub fn spawn<F, R>(&self, f: F) -> BlockingJoinHandle<R>
    where
        F: FnOnce() -> R + Send + 'static,
        R: Send + 'static,
    {
        let (sender, receiver) = oneshot::channel();
        let job: Job = Box::new(move || {
            let result = catch_unwind(AssertUnwindSafe(f)).map_err(|p| JoinError::Panicked(panic_message(p.as_ref())));
            // A dropped receiver means the handle was detached: the result is not wanted.
            let _unwanted = sender.send(result);
        });
        let rejected = self.submit(job);
        BlockingJoinHandle { receiver, rejected }
    }

    /// Queues `job`, starting a thread when none is idle and the bound allows.
    /// Returns the error the handle resolves to when the job was not queued.
    fn submit(&self, job: Job) -> Option<JoinError> {
        let shared = &self.shared;
        let mut state = lock(&shared.state);
        if state.shut_down {
            drop(state);
            shared.cancelled.fetch_add(1, Ordering::Relaxed);
            return Some(JoinError::Cancelled);
        }
        // Jobs already queued are owed to the idle threads first.
        let spare_idle = state.idle > state.queue.len();
        let can_grow = state.threads < shared.config.max_threads;
        if !spare_idle && !can_grow && state.queue.len() >= shared.config.queue_capacity {
            drop(state);
            shared.rejected.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(capacity = shared.config.queue_capacity, "blocking pool queue full: closure rejected");
            return Some(JoinError::Rejected);
        }
        state.queue.push_back(job);
        if spare_idle {
            drop(state);
            shared.work.notify_one();
            return None;
        }
        if can_grow {
            state.threads += 1;
            drop(state);
            if let Err(e) = self.start_thread() {
                tracing::warn!(error = %e, "blocking pool: cannot start a thread");
                let mut state = lock(&shared.state);
                state.threads -= 1;
                if state.threads == 0 {
                    // Nobody will ever run what is queued: drop it, its handles report cancellation.
                    let orphans = std::mem::take(&mut state.queue);
                    drop(state);
                    shared.cancelled.fetch_add(orphans.len() as u64, Ordering::Relaxed);
                    drop(orphans);
                }
            }
        }
        None
    }

    fn start_thread(&self) -> std::io::Result<()> {
        let shared = self.shared.clone();
        std::thread::Builder::new().name(self.shared.config.thread_name.clone()).spawn(move || shared.work_loop())?;
        self.shared.threads_started.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    /// The pool's counters now.
    pub fn stats(&self) -> BlockingStats {
        let shared = &self.shared;
        let state = lock(&shared.state);
        BlockingStats {
            threads: state.threads as u64,
            busy: (state.threads - state.idle) as u64,
            queued: state.queue.len() as u64,
            completed: shared.completed.load(Ordering::Relaxed),
            rejected: shared.rejected.load(Ordering::Relaxed),
            cancelled: shared.cancelled.load(Ordering::Relaxed),
            threads_started: shared.threads_started.load(Ordering::Relaxed),
        }
    }

    /// Shuts the pool down as tokio shuts down its blocking pool: closures not
    /// yet started are dropped (their handles give [`JoinError::Cancelled`]),
    /// later [`spawn`](Self::spawn)s are cancelled at once, and this waits up
    /// to `timeout` for the running closures to return. Returns whether every
    /// thread exited in time (the others exit when their closure returns).
    /// Blocks the calling thread: do not call it on a core.
    pub fn shutdown(&self, timeout: Duration) -> bool {
        let shared = &self.shared;
        let mut state = lock(&shared.state);
        state.shut_down = true;
        let orphans = std::mem::take(&mut state.queue);
        shared.cancelled.fetch_add(orphans.len() as u64, Ordering::Relaxed);
        shared.work.notify_all();
        let deadline = Instant::now() + timeout;
        while state.threads > 0 {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            state = shared.exited.wait_timeout(state, left).unwrap_or_else(PoisonError::into_inner).0;
        }
        let all_exited = state.threads == 0;
        drop(state);
        // Dropped outside the lock: each drop wakes a task through its handle.
        drop(orphans);
        all_exited
    }
}

impl PoolShared {
    /// One pool thread: runs queued closures until idle for `keep_alive` or shut down.
    fn work_loop(&self) {
        let mut state = lock(&self.state);
        loop {
            if let Some(job) = state.queue.pop_front() {
                drop(state);
                job();
                self.completed.fetch_add(1, Ordering::Relaxed);
                state = lock(&self.state);
                continue;
            }
            if state.shut_down {
                break;
            }
            state.idle += 1;
            let (next, waited) =
                self.work.wait_timeout(state, self.config.keep_alive).unwrap_or_else(PoisonError::into_inner);
            state = next;
            state.idle -= 1;
            if waited.timed_out() && state.queue.is_empty() {
                break;
            }
        }
        state.threads -= 1;
        drop(state);
        self.exited.notify_all();
    }
}

/// Awaits a closure given to [`spawn_blocking`] or [`BlockingPool::spawn`].
/// `Send` when the result is. Dropping it detaches the closure: it still runs.
#[derive(Debug)]
#[must_use = "a blocking closure's handle does nothing unless awaited; drop it to detach"]
pub struct BlockingJoinHandle<T> {
    receiver: oneshot::Receiver<Result<T, JoinError>>,
    /// Set when the closure was never queued.
    rejected: Option<JoinError>,
}

impl<T> Future for BlockingJoinHandle<T> {
    type Output = Result<T, JoinError>;

    /// # Poll outcomes
    /// - `Poll::Ready(Ok(result))`: the closure returned.
    /// - `Poll::Ready(Err(JoinError::Panicked(_)))`: it panicked.
    /// - `Poll::Ready(Err(JoinError::Rejected))`: the queue was full; it never ran.
    /// - `Poll::Ready(Err(JoinError::Cancelled))`: the pool shut down (or could
    ///   start no thread) before it started; it never ran.
    /// - `Poll::Pending`: queued or running; the task is woken on its own core
    ///   when the closure returns.
    ///
    /// # Cancel safety
    /// Dropping the handle leaves the closure to run; its result is dropped.
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        if let Some(error) = self.rejected.take() {
            return Poll::Ready(Err(error));
        }
        Pin::new(&mut self.receiver).poll(cx).map(|received| received.unwrap_or(Err(JoinError::Cancelled)))
    }
}

/// Runs `f` on the process-wide blocking pool ([`BlockingPool::global`]) and
/// returns a handle to await its result, as `tokio::task::spawn_blocking` does;
/// the module documentation lists the differences (pool size, bounded queue,
/// shutdown). Callable from any thread. Never blocks.
///
/// # Errors
/// The handle resolves to [`JoinError::Panicked`] when `f` panics,
/// [`JoinError::Rejected`] when the pool's queue is full.
///
/// ```
/// # futures::executor::block_on(async {
/// let read = ix_runtime::spawn_blocking(|| std::fs::read("/proc/self/stat")).await;
/// assert!(read.expect("the closure did not panic").is_ok());
/// # });
/// ```
pub fn spawn_blocking<F, R>(f: F) -> BlockingJoinHandle<R>
where
    F: FnOnce() -> R + Send + 'static,
    R: Send + 'static,
{
    BlockingPool::global().spawn(f)
}
