//! Per-thread signals between a server's accept loop and its connections: the
//! shutdown broadcast they watch, and the count of live connections the loop
//! waits on before it returns.

use std::cell::{Cell, RefCell};
use std::future::poll_fn;
use std::rc::Rc;
use std::task::{Context, Poll, Waker};

use slab::Slab;

/// A one-way broadcast on one thread: once triggered, every watching
/// connection starts a graceful shutdown. Clones share the signal.
#[derive(Debug, Clone, Default)]
pub struct Shutdown {
    inner: Rc<ShutdownInner>,
}

#[derive(Debug, Default)]
struct ShutdownInner {
    triggered: Cell<bool>,
    waiters: RefCell<Slab<Option<Waker>>>,
}

impl Shutdown {
    /// A signal not yet triggered.
    pub fn new() -> Shutdown {
        Shutdown::default()
    }

    /// Triggers it and wakes every watcher.
    pub fn trigger(&self) {
        self.inner.triggered.set(true);
        let wakers: Vec<Waker> = self.inner.waiters.borrow_mut().iter_mut().filter_map(|(_, w)| w.take()).collect();
        wakers.into_iter().for_each(Waker::wake);
    }

    /// Whether it was triggered.
    pub fn is_triggered(&self) -> bool {
        self.inner.triggered.get()
    }

    /// A watcher for one connection; it deregisters when dropped.
    pub(crate) fn watch(&self) -> ShutdownWatch {
        ShutdownWatch { inner: self.inner.clone(), key: None }
    }
}

/// One connection's view of a [`Shutdown`].
#[derive(Debug)]
pub(crate) struct ShutdownWatch {
    inner: Rc<ShutdownInner>,
    key: Option<usize>,
}

impl ShutdownWatch {
    /// Whether the signal was triggered; if not, the task is woken when it is.
    pub(crate) fn poll_triggered(&mut self, cx: &mut Context<'_>) -> bool {
        if self.inner.triggered.get() {
            return true;
        }
        let mut waiters = self.inner.waiters.borrow_mut();
        match self.key {
            Some(key) => match &mut waiters[key] {
                Some(w) if w.will_wake(cx.waker()) => {}
                slot => *slot = Some(cx.waker().clone()),
            },
            None => self.key = Some(waiters.insert(Some(cx.waker().clone()))),
        }
        false
    }
}

impl Drop for ShutdownWatch {
    fn drop(&mut self) {
        if let Some(key) = self.key {
            self.inner.waiters.borrow_mut().remove(key);
        }
    }
}

/// Counts a server's live connections on one thread.
#[derive(Debug, Default)]
pub(crate) struct LiveConnections {
    count: Cell<usize>,
    /// The accept loop, waiting for the count to reach zero.
    waiter: RefCell<Option<Waker>>,
}

impl LiveConnections {
    pub(crate) fn count(&self) -> usize {
        self.count.get()
    }

    /// Counts one more connection until the returned slot is dropped.
    pub(crate) fn enter(self: &Rc<Self>) -> ConnectionSlot {
        self.count.set(self.count.get() + 1);
        ConnectionSlot { live: self.clone() }
    }

    /// Completes once no connection is live.
    pub(crate) async fn all_closed(&self) {
        poll_fn(|cx| {
            if self.count.get() == 0 {
                return Poll::Ready(());
            }
            *self.waiter.borrow_mut() = Some(cx.waker().clone());
            Poll::Pending
        })
        .await;
    }
}

/// A live connection's place in [`LiveConnections`].
#[derive(Debug)]
pub(crate) struct ConnectionSlot {
    live: Rc<LiveConnections>,
}

impl Drop for ConnectionSlot {
    fn drop(&mut self) {
        let left = self.live.count.get() - 1;
        self.live.count.set(left);
        if left == 0 {
            if let Some(waker) = self.live.waiter.borrow_mut().take() {
                waker.wake();
            }
        }
    }
}
