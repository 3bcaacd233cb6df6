//! Typed errors of the driver layer: each says what went wrong and, where a user
//! can act, what to do.

use std::io;

/// Errors from setting up or running a backend.
#[derive(Debug, thiserror::Error)]
pub enum DriverError {
    /// A system call failed.
    #[error("{call}: {source}")]
    Os {
        /// The call and its object, e.g. `"ioctl(TUNSETIFF)"`.
        call: &'static str,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// A configuration value is out of range or inconsistent.
    #[error("invalid configuration: {0}")]
    Config(String),
    /// Huge pages were required but could not be had.
    #[error(
        "2 MiB huge pages for {bytes} bytes are not available ({detail}): \
         raise /proc/sys/vm/nr_hugepages or allow ordinary pages"
    )]
    HugePagesUnavailable {
        /// How many bytes were asked for.
        bytes: usize,
        /// What the kernel said.
        detail: String,
    },
    /// The backend needs a privilege this process lacks.
    #[error("{backend} needs {what}: run as root or use --backend {alternative}")]
    Privilege {
        /// The backend that could not start, e.g. `"tap"`.
        backend: &'static str,
        /// The missing privilege, e.g. `"CAP_NET_ADMIN"`.
        what: &'static str,
        /// A backend that works without it.
        alternative: &'static str,
    },
    /// A device file the backend needs does not exist.
    #[error("{backend} needs {path}, which does not exist: {hint}")]
    DeviceMissing {
        /// The backend that could not start, e.g. `"tap"`.
        backend: &'static str,
        /// The missing file, e.g. `"/dev/net/tun"`.
        path: &'static str,
        /// What to do about it.
        hint: &'static str,
    },
    /// A queue was asked for that another owner already holds.
    #[error("{backend} queue {queue} of port {port} is already taken: each queue belongs to one core")]
    QueueTaken {
        /// The backend, e.g. `"mem"`.
        backend: &'static str,
        /// The port (device) of the queue.
        port: u16,
        /// The queue index.
        queue: u16,
    },
    /// A backend specification could not be parsed.
    #[error("unknown backend {0:?}: expected mem, tap:NAME, kernel or xdp:IFACE")]
    UnknownBackend(String),
}

impl DriverError {
    /// Wraps the calling thread's last OS error.
    pub fn os(call: &'static str) -> Self {
        Self::Os { call, source: io::Error::last_os_error() }
    }
}

/// The pool had no free frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("packet buffer pool exhausted ({capacity} frames, all in use)")]
pub struct PoolExhausted {
    /// Frames in the pool.
    pub capacity: u32,
}

/// A frame was asked to hold more than its room.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("frame room exceeded: {requested} bytes asked, {available} available")]
pub struct FrameFull {
    /// Bytes asked for.
    pub requested: usize,
    /// Bytes left at that end of the frame.
    pub available: usize,
}
