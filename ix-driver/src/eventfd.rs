//! A wake-up descriptor: a non-blocking eventfd that other threads signal and
//! the owning core blocks on when idle (mem queues, the executor's inbox).

use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};

use crate::error::DriverError;

/// A non-blocking, close-on-exec eventfd used as a level a sender raises and
/// the receiver lowers.
#[derive(Debug)]
pub struct EventFd {
    fd: OwnedFd,
}

impl EventFd {
    /// Creates the eventfd, initially not readable.
    pub fn new() -> Result<Self, DriverError> {
        // SAFETY: eventfd takes no pointers; the flags are valid constants.
        let raw: RawFd = unsafe { libc::eventfd(0, libc::EFD_NONBLOCK | libc::EFD_CLOEXEC) };
        if raw < 0 {
            return Err(DriverError::os("eventfd"));
        }
        // SAFETY: `raw` is a fresh descriptor that nothing else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        Ok(Self { fd })
    }

    /// Makes the descriptor readable. A counter already at its maximum stays
    /// readable, so a failed write (EAGAIN) loses nothing.
    pub fn signal(&self) {
        let one: u64 = 1;
        // SAFETY: writes 8 bytes from a live local `u64` to a descriptor this
        // value owns; an eventfd takes exactly 8-byte writes.
        let written = unsafe { libc::write(self.fd.as_raw_fd(), (&raw const one).cast(), size_of::<u64>()) };
        if written < 0 {
            tracing::trace!(error = %std::io::Error::last_os_error(), "eventfd signal not written");
        }
    }

    /// Makes the descriptor unreadable again. Reading an unsignalled eventfd
    /// fails with EAGAIN, which means there was nothing to clear.
    pub fn clear(&self) {
        let mut count: u64 = 0;
        // SAFETY: reads 8 bytes into a live local `u64` from a descriptor this
        // value owns; an eventfd gives exactly 8-byte reads.
        let read = unsafe { libc::read(self.fd.as_raw_fd(), (&raw mut count).cast(), size_of::<u64>()) };
        if read < 0 {
            tracing::trace!(error = %std::io::Error::last_os_error(), "eventfd had nothing to clear");
        }
    }

    /// The descriptor to poll for readability.
    pub fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}
