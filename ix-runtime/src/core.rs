//! The per-core context that socket and timer futures reach through a
//! thread-local: the core's network (its backend's state, chosen once), the
//! tasks waiting for packet buffers, the sleeps on its timer wheel, its clock
//! (read once per round of its loop), its drain flag and its counters.

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::task::Waker;
use std::time::Duration;

use ix_driver::{PacketPool, QueueStats};
use ix_net::Instant;
use ix_net::timer::{TimerKey, TimerWheel};

use crate::dataplane::DataplaneNet;
use crate::kernel::KernelNet;
use crate::stats::{CoreStats, LoopStats};

/// Where a core's sockets live: chosen once, when the core starts.
pub(crate) enum CoreNet {
    /// The dataplane: the core's own TCP/IP stack over its NIC queue.
    Dataplane(Rc<DataplaneNet>),
    /// The `kernel` backend: ordinary kernel sockets driven by epoll.
    Kernel(Rc<KernelNet>),
}

/// One core's networking state.
pub(crate) struct Core {
    index: usize,
    /// Unique among every core of every runtime this process ran: names this
    /// core in data that may travel between threads (see `time::SyncSleep`).
    id: u64,
    net: CoreNet,
    /// Tasks waiting for a free packet buffer.
    buffer_waiters: RefCell<Vec<Waker>>,
    buffer_waits: Cell<u64>,
    handover_lost: Cell<u64>,
    /// The loop's and the queue's counters, refreshed every round.
    loop_stats: Cell<LoopStats>,
    queue_stats: Cell<QueueStats>,
    sleeps: RefCell<TimerWheel<Waker>>,
    start: std::time::Instant,
    /// The clock as the loop read it when the current round began.
    round_clock: Cell<RoundClock>,
    /// Set once a graceful shutdown began: listeners stop accepting.
    draining: Cell<bool>,
}

/// One reading of the clock, in both units the core uses: the monotonic
/// clock's, for adapters that speak `std::time::Instant` (hyper), and the
/// stack's microseconds since the core started.
#[derive(Debug, Clone, Copy)]
struct RoundClock {
    at: std::time::Instant,
    stack: Instant,
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

/// Runs `f` with the current core, or returns `None` on a thread that is not
/// an IX core (as [`try_current`], without taking a reference).
pub(crate) fn try_with_core<R>(f: impl FnOnce(&Core) -> R) -> Option<R> {
    CURRENT.try_with(|current| current.try_borrow().ok().and_then(|c| c.as_deref().map(f))).ok().flatten()
}

/// Source of [`Core::id`].
static NEXT_CORE_ID: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);

impl Core {
    pub(crate) fn install(index: usize, net: CoreNet) -> Rc<Core> {
        let start = std::time::Instant::now();
        let core = Rc::new(Core {
            index,
            id: NEXT_CORE_ID.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
            net,
            buffer_waiters: RefCell::new(Vec::new()),
            buffer_waits: Cell::new(0),
            handover_lost: Cell::new(0),
            loop_stats: Cell::new(LoopStats::default()),
            queue_stats: Cell::new(QueueStats::default()),
            sleeps: RefCell::new(TimerWheel::with_capacity(Instant::ZERO, 256)),
            start,
            round_clock: Cell::new(RoundClock { at: start, stack: Instant::ZERO }),
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

    /// Microseconds since the core started, as the stack's clock: a fresh
    /// reading (for deadlines a caller sets, which must not come early).
    pub(crate) fn now(&self) -> Instant {
        Instant::from_micros(self.start.elapsed().as_micros() as u64)
    }

    /// Reads the clock for the round that begins: the one reading the round's
    /// I/O, timers, idle policy and tasks share. Returns it.
    pub(crate) fn start_round(&self) -> std::time::Instant {
        let at = std::time::Instant::now();
        let stack = Instant::from_micros(at.saturating_duration_since(self.start).as_micros() as u64);
        self.round_clock.set(RoundClock { at, stack });
        at
    }

    /// When the current round began, on the stack's clock: behind the true
    /// time by at most the time the round has run so far.
    pub(crate) fn round_now(&self) -> Instant {
        self.round_clock.get().stack
    }

    /// When the current round began, on the monotonic clock (as
    /// [`Core::round_now`]).
    pub(crate) fn round_instant(&self) -> std::time::Instant {
        self.round_clock.get().at
    }

    /// The core's network, as its backend made it.
    pub(crate) fn net(&self) -> &CoreNet {
        &self.net
    }

    /// The core's packet pool.
    pub(crate) fn with_pool<R>(&self, f: impl FnOnce(&PacketPool) -> R) -> R {
        match &self.net {
            CoreNet::Dataplane(net) => net.with_pool(f),
            CoreNet::Kernel(net) => f(&net.pool),
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

    pub(crate) fn draining(&self) -> bool {
        self.draining.get()
    }

    /// Starts a graceful shutdown: the dataplane's listeners close (new
    /// connections are refused with a reset), and every task waiting on a
    /// socket is woken so that listeners see it and return.
    pub(crate) fn start_draining(&self) {
        self.draining.set(true);
        match &self.net {
            CoreNet::Dataplane(net) => {
                net.stack(|s| s.close_listeners());
                net.wake_all();
            }
            CoreNet::Kernel(net) => net.reactor.wake_all(),
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
    /// due, counted from the round's clock (so a block that follows a round
    /// may end that round's length after the timer: late, never early);
    /// `None` when nothing is armed.
    pub(crate) fn time_to_next_timer(&self) -> Option<Duration> {
        let now = self.round_now();
        let stack = match &self.net {
            CoreNet::Dataplane(net) => net.poll_timeout(),
            CoreNet::Kernel(_) => None,
        };
        let sleep = self.sleeps.borrow().next_deadline();
        [stack, sleep].into_iter().flatten().min().map(|t| t.saturating_duration_since(now))
    }

    /// Everything this core counted, as of the start of its current round's
    /// task phase.
    pub(crate) fn stats(&self) -> CoreStats {
        let (r#loop, queue) = self.loop_stats();
        let mut stats = CoreStats {
            core: self.index(),
            r#loop,
            queue,
            executor: crate::executor::current_stats().unwrap_or_default(),
            buffer_waits: self.buffer_waits(),
            handover_lost: self.handover_lost(),
            pool_free: self.with_pool(|p| p.available()),
            pool_capacity: self.with_pool(|p| p.capacity()),
            ..CoreStats::default()
        };
        match &self.net {
            CoreNet::Dataplane(net) => net.stack(|s| {
                stats.stack = *s.stats();
                stats.connections = s.tcp_connection_count() as u64;
            }),
            CoreNet::Kernel(net) => {
                stats.reactor = net.reactor.stats();
                stats.connections = net.reactor.open() as u64;
            }
        }
        stats
    }
}
