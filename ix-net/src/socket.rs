//! Socket handles, readiness events, and the zero-copy receive chunk whose drop
//! hands its bytes back to the connection's window (IX's `recv_done`).

use std::cell::{Cell, OnceCell, RefCell};
use std::fmt;
use std::ops::Deref;
use std::rc::Rc;

use ix_driver::PacketBuf;

/// Names one socket of a stack. A handle of a socket that was closed and whose
/// slot was reused is detected (the generation differs), never confused.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct SocketHandle {
    pub(crate) index: u32,
    pub(crate) generation: u32,
}

impl SocketHandle {
    /// The slot index, stable for the socket's life (for tables in the layer
    /// above).
    pub fn index(self) -> usize {
        self.index as usize
    }
}

impl fmt::Debug for SocketHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "socket#{}.{}", self.index, self.generation)
    }
}

/// Readiness bits carried by events.
pub mod readiness {
    pub use crate::tcp::conn::events::{CLOSED, ESTABLISHED, READABLE, WRITABLE};
}

/// Sockets whose application-held bytes shrank since the stack last looked.
pub(crate) type ReleaseQueue = RefCell<Vec<SocketHandle>>;

/// Bytes of received data an application holds, shared by a connection and the
/// chunks it handed out.
#[derive(Debug, Default)]
pub struct RxCredit {
    held: Cell<usize>,
    released: Cell<bool>,
    owner: OnceCell<(SocketHandle, Rc<ReleaseQueue>)>,
}

impl RxCredit {
    /// Bytes held by the application now.
    pub fn held(&self) -> usize {
        self.held.get()
    }

    pub(crate) fn bind(&self, handle: SocketHandle, queue: Rc<ReleaseQueue>) {
        let _ = self.owner.set((handle, queue));
    }

    pub(crate) fn take(&self, n: usize) {
        self.held.set(self.held.get() + n);
    }

    fn give_back(&self, n: usize) {
        self.held.set(self.held.get().saturating_sub(n));
        if !self.released.replace(true) {
            if let Some((handle, queue)) = self.owner.get() {
                queue.borrow_mut().push(*handle);
            }
        }
    }

    /// Clears the release mark; true when something was released since.
    pub(crate) fn acknowledge_release(&self) -> bool {
        self.released.replace(false)
    }
}

/// A chunk of received TCP data: a read-only view into the frame the NIC
/// filled. Holding it holds the frame and keeps its bytes out of the receive
/// window; dropping it returns both.
pub struct RxChunk {
    buf: PacketBuf,
    /// Bytes still charged to the connection (shrinks with `advance`).
    charged: usize,
    credit: Rc<RxCredit>,
}

impl RxChunk {
    pub(crate) fn new(buf: PacketBuf, credit: Rc<RxCredit>) -> Self {
        let charged = buf.len();
        Self { buf, charged, credit }
    }

    /// A chunk made outside this stack (the runtime's `kernel` backend reads
    /// kernel sockets into pool frames), charged to `credit`, which counts the
    /// bytes its holder keeps but opens no TCP window.
    pub fn from_packet(buf: PacketBuf, credit: &Rc<RxCredit>) -> Self {
        credit.take(buf.len());
        Self::new(buf, credit.clone())
    }

    /// Drops the first `n` bytes; their share of the window is returned at once.
    ///
    /// # Panics
    /// If `n` is greater than the length.
    pub fn advance(&mut self, n: usize) {
        self.buf.advance(n);
        self.charged -= n;
        self.credit.give_back(n);
    }

    /// The underlying packet view (shares the frame; the window is returned when
    /// this chunk drops, not when the view does).
    pub fn as_packet(&self) -> &PacketBuf {
        &self.buf
    }
}

impl Deref for RxChunk {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        &self.buf
    }
}

impl AsRef<[u8]> for RxChunk {
    fn as_ref(&self) -> &[u8] {
        &self.buf
    }
}

impl Drop for RxChunk {
    fn drop(&mut self) {
        self.credit.give_back(self.charged);
    }
}

impl fmt::Debug for RxChunk {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RxChunk").field("len", &self.buf.len()).finish()
    }
}
