//! The runtime's configuration: the [`Builder`] and its settings, checked
//! into a [`Config`] before any core starts.

use std::net::Ipv4Addr;
use std::sync::Arc;
use std::time::Duration;

use ix_driver::ixcp::CoreBoard;

use ix_driver::queue::DEFAULT_BATCH_PACKETS;
use ix_net::TcpConfig;

use crate::backend::Backend;
use crate::blocking::{BlockingConfig, BlockingPool};
use crate::cpu_placement::CorePlacement;
use crate::error::RuntimeError;
use crate::idle::IdlePolicy;

/// Configures a [`Runtime`](crate::Runtime); [`Builder::build`] checks it.
#[derive(Debug, Clone, Default)]
pub struct Builder {
    backend: Option<Backend>,
    settings: Settings,
}

/// Every setting of a runtime but its backend: what each core reads.
#[derive(Debug, Clone)]
pub(crate) struct Settings {
    pub(crate) cores: usize,
    pub(crate) addr: Option<(Ipv4Addr, u8)>,
    pub(crate) gateway: Option<Ipv4Addr>,
    pub(crate) batch: usize,
    pub(crate) idle: IdlePolicy,
    pub(crate) pool_frames: u32,
    pub(crate) tcp: TcpConfig,
    pub(crate) pin_threads: bool,
    pub(crate) first_cpu: usize,
    pub(crate) drain_timeout: Duration,
    pub(crate) handle_signals: bool,
    pub(crate) port_probing: bool,
    pub(crate) blocking_pool: Option<BlockingConfig>,
    /// The core board of [`Builder::core_board`].
    pub(crate) core_board: Option<Arc<CoreBoard>>,
}

/// A checked configuration: the backend, the settings and where the cores run.
#[derive(Debug, Clone)]
pub(crate) struct Config {
    pub(crate) backend: Backend,
    pub(crate) settings: Settings,
    pub(crate) placement: CorePlacement,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            cores: 1,
            addr: None,
            gateway: None,
            batch: DEFAULT_BATCH_PACKETS,
            idle: IdlePolicy::default(),
            pool_frames: ix_driver::pool::DEFAULT_POOL_FRAMES,
            tcp: TcpConfig::default(),
            pin_threads: true,
            first_cpu: 0,
            drain_timeout: Duration::from_secs(5),
            handle_signals: true,
            port_probing: true,
            blocking_pool: None,
            core_board: None,
        }
    }
}

impl Builder {
    /// Number of cores (threads, each with its own queue).
    pub fn cores(mut self, n: usize) -> Self {
        self.settings.cores = n;
        self
    }

    /// The backend.
    pub fn backend(mut self, backend: Backend) -> Self {
        self.backend = Some(backend);
        self
    }

    /// The dataplane's IPv4 address and prefix length (required but for the
    /// `kernel` backend, whose listeners bind it when given and 0.0.0.0
    /// otherwise).
    pub fn ipv4(mut self, addr: Ipv4Addr, prefix_len: u8) -> Self {
        self.settings.addr = Some((addr, prefix_len));
        self
    }

    /// The default gateway.
    pub fn gateway(mut self, gateway: Ipv4Addr) -> Self {
        self.settings.gateway = Some(gateway);
        self
    }

    /// Receive batch bound (IX's B; default 64).
    pub fn batch(mut self, packets: usize) -> Self {
        self.settings.batch = packets.max(1);
        self
    }

    /// What a core does when a round finds no work (default: adaptive, with
    /// a spin budget of [`IdlePolicy::DEFAULT_SPIN_US`]).
    pub fn idle(mut self, policy: IdlePolicy) -> Self {
        self.settings.idle = policy;
        self
    }

    /// Frames in each core's packet pool.
    pub fn pool_frames(mut self, frames: u32) -> Self {
        self.settings.pool_frames = frames;
        self
    }

    /// TCP settings.
    pub fn tcp(mut self, tcp: TcpConfig) -> Self {
        self.settings.tcp = tcp;
        self
    }

    /// Pin each core's thread to one CPU (default on): core `i` to the
    /// `(first_cpu + i)`-th of the CPUs the thread calling [`Builder::build`]
    /// may run on, counting modulo their number. For a program's main thread
    /// those are the process's CPUs, so `taskset -c 2,3 PROGRAM` puts core 0 on
    /// CPU 2 and core 1 on CPU 3, and a core never runs outside the set. Off,
    /// the cores run where the scheduler puts them, within the same set.
    /// Cores whose queues `ixcp` hands out are placed by `ixcp`, not pinned.
    pub fn pin_threads(mut self, pin: bool) -> Self {
        self.settings.pin_threads = pin;
        self
    }

    /// Which of the allowed CPUs core 0 is pinned to (default 0: the first;
    /// see [`Builder::pin_threads`]), so that two runtimes in one process, such
    /// as a server and its load generator, can take different CPUs. With
    /// every CPU allowed, this is the CPU's number.
    pub fn first_cpu(mut self, cpu: usize) -> Self {
        self.settings.first_cpu = cpu;
        self
    }

    /// How long a graceful shutdown lets tasks finish.
    pub fn drain_timeout(mut self, timeout: Duration) -> Self {
        self.settings.drain_timeout = timeout;
        self
    }

    /// Whether SIGINT and SIGTERM start a graceful shutdown of this runtime
    /// (default on). Off, the runtime ignores them even when another runtime
    /// of the process installed the handlers.
    pub fn handle_signals(mut self, handle: bool) -> Self {
        self.settings.handle_signals = handle;
        self
    }

    /// Whether outgoing connections pick a local port whose return traffic
    /// the NIC steers to the connecting core (IX's port probing; default on,
    /// used where the backend's steering is known, as on `mem`). Off, or on a
    /// backend that cannot steer, a reply that reaches another core is handed
    /// over to the owner in software (copied, counted in
    /// [`LoopStats::handed_over`](crate::LoopStats::handed_over)).
    pub fn port_probing(mut self, probe: bool) -> Self {
        self.settings.port_probing = probe;
        self
    }

    /// The shape of the process-wide pool that
    /// [`spawn_blocking`](crate::spawn_blocking) runs closures on: its most
    /// threads, its queue bound, its threads' idle time (tokio's
    /// `max_blocking_threads` and `thread_keep_alive`). The pool is one per
    /// process, so this takes effect when the runtime is built, and only if no
    /// closure was spawned before with another shape; by default the pool has
    /// [`BlockingConfig::default`].
    pub fn blocking_pool(mut self, config: BlockingConfig) -> Self {
        self.settings.blocking_pool = Some(config);
        self
    }

    /// Links core `i` to slot `i` of `board` on a dataplane backend that has
    /// no board of its own (every one but `ixcp`, whose daemon hands its
    /// board over): the core publishes its counters there, follows the mode
    /// asked there, switches itself to busy-polling by the board's rule, and
    /// is not pinned (whoever writes the board places its thread). For a
    /// control plane of one's own, and for testing the runtime's side of
    /// `ixcp`'s over the `mem` wire.
    pub fn core_board(mut self, board: Arc<CoreBoard>) -> Self {
        self.settings.core_board = Some(board);
        self
    }

    /// Checks the configuration, reads the CPUs the cores will take, and makes
    /// the process-wide blocking pool when [`Builder::blocking_pool`] asked for
    /// a shape.
    ///
    /// # Errors
    /// [`RuntimeError::Config`] for a missing backend or address or zero cores,
    /// a core board with fewer slots than cores, a blocking pool of zero
    /// threads, or an affinity mask that cannot be read;
    /// [`RuntimeError::BlockingPool`] when the process's blocking pool
    /// already exists with another shape.
    pub(crate) fn check(self) -> Result<Config, RuntimeError> {
        if self.settings.cores == 0 {
            return Err(RuntimeError::Config("at least one core".into()));
        }
        let Some(backend) = self.backend else {
            return Err(RuntimeError::Config("no backend: set one with Builder::backend".into()));
        };
        backend.check(self.settings.addr)?;
        if let Some(board) = &self.settings.core_board {
            if board.cores() < self.settings.cores {
                return Err(RuntimeError::Config(format!(
                    "a core board of {} slots for {} cores",
                    board.cores(),
                    self.settings.cores
                )));
            }
        }
        let placement = if self.settings.pin_threads {
            CorePlacement::of_calling_thread(self.settings.first_cpu)
                .map_err(|e| RuntimeError::Config(format!("the CPUs this thread may run on: {e}")))?
        } else {
            CorePlacement::Unpinned
        };
        if let Some(pool) = &self.settings.blocking_pool {
            if pool.max_threads == 0 {
                return Err(RuntimeError::Config("a blocking pool of at least one thread".into()));
            }
            BlockingPool::configure_global(pool.clone())?;
        }
        Ok(Config { backend, settings: self.settings, placement })
    }
}
