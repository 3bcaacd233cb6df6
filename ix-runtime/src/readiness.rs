//! Waiting on sockets, shared by both backends: which side of a socket a task
//! waits on, and the slot that keeps one waker per side.

use std::task::Waker;

/// Which side of a socket a task waits on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Interest {
    Read,
    Write,
}

/// The tasks waiting on one socket: one waker per side. A second task that
/// waits on the same side replaces the first one's waker (the first is then
/// not woken), as tokio's sockets do.
#[derive(Debug, Default)]
pub(crate) struct WaiterSlot {
    reader: Option<Waker>,
    writer: Option<Waker>,
}

impl WaiterSlot {
    /// Makes `waker` the one woken when the socket is ready for `interest`.
    pub(crate) fn register(&mut self, interest: Interest, waker: &Waker) {
        let place = match interest {
            Interest::Read => &mut self.reader,
            Interest::Write => &mut self.writer,
        };
        match place {
            Some(w) if w.will_wake(waker) => {}
            _ => *place = Some(waker.clone()),
        }
    }

    /// Takes the reader's waker when `read`, the writer's when `write`.
    pub(crate) fn take(&mut self, read: bool, write: bool) -> impl Iterator<Item = Waker> + use<> {
        let reader = if read { self.reader.take() } else { None };
        let writer = if write { self.writer.take() } else { None };
        reader.into_iter().chain(writer)
    }

    /// Takes both wakers.
    pub(crate) fn take_all(&mut self) -> impl Iterator<Item = Waker> + use<> {
        self.take(true, true)
    }
}
