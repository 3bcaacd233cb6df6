//! A core thread's life: pinning it, turning its [`CoreSource`] into its I/O
//! (opening the queue and the stack, or the reactor), running its poll loop,
//! and closing: dropping the tasks left and flushing their sockets' closes.

use std::future::Future;
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::AtomicUsize;

use ix_driver::ixcp::CoreSlot;
use ix_driver::{HugePages, PacketPool, PoolConfig};
use ix_net::iface::SharedNeighbors;
use ix_net::tcp::FlowDirectory;
use ix_net::wire::EthernetAddress;
use ix_net::{Stack, StackConfig};

use crate::backend::{CoreSource, QueueSource};
use crate::config::Settings;
use crate::core::{Core, CoreNet};
use crate::core_board_link::CoreBoardLink;
use crate::cpu_placement::CorePlacement;
use crate::dataplane::DataplaneNet;
use crate::dataplane::core_io::DataplaneIo;
use crate::error::RuntimeError;
use crate::executor::{Executor, Handle};
use crate::idle_wait::IdleWait;
use crate::kernel::KernelNet;
use crate::kernel::core_io::KernelIo;
use crate::kernel::reactor::Reactor;
use crate::poll_loop::{CoreIo, PollLoop, RunningCore, ShutdownRequests};
use crate::stats::{CoreStats, LoopStats};

/// What the cores of one runtime share.
#[derive(Clone)]
pub(crate) struct SharedState {
    /// The neighbour table (ARP replies reach one queue only).
    pub(crate) neighbors: Arc<SharedNeighbors>,
    /// Which core owns each outgoing connection, for backends that cannot steer.
    pub(crate) flows: Arc<FlowDirectory>,
    /// Cores whose first task has not finished (see [`RunningCore`]).
    pub(crate) running: Arc<AtomicUsize>,
}

/// What a core thread needs besides its source: the settings, its CPU, what
/// its runtime's cores share, the executor handle, the first task's maker and
/// the shutdown requests.
pub(crate) struct CoreContext<F> {
    pub(crate) settings: Settings,
    pub(crate) placement: CorePlacement,
    pub(crate) shared: SharedState,
    pub(crate) handle: Handle,
    pub(crate) main: F,
    pub(crate) shutdown: ShutdownRequests,
}

/// Runs core `index` on the calling thread until its loop ends; returns what
/// it counted.
///
/// # Errors
/// When its pool, queue, stack or reactor cannot be made.
pub(crate) fn run_core<F, Fut>(index: usize, source: CoreSource, cx: &CoreContext<F>) -> Result<CoreStats, RuntimeError>
where
    F: Fn(usize) -> Fut,
    Fut: Future<Output = ()> + 'static,
{
    let span = tracing::info_span!("ix-core", core = index);
    let _entered = span.enter();
    // Counted out however this function returns, so no core waits for a core
    // that failed to start.
    let running = RunningCore::new(&cx.shared.running);
    // A core on a board is placed on CPUs by `ixcp` (or whoever writes the
    // board), not pinned here.
    let slot = match &source {
        CoreSource::Dataplane { queue, .. } => queue
            .core_slot()
            .or_else(|| cx.settings.core_board.as_ref().map(|board| CoreSlot::new(board.clone(), index))),
        CoreSource::Kernel { .. } => None,
    };
    if slot.is_none() {
        if let Err(error) = cx.placement.pin_calling_thread(index) {
            let cpu = cx.placement.cpu_of(index);
            tracing::warn!(core = index, ?cpu, %error, "could not pin the core's thread");
        }
    }
    let board = slot.map(|slot| CoreBoardLink::new(slot, cx.settings.batch));
    match source {
        CoreSource::Dataplane { queue, addr } => {
            let (io, net) = open_dataplane(index, queue, addr, cx)?;
            run_loop(index, (io, board), CoreNet::Dataplane(net), cx, &running)
        }
        CoreSource::Kernel { addr } => {
            let pool = new_pool(&cx.settings, HugePages::Auto)?;
            let reactor = Reactor::new().map_err(|e| core_error(index, &e))?;
            let net = Rc::new(KernelNet { reactor, pool, addr });
            run_loop(index, (KernelIo::new(net.clone()), board), CoreNet::Kernel(net), cx, &running)
        }
    }
}

fn core_error(core: usize, e: &dyn std::fmt::Display) -> RuntimeError {
    RuntimeError::Core { core, message: e.to_string() }
}

fn new_pool(settings: &Settings, huge_pages: HugePages) -> Result<PacketPool, RuntimeError> {
    Ok(PacketPool::new(PoolConfig { frames: settings.pool_frames, huge_pages })?)
}

/// Opens core `index`'s queue and builds its stack over it.
fn open_dataplane<F>(
    index: usize,
    source: QueueSource,
    (addr, prefix): (std::net::Ipv4Addr, u8),
    cx: &CoreContext<F>,
) -> Result<(DataplaneIo, Rc<DataplaneNet>), RuntimeError> {
    let settings = &cx.settings;
    let ephemeral_ports = source.ephemeral_ports();
    let learn_neighbors_from_ipv4 = source.learns_neighbors_from_ipv4();
    let (queue, filter) = source.open(index, |huge_pages| new_pool(settings, huge_pages), addr)?;
    let pool = queue.pool().clone();
    let filter = filter.filter(|_| settings.port_probing);
    let mut stack_cfg = StackConfig::new(EthernetAddress(queue.mac()), addr, prefix, draw_secret());
    stack_cfg.gateway = settings.gateway;
    stack_cfg.tcp = settings.tcp.clone();
    if let Some(ports) = ephemeral_ports {
        stack_cfg.ephemeral_ports = ports;
    }
    stack_cfg.learn_neighbors_from_ipv4 = learn_neighbors_from_ipv4;
    stack_cfg.neighbors = Some(cx.shared.neighbors.clone());
    // Without steering, a reply may reach another core's queue: the
    // directory tells which core owns each outgoing connection.
    if filter.is_none() && settings.cores > 1 {
        stack_cfg.directory = Some((cx.shared.flows.clone(), index));
    }
    let mut stack = Stack::new(stack_cfg, pool, ix_net::Instant::ZERO).map_err(|e| core_error(index, &e))?;
    if index == 0 {
        stack.announce();
    }
    let net = Rc::new(DataplaneNet::new(stack, filter));
    Ok((DataplaneIo::new(queue, net.clone(), settings.batch), net))
}

/// 128 random bits for the stack's ISNs and SYN cookies, from the standard
/// library's per-process random keys and the time of day: the stack (`ix-net`)
/// has neither a clock nor randomness of its own.
fn draw_secret() -> [u8; 16] {
    use std::hash::{BuildHasher, RandomState};
    let state = RandomState::new();
    let a = state.hash_one(0x1u64);
    let b = state.hash_one(std::time::SystemTime::now());
    let mut secret = [0u8; 16];
    secret[..8].copy_from_slice(&a.to_le_bytes());
    secret[8..].copy_from_slice(&b.to_le_bytes());
    secret
}

/// Installs the core, runs its first task and loop, then closes: the tasks
/// left are dropped (cut off at the drain timeout, or detached ones when the
/// first task returned), and their sockets' closes flushed.
///
/// # Errors
/// When the epoll instance the core blocks on cannot be made.
fn run_loop<F, Fut, Io: CoreIo>(
    index: usize,
    (io, board): (Io, Option<CoreBoardLink>),
    net: CoreNet,
    cx: &CoreContext<F>,
    running: &RunningCore<'_>,
) -> Result<CoreStats, RuntimeError>
where
    F: Fn(usize) -> Fut,
    Fut: Future<Output = ()> + 'static,
{
    let executor = Executor::new(index, &cx.handle);
    let idle_wait = IdleWait::new(executor.wake_fd(), io.wait_fd()).map_err(|e| core_error(index, &e))?;
    let core = Core::install(index, net);
    let root = executor.spawn_local((cx.main)(index));
    let mut lp = PollLoop {
        core: &core,
        executor: &executor,
        io,
        settings: &cx.settings,
        stats: LoopStats::default(),
        board,
        idle_wait,
    };
    lp.run(&root, &cx.shutdown, running);
    lp.publish_stats();
    let stats = core.stats();
    let mut io = lp.io;
    drop(root);
    drop(executor);
    io.close(&core);
    Core::uninstall();
    Ok(stats)
}
