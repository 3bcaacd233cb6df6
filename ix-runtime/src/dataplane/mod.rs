//! The dataplane backend: the core's own TCP/IP stack over its NIC queue.
//! This file owns the per-core state that sockets reach ([`DataplaneNet`]:
//! the stack and the wakers waiting on its sockets).

pub(crate) mod core_io;
pub(crate) mod handover;

use std::cell::RefCell;
use std::io;
use std::rc::Rc;
use std::task::Waker;

use ix_driver::PacketPool;
use ix_net::{Instant, SocketError, SocketHandle, Stack, TcpError};

use crate::readiness::{Interest, WaiterSlot};

/// Chooses a local port for an outgoing connection so that the reply lands on
/// this core's queue (IX's port probing); `None` means the backend cannot
/// steer and any port will do.
pub(crate) type PortFilter = Box<dyn Fn(u16, std::net::SocketAddrV4) -> bool>;

/// The `io::Error` for a stack error, of the kind std's sockets give.
pub(crate) fn io_error(err: SocketError) -> io::Error {
    use io::ErrorKind as K;
    let kind = match err {
        SocketError::Tcp(TcpError::ConnectionRefused) => K::ConnectionRefused,
        SocketError::Tcp(TcpError::ConnectionReset) => K::ConnectionReset,
        SocketError::Tcp(TcpError::ConnectionAborted) => K::ConnectionAborted,
        SocketError::Tcp(TcpError::TimedOut) => K::TimedOut,
        SocketError::Tcp(TcpError::NotConnected) => K::NotConnected,
        SocketError::Tcp(TcpError::Closed) => K::BrokenPipe,
        SocketError::AddrInUse(_) => K::AddrInUse,
        SocketError::NoPortsAvailable => K::AddrNotAvailable,
        SocketError::NoBuffers | SocketError::TooManyConnections => K::OutOfMemory,
        SocketError::MessageTooLong(_) => K::InvalidInput,
        SocketError::NoRoute => K::HostUnreachable,
        SocketError::InvalidHandle | SocketError::WrongKind(_) => K::NotConnected,
    };
    io::Error::new(kind, err)
}

/// The waiters of the socket whose handle is `handle` (a slot is reused when
/// the stack reuses the handle's index).
#[derive(Debug, Default)]
struct SocketWaiters {
    handle: Option<SocketHandle>,
    slot: WaiterSlot,
}

/// One dataplane core's network: its stack and the tasks waiting on its sockets.
pub(crate) struct DataplaneNet {
    stack: RefCell<Stack>,
    waiters: RefCell<Vec<SocketWaiters>>,
    port_filter: Option<PortFilter>,
}

impl DataplaneNet {
    pub(crate) fn new(stack: Stack, port_filter: Option<PortFilter>) -> DataplaneNet {
        DataplaneNet { stack: RefCell::new(stack), waiters: RefCell::new(Vec::new()), port_filter }
    }

    /// Runs `f` on the stack.
    ///
    /// # Panics
    /// When called from inside another `stack` call (a bug of this crate).
    pub(crate) fn stack<R>(&self, f: impl FnOnce(&mut Stack) -> R) -> R {
        f(&mut self.stack.borrow_mut())
    }

    /// The core's packet pool.
    pub(crate) fn with_pool<R>(&self, f: impl FnOnce(&PacketPool) -> R) -> R {
        f(self.stack.borrow().pool())
    }

    /// When the stack's next timer is due.
    pub(crate) fn poll_timeout(&self) -> Option<Instant> {
        self.stack.borrow().poll_timeout()
    }

    pub(crate) fn port_filter(&self) -> Option<&PortFilter> {
        self.port_filter.as_ref()
    }

    /// Makes `waker` the one woken when `handle` becomes ready for `interest`.
    pub(crate) fn register(&self, handle: SocketHandle, interest: Interest, waker: &Waker) {
        let mut waiters = self.waiters.borrow_mut();
        let i = handle.index();
        if waiters.len() <= i {
            waiters.resize_with(i + 1, SocketWaiters::default);
        }
        let entry = &mut waiters[i];
        if entry.handle != Some(handle) {
            *entry = SocketWaiters { handle: Some(handle), slot: WaiterSlot::default() };
        }
        entry.slot.register(interest, waker);
    }

    /// Forgets the wakers of a socket being closed.
    pub(crate) fn forget(&self, handle: SocketHandle) {
        if let Some(entry) = self.waiters.borrow_mut().get_mut(handle.index()) {
            if entry.handle == Some(handle) {
                *entry = SocketWaiters::default();
            }
        }
    }

    /// Wakes every task waiting on a socket (graceful shutdown: listeners
    /// must see it).
    pub(crate) fn wake_all(&self) {
        let wakers: Vec<Waker> = self.waiters.borrow_mut().iter_mut().flat_map(|w| w.slot.take_all()).collect();
        wakers.into_iter().for_each(Waker::wake);
    }

    /// Wakes the tasks waiting on sockets the stack reported ready. Returns how
    /// many events there were.
    pub(crate) fn dispatch_events(&self) -> usize {
        let mut n = 0;
        loop {
            let Some((handle, readiness)) = self.stack.borrow_mut().poll_event() else { return n };
            n += 1;
            let mut waiters = self.waiters.borrow_mut();
            let Some(entry) = waiters.get_mut(handle.index()) else { continue };
            if entry.handle != Some(handle) {
                continue;
            }
            entry.slot.take(readiness.wakes_reader(), readiness.wakes_writer()).for_each(Waker::wake);
        }
    }
}

/// A socket of the core's stack; dropping it forgets its wakers and closes it
/// (a FIN or RST follows, as the stack decides).
pub(crate) struct DataplaneSocket {
    net: Rc<DataplaneNet>,
    handle: SocketHandle,
}

impl DataplaneSocket {
    /// Takes ownership of `handle`, a socket of `net`'s stack.
    pub(crate) fn new(net: Rc<DataplaneNet>, handle: SocketHandle) -> DataplaneSocket {
        DataplaneSocket { net, handle }
    }

    pub(crate) fn net(&self) -> &Rc<DataplaneNet> {
        &self.net
    }

    /// Runs `f` on the stack with this socket's handle.
    pub(crate) fn stack<R>(&self, f: impl FnOnce(&mut Stack, SocketHandle) -> R) -> R {
        self.net.stack(|s| f(s, self.handle))
    }

    /// Makes the task of `waker` the one woken when the socket is ready for
    /// `interest` (replacing the waker of another task waiting on that side).
    pub(crate) fn register(&self, interest: Interest, waker: &Waker) {
        self.net.register(self.handle, interest, waker);
    }
}

impl Drop for DataplaneSocket {
    fn drop(&mut self) {
        self.net.forget(self.handle);
        self.net.stack(|s| s.close(self.handle));
    }
}
