//! The per-core context the socket and timer futures reach through a
//! thread-local: the core's network (the dataplane stack, or the `kernel`
//! backend's reactor), the wakers waiting on its sockets, the sleeps on its
//! timer wheel, its clock and its counters.

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::task::Waker;
use std::time::Duration;

use ix_driver::{PacketPool, QueueStats};
use ix_net::socket::readiness;
use ix_net::timer::{TimerKey, TimerWheel};
use ix_net::{Instant, SocketHandle, Stack};

use crate::reactor::Reactor;
use crate::runtime::LoopStats;

/// Which side of a socket a task waits on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Interest {
    Read,
    Write,
}

#[derive(Debug, Default)]
struct Waiters {
    handle: Option<SocketHandle>,
    reader: Option<Waker>,
    writer: Option<Waker>,
}

/// Chooses a local port for an outgoing connection so that the reply lands on
/// this core's queue (IX's port probing); `None` means the backend cannot
/// steer and any port will do.
pub(crate) type PortFilter = Box<dyn Fn(u16, std::net::SocketAddrV4) -> bool>;

/// Where a core's sockets live.
pub(crate) enum Net {
    /// The dataplane: the core's own TCP/IP stack over its NIC queue (boxed:
    /// the stack is large and the enum is made once per core).
    Stack(Box<RefCell<Stack>>),
    /// The `kernel` backend: ordinary kernel sockets driven by epoll.
    Kernel(KernelNet),
}

/// The `kernel` backend's per-core state.
pub(crate) struct KernelNet {
    pub(crate) reactor: Reactor,
    /// Receive buffers handed out as `RxChunk`s, as on the dataplane.
    pub(crate) pool: PacketPool,
    /// The address listeners bind (0.0.0.0 when none was configured).
    pub(crate) addr: std::net::Ipv4Addr,
}

/// One core's networking state.
pub(crate) struct Core {
    index: usize,
    /// Unique among every core of every runtime this process ran: names this
    /// core in data that may travel between threads (see `time::SyncSleep`).
    id: u64,
    net: Net,
    waiters: RefCell<Vec<Waiters>>,
    /// Tasks waiting for a free packet buffer.
    buffer_waiters: RefCell<Vec<Waker>>,
    buffer_waits: Cell<u64>,
    handover_lost: Cell<u64>,
    /// The loop's and the queue's counters, refreshed every round.
    loop_stats: Cell<LoopStats>,
    queue_stats: Cell<QueueStats>,
    sleeps: RefCell<TimerWheel<Waker>>,
    start: std::time::Instant,
    port_filter: Option<PortFilter>,
    /// Set once a graceful shutdown began: listeners stop accepting.
    draining: Cell<bool>,
}

thread_local! {
    static CURRENT: RefCell<Option<Rc<Core>>> = const { RefCell::new(None) };
}

/// Runs `f` with the current core.
///
/// # Panics
/// Outside a thread started by an IX runtime.
pub(crate) fn with_core<R>(f: impl FnOnce(&Rc<Core>) -> R) -> R {
    CURRENT.with(|current| {
        let current = current.borrow();
        let core = current.as_ref().expect("not on an IX core: call this from a task of an ix_runtime::Runtime");
        f(core)
    })
}

/// The current core, for futures that keep it.
pub(crate) fn current() -> Rc<Core> {
    with_core(Rc::clone)
}

/// The current core, or `None` on a thread that is not an IX core (or while
/// the thread's core is being installed, removed or torn down).
pub(crate) fn try_current() -> Option<Rc<Core>> {
    CURRENT.try_with(|current| current.try_borrow().ok().and_then(|c| c.clone())).ok().flatten()
}

/// Source of [`Core::id`].
static NEXT_CORE_ID: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);

impl Core {
    pub(crate) fn install(index: usize, net: Net, port_filter: Option<PortFilter>) -> Rc<Core> {
        let start = std::time::Instant::now();
        let core = Rc::new(Core {
            index,
            id: NEXT_CORE_ID.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
            net,
            waiters: RefCell::new(Vec::new()),
            buffer_waiters: RefCell::new(Vec::new()),
            buffer_waits: Cell::new(0),
            handover_lost: Cell::new(0),
            loop_stats: Cell::new(LoopStats::default()),
            queue_stats: Cell::new(QueueStats::default()),
            sleeps: RefCell::new(TimerWheel::with_capacity(Instant::ZERO, 256)),
            start,
            port_filter,
            draining: Cell::new(false),
        });
        CURRENT.with(|current| *current.borrow_mut() = Some(core.clone()));
        core
    }

    pub(crate) fn uninstall() {
        CURRENT.with(|current| current.borrow_mut().take());
    }

    /// This core's index.
    pub(crate) fn index(&self) -> usize {
        self.index
    }

    /// This core's process-wide unique id.
    pub(crate) fn id(&self) -> u64 {
        self.id
    }

    /// `at` on this core's clock, rounded up to the next microsecond (so a
    /// timer armed for it never fires before `at`).
    pub(crate) fn instant_from_std(&self, at: std::time::Instant) -> Instant {
        let since = at.saturating_duration_since(self.start);
        Instant::from_micros(since.as_nanos().div_ceil(1000) as u64)
    }

    /// Microseconds since the core started, as the stack's clock.
    pub(crate) fn now(&self) -> Instant {
        Instant::from_micros(self.start.elapsed().as_micros() as u64)
    }

    /// Runs `f` on the stack.
    ///
    /// # Panics
    /// On a `kernel` core: dataplane sockets are only made on dataplane cores,
    /// so reaching here from one is a bug of this crate.
    pub(crate) fn stack<R>(&self, f: impl FnOnce(&mut Stack) -> R) -> R {
        match &self.net {
            Net::Stack(stack) => f(&mut stack.borrow_mut()),
            Net::Kernel(_) => unreachable!("dataplane socket on a kernel-backend core"),
        }
    }

    /// The `kernel` backend's state, on a core that runs it.
    pub(crate) fn kernel(&self) -> Option<&KernelNet> {
        match &self.net {
            Net::Kernel(k) => Some(k),
            Net::Stack(_) => None,
        }
    }

    /// The core's packet pool.
    pub(crate) fn with_pool<R>(&self, f: impl FnOnce(&PacketPool) -> R) -> R {
        match &self.net {
            Net::Stack(stack) => f(stack.borrow().pool()),
            Net::Kernel(k) => f(&k.pool),
        }
    }

    /// Parks `waker` until a packet buffer is free again; counted.
    pub(crate) fn wait_for_buffers(&self, waker: &Waker) {
        self.buffer_waits.set(self.buffer_waits.get() + 1);
        let mut waiters = self.buffer_waiters.borrow_mut();
        if !waiters.iter().any(|w| w.will_wake(waker)) {
            waiters.push(waker.clone());
        }
    }

    /// Wakes the tasks waiting for buffers when the pool has some; returns
    /// how many were woken.
    pub(crate) fn wake_buffer_waiters(&self) -> usize {
        if self.buffer_waiters.borrow().is_empty() || self.with_pool(|p| p.available()) == 0 {
            return 0;
        }
        let waiters = std::mem::take(&mut *self.buffer_waiters.borrow_mut());
        let n = waiters.len();
        waiters.into_iter().for_each(Waker::wake);
        n
    }

    /// Times a task had to wait for a free packet buffer.
    pub(crate) fn buffer_waits(&self) -> u64 {
        self.buffer_waits.get()
    }

    pub(crate) fn count_handover_lost(&self) {
        self.handover_lost.set(self.handover_lost.get() + 1);
    }

    pub(crate) fn handover_lost(&self) -> u64 {
        self.handover_lost.get()
    }

    pub(crate) fn set_loop_stats(&self, stats: LoopStats, queue: QueueStats) {
        self.loop_stats.set(stats);
        self.queue_stats.set(queue);
    }

    pub(crate) fn loop_stats(&self) -> (LoopStats, QueueStats) {
        (self.loop_stats.get(), self.queue_stats.get())
    }

    pub(crate) fn port_filter(&self) -> Option<&PortFilter> {
        self.port_filter.as_ref()
    }

    pub(crate) fn draining(&self) -> bool {
        self.draining.get()
    }

    /// Starts a graceful shutdown: every task waiting on a socket is woken so
    /// that listeners see it and return.
    pub(crate) fn start_draining(&self) {
        self.draining.set(true);
        let wakers: Vec<Waker> =
            self.waiters.borrow_mut().iter_mut().flat_map(|w| [w.reader.take(), w.writer.take()]).flatten().collect();
        for waker in wakers {
            waker.wake();
        }
        if let Some(k) = self.kernel() {
            k.reactor.wake_all();
        }
    }

    /// Makes `waker` the one woken when `handle` becomes ready for `interest`.
    pub(crate) fn register(&self, handle: SocketHandle, interest: Interest, waker: &Waker) {
        let mut waiters = self.waiters.borrow_mut();
        let i = handle.index();
        if waiters.len() <= i {
            waiters.resize_with(i + 1, Waiters::default);
        }
        let slot = &mut waiters[i];
        if slot.handle != Some(handle) {
            *slot = Waiters { handle: Some(handle), reader: None, writer: None };
        }
        let place = match interest {
            Interest::Read => &mut slot.reader,
            Interest::Write => &mut slot.writer,
        };
        match place {
            Some(w) if w.will_wake(waker) => {}
            _ => *place = Some(waker.clone()),
        }
    }

    /// Forgets the wakers of a socket being closed.
    pub(crate) fn forget(&self, handle: SocketHandle) {
        if let Some(slot) = self.waiters.borrow_mut().get_mut(handle.index()) {
            if slot.handle == Some(handle) {
                *slot = Waiters::default();
            }
        }
    }

    /// Wakes the tasks waiting on sockets the stack reported ready. Returns how
    /// many events there were.
    pub(crate) fn dispatch_events(&self) -> usize {
        let Net::Stack(stack) = &self.net else { return 0 };
        let mut n = 0;
        loop {
            let Some((handle, bits)) = stack.borrow_mut().poll_event() else { return n };
            n += 1;
            let mut waiters = self.waiters.borrow_mut();
            let Some(slot) = waiters.get_mut(handle.index()) else { continue };
            if slot.handle != Some(handle) {
                continue;
            }
            let all = readiness::CLOSED | readiness::ESTABLISHED;
            if bits & (readiness::READABLE | all) != 0 {
                if let Some(w) = slot.reader.take() {
                    w.wake();
                }
            }
            if bits & (readiness::WRITABLE | all) != 0 {
                if let Some(w) = slot.writer.take() {
                    w.wake();
                }
            }
        }
    }

    /// Arms a sleep; the waker is woken at or after `deadline`.
    pub(crate) fn add_sleep(&self, deadline: Instant, waker: Waker) -> TimerKey {
        self.sleeps.borrow_mut().insert(deadline, waker)
    }

    /// Cancels a sleep that has not fired.
    pub(crate) fn cancel_sleep(&self, key: TimerKey) {
        self.sleeps.borrow_mut().cancel(key);
    }

    /// Whether a sleep is still armed (it has not fired and was not cancelled).
    pub(crate) fn sleep_pending(&self, key: TimerKey) -> bool {
        self.sleeps.borrow().deadline(key).is_some()
    }

    /// Fires the sleeps due at `now`; returns how many.
    pub(crate) fn fire_sleeps(&self, now: Instant) -> usize {
        let mut fired = 0;
        self.sleeps.borrow_mut().advance(now, &mut |_, waker: Waker| {
            fired += 1;
            waker.wake();
        });
        fired
    }

    /// How long the core may block before a timer (of the stack or a sleep) is
    /// due; `None` when nothing is armed.
    pub(crate) fn time_to_next_timer(&self) -> Option<Duration> {
        let now = self.now();
        let stack = match &self.net {
            Net::Stack(stack) => stack.borrow().poll_timeout(),
            Net::Kernel(_) => None,
        };
        let sleep = self.sleeps.borrow().next_deadline();
        [stack, sleep].into_iter().flatten().min().map(|t| t.saturating_duration_since(now))
    }
}
