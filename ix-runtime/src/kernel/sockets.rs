//! Sockets of the `kernel` backend: ordinary non-blocking kernel sockets
//! (socket2) behind the same API as the dataplane's, woken by the core's epoll
//! reactor. Each core binds its own listener with `SO_REUSEPORT`, so the kernel
//! spreads connections among cores as RSS does on the dataplane.

#![allow(unsafe_code)] // recvfrom into an initialised slice

use std::cell::Cell;
use std::io::{self, IoSlice, Read};
use std::net::{SocketAddr, SocketAddrV4};
use std::os::fd::AsRawFd;
use std::rc::Rc;
use std::task::{Context, Poll};

use ix_driver::PacketBuf;
use ix_net::RxChunk;
use ix_net::socket::RxCredit;
use socket2::{Domain, Protocol, SockAddr, Socket, Type};

use crate::core::Core;
use crate::kernel::KernelNet;
use crate::kernel::reactor::Registration;
use crate::net::outgoing::Outgoing;
use crate::readiness::Interest;

/// A kernel socket registered with its core's reactor; dropping it
/// unregisters and closes it.
pub(crate) struct Registered {
    core: Rc<Core>,
    net: Rc<KernelNet>,
    socket: Socket,
    registration: Registration,
}

impl Registered {
    fn new(core: Rc<Core>, net: Rc<KernelNet>, socket: Socket) -> io::Result<Registered> {
        let registration = net.reactor.register(socket.as_raw_fd())?;
        Ok(Registered { core, net, socket, registration })
    }

    fn wait(&self, interest: Interest, cx: &Context<'_>) {
        self.net.reactor.wait(&self.registration, interest, cx.waker());
    }

    /// A frame of the core's pool to receive into; when the pool is empty the
    /// task waits for a free frame (counted) and this is `None`.
    fn alloc_frame(&self, cx: &Context<'_>) -> Option<ix_driver::TxBuf> {
        match self.net.pool.alloc() {
            Ok(frame) => Some(frame),
            Err(_) => {
                self.core.wait_for_buffers(cx.waker());
                None
            }
        }
    }

    /// Runs `op`; on `WouldBlock` parks the task for `interest` and returns
    /// `Pending`. `EINTR` is retried.
    fn poll_io<T>(
        &self,
        cx: &Context<'_>,
        interest: Interest,
        mut op: impl FnMut(&Socket) -> io::Result<T>,
    ) -> Poll<io::Result<T>> {
        loop {
            match op(&self.socket) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    self.wait(interest, cx);
                    return Poll::Pending;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                other => return Poll::Ready(other),
            }
        }
    }
}

impl Drop for Registered {
    fn drop(&mut self) {
        self.net.reactor.deregister(&self.registration, self.socket.as_raw_fd());
    }
}

fn v4(addr: &SockAddr) -> io::Result<SocketAddrV4> {
    match addr.as_socket() {
        Some(SocketAddr::V4(a)) => Ok(a),
        _ => Err(io::Error::new(io::ErrorKind::Unsupported, "the kernel backend speaks IPv4 only")),
    }
}

fn new_socket(ty: Type, protocol: Protocol) -> io::Result<Socket> {
    Socket::new(Domain::IPV4, ty.nonblocking().cloexec(), Some(protocol))
}

/// A listener of the `kernel` backend.
pub(crate) struct KernelListener {
    inner: Registered,
}

impl KernelListener {
    pub(crate) fn bind(core: Rc<Core>, net: Rc<KernelNet>, port: u16, backlog: usize) -> io::Result<KernelListener> {
        let socket = new_socket(Type::STREAM, Protocol::TCP)?;
        socket.set_reuse_address(true)?;
        socket.set_reuse_port(true)?;
        socket.bind(&SocketAddrV4::new(net.addr, port).into())?;
        socket.listen(backlog.min(i32::MAX as usize) as i32)?;
        Ok(KernelListener { inner: Registered::new(core, net, socket)? })
    }

    pub(crate) fn local_port(&self) -> io::Result<u16> {
        Ok(v4(&self.inner.socket.local_addr()?)?.port())
    }

    /// Stops listening (a graceful shutdown): Linux takes `shutdown(SHUT_RD)`
    /// on a listening socket as a disconnect, so connections not yet accepted
    /// are reset and new ones refused, while the descriptor stays valid.
    pub(crate) fn stop_listening(&self) {
        if let Err(e) = self.inner.socket.shutdown(std::net::Shutdown::Read) {
            tracing::debug!(error = %e, "stopping a kernel listener");
        }
    }

    pub(crate) fn poll_accept(&self, cx: &Context<'_>) -> Poll<io::Result<(KernelStream, SocketAddrV4)>> {
        let (socket, peer) = match self.inner.poll_io(cx, Interest::Read, |s| s.accept()) {
            Poll::Ready(Ok(pair)) => pair,
            Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
            Poll::Pending => return Poll::Pending,
        };
        let peer = v4(&peer)?;
        socket.set_nonblocking(true)?;
        socket.set_tcp_nodelay(true)?;
        let stream = KernelStream::new(self.inner.core.clone(), self.inner.net.clone(), socket)?;
        Poll::Ready(Ok((stream, peer)))
    }
}

/// A connection of the `kernel` backend.
pub(crate) struct KernelStream {
    inner: Registered,
    /// Counts the bytes of received chunks the application holds (no window
    /// to open here: the kernel keeps its own).
    credit: Rc<RxCredit>,
    eof: Cell<bool>,
}

impl KernelStream {
    fn new(core: Rc<Core>, net: Rc<KernelNet>, socket: Socket) -> io::Result<KernelStream> {
        Ok(KernelStream { inner: Registered::new(core, net, socket)?, credit: Rc::default(), eof: Cell::new(false) })
    }

    /// Starts a non-blocking connect; completion is `poll_connected`.
    pub(crate) fn connect(core: Rc<Core>, net: Rc<KernelNet>, addr: SocketAddrV4) -> io::Result<KernelStream> {
        let socket = new_socket(Type::STREAM, Protocol::TCP)?;
        socket.set_tcp_nodelay(true)?;
        match socket.connect(&addr.into()) {
            Ok(()) => {}
            Err(e) if e.raw_os_error() == Some(libc::EINPROGRESS) => {}
            Err(e) => return Err(e),
        }
        KernelStream::new(core, net, socket)
    }

    pub(crate) fn poll_connected(&self, cx: &Context<'_>) -> Poll<io::Result<()>> {
        if let Some(err) = self.inner.socket.take_error()? {
            return Poll::Ready(Err(err));
        }
        match self.inner.socket.peer_addr() {
            Ok(_) => Poll::Ready(Ok(())),
            Err(e) if e.raw_os_error() == Some(libc::ENOTCONN) => {
                self.inner.wait(Interest::Write, cx);
                Poll::Pending
            }
            Err(e) => Poll::Ready(Err(e)),
        }
    }

    pub(crate) fn addrs(&self) -> io::Result<(SocketAddrV4, SocketAddrV4)> {
        Ok((v4(&self.inner.socket.local_addr()?)?, v4(&self.inner.socket.peer_addr()?)?))
    }

    /// Reads into a frame of the core's pool and hands it out as a chunk; when
    /// the pool is empty the task waits for a free frame (counted).
    pub(crate) fn poll_recv(&self, cx: &Context<'_>) -> Poll<io::Result<Option<RxChunk>>> {
        if self.eof.get() {
            return Poll::Ready(Ok(None));
        }
        let Some(mut frame) = self.inner.alloc_frame(cx) else { return Poll::Pending };
        let n = match self.inner.poll_io(cx, Interest::Read, |mut s| s.read(frame.spare_mut())) {
            Poll::Ready(Ok(n)) => n,
            Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
            Poll::Pending => return Poll::Pending,
        };
        if n == 0 {
            self.eof.set(true);
            return Poll::Ready(Ok(None));
        }
        frame.commit(n);
        Poll::Ready(Ok(Some(RxChunk::from_packet(frame.freeze(), &self.credit))))
    }

    /// Reads straight into `buf` (the copying adapters).
    pub(crate) fn poll_read(&self, cx: &Context<'_>, buf: &mut [u8]) -> Poll<io::Result<usize>> {
        if self.eof.get() {
            return Poll::Ready(Ok(0));
        }
        let n = std::task::ready!(self.inner.poll_io(cx, Interest::Read, |mut s| s.read(buf)))?;
        self.eof.set(n == 0);
        Poll::Ready(Ok(n))
    }

    pub(crate) fn poll_write(&self, cx: &Context<'_>, data: &[u8]) -> Poll<io::Result<usize>> {
        self.inner.poll_io(cx, Interest::Write, |s| s.send_with_flags(data, libc::MSG_NOSIGNAL))
    }

    pub(crate) fn poll_write_vectored(&self, cx: &Context<'_>, bufs: &[IoSlice<'_>]) -> Poll<io::Result<usize>> {
        self.inner.poll_io(cx, Interest::Write, |s| s.send_vectored_with_flags(bufs, libc::MSG_NOSIGNAL))
    }

    /// Writes all of `data`, advancing it.
    pub(crate) fn poll_send_all<B: Outgoing>(&self, cx: &Context<'_>, data: &mut B) -> Poll<io::Result<()>> {
        while !data.is_empty() {
            let n = std::task::ready!(self.poll_write(cx, data))?;
            data.consume(n);
        }
        Poll::Ready(Ok(()))
    }

    pub(crate) fn shutdown(&self) -> io::Result<()> {
        match self.inner.socket.shutdown(std::net::Shutdown::Write) {
            Err(e) if e.raw_os_error() == Some(libc::ENOTCONN) => Ok(()),
            other => other,
        }
    }

    pub(crate) fn set_nodelay(&self, nodelay: bool) -> io::Result<()> {
        self.inner.socket.set_tcp_nodelay(nodelay)
    }

    pub(crate) fn core(&self) -> &Rc<Core> {
        &self.inner.core
    }
}

/// A UDP socket of the `kernel` backend.
pub(crate) struct KernelUdp {
    inner: Registered,
}

impl KernelUdp {
    pub(crate) fn bind(core: Rc<Core>, net: Rc<KernelNet>, port: u16) -> io::Result<KernelUdp> {
        let socket = new_socket(Type::DGRAM, Protocol::UDP)?;
        socket.bind(&SocketAddrV4::new(net.addr, port).into())?;
        Ok(KernelUdp { inner: Registered::new(core, net, socket)? })
    }

    pub(crate) fn local_port(&self) -> io::Result<u16> {
        Ok(v4(&self.inner.socket.local_addr()?)?.port())
    }

    pub(crate) fn poll_send_to(&self, cx: &Context<'_>, data: &[u8], to: SocketAddrV4) -> Poll<io::Result<()>> {
        let to = SockAddr::from(to);
        let sent = std::task::ready!(self.inner.poll_io(cx, Interest::Write, |s| s.send_to(data, &to)))?;
        if sent != data.len() {
            return Poll::Ready(Err(io::Error::new(io::ErrorKind::WriteZero, "datagram cut short")));
        }
        Poll::Ready(Ok(()))
    }

    /// Receives one datagram into a pool frame (waits for a frame when the
    /// pool is empty; counted).
    pub(crate) fn poll_recv_from(&self, cx: &Context<'_>) -> Poll<io::Result<(PacketBuf, SocketAddrV4)>> {
        let Some(mut frame) = self.inner.alloc_frame(cx) else { return Poll::Pending };
        let received = self.inner.poll_io(cx, Interest::Read, |s| {
            let spare = frame.spare_mut();
            // A datagram larger than a frame is cut (MSG_TRUNC reports its
            // real length): such datagrams are an error here, as on the dataplane
            // (whose frames hold one MTU).
            let (n, from) = recv_from_slice(s, spare)?;
            Ok((n, from))
        });
        let (n, from) = std::task::ready!(received)?;
        if n > frame.tailroom() {
            return Poll::Ready(Err(io::Error::new(io::ErrorKind::InvalidData, "datagram larger than a frame")));
        }
        frame.commit(n);
        Poll::Ready(Ok((frame.freeze(), v4(&from)?)))
    }
}

/// `recvfrom` into an initialised slice; returns the datagram's full length
/// (which exceeds the slice when it was truncated) and its sender.
fn recv_from_slice(socket: &Socket, buf: &mut [u8]) -> io::Result<(usize, SockAddr)> {
    // SAFETY: `recv_from_with_flags` only writes initialised bytes into the
    // buffer; viewing an initialised `[u8]` as `[MaybeUninit<u8>]` is sound
    // as long as nothing uninitialised is written back, which the kernel never does.
    let uninit = unsafe { &mut *(buf as *mut [u8] as *mut [std::mem::MaybeUninit<u8>]) };
    socket.recv_from_with_flags(uninit, libc::MSG_TRUNC)
}
