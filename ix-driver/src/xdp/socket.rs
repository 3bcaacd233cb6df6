//! One AF_XDP socket: its UMEM (a pool's region, registered with the kernel),
//! its four rings, and its bind to one queue of an interface, zero-copy or
//! copy, retried while the queue is still held by a socket just closed.

use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::time::Duration;

use super::bpf::privilege_error;
use super::config::{BindMode, BusyPoll};
use super::ring::{ConsumerRing, ProducerRing, RingMap};
use crate::error::DriverError;
use crate::pool::FRAME_STRIDE_BYTES;

/// Times a bind refused with EBUSY is tried again: a queue released by a
/// socket that just closed stays busy until the kernel's deferred clean-up.
const BIND_BUSY_RETRIES: u32 = 40;
/// Pause between those tries.
const BIND_BUSY_PAUSE_MS: u64 = 25;
/// `SO_BUSY_POLL`, `SO_PREFER_BUSY_POLL` and `SO_BUSY_POLL_BUDGET`
/// (asm-generic/socket.h; the libc crate has only the first for this target).
const SO_BUSY_POLL: libc::c_int = 46;
const SO_PREFER_BUSY_POLL: libc::c_int = 69;
const SO_BUSY_POLL_BUDGET: libc::c_int = 70;
/// The socket's busy-poll time (`SO_BUSY_POLL`), microseconds. Only its being
/// non-zero matters here: the dataplane never blocks on the socket, and a
/// non-blocking call polls the device once whatever the time.
const BUSY_POLL_SOCKET_US: libc::c_int = 20;

/// Where the socket goes and what it registers.
#[derive(Debug, Clone, Copy)]
pub(crate) struct SocketParams<'a> {
    /// Interface name, for messages.
    pub(crate) iface: &'a str,
    pub(crate) ifindex: u32,
    pub(crate) queue: u32,
    /// Start of the UMEM (the pool region's writable mapping).
    pub(crate) umem: *mut u8,
    /// Bytes of UMEM: a multiple of [`FRAME_STRIDE_BYTES`].
    pub(crate) umem_len: usize,
    /// Descriptors in each of the four rings (a power of two).
    pub(crate) ring_size: u32,
}

/// Kernel counters of one socket (`XDP_STATISTICS`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct XdpSocketStats {
    /// Frames dropped for reasons other than the two below.
    pub rx_dropped: u64,
    /// Fill-ring descriptors the kernel found invalid.
    pub rx_invalid_descs: u64,
    /// Transmit descriptors the kernel found invalid.
    pub tx_invalid_descs: u64,
    /// Frames dropped because the receive ring was full.
    pub rx_ring_full: u64,
    /// Frames dropped because the fill ring was empty.
    pub rx_fill_ring_empty: u64,
    /// Times the transmit ring was found empty.
    pub tx_ring_empty: u64,
}

/// An AF_XDP socket bound to one queue. The rings are declared before the
/// descriptor, so they are unmapped before the socket closes.
#[derive(Debug)]
pub(crate) struct XdpSocket {
    pub(crate) fill: ProducerRing<u64>,
    pub(crate) completion: ConsumerRing<u64>,
    pub(crate) rx: ConsumerRing<libc::xdp_desc>,
    pub(crate) tx: ProducerRing<libc::xdp_desc>,
    fd: OwnedFd,
    zero_copy: bool,
}

/// What a transmit wake-up achieved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kick {
    /// The kernel took what the ring held.
    Done,
    /// It stopped at its per-call budget: call again.
    Again,
    /// The device is busy or out of buffers: try in a later round.
    Busy,
}

/// Why one attempt to open a socket failed.
enum Attempt {
    /// The driver cannot bind in zero-copy mode.
    ZeroCopyRefused(io::Error),
    Failed(DriverError),
}

impl From<DriverError> for Attempt {
    fn from(error: DriverError) -> Self {
        Attempt::Failed(error)
    }
}

impl XdpSocket {
    /// Opens, registers the UMEM, maps the rings and binds as `mode` says:
    /// under [`BindMode::Auto`] zero-copy first and copy when the driver
    /// refuses it, with the outcome logged.
    ///
    /// `before_bind` runs once the rings exist and before the bind, so the
    /// fill ring can be stocked before frames arrive.
    pub(crate) fn open(
        params: &SocketParams<'_>,
        mode: BindMode,
        before_bind: &mut dyn FnMut(&mut XdpSocket),
    ) -> Result<Self, DriverError> {
        let zero_copy_refused = |error: io::Error| DriverError::XdpUnsupported {
            iface: params.iface.to_owned(),
            what: format!("zero-copy AF_XDP bind of queue {} refused ({error})", params.queue),
            hint: "its driver has no zero-copy support: use bind=copy or bind=auto",
        };
        match mode {
            BindMode::Copy => Self::open_once(params, false, before_bind).map_err(|a| a.into_error(zero_copy_refused)),
            BindMode::ZeroCopy => {
                Self::open_once(params, true, before_bind).map_err(|a| a.into_error(zero_copy_refused))
            }
            BindMode::Auto => match Self::open_once(params, true, before_bind) {
                Ok(socket) => {
                    tracing::info!(iface = params.iface, queue = params.queue, "AF_XDP bind: zero-copy");
                    Ok(socket)
                }
                Err(Attempt::ZeroCopyRefused(error)) => {
                    tracing::info!(
                        iface = params.iface,
                        queue = params.queue,
                        %error,
                        "AF_XDP bind: zero-copy refused by the driver, using copy mode"
                    );
                    Self::open_once(params, false, before_bind).map_err(|a| a.into_error(zero_copy_refused))
                }
                Err(Attempt::Failed(error)) => Err(error),
            },
        }
    }

    fn open_once(
        params: &SocketParams<'_>,
        zero_copy: bool,
        before_bind: &mut dyn FnMut(&mut XdpSocket),
    ) -> Result<Self, Attempt> {
        let fd = configured_socket(params)?;
        let mut socket = Self::map_rings(fd, params.ring_size, zero_copy)?;
        before_bind(&mut socket);
        bind(socket.fd.as_fd(), params, zero_copy)?;
        Ok(socket)
    }

    /// Maps the four rings of `fd`, a socket whose UMEM and ring sizes
    /// (`ring_size` descriptors each) are set, bound or not: how a dataplane
    /// takes over a socket `ixcp` made and bound for it.
    pub(crate) fn map_rings(fd: OwnedFd, ring_size: u32, zero_copy: bool) -> Result<Self, DriverError> {
        let offsets = mmap_offsets(fd.as_fd())?;
        let size = ring_size;
        Ok(XdpSocket {
            fill: ProducerRing::new(RingMap::map(fd.as_fd(), libc::XDP_UMEM_PGOFF_FILL_RING, size, &offsets.fr)?),
            completion: ConsumerRing::new(RingMap::map(
                fd.as_fd(),
                libc::XDP_UMEM_PGOFF_COMPLETION_RING,
                size,
                &offsets.cr,
            )?),
            rx: ConsumerRing::new(RingMap::map(fd.as_fd(), libc::XDP_PGOFF_RX_RING as u64, size, &offsets.rx)?),
            tx: ProducerRing::new(RingMap::map(fd.as_fd(), libc::XDP_PGOFF_TX_RING as u64, size, &offsets.tx)?),
            fd,
            zero_copy,
        })
    }

    /// Whether the bind is zero-copy (the driver DMAs into the UMEM).
    pub(crate) fn is_zero_copy(&self) -> bool {
        self.zero_copy
    }

    /// The socket's descriptor: readable when the receive ring has frames.
    pub(crate) fn fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }

    /// Asks the kernel to transmit what the transmit ring holds.
    pub(crate) fn kick_tx(&self) -> io::Result<Kick> {
        // SAFETY: a zero-length send with no buffer and no address on this
        // socket's descriptor.
        let rc =
            unsafe { libc::sendto(self.fd.as_raw_fd(), std::ptr::null(), 0, libc::MSG_DONTWAIT, std::ptr::null(), 0) };
        if rc >= 0 {
            return Ok(Kick::Done);
        }
        let error = io::Error::last_os_error();
        match error.raw_os_error() {
            Some(libc::EAGAIN | libc::EINTR) => Ok(Kick::Again),
            Some(libc::EBUSY | libc::ENOBUFS) => Ok(Kick::Busy),
            _ => Err(error),
        }
    }

    /// Wakes the driver to take fill-ring buffers (needed only when the fill
    /// ring asks for it, in zero-copy mode).
    pub(crate) fn kick_rx(&self) {
        // SAFETY: a zero-length receive with no buffer and no address on this
        // socket's descriptor.
        let rc = unsafe {
            libc::recvfrom(
                self.fd.as_raw_fd(),
                std::ptr::null_mut(),
                0,
                libc::MSG_DONTWAIT,
                std::ptr::null_mut(),
                std::ptr::null_mut(),
            )
        };
        if rc < 0 {
            tracing::trace!(error = %io::Error::last_os_error(), "AF_XDP rx wake-up");
        }
    }

    /// The kernel's counters for this socket.
    pub(crate) fn kernel_stats(&self) -> Result<XdpSocketStats, DriverError> {
        socket_stats(self.fd.as_fd())
    }

    /// Makes the socket's non-blocking calls poll the device's receive queue
    /// in the caller's thread (`SO_BUSY_POLL`), taking up to `busy_poll.budget`
    /// frames (`SO_BUSY_POLL_BUDGET`), and asks the kernel to leave that poll
    /// to them (`SO_PREFER_BUSY_POLL`) while the device defers its own.
    ///
    /// # Errors
    /// [`DriverError::Privilege`] without `CAP_NET_ADMIN` (which the kernel
    /// requires for all three); [`DriverError::Os`] for a kernel without busy
    /// polling (`CONFIG_NET_RX_BUSY_POLL`) or the two newer options (Linux 5.11).
    pub(crate) fn set_busy_poll(&self, busy_poll: BusyPoll) -> Result<(), DriverError> {
        let budget = libc::c_int::from(busy_poll.budget);
        for (option, value, call) in [
            (SO_PREFER_BUSY_POLL, 1, "setsockopt(SO_PREFER_BUSY_POLL)"),
            (SO_BUSY_POLL, BUSY_POLL_SOCKET_US, "setsockopt(SO_BUSY_POLL)"),
            (SO_BUSY_POLL_BUDGET, budget, "setsockopt(SO_BUSY_POLL_BUDGET)"),
        ] {
            set_option_at(self.fd.as_fd(), libc::SOL_SOCKET, option, &value, call)?;
        }
        Ok(())
    }
}

/// The kernel's counters of the AF_XDP socket `fd`.
pub(crate) fn socket_stats(fd: BorrowedFd<'_>) -> Result<XdpSocketStats, DriverError> {
    // SAFETY: plain integers; all zero is a valid value.
    let mut raw: libc::xdp_statistics = unsafe { std::mem::zeroed() };
    let mut len = size_of::<libc::xdp_statistics>() as libc::socklen_t;
    // SAFETY: `raw` and `len` are live and describe a buffer of `len` bytes.
    let rc = unsafe {
        libc::getsockopt(fd.as_raw_fd(), libc::SOL_XDP, libc::XDP_STATISTICS, (&raw mut raw).cast(), &mut len)
    };
    if rc != 0 {
        return Err(DriverError::os("getsockopt(XDP_STATISTICS)"));
    }
    Ok(XdpSocketStats {
        rx_dropped: raw.rx_dropped,
        rx_invalid_descs: raw.rx_invalid_descs,
        tx_invalid_descs: raw.tx_invalid_descs,
        rx_ring_full: raw.rx_ring_full,
        rx_fill_ring_empty: raw.rx_fill_ring_empty_descs,
        tx_ring_empty: raw.tx_ring_empty_descs,
    })
}

impl Attempt {
    fn into_error(self, zero_copy_refused: impl FnOnce(io::Error) -> DriverError) -> DriverError {
        match self {
            Attempt::ZeroCopyRefused(error) => zero_copy_refused(error),
            Attempt::Failed(error) => error,
        }
    }
}

/// Opens a socket, registers the UMEM and sizes its four rings, unbound.
fn configured_socket(params: &SocketParams<'_>) -> Result<OwnedFd, DriverError> {
    let fd = new_socket(params.iface)?;
    register_umem(fd.as_fd(), params)?;
    for (option, name) in [
        (libc::XDP_UMEM_FILL_RING, "setsockopt(XDP_UMEM_FILL_RING)"),
        (libc::XDP_UMEM_COMPLETION_RING, "setsockopt(XDP_UMEM_COMPLETION_RING)"),
        (libc::XDP_RX_RING, "setsockopt(XDP_RX_RING)"),
        (libc::XDP_TX_RING, "setsockopt(XDP_TX_RING)"),
    ] {
        set_option(fd.as_fd(), option, &params.ring_size, name)?;
    }
    Ok(fd)
}

/// A socket with its UMEM registered, its rings sized and bound in copy mode,
/// its rings not mapped here: made by `ixcp` for a dataplane, which maps the
/// rings with [`XdpSocket::map_rings`] once it receives the descriptor.
///
/// # Errors
/// As [`XdpSocket::open`].
pub(crate) fn open_for_handover(params: &SocketParams<'_>) -> Result<OwnedFd, DriverError> {
    let fd = configured_socket(params)?;
    bind(fd.as_fd(), params, false).map_err(|attempt| match attempt {
        Attempt::Failed(error) => error,
        Attempt::ZeroCopyRefused(source) => DriverError::Os { call: "bind(AF_XDP)", source },
    })?;
    Ok(fd)
}

fn bind(fd: BorrowedFd<'_>, params: &SocketParams<'_>, zero_copy: bool) -> Result<(), Attempt> {
    let mode = if zero_copy { libc::XDP_ZEROCOPY } else { libc::XDP_COPY };
    let address = libc::sockaddr_xdp {
        sxdp_family: libc::AF_XDP as u16,
        sxdp_flags: mode | libc::XDP_USE_NEED_WAKEUP,
        sxdp_ifindex: params.ifindex,
        sxdp_queue_id: params.queue,
        sxdp_shared_umem_fd: 0,
    };
    for attempt in 0..=BIND_BUSY_RETRIES {
        // SAFETY: `address` is a live `sockaddr_xdp` and its exact size is
        // passed; the descriptor is this socket's.
        let rc = unsafe {
            libc::bind(fd.as_raw_fd(), (&raw const address).cast(), size_of::<libc::sockaddr_xdp>() as libc::socklen_t)
        };
        if rc == 0 {
            return Ok(());
        }
        let error = io::Error::last_os_error();
        match error.raw_os_error() {
            Some(libc::EBUSY) if attempt < BIND_BUSY_RETRIES => {
                tracing::debug!(queue = params.queue, attempt, "AF_XDP bind: queue busy, retrying");
                std::thread::sleep(Duration::from_millis(BIND_BUSY_PAUSE_MS));
            }
            Some(libc::EOPNOTSUPP) if zero_copy => return Err(Attempt::ZeroCopyRefused(error)),
            Some(libc::EBUSY) => {
                return Err(Attempt::Failed(DriverError::XdpUnsupported {
                    iface: params.iface.to_owned(),
                    what: format!("queue {} stays held by another AF_XDP socket", params.queue),
                    hint: "stop the other program using this queue (another dataplane?)",
                }));
            }
            Some(libc::EPERM | libc::EACCES) => return Err(Attempt::Failed(privilege_error())),
            _ => return Err(Attempt::Failed(DriverError::Os { call: "bind(AF_XDP)", source: error })),
        }
    }
    unreachable!("the last attempt returns")
}

fn new_socket(iface: &str) -> Result<OwnedFd, DriverError> {
    // SAFETY: `socket` takes only integers and returns a new descriptor or -1.
    let raw = unsafe { libc::socket(libc::AF_XDP, libc::SOCK_RAW | libc::SOCK_CLOEXEC, 0) };
    if raw < 0 {
        let error = io::Error::last_os_error();
        return Err(match error.raw_os_error() {
            Some(libc::EPERM | libc::EACCES) => privilege_error(),
            Some(libc::EAFNOSUPPORT) => DriverError::XdpUnsupported {
                iface: iface.to_owned(),
                what: "this kernel has no AF_XDP sockets".into(),
                hint: "use a kernel built with CONFIG_XDP_SOCKETS=y (Linux 5.10 or later), or --backend kernel",
            },
            _ => DriverError::Os { call: "socket(AF_XDP)", source: error },
        });
    }
    // SAFETY: `raw` is a descriptor that `socket` just returned to us alone.
    Ok(unsafe { OwnedFd::from_raw_fd(raw) })
}

fn register_umem(fd: BorrowedFd<'_>, params: &SocketParams<'_>) -> Result<(), DriverError> {
    let reg = libc::xdp_umem_reg {
        addr: params.umem as u64,
        len: params.umem_len as u64,
        chunk_size: FRAME_STRIDE_BYTES,
        headroom: 0,
        flags: 0,
        tx_metadata_len: 0,
    };
    set_option(fd, libc::XDP_UMEM_REG, &reg, "setsockopt(XDP_UMEM_REG)")
}

fn set_option<T>(fd: BorrowedFd<'_>, option: libc::c_int, value: &T, call: &'static str) -> Result<(), DriverError> {
    set_option_at(fd, libc::SOL_XDP, option, value, call)
}

/// `setsockopt(fd, level, option, value)`; EPERM and EACCES are a privilege error.
fn set_option_at<T>(
    fd: BorrowedFd<'_>,
    level: libc::c_int,
    option: libc::c_int,
    value: &T,
    call: &'static str,
) -> Result<(), DriverError> {
    // SAFETY: `value` is a live `T` and its exact size is passed; the kernel
    // only reads it.
    let rc = unsafe {
        libc::setsockopt(fd.as_raw_fd(), level, option, (value as *const T).cast(), size_of::<T>() as libc::socklen_t)
    };
    if rc != 0 {
        let error = io::Error::last_os_error();
        return Err(match error.raw_os_error() {
            Some(libc::EPERM | libc::EACCES) => privilege_error(),
            _ => DriverError::Os { call, source: error },
        });
    }
    Ok(())
}

fn mmap_offsets(fd: BorrowedFd<'_>) -> Result<libc::xdp_mmap_offsets, DriverError> {
    // SAFETY: plain integers; all zero is a valid value.
    let mut offsets: libc::xdp_mmap_offsets = unsafe { std::mem::zeroed() };
    let mut len = size_of::<libc::xdp_mmap_offsets>() as libc::socklen_t;
    // SAFETY: `offsets` and `len` are live and describe a buffer of `len` bytes.
    let rc = unsafe {
        libc::getsockopt(fd.as_raw_fd(), libc::SOL_XDP, libc::XDP_MMAP_OFFSETS, (&raw mut offsets).cast(), &mut len)
    };
    if rc != 0 {
        return Err(DriverError::os("getsockopt(XDP_MMAP_OFFSETS)"));
    }
    if len as usize != size_of::<libc::xdp_mmap_offsets>() {
        return Err(DriverError::XdpUnsupported {
            iface: "this kernel".into(),
            what: "its AF_XDP ring layout predates the flags word (Linux 5.4)".into(),
            hint: "use Linux 5.10 or later",
        });
    }
    Ok(offsets)
}
