//! The [`Runtime`]: starting one thread per core, waiting for them, and
//! shutting down gracefully on request ([`ShutdownHandle`]) or on SIGINT and
//! SIGTERM.

#![allow(unsafe_code)] // installing the SIGINT/SIGTERM handlers (libc::signal)

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use ix_net::iface::SharedNeighbors;
use ix_net::tcp::FlowDirectory;

use crate::config::{Builder, Config};
use crate::core_thread::{CoreContext, SharedState, run_core};
use crate::error::RuntimeError;
use crate::executor::Handle;
use crate::poll_loop::ShutdownRequests;
use crate::stats::CoreStats;

impl Builder {
    /// Checks the configuration (and makes the process's blocking pool when
    /// [`Builder::blocking_pool`] set its shape).
    ///
    /// # Errors
    /// [`RuntimeError::Config`] for a missing backend or address, zero cores,
    /// a blocking pool of zero threads, or (with [`Builder::pin_threads`]) an
    /// affinity mask that cannot be read; [`RuntimeError::BlockingPool`] when
    /// the process's blocking pool already has another shape.
    pub fn build(self) -> Result<Runtime, RuntimeError> {
        Ok(Runtime { config: self.check()?, shutdown: Arc::new(AtomicBool::new(false)) })
    }
}

/// A configured runtime; [`Runtime::run`] starts it.
#[derive(Debug)]
pub struct Runtime {
    config: Config,
    shutdown: Arc<AtomicBool>,
}

/// Asks a running runtime to shut down gracefully (from any thread).
#[derive(Debug, Clone)]
pub struct ShutdownHandle {
    flag: Arc<AtomicBool>,
}

impl ShutdownHandle {
    /// Starts a graceful shutdown: listeners stop accepting, tasks get the
    /// drain timeout to finish.
    pub fn shutdown(&self) {
        self.flag.store(true, Ordering::Relaxed);
    }
}

static SIGNALLED: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_: libc::c_int) {
    SIGNALLED.store(true, Ordering::Relaxed);
}

impl Runtime {
    /// A builder with defaults: one core, batch 64, adaptive idling.
    pub fn builder() -> Builder {
        Builder::default()
    }

    /// A handle that shuts the runtime down when asked.
    pub fn shutdown_handle(&self) -> ShutdownHandle {
        ShutdownHandle { flag: self.shutdown.clone() }
    }

    /// Starts every core, runs `main(core)` as the first task on each, and
    /// returns when every core's first task finished (the tasks left are
    /// dropped), or after a graceful shutdown (SIGINT, SIGTERM, or a
    /// [`ShutdownHandle`]): listeners stop accepting, and a core returns once
    /// all its tasks finished, or at the drain timeout, dropping the tasks
    /// left. The connections of dropped tasks are closed (FIN or RST sent).
    ///
    /// # Errors
    /// A backend that cannot start (one line saying why and what to do), or a
    /// core that failed.
    pub fn run<F, Fut>(self, main: F) -> Result<Vec<CoreStats>, RuntimeError>
    where
        F: Fn(usize) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ()> + 'static,
    {
        let Config { backend, settings, placement } = self.config;
        if settings.handle_signals {
            // SAFETY: the handler only stores to an atomic, which is
            // async-signal-safe; installing it has no other effect.
            unsafe {
                libc::signal(libc::SIGINT, on_signal as *const () as libc::sighandler_t);
                libc::signal(libc::SIGTERM, on_signal as *const () as libc::sighandler_t);
            }
        }
        let cores = settings.cores;
        let handle = Handle::new(cores).map_err(|e| RuntimeError::Core { core: 0, message: e.to_string() })?;
        let shared = SharedState {
            neighbors: Arc::new(SharedNeighbors::new()),
            flows: Arc::new(FlowDirectory::new()),
            running: Arc::new(AtomicUsize::new(cores)),
        };
        let sources = backend.open(cores, settings.addr, settings.pool_frames)?;
        let shutdown =
            ShutdownRequests { handle: self.shutdown.clone(), signal: settings.handle_signals.then_some(&SIGNALLED) };
        let context = Arc::new(CoreContext { settings, placement, shared, handle, main, shutdown });
        let mut threads = Vec::with_capacity(cores);
        for (core, source) in sources.into_iter().enumerate() {
            let context = context.clone();
            let thread = std::thread::Builder::new()
                .name(format!("ix-core-{core}"))
                .spawn(move || run_core(core, source, &context))
                .map_err(|e| RuntimeError::Core { core, message: e.to_string() })?;
            threads.push(thread);
        }
        let mut stats = Vec::with_capacity(threads.len());
        for (core, thread) in threads.into_iter().enumerate() {
            match thread.join() {
                Ok(result) => stats.push(result?),
                Err(_) => {
                    return Err(RuntimeError::Core { core, message: "the core's thread panicked".into() });
                }
            }
        }
        Ok(stats)
    }
}
