//! The wake-up descriptor of a core's inbound queue: a non-blocking eventfd that
//! other threads raise after waking or spawning onto the core, and the core lowers.

use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};

/// A non-blocking, close-on-exec eventfd used as a level: raised by
/// [`EventFd::raise`], lowered by [`EventFd::lower`].
#[derive(Debug)]
pub(crate) struct EventFd {
    fd: OwnedFd,
}

impl EventFd {
    /// Creates the descriptor, initially not readable.
    pub(crate) fn new() -> io::Result<Self> {
        // SAFETY: eventfd takes no pointers, only an initial count and valid flag constants.
        let raw = unsafe { libc::eventfd(0, libc::EFD_NONBLOCK | libc::EFD_CLOEXEC) };
        if raw < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `raw` was just returned by eventfd, is valid, and is owned by nothing else.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        Ok(Self { fd })
    }

    /// Makes the descriptor readable. A counter already at its maximum is
    /// readable anyway, so a refused write (EAGAIN) loses no wake-up.
    pub(crate) fn raise(&self) {
        let increment: u64 = 1;
        // SAFETY: the pointer is to a live local u64 and the length is its size; eventfd
        // writes are exactly 8 bytes, and `self.fd` is open for as long as `self` lives.
        let written = unsafe { libc::write(self.fd.as_raw_fd(), (&raw const increment).cast(), size_of::<u64>()) };
        if written < 0 {
            tracing::trace!(error = %io::Error::last_os_error(), "executor eventfd not raised");
        }
    }

    /// Makes the descriptor unreadable. EAGAIN means it was already low.
    pub(crate) fn lower(&self) {
        let mut count: u64 = 0;
        // SAFETY: the pointer is to a live local u64 and the length is its size; eventfd
        // reads are exactly 8 bytes, and `self.fd` is open for as long as `self` lives.
        let read = unsafe { libc::read(self.fd.as_raw_fd(), (&raw mut count).cast(), size_of::<u64>()) };
        if read < 0 {
            tracing::trace!(error = %io::Error::last_os_error(), "executor eventfd already low");
        }
    }

    /// The descriptor, to poll for readability.
    pub(crate) fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}
