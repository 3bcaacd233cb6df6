//! The control socket: a unix `SOCK_SEQPACKET` socket (one message per
//! datagram), descriptors passed with `SCM_RIGHTS`, and the peer's user read
//! with `SO_PEERCRED`.

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use super::protocol::MESSAGE_BYTES_MAX;

/// Descriptors one message carries at most (a socket and a memfd per queue).
pub const MESSAGE_FDS_MAX: usize = 64;

/// One received datagram.
#[derive(Debug)]
pub struct Received {
    /// Its bytes (cut at [`MESSAGE_BYTES_MAX`] + 1 when longer).
    pub bytes: Vec<u8>,
    /// The descriptors it carried, now this process's.
    pub fds: Vec<OwnedFd>,
    /// Whether the datagram or its descriptors did not fit.
    pub truncated: bool,
}

/// The value of a call that returns -1 and sets `errno` on failure.
fn cvt(rc: libc::c_int) -> io::Result<libc::c_int> {
    if rc < 0 { Err(io::Error::last_os_error()) } else { Ok(rc) }
}

fn seqpacket_socket(nonblocking: bool) -> io::Result<OwnedFd> {
    let flags = libc::SOCK_SEQPACKET | libc::SOCK_CLOEXEC | if nonblocking { libc::SOCK_NONBLOCK } else { 0 };
    // SAFETY: `socket` takes integers only and returns a new descriptor or -1.
    let raw = cvt(unsafe { libc::socket(libc::AF_UNIX, flags, 0) })?;
    // SAFETY: the kernel just returned this descriptor to us alone.
    Ok(unsafe { OwnedFd::from_raw_fd(raw) })
}

fn unix_address(path: &Path) -> io::Result<(libc::sockaddr_un, libc::socklen_t)> {
    // SAFETY: plain data; all zero is a valid value.
    let mut address: libc::sockaddr_un = unsafe { std::mem::zeroed() };
    address.sun_family = libc::AF_UNIX as libc::sa_family_t;
    let bytes = path.as_os_str().as_bytes();
    if bytes.is_empty() || bytes.len() >= address.sun_path.len() || bytes.contains(&0) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("socket path {} is empty, has a NUL or is longer than 107 bytes", path.display()),
        ));
    }
    for (dst, src) in address.sun_path.iter_mut().zip(bytes) {
        *dst = *src as libc::c_char;
    }
    Ok((address, std::mem::size_of::<libc::sockaddr_un>() as libc::socklen_t))
}

/// A non-blocking listening socket at `path` (an old socket file there is
/// replaced), readable and writable by everyone: admission is decided by the
/// caller's user, not by the file's mode.
///
/// # Errors
/// The OS error of `socket`, `bind`, `chmod` or `listen`.
pub fn listen(path: &Path) -> io::Result<OwnedFd> {
    let fd = seqpacket_socket(true)?;
    let (address, len) = unix_address(path)?;
    match std::fs::remove_file(path) {
        Err(error) if error.kind() != io::ErrorKind::NotFound => return Err(error),
        _ => {}
    }
    // SAFETY: `address` is a live sockaddr_un of `len` bytes.
    cvt(unsafe { libc::bind(fd.as_raw_fd(), (&raw const address).cast(), len) })?;
    std::fs::set_permissions(path, std::os::unix::fs::PermissionsExt::from_mode(0o666))?;
    // SAFETY: listen on a descriptor we own.
    cvt(unsafe { libc::listen(fd.as_raw_fd(), 64) })?;
    Ok(fd)
}

/// Accepts one connection, non-blocking; `None` when none is waiting.
///
/// # Errors
/// The OS error of `accept4` other than `EAGAIN`.
pub fn accept(listener: BorrowedFd<'_>) -> io::Result<Option<OwnedFd>> {
    // SAFETY: null address and length: the peer's address is not wanted.
    let rc = unsafe {
        libc::accept4(
            listener.as_raw_fd(),
            std::ptr::null_mut(),
            std::ptr::null_mut(),
            libc::SOCK_CLOEXEC | libc::SOCK_NONBLOCK,
        )
    };
    if rc < 0 {
        let error = io::Error::last_os_error();
        return match error.raw_os_error() {
            Some(libc::EAGAIN | libc::ECONNABORTED | libc::EINTR) => Ok(None),
            _ => Err(error),
        };
    }
    // SAFETY: the kernel just returned this descriptor to us alone.
    Ok(Some(unsafe { OwnedFd::from_raw_fd(rc) }))
}

/// Connects to the daemon at `path` (blocking).
///
/// # Errors
/// The OS error of `socket` or `connect` (`ENOENT`: no daemon there).
pub fn connect(path: &Path) -> io::Result<OwnedFd> {
    let fd = seqpacket_socket(false)?;
    let (address, len) = unix_address(path)?;
    // SAFETY: `address` is a live sockaddr_un of `len` bytes.
    cvt(unsafe { libc::connect(fd.as_raw_fd(), (&raw const address).cast(), len) })?;
    Ok(fd)
}

/// The user id and process id of the process at the other end of `socket`
/// (as they were when it connected).
///
/// # Errors
/// The OS error of `getsockopt(SO_PEERCRED)`.
pub fn peer_credentials(socket: BorrowedFd<'_>) -> io::Result<(u32, i32)> {
    let mut credentials = libc::ucred { pid: 0, uid: 0, gid: 0 };
    let mut len = std::mem::size_of::<libc::ucred>() as libc::socklen_t;
    // SAFETY: `credentials` and `len` are live and describe a buffer of `len` bytes.
    let rc = unsafe {
        libc::getsockopt(
            socket.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_PEERCRED,
            (&raw mut credentials).cast(),
            &mut len,
        )
    };
    cvt(rc)?;
    Ok((credentials.uid, credentials.pid))
}

/// Bytes of control buffer for `fds` descriptors, aligned for `cmsghdr`.
fn control_bytes(fds: usize) -> usize {
    // SAFETY: CMSG_SPACE is arithmetic on its argument.
    unsafe { libc::CMSG_SPACE((fds * std::mem::size_of::<RawFd>()) as u32) as usize }
}

/// Sends `bytes` as one datagram with `fds` attached.
///
/// # Errors
/// The OS error of `sendmsg` (`EPIPE`: the peer is gone).
///
/// # Panics
/// With more than [`MESSAGE_FDS_MAX`] descriptors (a bug in the caller).
pub fn send(socket: BorrowedFd<'_>, bytes: &[u8], fds: &[BorrowedFd<'_>]) -> io::Result<()> {
    assert!(fds.len() <= MESSAGE_FDS_MAX, "at most {MESSAGE_FDS_MAX} descriptors per message");
    let mut iov = libc::iovec { iov_base: bytes.as_ptr() as *mut libc::c_void, iov_len: bytes.len() };
    // u64 elements keep the buffer aligned for cmsghdr.
    let mut control = vec![0u64; control_bytes(fds.len()).div_ceil(8)];
    // SAFETY: plain data; all zero is a valid value.
    let mut message: libc::msghdr = unsafe { std::mem::zeroed() };
    message.msg_iov = &mut iov;
    message.msg_iovlen = 1;
    if !fds.is_empty() {
        message.msg_control = control.as_mut_ptr().cast();
        message.msg_controllen = control_bytes(fds.len());
        // SAFETY: msg_control points at a buffer of msg_controllen bytes, room
        // for one header and `fds.len()` descriptors.
        let header = unsafe { libc::CMSG_FIRSTHDR(&message) };
        // SAFETY: `header` points at the start of that buffer (not null: the
        // buffer is large enough for a header).
        unsafe {
            (*header).cmsg_level = libc::SOL_SOCKET;
            (*header).cmsg_type = libc::SCM_RIGHTS;
            (*header).cmsg_len = libc::CMSG_LEN((fds.len() * std::mem::size_of::<RawFd>()) as u32) as usize;
        }
        // SAFETY: CMSG_DATA of that header has room for `fds.len()` descriptors.
        let data = unsafe { libc::CMSG_DATA(header) }.cast::<RawFd>();
        for (i, fd) in fds.iter().enumerate() {
            // SAFETY: `i` < fds.len(): inside the data area; unaligned write
            // as CMSG_DATA promises no alignment.
            unsafe { data.add(i).write_unaligned(fd.as_raw_fd()) };
        }
    }
    // SAFETY: `message` and everything it points at are live for the call.
    let rc = unsafe { libc::sendmsg(socket.as_raw_fd(), &message, libc::MSG_NOSIGNAL) };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    if rc as usize != bytes.len() {
        return Err(io::Error::new(io::ErrorKind::WriteZero, "datagram sent in part"));
    }
    Ok(())
}

/// Receives one datagram and the descriptors it carries; `Ok(None)` when the
/// peer closed, `Err` with `WouldBlock` on a non-blocking socket with nothing
/// to read.
///
/// # Errors
/// The OS error of `recvmsg`.
pub fn recv(socket: BorrowedFd<'_>) -> io::Result<Option<Received>> {
    let mut bytes = vec![0u8; MESSAGE_BYTES_MAX + 1];
    let mut iov = libc::iovec { iov_base: bytes.as_mut_ptr().cast(), iov_len: bytes.len() };
    let mut control = vec![0u64; control_bytes(MESSAGE_FDS_MAX).div_ceil(8)];
    // SAFETY: plain data; all zero is a valid value.
    let mut message: libc::msghdr = unsafe { std::mem::zeroed() };
    message.msg_iov = &mut iov;
    message.msg_iovlen = 1;
    message.msg_control = control.as_mut_ptr().cast();
    message.msg_controllen = control.len() * 8;
    // SAFETY: `message` describes live buffers of the lengths given.
    let rc = unsafe { libc::recvmsg(socket.as_raw_fd(), &mut message, libc::MSG_CMSG_CLOEXEC) };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    let mut fds = Vec::new();
    // SAFETY: the kernel filled msg_control up to msg_controllen.
    let mut header = unsafe { libc::CMSG_FIRSTHDR(&message) };
    while !header.is_null() {
        // SAFETY: a header the kernel wrote inside the control buffer.
        let (level, kind, len) = unsafe { ((*header).cmsg_level, (*header).cmsg_type, (*header).cmsg_len) };
        if level == libc::SOL_SOCKET && kind == libc::SCM_RIGHTS {
            // SAFETY: CMSG_LEN(0) is arithmetic.
            let payload = len - unsafe { libc::CMSG_LEN(0) } as usize;
            // SAFETY: the data area follows the header inside the buffer.
            let data = unsafe { libc::CMSG_DATA(header) }.cast::<RawFd>();
            for i in 0..payload / std::mem::size_of::<RawFd>() {
                // SAFETY: inside the data area; the descriptors are new in this
                // process and owned by no one else.
                fds.push(unsafe { OwnedFd::from_raw_fd(data.add(i).read_unaligned()) });
            }
        }
        // SAFETY: walks to the next header inside the same buffer or null.
        header = unsafe { libc::CMSG_NXTHDR(&message, header) };
    }
    if rc == 0 && fds.is_empty() {
        return Ok(None);
    }
    let truncated = message.msg_flags & (libc::MSG_TRUNC | libc::MSG_CTRUNC) != 0;
    bytes.truncate(rc as usize);
    Ok(Some(Received { bytes, fds, truncated }))
}
