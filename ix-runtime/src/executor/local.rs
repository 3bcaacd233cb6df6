//! The per-core [`Executor`]: task slab, FIFO ready queue, the poll step with
//! panic containment and budget, the thread-local "current executor", and stats.

use std::any::Any;
use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::fmt;
use std::future::Future;
use std::os::fd::BorrowedFd;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::rc::Rc;
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};

use slab::Slab;

use super::coop::{self, BUDGET_DEFAULT_UNITS};
use super::join::{JoinHandle, JoinState};
use super::remote::{CoreInbox, Handle, RemoteSpawn};
use super::task::{ForeignWakes, JoinError, RawTask, Task, TaskHeader, TaskRef};

/// Counters of one executor since it was created. Plain integers: only the
/// owning core writes them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ExecutorStats {
    /// Tasks started, local and remote.
    pub spawned: u64,
    /// Of those, tasks that came from [`Handle::spawn_on`].
    pub remote_spawned: u64,
    /// Tasks that ended (completed, panicked or aborted) and left the slab.
    pub completed: u64,
    /// Task polls.
    pub polls: u64,
    /// Task polls that panicked; each such task was dropped.
    pub panics: u64,
    /// Wakes that came from other threads through the inbound queue.
    pub remote_wakes: u64,
    /// Task polls that ran out of cooperative budget and were told to yield.
    pub budget_yields: u64,
}

thread_local! {
    /// The executor of the core this thread runs, if any.
    static CURRENT: RefCell<Option<Rc<Inner>>> = const { RefCell::new(None) };
}

/// The counters of the calling thread's executor, if it runs one.
pub(crate) fn current_stats() -> Option<ExecutorStats> {
    CURRENT.try_with(|current| current.try_borrow().ok()?.as_ref().map(|inner| inner.stats.get())).ok().flatten()
}

/// Pushes `task` onto the local ready queue when this thread runs the executor
/// that owns `inbox`. Returns false on any other thread (the caller then goes
/// through the inbound queue).
fn push_ready_if_owner(inbox: &Arc<dyn ForeignWakes>, task: TaskRef) -> bool {
    CURRENT
        .try_with(|current| match current.try_borrow().as_deref() {
            Ok(Some(inner)) if std::ptr::addr_eq(Arc::as_ptr(&inner.inbox), Arc::as_ptr(inbox)) => {
                inner.ready.borrow_mut().push_back(task);
                true
            }
            _ => false,
        })
        .unwrap_or(false)
}

impl Wake for TaskHeader {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    /// Queues the task unless it is queued already or finished: on the owning
    /// core's thread straight into its ready queue, from any other thread through
    /// the core's inbound queue and eventfd.
    fn wake_by_ref(self: &Arc<Self>) {
        if !self.mark_queued() {
            return;
        }
        if !push_ready_if_owner(self.inbox(), self.task()) {
            self.inbox().push_wake(self.task());
        }
    }
}

/// Spawns `future` on the executor of the calling thread's core; the free form
/// of [`Executor::spawn_local`], for code running inside tasks.
///
/// # Panics
/// When the calling thread has no [`Executor`] (it is not an IX core).
pub fn spawn_local<F: Future + 'static>(future: F) -> JoinHandle<F::Output> {
    let inner = CURRENT.with(|current| current.borrow().clone());
    let inner =
        inner.expect("ix_runtime::executor::spawn_local called on a thread that is not an IX core (no Executor)");
    inner.spawn_local(future)
}

/// The state shared by an [`Executor`] and its thread-local registration.
struct Inner {
    inbox: Arc<CoreInbox>,
    handle: Handle,
    tasks: RefCell<Slab<Rc<dyn RawTask>>>,
    ready: RefCell<VecDeque<TaskRef>>,
    /// Buffers swapped with the inbound queues on each drain, so draining does not allocate.
    wakes_spare: RefCell<Vec<TaskRef>>,
    spawns_spare: RefCell<Vec<RemoteSpawn>>,
    budget_units: Cell<u32>,
    stats: Cell<ExecutorStats>,
}

impl Inner {
    fn count(&self, update: impl FnOnce(&mut ExecutorStats)) {
        let mut stats = self.stats.get();
        update(&mut stats);
        self.stats.set(stats);
    }

    fn next_header(&self) -> Arc<TaskHeader> {
        let key = self.tasks.borrow().vacant_key();
        let task = TaskRef { key, generation: self.inbox.next_generation() };
        let inbox: Arc<dyn ForeignWakes> = self.inbox.clone();
        Arc::new(TaskHeader::new(task, inbox))
    }

    /// Stores a task made with [`Inner::next_header`] (nothing else may be
    /// inserted in between) and queues its first poll.
    fn insert(&self, task: Rc<dyn RawTask>) {
        let reference = task.header().task();
        let key = self.tasks.borrow_mut().insert(task);
        debug_assert_eq!(key, reference.key, "a task was inserted between next_header and insert");
        self.ready.borrow_mut().push_back(reference);
        self.count(|stats| stats.spawned += 1);
    }

    fn spawn_local<F: Future + 'static>(&self, future: F) -> JoinHandle<F::Output> {
        let task = Rc::new(Task::new(self.next_header(), Box::pin(future), JoinState::new()));
        self.insert(Rc::clone(&task) as Rc<dyn RawTask>);
        JoinHandle::new(task)
    }

    /// The task `reference` names, unless it has finished and its slot is empty or reused.
    fn live_task(&self, reference: TaskRef) -> Option<Rc<dyn RawTask>> {
        let tasks = self.tasks.borrow();
        tasks.get(reference.key).filter(|task| task.header().task() == reference).map(Rc::clone)
    }

    /// Polls one task with a fresh budget, containing any panic.
    fn poll_task(&self, task: &Rc<dyn RawTask>) {
        let header = task.header();
        header.mark_dequeued();
        let waker = Waker::from(Arc::clone(header));
        let mut cx = Context::from_waker(&waker);
        let (outcome, exhausted) =
            coop::with_budget(self.budget_units.get(), || catch_unwind(AssertUnwindSafe(|| task.poll(&mut cx))));
        self.count(|stats| {
            stats.polls += 1;
            stats.budget_yields += u64::from(exhausted);
        });
        match outcome {
            Ok(Poll::Pending) => {}
            Ok(Poll::Ready(())) => self.finish(task),
            Err(payload) => {
                let message = panic_message(payload.as_ref());
                tracing::error!(core = self.inbox.core(), task = header.task().key, %message, "task panicked; dropped");
                self.count(|stats| stats.panics += 1);
                contain_panic(self.inbox.core(), || task.fail(JoinError::Panicked(message)));
                self.finish(task);
            }
        }
    }

    /// Removes a task that is over; its wakers become no-ops.
    fn finish(&self, task: &Rc<dyn RawTask>) {
        task.header().mark_finished();
        let removed = self.tasks.borrow_mut().try_remove(task.header().task().key);
        drop(removed);
        self.count(|stats| stats.completed += 1);
    }

    fn drain_remote(&self) -> usize {
        if !self.inbox.pending() {
            return 0;
        }
        self.inbox.acknowledge();
        let mut wakes = self.wakes_spare.take();
        self.inbox.take_wakes(&mut wakes);
        let woken = wakes.len();
        self.ready.borrow_mut().extend(wakes.drain(..));
        *self.wakes_spare.borrow_mut() = wakes;

        let mut spawns = self.spawns_spare.take();
        self.inbox.take_spawns(&mut spawns);
        let spawned = spawns.len();
        for spawn in spawns.drain(..) {
            let task = spawn(self.next_header());
            self.insert(task);
        }
        *self.spawns_spare.borrow_mut() = spawns;

        self.count(|stats| {
            stats.remote_wakes += woken as u64;
            stats.remote_spawned += spawned as u64;
        });
        woken + spawned
    }

    /// Fails every task with [`JoinError::Cancelled`], including any that
    /// dropping the others spawns, until the slab stays empty.
    fn cancel_all(&self) {
        loop {
            let tasks: Vec<_> = self.tasks.borrow_mut().drain().collect();
            if tasks.is_empty() {
                break;
            }
            for task in tasks {
                task.header().mark_finished();
                contain_panic(self.inbox.core(), || task.fail(JoinError::Cancelled));
            }
        }
        self.ready.borrow_mut().clear();
    }
}

/// Runs `work` (dropping or failing a task), logging a panic instead of unwinding into the core's loop.
fn contain_panic(core: usize, work: impl FnOnce()) {
    if let Err(payload) = catch_unwind(AssertUnwindSafe(work)) {
        tracing::error!(core, message = %panic_message(payload.as_ref()), "panic while dropping a task's future");
    }
}

pub(crate) fn panic_message(payload: &(dyn Any + Send)) -> String {
    if let Some(message) = payload.downcast_ref::<&str>() {
        (*message).to_owned()
    } else if let Some(message) = payload.downcast_ref::<String>() {
        message.clone()
    } else {
        "panic payload is not a string".to_owned()
    }
}

/// One core's executor for `!Send` tasks. It owns the thread it is created on
/// (it is `!Send`) and does nothing by itself: the core's loop calls
/// [`Executor::drain_remote`] and [`Executor::run_ready`], and blocks on
/// [`Executor::wake_fd`] when idle.
///
/// ```
/// use ix_runtime::executor::{Executor, Handle};
///
/// let handle = Handle::new(1).expect("eventfd");
/// let executor = Executor::new(0, &handle);
/// let task = executor.spawn_local(async { 6 * 7 });
/// while executor.has_ready() {
///     executor.run_ready(64);
/// }
/// assert!(task.is_finished());
/// ```
pub struct Executor {
    inner: Rc<Inner>,
}

impl Executor {
    /// Creates the executor of `core` on the calling thread and makes it the
    /// thread's current executor (for [`spawn_local`] and same-thread wakes).
    ///
    /// # Panics
    /// When `core >= handle.cores()`, when another executor already owns `core`,
    /// or when this thread already has an executor.
    pub fn new(core: usize, handle: &Handle) -> Self {
        let Some(inbox) = handle.inbox(core) else {
            panic!("no core {core}: the handle has {} cores", handle.cores());
        };
        let occupied = CURRENT.with(|current| current.borrow().as_ref().map(|inner| inner.inbox.core()));
        if let Some(other) = occupied {
            panic!("this thread already runs the executor of core {other}; one executor per thread");
        }
        inbox.bind();
        let inner = Rc::new(Inner {
            inbox: Arc::clone(inbox),
            handle: handle.clone(),
            tasks: RefCell::new(Slab::new()),
            ready: RefCell::new(VecDeque::new()),
            wakes_spare: RefCell::new(Vec::new()),
            spawns_spare: RefCell::new(Vec::new()),
            budget_units: Cell::new(BUDGET_DEFAULT_UNITS),
            stats: Cell::new(ExecutorStats::default()),
        });
        CURRENT.with(|current| *current.borrow_mut() = Some(Rc::clone(&inner)));
        Self { inner }
    }

    /// The core this executor runs.
    pub fn core(&self) -> usize {
        self.inner.inbox.core()
    }

    /// The runtime-wide handle this executor was built from.
    pub fn handle(&self) -> &Handle {
        &self.inner.handle
    }

    /// Spawns `future` as a task of this core and queues its first poll. Callable
    /// from inside tasks (through [`spawn_local`]); the task runs on a later
    /// [`Executor::run_ready`].
    pub fn spawn_local<F: Future + 'static>(&self, future: F) -> JoinHandle<F::Output> {
        self.inner.spawn_local(future)
    }

    /// Polls ready tasks in FIFO order, at most `max_polls` of them, and returns
    /// how many were polled. Tasks woken during this call join the back of the
    /// queue and may run within it. A panicking task is dropped, logged and
    /// counted; it never unwinds out of this call.
    pub fn run_ready(&self, max_polls: usize) -> usize {
        let mut polled = 0;
        while polled < max_polls {
            let Some(next) = self.inner.ready.borrow_mut().pop_front() else {
                break;
            };
            if let Some(task) = self.inner.live_task(next) {
                self.inner.poll_task(&task);
                polled += 1;
            }
        }
        polled
    }

    /// Whether a task is waiting in the local ready queue. Wakes and spawns from
    /// other threads count only after [`Executor::drain_remote`].
    pub fn has_ready(&self) -> bool {
        !self.inner.ready.borrow().is_empty()
    }

    /// Moves wakes and spawned tasks that other threads sent to this core into
    /// the local ready queue and lowers [`Executor::wake_fd`]. Returns how many
    /// wakes and spawns it took. Anything sent after the eventfd was lowered
    /// raises it again, so the loop may block on it safely after this call.
    pub fn drain_remote(&self) -> usize {
        self.inner.drain_remote()
    }

    /// An eventfd that becomes readable when another thread wakes a task of this
    /// core or spawns onto it; for the idle policy to block on.
    pub fn wake_fd(&self) -> BorrowedFd<'_> {
        self.inner.inbox.wake_fd()
    }

    /// Tasks alive on this core (queued, waiting, or finished but not yet reclaimed).
    pub fn task_count(&self) -> usize {
        self.inner.tasks.borrow().len()
    }

    /// A snapshot of the counters.
    pub fn stats(&self) -> ExecutorStats {
        self.inner.stats.get()
    }

    /// Sets the cooperative budget each task poll starts with (default
    /// [`BUDGET_DEFAULT_UNITS`](super::coop::BUDGET_DEFAULT_UNITS)).
    ///
    /// # Panics
    /// When `units` is 0: no I/O future could ever make progress.
    pub fn set_budget(&self, units: u32) {
        assert!(units > 0, "a task poll needs a budget of at least one unit");
        self.inner.budget_units.set(units);
    }
}

impl Drop for Executor {
    /// Drops every task (their handles report [`JoinError::Cancelled`]), releases
    /// the core so another executor may own it, and clears the thread's current executor.
    fn drop(&mut self) {
        self.inner.cancel_all();
        let orphans = self.inner.inbox.unbind();
        contain_panic(self.core(), || drop(orphans));
        let registered = CURRENT.with(|current| current.borrow_mut().take());
        drop(registered);
    }
}

impl fmt::Debug for Executor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Executor")
            .field("core", &self.core())
            .field("tasks", &self.task_count())
            .field("ready", &self.inner.ready.borrow().len())
            .finish()
    }
}
