//! A task as the executor sees it: the thread-safe header its wakers point to,
//! the type-erased cell holding its future and where its output goes, and why
//! a task may produce no output ([`JoinError`]).

use std::cell::RefCell;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};

/// Why a task produced no output.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JoinError {
    /// The task panicked while being polled; the panic message is kept.
    #[error("task panicked: {0}")]
    Panicked(String),
    /// [`JoinHandle::abort`] stopped the task before it finished.
    #[error("task was aborted")]
    Aborted,
    /// The executor that ran the task was dropped before the task finished.
    #[error("the executor shut down before the task finished")]
    Cancelled,
    /// A blocking closure was refused because its pool's queue was full
    /// (see [`crate::blocking`]); it never ran.
    #[error("the blocking pool's queue was full")]
    Rejected,
}

/// Where the wakes of a task from other threads go: its core's inbound queue.
pub(crate) trait ForeignWakes: Send + Sync + std::fmt::Debug {
    /// Queues a wake of `task` and wakes the core if it sleeps.
    fn push_wake(&self, task: TaskRef);
}

/// Names one task of one core: its slab key and the generation that tells it
/// apart from earlier and later tasks stored under the same key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct TaskRef {
    pub(crate) key: usize,
    pub(crate) generation: u64,
}

/// What a [`std::task::Waker`] of a task points to. Shared with other threads,
/// so everything in it is immutable or atomic; waking and cloning never allocate.
#[derive(Debug)]
pub(crate) struct TaskHeader {
    task: TaskRef,
    /// Set while the task sits in a ready queue (local or remote) and forever once
    /// it has finished, so a burst of wakes queues it once and late wakes do nothing.
    queued: AtomicBool,
    /// The owning core's inbound queue, for wakes from other threads.
    inbox: Arc<dyn ForeignWakes>,
}

impl TaskHeader {
    /// A header for a task that is about to be put in the ready queue.
    pub(crate) fn new(task: TaskRef, inbox: Arc<dyn ForeignWakes>) -> Self {
        Self { task, queued: AtomicBool::new(true), inbox }
    }

    /// The task this header belongs to.
    pub(crate) fn task(&self) -> TaskRef {
        self.task
    }

    /// Called just before a poll: wakes from now on queue the task again.
    pub(crate) fn mark_dequeued(&self) {
        self.queued.store(false, Ordering::Release);
    }

    /// Called when the task has finished: every later wake is ignored.
    pub(crate) fn mark_finished(&self) {
        self.queued.store(true, Ordering::Release);
    }

    /// Marks the task queued; false when it already was (or has finished), and
    /// the wake has nothing to do.
    pub(crate) fn mark_queued(&self) -> bool {
        !self.queued.swap(true, Ordering::AcqRel)
    }

    /// The owning core's inbound queue.
    pub(crate) fn inbox(&self) -> &Arc<dyn ForeignWakes> {
        &self.inbox
    }
}

/// Where a finished task's result goes: a local join handle or a oneshot
/// channel back to another thread.
pub(crate) trait OutputSink<T> {
    /// Hands over the task's result. Called at most once.
    fn deliver(&self, result: Result<T, JoinError>);

    /// Whether the task was asked to stop while it was being polled.
    fn abort_requested(&self) -> bool {
        false
    }
}

/// A task with its types erased, as stored in the executor's slab.
pub(crate) trait RawTask {
    /// The header the task's wakers point to.
    fn header(&self) -> &Arc<TaskHeader>;

    /// Polls the future once.
    ///
    /// - `Poll::Ready(())`: the task is over (its result has been delivered,
    ///   or it had been aborted); the executor removes it.
    /// - `Poll::Pending`: the future is waiting for a wake.
    fn poll(&self, cx: &mut Context<'_>) -> Poll<()>;

    /// Drops the future if it is still there and delivers `error` in place of
    /// its output. Used after a panic and when the executor shuts down.
    fn fail(&self, error: JoinError);
}

/// A future with its header and output sink. The future is boxed so that it
/// stays pinned while the cell around it is shared through an `Rc`.
pub(crate) struct Task<F: Future, S> {
    header: Arc<TaskHeader>,
    /// `None` once the future has finished, failed or been aborted.
    future: RefCell<Option<Pin<Box<F>>>>,
    sink: S,
}

impl<F: Future, S: OutputSink<F::Output>> Task<F, S> {
    pub(crate) fn new(header: Arc<TaskHeader>, future: Pin<Box<F>>, sink: S) -> Self {
        Self { header, future: RefCell::new(Some(future)), sink }
    }

    /// The output sink.
    pub(crate) fn sink(&self) -> &S {
        &self.sink
    }

    /// Removes the future unless it is being polled right now (then `Err`).
    /// `Ok(None)` means it was already gone. The caller drops it outside the borrow.
    pub(crate) fn try_take_future(&self) -> Result<Option<Pin<Box<F>>>, ()> {
        self.future.try_borrow_mut().map(|mut slot| slot.take()).map_err(|_| ())
    }
}

impl<F: Future, S: OutputSink<F::Output>> RawTask for Task<F, S> {
    fn header(&self) -> &Arc<TaskHeader> {
        &self.header
    }

    fn poll(&self, cx: &mut Context<'_>) -> Poll<()> {
        let mut slot = self.future.borrow_mut();
        let Some(future) = slot.as_mut() else {
            return Poll::Ready(());
        };
        let result = match future.as_mut().poll(cx) {
            Poll::Ready(output) => Ok(output),
            Poll::Pending if self.sink.abort_requested() => Err(JoinError::Aborted),
            Poll::Pending => return Poll::Pending,
        };
        let finished = slot.take();
        drop(slot);
        drop(finished);
        self.sink.deliver(result);
        Poll::Ready(())
    }

    fn fail(&self, error: JoinError) {
        let future = self.future.borrow_mut().take();
        if future.is_some() {
            drop(future);
            self.sink.deliver(Err(error));
        }
    }
}
