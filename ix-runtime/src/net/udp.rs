//! UDP on the current core: datagrams received as read-only views of the
//! frames they came in (on the dataplane, no copy), sent from a slice.

use std::future::poll_fn;
use std::io;
use std::net::SocketAddrV4;
use std::rc::Rc;
use std::task::{Context, Poll, ready};

use ix_driver::PacketBuf;
use ix_net::SocketError;

use crate::core::{Core, CoreNet, current};
use crate::dataplane::{DataplaneSocket, io_error};
use crate::executor::coop;
use crate::kernel::sockets::KernelUdp;
use crate::readiness::Interest;

/// A UDP socket bound to a port of the current core. On the dataplane each
/// core binds its own socket on the port and receives the flows RSS steers to
/// it; on the `kernel` backend one core at a time may bind a port.
///
/// The socket keeps one waker for receiving: a task that polls `recv_from`
/// replaces the waker of the task that polled it before, which is then not
/// woken. Give receiving to one task at a time.
pub struct UdpSocket {
    core: Rc<Core>,
    inner: Inner,
    port: u16,
}

enum Inner {
    Dataplane(DataplaneSocket),
    Kernel(KernelUdp),
}

impl UdpSocket {
    /// Binds `port` (on the `kernel` backend, 0 picks a free port).
    ///
    /// # Errors
    /// `AddrInUse` when the port is taken.
    ///
    /// # Panics
    /// Outside a task of an IX runtime.
    pub fn bind(port: u16) -> io::Result<UdpSocket> {
        let core = current();
        let (inner, port) = match core.net() {
            CoreNet::Dataplane(net) => {
                let handle = net.stack(|s| s.udp_bind(port)).map_err(io_error)?;
                (Inner::Dataplane(DataplaneSocket::new(net.clone(), handle)), port)
            }
            CoreNet::Kernel(net) => {
                let socket = KernelUdp::bind(core.clone(), net.clone(), port)?;
                let port = socket.local_port()?;
                (Inner::Kernel(socket), port)
            }
        };
        Ok(UdpSocket { core, inner, port })
    }

    /// The bound port.
    pub fn local_port(&self) -> u16 {
        self.port
    }

    /// Receives the next datagram and its sender.
    ///
    /// # Errors
    /// On the `kernel` backend, what `recvfrom` reports, and `InvalidData` for
    /// a datagram larger than a frame (dropped).
    ///
    /// # Cancel safety
    /// Cancel-safe: a datagram is taken from the socket only by the call that
    /// returns it, so a dropped `recv_from` loses none.
    pub async fn recv_from(&self) -> io::Result<(PacketBuf, SocketAddrV4)> {
        poll_fn(|cx| self.poll_recv_from(cx)).await
    }

    /// Polls for a datagram.
    ///
    /// - `Ready(Ok((payload, from)))`: a datagram.
    /// - `Ready(Err(_))`: as [`UdpSocket::recv_from`].
    /// - `Pending`: none yet; the task is woken when one arrives (only the
    ///   last task that polled: see [`UdpSocket`]).
    pub fn poll_recv_from(&self, cx: &mut Context<'_>) -> Poll<io::Result<(PacketBuf, SocketAddrV4)>> {
        ready!(coop::poll_proceed(cx));
        let socket = match &self.inner {
            Inner::Kernel(k) => return k.poll_recv_from(cx),
            Inner::Dataplane(socket) => socket,
        };
        match socket.stack(|s, h| s.udp_recv_from(h)).map_err(io_error)? {
            Some(datagram) => Poll::Ready(Ok(datagram)),
            None => {
                socket.register(Interest::Read, cx.waker());
                Poll::Pending
            }
        }
    }

    /// Sends `data` as one datagram to `to`.
    ///
    /// # Errors
    /// `InvalidInput` when it does not fit the MTU, `HostUnreachable` with no
    /// route; on the `kernel` backend, what `sendto` reports.
    ///
    /// # Cancel safety
    /// Cancel-safe: a datagram is queued whole by the poll that completes the
    /// future, or not at all, so a dropped `send_to` sent nothing.
    pub async fn send_to(&self, data: &[u8], to: SocketAddrV4) -> io::Result<()> {
        poll_fn(|cx| self.poll_send_to(cx, data, to)).await
    }

    /// Polls to send one datagram.
    ///
    /// - `Ready(Ok(()))`: queued for transmission.
    /// - `Ready(Err(_))`: as [`UdpSocket::send_to`].
    /// - `Pending`: the core's packet pool (or the kernel's send buffer) is
    ///   full; the task is woken when there is room. Waits for the pool are counted.
    pub fn poll_send_to(&self, cx: &mut Context<'_>, data: &[u8], to: SocketAddrV4) -> Poll<io::Result<()>> {
        ready!(coop::poll_proceed(cx));
        let socket = match &self.inner {
            Inner::Kernel(k) => return k.poll_send_to(cx, data, to),
            Inner::Dataplane(socket) => socket,
        };
        match socket.stack(|s, h| s.udp_send_to(h, to, data)) {
            Err(SocketError::NoBuffers) => {
                self.core.wait_for_buffers(cx.waker());
                Poll::Pending
            }
            other => Poll::Ready(other.map_err(io_error)),
        }
    }
}

impl std::fmt::Debug for UdpSocket {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UdpSocket").field("core", &self.core.index()).field("port", &self.port).finish()
    }
}
