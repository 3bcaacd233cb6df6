//! Raw Ethernet frames of one interface through an `AF_PACKET` socket: what a
//! user-space wire relay (the soak test's fault injector) reads and writes.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::time::Duration;

use crate::error::DriverError;
use crate::netdev::InterfaceControl;

/// Receive buffer asked of the kernel per socket, so that a burst waits in the
/// socket rather than being dropped while the relay sleeps.
const RECEIVE_BUFFER_BYTES: libc::c_int = 8 << 20;

/// A non-blocking `AF_PACKET`/`SOCK_RAW` socket bound to one interface for
/// every EtherType. It receives the frames that arrive at the interface (not
/// the ones it sends: `PACKET_IGNORE_OUTGOING`) and sends whole frames out of
/// it, headers included.
#[derive(Debug)]
pub struct PacketSocket {
    fd: OwnedFd,
    iface: String,
}

/// `ETH_P_ALL` in network byte order, as `socket` and `sockaddr_ll` take it.
fn all_protocols() -> u16 {
    (libc::ETH_P_ALL as u16).to_be()
}

impl PacketSocket {
    /// Opens the socket on `iface` (in the calling thread's namespace).
    ///
    /// # Errors
    /// [`DriverError::Privilege`] without CAP_NET_RAW,
    /// [`DriverError::NoSuchInterface`], or [`DriverError::Os`] naming the
    /// call that failed.
    pub fn open(iface: &str) -> Result<Self, DriverError> {
        let denied = || DriverError::Privilege { backend: "AF_PACKET", what: "CAP_NET_RAW", alternative: "mem" };
        let index = InterfaceControl::new(iface, denied)?.index()?;
        // SAFETY: `socket` takes only integer arguments and returns a new
        // descriptor or -1.
        let raw = unsafe {
            libc::socket(
                libc::AF_PACKET,
                libc::SOCK_RAW | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
                libc::c_int::from(all_protocols()),
            )
        };
        if raw < 0 {
            let error = io::Error::last_os_error();
            if matches!(error.raw_os_error(), Some(libc::EPERM | libc::EACCES)) {
                return Err(denied());
            }
            return Err(DriverError::Os { call: "socket(AF_PACKET, SOCK_RAW)", source: error });
        }
        // SAFETY: `raw` is a descriptor that `socket` just returned to us alone.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        let socket = Self { fd, iface: iface.to_owned() };
        socket.set_option(libc::SOL_PACKET, libc::PACKET_IGNORE_OUTGOING, 1, "setsockopt(PACKET_IGNORE_OUTGOING)")?;
        socket.set_option(
            libc::SOL_SOCKET,
            libc::SO_RCVBUFFORCE,
            RECEIVE_BUFFER_BYTES,
            "setsockopt(SO_RCVBUFFORCE)",
        )?;
        socket.bind(index)?;
        Ok(socket)
    }

    /// The interface's name.
    pub fn iface(&self) -> &str {
        &self.iface
    }

    fn set_option(
        &self,
        level: libc::c_int,
        name: libc::c_int,
        value: libc::c_int,
        call: &'static str,
    ) -> Result<(), DriverError> {
        // SAFETY: the option value is a live `c_int` whose size is passed with it.
        let rc = unsafe {
            libc::setsockopt(
                self.fd.as_raw_fd(),
                level,
                name,
                (&value as *const libc::c_int).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
        if rc != 0 {
            return Err(DriverError::os(call));
        }
        Ok(())
    }

    fn bind(&self, index: u32) -> Result<(), DriverError> {
        // SAFETY: `sockaddr_ll` is plain integers and byte arrays: all zeros is valid.
        let mut address: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
        address.sll_family = libc::AF_PACKET as libc::c_ushort;
        address.sll_protocol = all_protocols();
        address.sll_ifindex = index as libc::c_int;
        // SAFETY: `address` is a live `sockaddr_ll` and its exact size is passed.
        let rc = unsafe {
            libc::bind(
                self.fd.as_raw_fd(),
                (&address as *const libc::sockaddr_ll).cast(),
                std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t,
            )
        };
        if rc != 0 {
            return Err(DriverError::os("bind(AF_PACKET)"));
        }
        Ok(())
    }

    /// Receives one frame into `buf`: its length (a frame longer than `buf`
    /// is cut to it), or `None` when no frame is waiting.
    ///
    /// # Errors
    /// The OS error of `recv`, other than "would block".
    pub fn recv(&self, buf: &mut [u8]) -> io::Result<Option<usize>> {
        // SAFETY: `buf` is live and writable for `buf.len()` bytes.
        let n = unsafe { libc::recv(self.fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
        if n < 0 {
            let error = io::Error::last_os_error();
            return if error.kind() == io::ErrorKind::WouldBlock { Ok(None) } else { Err(error) };
        }
        Ok(Some(n as usize))
    }

    /// Sends `frame` (Ethernet header included) out of the interface.
    ///
    /// # Errors
    /// The OS error of `send` (for example ENOBUFS or EAGAIN when the device
    /// queue is full: the frame is not sent).
    pub fn send(&self, frame: &[u8]) -> io::Result<()> {
        // SAFETY: `frame` is live and readable for `frame.len()` bytes.
        let n = unsafe { libc::send(self.fd.as_raw_fd(), frame.as_ptr().cast(), frame.len(), 0) };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    /// Frames the kernel dropped for this socket since the last call (its
    /// receive buffer was full), from `PACKET_STATISTICS`.
    ///
    /// # Errors
    /// The OS error of `getsockopt`.
    pub fn take_drops(&self) -> io::Result<u64> {
        let mut stats = libc::tpacket_stats { tp_packets: 0, tp_drops: 0 };
        let mut len = std::mem::size_of::<libc::tpacket_stats>() as libc::socklen_t;
        // SAFETY: `stats` and `len` are live and `len` holds `stats`' size.
        let rc = unsafe {
            libc::getsockopt(
                self.fd.as_raw_fd(),
                libc::SOL_PACKET,
                libc::PACKET_STATISTICS,
                (&mut stats as *mut libc::tpacket_stats).cast(),
                &mut len,
            )
        };
        if rc != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(u64::from(stats.tp_drops))
    }
}

impl AsRawFd for PacketSocket {
    fn as_raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}

/// Waits until one of `sockets` has a frame to read, or `timeout` passes;
/// returns which are readable, in order. An interrupted wait returns none.
///
/// # Errors
/// The OS error of `poll`, other than EINTR.
pub fn wait_readable<const N: usize>(sockets: [&PacketSocket; N], timeout: Duration) -> io::Result<[bool; N]> {
    let mut fds = sockets.map(|s| libc::pollfd { fd: s.as_raw_fd(), events: libc::POLLIN, revents: 0 });
    // Rounded up: a wait shorter than asked would spin until the deadline.
    let timeout_ms = libc::c_int::try_from(timeout.as_micros().div_ceil(1000)).unwrap_or(libc::c_int::MAX);
    // SAFETY: `fds` is a live array of `N` pollfd entries, its length passed.
    let rc = unsafe { libc::poll(fds.as_mut_ptr(), N as libc::nfds_t, timeout_ms) };
    if rc < 0 {
        let error = io::Error::last_os_error();
        return if error.kind() == io::ErrorKind::Interrupted { Ok([false; N]) } else { Err(error) };
    }
    Ok(fds.map(|fd| fd.revents & (libc::POLLIN | libc::POLLERR) != 0))
}
