//! The runtime: a builder, one pinned thread per core, and each core's poll
//! loop (receive a bounded batch, run the stack to completion, wake and run
//! tasks, transmit once, run timers, then spin or block when idle).

use std::cell::RefCell;
use std::future::Future;
use std::net::Ipv4Addr;
use std::os::fd::{AsRawFd, BorrowedFd};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use ix_driver::mem::MemWire;
use ix_driver::queue::DEFAULT_BATCH_PACKETS;
use ix_driver::tap::{TapDevice, TapQueue, TapQueueFd};
use ix_driver::xdp::{XdpConfig, XdpDevice, XdpQueue, XdpQueueSource};
use ix_driver::{DriverError, HugePages, NetQueue, PacketBuf, PacketPool, PoolConfig, QueueStats};
use ix_net::iface::SharedNeighbors;
use ix_net::tcp::FlowDirectory;
use ix_net::wire::EthernetAddress;
use ix_net::{Stack, StackConfig, StackStats, TcpConfig};

use crate::core::{Core, KernelNet, Net, PortFilter};
use crate::executor::{Executor, ExecutorStats, Handle};
use crate::reactor::ReactorStats;

/// Where each core's packets come from.
#[derive(Debug, Clone)]
pub enum Backend {
    /// The in-process wire: core `i` takes queue `i` of `port`.
    Mem {
        /// The wire.
        wire: Arc<MemWire>,
        /// This runtime's port on it.
        port: u16,
    },
    /// A multi-queue TAP device named `name`: core `i` takes queue `i`.
    Tap {
        /// Interface name.
        name: String,
    },
    /// AF_XDP on an interface: core `i` takes queue `i`, steered to it by the
    /// backend's XDP program (see `ix_driver::xdp`).
    Xdp(XdpConfig),
    /// AF_XDP queues handed over by the `ixcp` daemon at `socket`, for `ports`
    /// of the runtime's address: needs no privilege (see `ix_driver::ixcp`).
    Ixcp {
        /// The daemon's control socket.
        socket: std::path::PathBuf,
        /// The TCP and UDP ports to ask for.
        ports: Vec<u16>,
    },
    /// Ordinary kernel sockets (non-blocking, epoll) behind the same executor
    /// and socket API: runs unprivileged, and separates the executor's share
    /// of a benchmark from the dataplane's.
    Kernel,
}

impl std::str::FromStr for Backend {
    type Err = RuntimeError;

    /// Parses `kernel`, `tap:NAME` or `xdp:IFACE[,options]` (see
    /// [`XdpConfig`]; the `mem` wire is made in process and has no spelling).
    fn from_str(spec: &str) -> Result<Backend, RuntimeError> {
        let (kind, rest) = spec.split_once(':').unwrap_or((spec, ""));
        match (kind, rest) {
            ("kernel", "") => Ok(Backend::Kernel),
            ("tap", name) if !name.is_empty() && name.len() < libc::IFNAMSIZ => {
                Ok(Backend::Tap { name: name.to_string() })
            }
            ("tap", _) => Err(RuntimeError::Config(format!(
                "backend `{spec}`: a TAP interface name of 1 to {} bytes is needed, as in tap:ix0",
                libc::IFNAMSIZ - 1
            ))),
            ("xdp", _) => Ok(Backend::Xdp(rest.parse()?)),
            ("ixcp", _) => parse_ixcp(spec, rest),
            _ => Err(RuntimeError::Config(format!(
                "unknown backend `{spec}`: expected `kernel`, `tap:NAME`, `xdp:IFACE[,options]` \
                 or `ixcp:SOCKET,ports=P1+P2`"
            ))),
        }
    }
}

/// Parses the `SOCKET,ports=P1+P2` of an `ixcp:` backend.
fn parse_ixcp(spec: &str, rest: &str) -> Result<Backend, RuntimeError> {
    let bad = || RuntimeError::Config(format!("backend `{spec}`: expected ixcp:SOCKET,ports=P1+P2 (ports 1-65535)"));
    let (socket, options) = rest.split_once(',').ok_or_else(bad)?;
    let ports = options.strip_prefix("ports=").ok_or_else(bad)?;
    let ports = ports.split('+').map(|p| p.parse::<u16>().ok().filter(|&p| p != 0)).collect::<Option<Vec<_>>>();
    match ports {
        Some(ports) if !socket.is_empty() && !ports.is_empty() => Ok(Backend::Ixcp { socket: socket.into(), ports }),
        _ => Err(bad()),
    }
}

/// What a core does when a round finds no work.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IdlePolicy {
    /// Never block: lowest latency, one core always busy.
    BusyPoll,
    /// Spin for `spin_rounds` empty rounds, then block on the queue's and the
    /// executor's descriptors until work or the next timer.
    Adaptive {
        /// Empty rounds before blocking.
        spin_rounds: u32,
    },
}

impl Default for IdlePolicy {
    fn default() -> Self {
        IdlePolicy::Adaptive { spin_rounds: 64 }
    }
}

/// Why a runtime could not start or run.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    /// The builder lacks a setting.
    #[error("runtime configuration: {0}")]
    Config(String),
    /// A backend could not start.
    #[error(transparent)]
    Driver(#[from] DriverError),
    /// A core thread could not start or failed.
    #[error("core {core}: {message}")]
    Core {
        /// The core.
        core: usize,
        /// What happened.
        message: String,
    },
}

/// Upper bound on one idle block, so that a shutdown request is seen quickly.
const IDLE_BLOCK_MAX_MS: u64 = 20;
/// Tasks polled at most per round before the loop returns to the NIC.
const TASK_POLLS_PER_ROUND: usize = 256;

/// Configures a [`Runtime`].
#[derive(Debug, Clone)]
pub struct Builder {
    cores: usize,
    backend: Option<Backend>,
    addr: Option<(Ipv4Addr, u8)>,
    gateway: Option<Ipv4Addr>,
    batch: usize,
    idle: IdlePolicy,
    pool_frames: u32,
    tcp: TcpConfig,
    pin_threads: bool,
    first_cpu: usize,
    drain_timeout: Duration,
    handle_signals: bool,
    port_probing: bool,
}

impl Default for Builder {
    fn default() -> Self {
        Self {
            cores: 1,
            backend: None,
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
        }
    }
}

impl Builder {
    /// Number of cores (threads, each with its own queue).
    pub fn cores(mut self, n: usize) -> Self {
        self.cores = n;
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
        self.addr = Some((addr, prefix_len));
        self
    }

    /// The default gateway.
    pub fn gateway(mut self, gateway: Ipv4Addr) -> Self {
        self.gateway = Some(gateway);
        self
    }

    /// Receive batch bound (IX's B; default 64).
    pub fn batch(mut self, packets: usize) -> Self {
        self.batch = packets.max(1);
        self
    }

    /// Idle policy.
    pub fn idle(mut self, policy: IdlePolicy) -> Self {
        self.idle = policy;
        self
    }

    /// Frames in each core's packet pool.
    pub fn pool_frames(mut self, frames: u32) -> Self {
        self.pool_frames = frames;
        self
    }

    /// TCP settings.
    pub fn tcp(mut self, tcp: TcpConfig) -> Self {
        self.tcp = tcp;
        self
    }

    /// Pin core `i` to CPU `first_cpu + i` (modulo the CPUs; default on).
    pub fn pin_threads(mut self, pin: bool) -> Self {
        self.pin_threads = pin;
        self
    }

    /// The CPU that core 0 is pinned to (default 0), so that two runtimes in
    /// one process, such as a server and its load generator, can take
    /// different CPUs.
    pub fn first_cpu(mut self, cpu: usize) -> Self {
        self.first_cpu = cpu;
        self
    }

    /// How long a graceful shutdown lets tasks finish.
    pub fn drain_timeout(mut self, timeout: Duration) -> Self {
        self.drain_timeout = timeout;
        self
    }

    /// Whether SIGINT and SIGTERM start a graceful shutdown of this runtime
    /// (default on). Off, the runtime ignores them even when another runtime
    /// of the process installed the handlers.
    pub fn handle_signals(mut self, handle: bool) -> Self {
        self.handle_signals = handle;
        self
    }

    /// Whether outgoing connections pick a local port whose return traffic
    /// the NIC steers to the connecting core (IX's port probing; default on,
    /// used where the backend's steering is known, as on `mem`). Off, or on a
    /// backend that cannot steer, a reply that reaches another core is handed
    /// over to the owner in software (copied, counted in
    /// [`LoopStats::handed_over`]).
    pub fn port_probing(mut self, probe: bool) -> Self {
        self.port_probing = probe;
        self
    }

    /// Checks the configuration.
    ///
    /// # Errors
    /// [`RuntimeError::Config`] for a missing backend or address or zero cores.
    pub fn build(self) -> Result<Runtime, RuntimeError> {
        if self.cores == 0 {
            return Err(RuntimeError::Config("at least one core".into()));
        }
        let Some(backend) = &self.backend else {
            return Err(RuntimeError::Config("no backend: set one with Builder::backend".into()));
        };
        if self.addr.is_none() && !matches!(backend, Backend::Kernel) {
            return Err(RuntimeError::Config("no IPv4 address: set one with Builder::ipv4".into()));
        }
        Ok(Runtime { config: self, shutdown: Arc::new(AtomicBool::new(false)) })
    }
}

/// Counters of one core's loop.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LoopStats {
    /// Rounds of the loop.
    pub rounds: u64,
    /// Receive bursts that returned frames.
    pub batches: u64,
    /// Frames received.
    pub rx_packets: u64,
    /// Rounds that found nothing to do.
    pub empty_rounds: u64,
    /// Times the core blocked.
    pub blocks: u64,
    /// Frames transmitted.
    pub tx_packets: u64,
    /// Tasks polled.
    pub tasks_polled: u64,
    /// Frames of another core's connection sent to it (NICs that cannot steer).
    pub handed_over: u64,
    /// Of those, frames dropped because the owner's inbound queue was full
    /// (TCP retransmits them).
    pub handover_dropped: u64,
}

impl LoopStats {
    /// Mean frames per non-empty receive batch.
    pub fn mean_batch(&self) -> f64 {
        if self.batches == 0 { 0.0 } else { self.rx_packets as f64 / self.batches as f64 }
    }
}

/// Everything one core counted, at the end of a run or from inside it.
#[derive(Debug, Clone, Copy, Default)]
pub struct CoreStats {
    /// The core.
    pub core: usize,
    /// Its loop.
    pub r#loop: LoopStats,
    /// Its queue.
    pub queue: QueueStats,
    /// Its stack.
    pub stack: StackStats,
    /// Its executor.
    pub executor: ExecutorStats,
    /// Times a task waited for a free packet buffer (the pool was empty).
    pub buffer_waits: u64,
    /// Frames handed over by another core that found no free frame here
    /// (dropped; TCP retransmits them).
    pub handover_lost: u64,
    /// Frames of the core's packet pool free now, of `pool_capacity`.
    pub pool_free: u32,
    /// Frames in the core's packet pool.
    pub pool_capacity: u32,
    /// Open TCP connections now (on the `kernel` backend: open sockets of the
    /// core, listeners and UDP sockets included).
    pub connections: u64,
    /// The `kernel` backend's reactor (zero on the dataplane).
    pub reactor: ReactorStats,
}

/// The current core's counters, read from inside a task: its loop (rounds,
/// batches and their mean size, empty polls, tasks polled), its queue, its
/// stack (connections, retransmits: `stack.tcp`), its executor and, on the
/// `kernel` backend, its reactor.
///
/// # Panics
/// Outside a task of an IX runtime.
pub fn stats() -> CoreStats {
    crate::core::with_core(|core| {
        let (r#loop, queue) = core.loop_stats();
        let mut stats = CoreStats {
            core: core.index(),
            r#loop,
            queue,
            executor: crate::executor::current_stats().unwrap_or_default(),
            buffer_waits: core.buffer_waits(),
            handover_lost: core.handover_lost(),
            pool_free: core.with_pool(|p| p.available()),
            pool_capacity: core.with_pool(|p| p.capacity()),
            ..CoreStats::default()
        };
        match core.kernel() {
            Some(k) => {
                stats.reactor = k.reactor.stats();
                stats.connections = k.reactor.open() as u64;
            }
            None => core.stack(|s| {
                stats.stack = *s.stats();
                stats.connections = s.tcp_connection_count() as u64;
            }),
        }
        stats
    })
}

/// A configured runtime; [`Runtime::run`] starts it.
#[derive(Debug)]
pub struct Runtime {
    config: Builder,
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
        let cfg = self.config;
        if cfg.handle_signals {
            // SAFETY: the handler only stores to an atomic, which is
            // async-signal-safe; installing it has no other effect.
            unsafe {
                libc::signal(libc::SIGINT, on_signal as *const () as libc::sighandler_t);
                libc::signal(libc::SIGTERM, on_signal as *const () as libc::sighandler_t);
            }
        }
        let handle = Handle::new(cfg.cores).map_err(|e| RuntimeError::Core { core: 0, message: e.to_string() })?;
        let shared = SharedState {
            neighbors: Arc::new(SharedNeighbors::new()),
            flows: Arc::new(FlowDirectory::new()),
            running: Arc::new(std::sync::atomic::AtomicUsize::new(cfg.cores)),
        };
        let mut sources = open_sources(&cfg)?;
        let main = Arc::new(main);
        let mut threads = Vec::with_capacity(cfg.cores);
        for core in 0..cfg.cores {
            let source = sources.remove(0);
            let (cfg, handle, main, shutdown) = (cfg.clone(), handle.clone(), main.clone(), self.shutdown.clone());
            let shared = shared.clone();
            let thread = std::thread::Builder::new()
                .name(format!("ix-core-{core}"))
                .spawn(move || run_core(core, &cfg, source, shared, &handle, &*main, &shutdown))
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

/// What the cores of one runtime share.
#[derive(Clone)]
struct SharedState {
    /// The neighbour table (ARP replies reach one queue only).
    neighbors: Arc<SharedNeighbors>,
    /// Which core owns each outgoing connection, for backends that cannot steer.
    flows: Arc<FlowDirectory>,
    /// Cores whose first task has not finished. A core whose own first task
    /// finished keeps serving its queue until this reaches zero: its queue may
    /// still receive (and hand over) other cores' traffic.
    running: Arc<std::sync::atomic::AtomicUsize>,
}

/// What a core thread builds its queue from (fds and wires are `Send`; queues,
/// holding the core's pool, are made on the core).
enum QueueSource {
    Mem { wire: Arc<MemWire>, port: u16 },
    Tap { fd: TapQueueFd },
    Xdp { source: XdpQueueSource },
    Ixcp { granted: ix_driver::ixcp::GrantedQueue },
    Kernel,
}

fn open_sources(cfg: &Builder) -> Result<Vec<QueueSource>, RuntimeError> {
    match cfg.backend.as_ref().expect("checked by build") {
        Backend::Mem { wire, port } => {
            Ok((0..cfg.cores).map(|_| QueueSource::Mem { wire: wire.clone(), port: *port }).collect())
        }
        Backend::Tap { name } => {
            let mut device = TapDevice::open(name, cfg.cores as u16)?;
            let fds = (0..cfg.cores as u16).map(|q| device.take_queue_fd(q)).collect::<Result<Vec<_>, _>>()?;
            // The device lives as long as any queue fd is open: it can go now.
            drop(device);
            Ok(fds.into_iter().map(|fd| QueueSource::Tap { fd }).collect())
        }
        Backend::Xdp(config) => {
            let (addr, _) = cfg.addr.expect("checked by build");
            let queues = config.queue_count(cfg.cores)?;
            // The queues keep the program attached; the device can go.
            let mut device = XdpDevice::open(config, queues, addr)?;
            (0..queues).map(|q| Ok(QueueSource::Xdp { source: device.take_queue(q)? })).collect()
        }
        Backend::Ixcp { socket, ports } => {
            let (addr, _) = cfg.addr.expect("checked by build");
            if cfg.cores != 1 {
                return Err(RuntimeError::Config("the ixcp backend serves one core for now".into()));
            }
            let request = ix_driver::ixcp::one_queue_request(addr, ports, cfg.pool_frames, MAX_CONNECTIONS_ASKED);
            let admission = ix_driver::ixcp::request_admission(socket, &request)?;
            Ok(admission.queues.into_iter().map(|granted| QueueSource::Ixcp { granted }).collect())
        }
        Backend::Kernel => Ok((0..cfg.cores).map(|_| QueueSource::Kernel).collect()),
    }
}

/// Connections an `ixcp` dataplane asks for (the stack's own limit applies).
const MAX_CONNECTIONS_ASKED: u32 = 65_536;

fn build_queue(
    core: usize,
    source: QueueSource,
    new_pool: &dyn Fn() -> Result<PacketPool, DriverError>,
    local_ip: Ipv4Addr,
) -> Result<(Box<dyn NetQueue>, Option<PortFilter>), RuntimeError> {
    // The ixcp backend's pool is the region the daemon handed over.
    let pool = match &source {
        QueueSource::Ixcp { .. } | QueueSource::Kernel => None,
        _ => Some(new_pool()?),
    };
    let pool = move || pool.expect("made for this backend");
    match source {
        QueueSource::Mem { wire, port } => {
            let queue = wire.queue(port, core as u16, pool())?;
            // The wire steers by RSS: keep only local ports whose return flow
            // (remote → local, as the wire hashes it) lands on this core's queue.
            let filter = match wire.redirection_table(port) {
                Some(table) if wire.config().queues_per_port > 1 => {
                    let toeplitz = wire.toeplitz().clone();
                    Some(Box::new(move |local_port: u16, remote: std::net::SocketAddrV4| {
                        let hash = toeplitz.hash_ipv4_tcp_udp(*remote.ip(), local_ip, remote.port(), local_port);
                        usize::from(table.queue_for_hash(hash)) == core
                    }) as PortFilter)
                }
                _ => None,
            };
            Ok((Box::new(queue), filter))
        }
        QueueSource::Tap { fd } => {
            // TAP spreads flows by the kernel's own hash, which we cannot
            // predict: any port will do.
            let queue = TapQueue::new(fd, pool());
            Ok((Box::new(queue), None))
        }
        QueueSource::Xdp { source } => {
            // RSS on the interface is the kernel's or the NIC's, which we do
            // not model: as for TAP, any port will do (an outgoing
            // connection's replies may land on another core's queue).
            Ok((Box::new(XdpQueue::new(source, pool())?), None))
        }
        QueueSource::Ixcp { granted } => Ok((Box::new(granted.build()?), None)),
        QueueSource::Kernel => unreachable!("the kernel backend has no queue"),
    }
}

/// Pins the calling thread to one CPU (`cpu` modulo the CPUs available), as
/// the runtime pins its cores; for threads that live beside a runtime, such
/// as another runtime's workers in a benchmark.
///
/// # Errors
/// The `sched_setaffinity` error (for example, a CPU outside the process's
/// allowed set).
pub fn pin_current_thread(cpu: usize) -> std::io::Result<()> {
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    // SAFETY: a zeroed cpu_set_t is a valid empty set; CPU_SET writes inside it;
    // sched_setaffinity reads it for the calling thread (pid 0).
    let rc = unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu % cpus, &mut set);
        libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set)
    };
    if rc == 0 { Ok(()) } else { Err(std::io::Error::last_os_error()) }
}

fn run_core<F, Fut>(
    core_index: usize,
    cfg: &Builder,
    source: QueueSource,
    shared: SharedState,
    handle: &Handle,
    main: &F,
    shutdown: &AtomicBool,
) -> Result<CoreStats, RuntimeError>
where
    F: Fn(usize) -> Fut,
    Fut: Future<Output = ()> + 'static,
{
    let span = tracing::info_span!("ix-core", core = core_index);
    let _entered = span.enter();
    // Counted out however this function returns, so no core waits for a core
    // that failed to start.
    let running = RunningCore { running: &shared.running, counted: std::cell::Cell::new(false) };
    if cfg.pin_threads {
        if let Err(error) = pin_current_thread(cfg.first_cpu + core_index) {
            tracing::warn!(core = core_index, %error, "could not pin the core's thread");
        }
    }
    let huge_pages = match &cfg.backend {
        Some(Backend::Xdp(xdp)) => xdp.huge_pages,
        _ => HugePages::Auto,
    };
    let new_pool = || PacketPool::new(PoolConfig { frames: cfg.pool_frames, huge_pages });
    let core_error = |e: &dyn std::fmt::Display| RuntimeError::Core { core: core_index, message: e.to_string() };
    let (mut queue, net, filter) = match source {
        QueueSource::Kernel => {
            let reactor = crate::reactor::Reactor::new().map_err(|e| core_error(&e))?;
            let addr = cfg.addr.map_or(Ipv4Addr::UNSPECIFIED, |(a, _)| a);
            (None, Net::Kernel(KernelNet { reactor, pool: new_pool()?, addr }), None)
        }
        source => {
            let (addr, prefix) = cfg.addr.expect("checked by build");
            let (queue, filter) = build_queue(core_index, source, &new_pool, addr)?;
            let pool = queue.pool().clone();
            let filter = filter.filter(|_| cfg.port_probing);
            let mut stack_cfg = StackConfig::new(EthernetAddress(queue.mac()), addr, prefix);
            stack_cfg.gateway = cfg.gateway;
            stack_cfg.tcp = cfg.tcp.clone();
            if let Some(Backend::Xdp(xdp)) = &cfg.backend {
                if !xdp.ports.is_empty() {
                    // The XDP program takes replies to these ports, not others.
                    stack_cfg.ephemeral_ports = ix_driver::xdp::SHARED_EPHEMERAL_PORTS;
                }
            }
            if let Some(Backend::Ixcp { .. }) = &cfg.backend {
                // The kernel answers ARP on the shared address and gets the
                // replies: neighbours are learned from their frames.
                stack_cfg.learn_neighbors_from_ipv4 = true;
            }
            stack_cfg.neighbors = Some(shared.neighbors.clone());
            // Without steering, a reply may reach another core's queue: the
            // directory tells which core owns each outgoing connection.
            if filter.is_none() && cfg.cores > 1 {
                stack_cfg.directory = Some((shared.flows.clone(), core_index));
            }
            let mut stack = Stack::new(stack_cfg, pool, ix_net::Instant::ZERO).map_err(|e| core_error(&e))?;
            if core_index == 0 {
                stack.announce();
            }
            (Some(queue), Net::Stack(Box::new(RefCell::new(stack))), filter)
        }
    };
    let executor = Executor::new(core_index, handle);
    let core = Core::install(core_index, net, filter);
    let root = executor.spawn_local(main(core_index));
    let queue_ref = queue.as_mut().map(|q| &mut **q as &mut dyn NetQueue);
    let mut lp = PollLoop {
        core: &core,
        executor: &executor,
        queue: queue_ref,
        cfg,
        stats: LoopStats::default(),
        handover: Vec::new(),
    };
    lp.run(&root, shutdown, &running);
    lp.publish_stats();
    let stats = stats();
    drop(root);
    // Drops the tasks still there (cut off at the drain timeout, or detached
    // ones when the first task returned); their sockets close.
    drop(executor);
    flush_closes(&core, queue.as_mut().map(|q| &mut **q as &mut dyn NetQueue));
    Core::uninstall();
    Ok(stats)
}

/// Attempts at transmitting the frames left when a core stops.
const FINAL_TX_ATTEMPTS: usize = 4;

/// Transmits what the stack has to send once the tasks are gone: the FIN or
/// RST of every connection a dropped task held, so that its peer learns the
/// connection is over rather than waiting on it. Best effort: nothing is
/// retransmitted after the core stops.
fn flush_closes(core: &Core, queue: Option<&mut dyn NetQueue>) {
    let Some(queue) = queue else { return };
    let mut tx = Vec::new();
    core.stack(|s| s.egress(core.now(), &mut tx));
    for _ in 0..FINAL_TX_ATTEMPTS {
        if tx.is_empty() {
            break;
        }
        queue.tx_burst(&mut tx);
    }
}

/// This core's place in [`SharedState::running`].
struct RunningCore<'a> {
    running: &'a std::sync::atomic::AtomicUsize,
    counted: std::cell::Cell<bool>,
}

impl RunningCore<'_> {
    /// This core's first task finished (idempotent).
    fn finish(&self) {
        if !self.counted.replace(true) {
            self.running.fetch_sub(1, Ordering::AcqRel);
        }
    }

    /// Whether every core's first task finished.
    fn all_finished(&self) -> bool {
        self.running.load(Ordering::Acquire) == 0
    }
}

impl Drop for RunningCore<'_> {
    fn drop(&mut self) {
        self.finish();
    }
}

struct PollLoop<'a> {
    core: &'a Core,
    executor: &'a Executor,
    /// The NIC queue; `None` on the `kernel` backend.
    queue: Option<&'a mut dyn NetQueue>,
    cfg: &'a Builder,
    stats: LoopStats,
    /// Frames to hand over to other cores, gathered each round.
    handover: Vec<(usize, PacketBuf)>,
}

/// Sends the frames of other cores' connections to their owners: copied
/// (pool frames belong to one core), one remote task per owner per round,
/// which re-ingresses them on the owner's stack.
fn hand_over(handover: &mut Vec<(usize, PacketBuf)>, executor: &Executor, stats: &mut LoopStats) {
    handover.sort_unstable_by_key(|(owner, _)| *owner);
    while let Some(&(owner, _)) = handover.first() {
        let split = handover.iter().position(|(o, _)| *o != owner).unwrap_or(handover.len());
        let frames: Vec<Box<[u8]>> = handover.drain(..split).map(|(_, f)| Box::from(&f[..])).collect();
        let n = frames.len() as u64;
        stats.handed_over += n;
        if executor.handle().spawn_on(owner, ingress_handed_over(frames)).is_err() {
            stats.handover_dropped += n;
        }
    }
}

/// Runs on the owning core: copies frames another core received for this
/// core's connections into this core's pool and processes them.
async fn ingress_handed_over(frames: Vec<Box<[u8]>>) {
    crate::core::with_core(|core| {
        let now = core.now();
        core.stack(|stack| {
            for bytes in frames {
                let Ok(mut frame) = stack.alloc_tx() else {
                    // No frame free: dropped (and counted) like a frame the
                    // NIC could not place; TCP retransmits it.
                    core.count_handover_lost();
                    continue;
                };
                if frame.extend_from_slice(&bytes).is_ok() {
                    stack.ingress(frame.freeze(), now);
                }
            }
        });
    });
}

impl PollLoop<'_> {
    fn run<T>(&mut self, root: &crate::executor::JoinHandle<T>, shutdown: &AtomicBool, running: &RunningCore<'_>) {
        let mut rx: Vec<PacketBuf> = Vec::with_capacity(self.cfg.batch);
        let mut tx: Vec<PacketBuf> = Vec::with_capacity(4 * self.cfg.batch);
        let mut empty_rounds = 0u32;
        let mut drain_deadline = None;
        loop {
            let worked = match self.queue.is_some() {
                true => self.round(&mut rx, &mut tx),
                false => self.kernel_round(),
            };
            // In a graceful shutdown every task gets the drain timeout, not
            // only the first: the connection handlers a finished accept loop
            // spawned finish their exchanges before the core stops.
            if root.is_finished() && (drain_deadline.is_none() || self.executor.task_count() == 0) {
                running.finish();
                if tx.is_empty() && running.all_finished() {
                    break;
                }
            }
            // The signal flag is process-wide: only runtimes that handle
            // signals heed it, not others that share the process.
            let signalled = self.cfg.handle_signals && SIGNALLED.load(Ordering::Relaxed);
            if drain_deadline.is_none() && (shutdown.load(Ordering::Relaxed) || signalled) {
                self.core.start_draining();
                drain_deadline = Some(std::time::Instant::now() + self.cfg.drain_timeout);
                tracing::info!("graceful shutdown: listeners closed, draining");
            }
            if drain_deadline.is_some_and(|d| std::time::Instant::now() >= d) {
                tracing::warn!("drain timeout reached; stopping the core with tasks still running");
                break;
            }
            if worked {
                empty_rounds = 0;
                continue;
            }
            self.stats.empty_rounds += 1;
            empty_rounds += 1;
            if let IdlePolicy::Adaptive { spin_rounds } = self.cfg.idle {
                if empty_rounds > spin_rounds {
                    self.block();
                    empty_rounds = 0;
                }
            }
        }
    }

    /// Makes the loop's and the queue's counters readable from tasks (as of
    /// the start of this round's task phase).
    fn publish_stats(&self) {
        let queue = self.queue.as_ref().map(|q| q.stats()).unwrap_or_default();
        self.core.set_loop_stats(self.stats, queue);
    }

    /// One round of the `kernel` backend: cross-core work, timers, socket
    /// readiness, tasks. True when anything moved.
    fn kernel_round(&mut self) -> bool {
        self.stats.rounds += 1;
        let remote = self.executor.drain_remote();
        let fired = self.core.fire_sleeps(self.core.now());
        let reactor = &self.core.kernel().expect("kernel core").reactor;
        let events = reactor.poll(Duration::ZERO).unwrap_or_else(|e| {
            tracing::error!(error = %e, "epoll_wait failed");
            0
        });
        self.publish_stats();
        let polled = self.executor.run_ready(TASK_POLLS_PER_ROUND);
        self.stats.tasks_polled += polled as u64;
        let buffers = self.core.wake_buffer_waiters();
        remote > 0 || fired > 0 || events > 0 || polled > 0 || buffers > 0 || self.executor.has_ready()
    }

    /// One round; true when anything moved.
    fn round(&mut self, rx: &mut Vec<PacketBuf>, tx: &mut Vec<PacketBuf>) -> bool {
        self.stats.rounds += 1;
        let remote = self.executor.drain_remote();
        let now = self.core.now();
        let queue = self.queue.as_deref_mut().expect("dataplane core");
        let received = queue.rx_burst(rx, self.cfg.batch);
        if received > 0 {
            self.stats.batches += 1;
            self.stats.rx_packets += received as u64;
            self.core.stack(|s| {
                for frame in rx.drain(..) {
                    s.ingress(frame, now);
                }
                s.take_handover(&mut self.handover);
            });
            if !self.handover.is_empty() {
                hand_over(&mut self.handover, self.executor, &mut self.stats);
            }
        }
        let fired = self.core.fire_sleeps(now);
        self.core.stack(|s| s.on_timers(now));
        let events = self.core.dispatch_events();
        self.core.set_loop_stats(self.stats, queue.stats());
        let polled = self.executor.run_ready(TASK_POLLS_PER_ROUND);
        self.stats.tasks_polled += polled as u64;
        let buffers = self.core.wake_buffer_waiters();
        let now = self.core.now();
        self.core.stack(|s| s.egress(now, tx));
        let events = events + self.core.dispatch_events();
        let queued = tx.len();
        if queued > 0 {
            let sent = queue.tx_burst(tx);
            self.stats.tx_packets += sent as u64;
        }
        received > 0
            || remote > 0
            || fired > 0
            || events > 0
            || polled > 0
            || buffers > 0
            || queued > 0
            || self.executor.has_ready()
    }

    /// Blocks until the queue or the executor has work, or the next timer.
    fn block(&mut self) {
        self.stats.blocks += 1;
        if let Some(queue) = self.queue.as_deref_mut() {
            queue.ack_wakeup();
        }
        let timeout = self
            .core
            .time_to_next_timer()
            .unwrap_or(Duration::from_millis(IDLE_BLOCK_MAX_MS))
            .min(Duration::from_millis(IDLE_BLOCK_MAX_MS));
        let exec_fd: BorrowedFd<'_> = self.executor.wake_fd();
        let mut fds = [libc::pollfd { fd: exec_fd.as_raw_fd(), events: libc::POLLIN, revents: 0 }; 2];
        let mut n = 1;
        let wait_fd = match self.queue.as_deref() {
            Some(queue) => queue.wait_fd().map(|fd| fd.as_raw_fd()),
            None => self.core.kernel().map(|k| k.reactor.fd().as_raw_fd()),
        };
        if let Some(fd) = wait_fd {
            fds[1] = libc::pollfd { fd, events: libc::POLLIN, revents: 0 };
            n = 2;
        }
        // ppoll, not poll: a timer due in 300 µs must not sleep a whole millisecond.
        let wait = libc::timespec { tv_sec: timeout.as_secs() as libc::time_t, tv_nsec: timeout.subsec_nanos().into() };
        // SAFETY: `fds` holds `n` initialised pollfd entries whose descriptors
        // stay open for the call (borrowed from the executor and the queue);
        // `wait` is a valid timespec; a null signal mask leaves it unchanged.
        unsafe { libc::ppoll(fds.as_mut_ptr(), n as libc::nfds_t, &wait, std::ptr::null()) };
    }
}
