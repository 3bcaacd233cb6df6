//! Getting a task's result back: [`JoinHandle`] for tasks spawned on this core,
//! [`RemoteJoinHandle`] for tasks sent to another core.

use std::cell::{Cell, RefCell};
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll, Wake, Waker};

use futures::channel::oneshot;

use super::task::{JoinError, OutputSink, RawTask, Task};

/// The output side of a local task, shared by the task and its [`JoinHandle`].
pub(crate) struct JoinState<T> {
    slot: RefCell<JoinSlot<T>>,
    waiter: RefCell<Option<Waker>>,
    abort_requested: Cell<bool>,
}

enum JoinSlot<T> {
    Waiting,
    Done(Result<T, JoinError>),
    Taken,
}

impl<T> JoinState<T> {
    pub(crate) fn new() -> Self {
        Self { slot: RefCell::new(JoinSlot::Waiting), waiter: RefCell::new(None), abort_requested: Cell::new(false) }
    }
}

impl<T> OutputSink<T> for JoinState<T> {
    fn deliver(&self, result: Result<T, JoinError>) {
        *self.slot.borrow_mut() = JoinSlot::Done(result);
        let waiter = self.waiter.borrow_mut().take();
        if let Some(waiter) = waiter {
            waiter.wake();
        }
    }

    fn abort_requested(&self) -> bool {
        self.abort_requested.get()
    }
}

/// What a [`JoinHandle`] needs from its task, with the future's type erased.
trait JoinTarget<T> {
    fn poll_join(&self, cx: &mut Context<'_>) -> Poll<Result<T, JoinError>>;
    fn abort(&self);
    fn is_finished(&self) -> bool;
}

impl<F: Future> JoinTarget<F::Output> for Task<F, JoinState<F::Output>> {
    fn poll_join(&self, cx: &mut Context<'_>) -> Poll<Result<F::Output, JoinError>> {
        let state = self.sink();
        let mut slot = state.slot.borrow_mut();
        match std::mem::replace(&mut *slot, JoinSlot::Taken) {
            JoinSlot::Done(result) => Poll::Ready(result),
            JoinSlot::Taken => panic!("JoinHandle polled after it returned Poll::Ready"),
            JoinSlot::Waiting => {
                *slot = JoinSlot::Waiting;
                let mut waiter = state.waiter.borrow_mut();
                match waiter.as_ref() {
                    Some(known) if known.will_wake(cx.waker()) => {}
                    _ => *waiter = Some(cx.waker().clone()),
                }
                Poll::Pending
            }
        }
    }

    fn abort(&self) {
        match self.try_take_future() {
            Ok(Some(future)) => {
                drop(future);
                self.sink().deliver(Err(JoinError::Aborted));
                // The slot in the executor is reclaimed when this wake is processed.
                self.header().wake_by_ref();
            }
            Ok(None) => {}
            Err(()) => self.sink().abort_requested.set(true),
        }
    }

    fn is_finished(&self) -> bool {
        !matches!(*self.sink().slot.borrow(), JoinSlot::Waiting)
    }
}

/// Owned permission to await (or abort) a task spawned on this core with
/// [`Executor::spawn_local`](super::Executor::spawn_local) or
/// [`spawn_local`](super::spawn_local). `!Send`, like the task.
///
/// Dropping the handle detaches the task: it keeps running and its output is
/// dropped (as with tokio, spawning and forgetting is ordinary, so this is not
/// `#[must_use]`).
pub struct JoinHandle<T> {
    task: Rc<dyn JoinTarget<T>>,
}

impl<T> JoinHandle<T> {
    pub(crate) fn new<F: Future<Output = T> + 'static>(task: Rc<Task<F, JoinState<T>>>) -> Self
    where
        T: 'static,
    {
        Self { task }
    }

    /// Stops the task: its future is dropped now (or, when the task aborts
    /// itself from inside its own poll, as soon as that poll returns `Pending`)
    /// and awaiting this handle gives [`JoinError::Aborted`]. Does nothing to a
    /// task that has already finished.
    pub fn abort(&self) {
        self.task.abort();
    }

    /// Whether the task has finished (completed, panicked or been aborted), so
    /// that awaiting this handle would return at once.
    pub fn is_finished(&self) -> bool {
        self.task.is_finished()
    }
}

impl<T> Future for JoinHandle<T> {
    type Output = Result<T, JoinError>;

    /// # Poll outcomes
    /// - `Poll::Ready(Ok(output))`: the task completed.
    /// - `Poll::Ready(Err(_))`: it panicked, was aborted or its executor shut down.
    /// - `Poll::Pending`: still running; the caller is woken when it finishes.
    ///
    /// # Panics
    /// When polled again after returning `Poll::Ready`.
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        self.task.poll_join(cx)
    }
}

impl<T> fmt::Debug for JoinHandle<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JoinHandle").field("finished", &self.is_finished()).finish()
    }
}

/// The output side of a task spawned from another thread: a oneshot sender.
pub(crate) struct RemoteSink<T> {
    sender: Cell<Option<oneshot::Sender<Result<T, JoinError>>>>,
}

impl<T> RemoteSink<T> {
    pub(crate) fn new(sender: oneshot::Sender<Result<T, JoinError>>) -> Self {
        Self { sender: Cell::new(Some(sender)) }
    }
}

impl<T> OutputSink<T> for RemoteSink<T> {
    fn deliver(&self, result: Result<T, JoinError>) {
        if let Some(sender) = self.sender.take() {
            // A dropped receiver means the handle was detached: the result is not wanted.
            let _unwanted = sender.send(result);
        }
    }
}

/// Awaits a task spawned on another core with [`Handle::spawn_on`](super::Handle::spawn_on).
/// `Send` when the output is. Dropping it detaches the task.
#[derive(Debug)]
pub struct RemoteJoinHandle<T> {
    receiver: oneshot::Receiver<Result<T, JoinError>>,
}

impl<T> RemoteJoinHandle<T> {
    pub(crate) fn new(receiver: oneshot::Receiver<Result<T, JoinError>>) -> Self {
        Self { receiver }
    }
}

impl<T> Future for RemoteJoinHandle<T> {
    type Output = Result<T, JoinError>;

    /// # Poll outcomes
    /// - `Poll::Ready(Ok(output))`: the task completed on its core.
    /// - `Poll::Ready(Err(JoinError::Panicked(_)))`: it panicked there.
    /// - `Poll::Ready(Err(JoinError::Cancelled))`: the target executor was
    ///   dropped before the task finished (or before it started).
    /// - `Poll::Pending`: still queued or running; the caller is woken when it finishes.
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        Pin::new(&mut self.receiver).poll(cx).map(|received| received.unwrap_or(Err(JoinError::Cancelled)))
    }
}
