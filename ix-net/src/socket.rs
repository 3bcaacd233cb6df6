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

/// What changed on a socket, as [`Stack::poll_event`](crate::Stack::poll_event)
/// reports it: a set of the four changes below, combined with `|`.
#[derive(Clone, Copy, PartialEq, Eq, Default, Hash)]
pub struct Readiness(u8);

impl Readiness {
    /// No change.
    pub const EMPTY: Readiness = Readiness(0);
    /// Data, end of stream or an error can be read (a datagram, on UDP; a
    /// connection to accept, on a listener).
    pub const READABLE: Readiness = Readiness(1);
    /// Room in the send queue opened, or the connection became writable.
    pub const WRITABLE: Readiness = Readiness(2);
    /// The handshake completed.
    pub const ESTABLISHED: Readiness = Readiness(4);
    /// The connection reached `Closed`.
    pub const CLOSED: Readiness = Readiness(8);

    /// Whether nothing changed.
    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// Whether every change of `other` is in `self`.
    pub fn contains(self, other: Readiness) -> bool {
        self.0 & other.0 == other.0
    }

    /// Whether `self` and `other` share a change.
    pub fn intersects(self, other: Readiness) -> bool {
        self.0 & other.0 != 0
    }

    /// `self` without the changes of `other`.
    pub fn without(self, other: Readiness) -> Readiness {
        Readiness(self.0 & !other.0)
    }

    /// Whether a task waiting to read (or accept) may now proceed: data came,
    /// or the connection was established or closed.
    pub fn wakes_reader(self) -> bool {
        self.intersects(Self::READABLE | Self::ESTABLISHED | Self::CLOSED)
    }

    /// Whether a task waiting to write (or connect) may now proceed: room
    /// opened, or the connection was established or closed.
    pub fn wakes_writer(self) -> bool {
        self.intersects(Self::WRITABLE | Self::ESTABLISHED | Self::CLOSED)
    }
}

impl std::ops::BitOr for Readiness {
    type Output = Readiness;

    fn bitor(self, other: Readiness) -> Readiness {
        Readiness(self.0 | other.0)
    }
}

impl std::ops::BitOrAssign for Readiness {
    fn bitor_assign(&mut self, other: Readiness) {
        self.0 |= other.0;
    }
}

impl fmt::Debug for Readiness {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names = [
            (Self::READABLE, "READABLE"),
            (Self::WRITABLE, "WRITABLE"),
            (Self::ESTABLISHED, "ESTABLISHED"),
            (Self::CLOSED, "CLOSED"),
        ];
        let mut set = f.debug_set();
        for (flag, name) in names {
            if self.contains(flag) {
                set.entry(&format_args!("{name}"));
            }
        }
        set.finish()
    }
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

#[cfg(test)]
mod tests {
    use super::Readiness;

    #[test]
    fn readiness_says_which_waiters_wake() {
        assert!(Readiness::READABLE.wakes_reader() && !Readiness::READABLE.wakes_writer());
        assert!(Readiness::WRITABLE.wakes_writer() && !Readiness::WRITABLE.wakes_reader());
        for both in [Readiness::ESTABLISHED, Readiness::CLOSED] {
            assert!(both.wakes_reader() && both.wakes_writer());
        }
        assert!(!Readiness::EMPTY.wakes_reader() && !Readiness::EMPTY.wakes_writer());
    }

    #[test]
    fn readiness_combines_and_removes_changes() {
        let mut r = Readiness::ESTABLISHED | Readiness::WRITABLE;
        assert!(r.contains(Readiness::WRITABLE) && !r.contains(Readiness::READABLE));
        assert!(r.intersects(Readiness::READABLE | Readiness::WRITABLE));
        r |= Readiness::READABLE;
        assert_eq!(r.without(Readiness::ESTABLISHED), Readiness::READABLE | Readiness::WRITABLE);
        assert!(r.without(r).is_empty());
        assert_eq!(format!("{:?}", Readiness::READABLE | Readiness::CLOSED), "{READABLE, CLOSED}");
    }
}
