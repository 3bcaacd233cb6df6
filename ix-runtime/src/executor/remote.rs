//! Cross-core traffic: each core's bounded inbound queue of wakes and spawned
//! tasks with its eventfd, and the shared [`Handle`] that spawns onto any core.
//!
//! The queues are a `Mutex<Vec<_>>` each. On this design cross-core traffic is the
//! exception (flows stay on their core), so a lock taken once per foreign wake or
//! spawn, uncontended in practice, costs little; the owning core swaps the whole
//! vector out under one lock per drain, and no `unsafe` lock-free queue is needed.

use std::fmt;
use std::future::Future;
use std::io;
use std::os::fd::BorrowedFd;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use futures::channel::oneshot;

use super::join::{RemoteJoinHandle, RemoteSink};
use super::task::{ForeignWakes, RawTask, Task, TaskHeader, TaskRef};
use ix_driver::EventFd;

/// Tasks each core's inbound queue holds unless configured otherwise.
pub const INBOUND_CAPACITY_DEFAULT_TASKS: usize = 1024;

/// Why [`Handle::spawn_on`] did not queue a task. The future is dropped.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SpawnError {
    /// The core index is not below the number of cores of the handle.
    #[error("no core {core}: the runtime has {cores} cores")]
    NoSuchCore {
        /// The core asked for.
        core: usize,
        /// How many cores there are.
        cores: usize,
    },
    /// The core's inbound queue already holds `capacity` tasks not yet taken
    /// by its executor. Retry later or spawn elsewhere.
    #[error("core {core}'s inbound queue is full ({capacity} tasks)")]
    Full {
        /// The core asked for.
        core: usize,
        /// The queue's bound.
        capacity: usize,
    },
    /// The core's executor has been dropped.
    #[error("core {core}'s executor has shut down")]
    Closed {
        /// The core asked for.
        core: usize,
    },
}

/// A task sent from another thread, turned into a local task by the owning core
/// once it knows the task's header.
pub(crate) type RemoteSpawn = Box<dyn FnOnce(Arc<TaskHeader>) -> Rc<dyn RawTask> + Send>;

struct SpawnQueue {
    tasks: Vec<RemoteSpawn>,
    closed: bool,
}

/// One core's inbound side, shared by every thread through [`Handle`].
pub(crate) struct CoreInbox {
    core: usize,
    capacity: usize,
    wakes: Mutex<Vec<TaskRef>>,
    spawns: Mutex<SpawnQueue>,
    /// Whether the eventfd has been raised since the owner last lowered it, so
    /// a burst of foreign wakes costs one `write(2)`.
    signalled: AtomicBool,
    eventfd: EventFd,
    /// Whether an executor owns this core now; wakes for a core without one are dropped.
    bound: AtomicBool,
    /// Generations are never reused on a core, even across executors bound to it in turn.
    next_generation: AtomicU64,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // Nothing panics while holding these locks; recover the data if it ever does.
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

impl CoreInbox {
    fn new(core: usize, capacity: usize) -> io::Result<Self> {
        Ok(Self {
            core,
            capacity,
            wakes: Mutex::new(Vec::new()),
            spawns: Mutex::new(SpawnQueue { tasks: Vec::new(), closed: false }),
            signalled: AtomicBool::new(false),
            eventfd: EventFd::new().map_err(std::io::Error::other)?,
            bound: AtomicBool::new(false),
            next_generation: AtomicU64::new(0),
        })
    }

    pub(crate) fn core(&self) -> usize {
        self.core
    }

    /// Claims the core for a new executor and opens its spawn queue.
    ///
    /// # Panics
    /// When another executor owns the core.
    pub(crate) fn bind(&self) {
        assert!(!self.bound.swap(true, Ordering::AcqRel), "core {} already has an executor", self.core);
        lock(&self.spawns).closed = false;
    }

    /// Releases the core; returns the spawned tasks that never started, for the
    /// caller to drop outside the lock (their handles then report cancellation).
    pub(crate) fn unbind(&self) -> Vec<RemoteSpawn> {
        let orphans = {
            let mut spawns = lock(&self.spawns);
            spawns.closed = true;
            std::mem::take(&mut spawns.tasks)
        };
        lock(&self.wakes).clear();
        self.bound.store(false, Ordering::Release);
        orphans
    }

    pub(crate) fn next_generation(&self) -> u64 {
        self.next_generation.fetch_add(1, Ordering::Relaxed)
    }

    fn push_spawn(&self, spawn: RemoteSpawn) -> Result<(), SpawnError> {
        {
            let mut spawns = lock(&self.spawns);
            if spawns.closed {
                return Err(SpawnError::Closed { core: self.core });
            }
            if spawns.tasks.len() >= self.capacity {
                return Err(SpawnError::Full { core: self.core, capacity: self.capacity });
            }
            spawns.tasks.push(spawn);
        }
        self.signal();
        Ok(())
    }

    fn signal(&self) {
        if !self.signalled.swap(true, Ordering::SeqCst) {
            self.eventfd.signal();
        }
    }

    /// Whether anything was queued since the owner last acknowledged: every
    /// push raises the flag after queueing, so a lowered flag means there is
    /// nothing to take, and the owner's round needs no system call to know it.
    pub(crate) fn pending(&self) -> bool {
        self.signalled.load(Ordering::SeqCst)
    }

    /// Lowers the eventfd before the owner takes the queues: anything pushed
    /// after this raises it again, so no wake is lost between drain and sleep.
    pub(crate) fn acknowledge(&self) {
        self.eventfd.clear();
        self.signalled.store(false, Ordering::SeqCst);
    }

    /// Swaps the queued wakes into `into`, which must be empty.
    pub(crate) fn take_wakes(&self, into: &mut Vec<TaskRef>) {
        std::mem::swap(&mut *lock(&self.wakes), into);
    }

    /// Swaps the queued spawns into `into`, which must be empty.
    pub(crate) fn take_spawns(&self, into: &mut Vec<RemoteSpawn>) {
        std::mem::swap(&mut lock(&self.spawns).tasks, into);
    }

    pub(crate) fn wake_fd(&self) -> BorrowedFd<'_> {
        self.eventfd.as_fd()
    }
}

impl ForeignWakes for CoreInbox {
    /// Queues a wake from a foreign thread and raises the eventfd.
    fn push_wake(&self, task: TaskRef) {
        if !self.bound.load(Ordering::Acquire) {
            return;
        }
        lock(&self.wakes).push(task);
        self.signal();
    }
}

impl fmt::Debug for CoreInbox {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CoreInbox")
            .field("core", &self.core)
            .field("capacity", &self.capacity)
            .field("bound", &self.bound.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

/// The runtime-wide view of every core: cheap to clone, `Send + Sync`. Create
/// one per runtime, give a clone to each core thread, and build that thread's
/// [`Executor`](super::Executor) from it.
#[derive(Clone, Debug)]
pub struct Handle {
    cores: Arc<[Arc<CoreInbox>]>,
}

impl Handle {
    /// A handle for `cores` cores, each with an inbound queue of
    /// [`INBOUND_CAPACITY_DEFAULT_TASKS`].
    ///
    /// # Errors
    /// The OS error when an eventfd cannot be created (descriptor limit).
    pub fn new(cores: usize) -> io::Result<Self> {
        Self::with_inbound_capacity(cores, INBOUND_CAPACITY_DEFAULT_TASKS)
    }

    /// A handle for `cores` cores whose inbound queues each hold at most
    /// `capacity_tasks` spawned tasks not yet taken by the core.
    ///
    /// # Errors
    /// The OS error when an eventfd cannot be created (descriptor limit).
    pub fn with_inbound_capacity(cores: usize, capacity_tasks: usize) -> io::Result<Self> {
        let inboxes = (0..cores).map(|core| CoreInbox::new(core, capacity_tasks).map(Arc::new));
        Ok(Self { cores: inboxes.collect::<io::Result<Vec<_>>>()?.into() })
    }

    /// How many cores this handle spans.
    pub fn cores(&self) -> usize {
        self.cores.len()
    }

    pub(crate) fn inbox(&self, core: usize) -> Option<&Arc<CoreInbox>> {
        self.cores.get(core)
    }

    /// Sends `future` to run as a task on `core`, from any thread (including
    /// that core's own). The task starts after the core's next
    /// [`Executor::drain_remote`](super::Executor::drain_remote); its output
    /// comes back through the returned handle. Never blocks.
    ///
    /// # Errors
    /// - [`SpawnError::NoSuchCore`] when `core >= self.cores()`.
    /// - [`SpawnError::Full`] when the core's inbound queue is at its bound.
    /// - [`SpawnError::Closed`] when the core's executor has been dropped.
    pub fn spawn_on<F>(&self, core: usize, future: F) -> Result<RemoteJoinHandle<F::Output>, SpawnError>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        let inbox = self.inbox(core).ok_or(SpawnError::NoSuchCore { core, cores: self.cores() })?;
        let (sender, receiver) = oneshot::channel();
        let future = Box::pin(future);
        let spawn: RemoteSpawn =
            Box::new(move |header| Rc::new(Task::new(header, future, RemoteSink::new(sender))) as Rc<dyn RawTask>);
        inbox.push_spawn(spawn)?;
        Ok(RemoteJoinHandle::new(receiver))
    }
}
