//! TCP on the dataplane: a listener per core, zero-copy streams (`recv` hands
//! out views of received frames, `send` keeps the caller's `Bytes`), and the
//! copying `futures::io` / `tokio::io` adapters.

use std::future::poll_fn;
use std::io;
use std::net::SocketAddrV4;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll, ready};

use bytes::Bytes;
use ix_driver::{PacketBuf, TxBuf};
use ix_net::tcp::State;
use ix_net::{RxChunk, SocketError, SocketHandle, TcpError};

use crate::core::{Core, Interest, current};
use crate::executor::coop;

/// Accept queue per listener unless `bind_with_backlog` says otherwise.
pub const DEFAULT_BACKLOG: usize = 1024;

pub(crate) fn io_error(err: SocketError) -> io::Error {
    use io::ErrorKind as K;
    let kind = match err {
        SocketError::Tcp(TcpError::ConnectionRefused) => K::ConnectionRefused,
        SocketError::Tcp(TcpError::ConnectionReset) => K::ConnectionReset,
        SocketError::Tcp(TcpError::ConnectionAborted) => K::ConnectionAborted,
        SocketError::Tcp(TcpError::TimedOut) => K::TimedOut,
        SocketError::Tcp(TcpError::NotConnected) => K::NotConnected,
        SocketError::Tcp(TcpError::Closed) => K::BrokenPipe,
        SocketError::AddrInUse(_) => K::AddrInUse,
        SocketError::NoPortsAvailable => K::AddrNotAvailable,
        SocketError::NoBuffers | SocketError::TooManyConnections => K::OutOfMemory,
        SocketError::MessageTooLong(_) => K::InvalidInput,
        SocketError::NoRoute => K::HostUnreachable,
        SocketError::InvalidHandle | SocketError::WrongKind(_) => K::NotConnected,
    };
    io::Error::new(kind, err)
}

/// A listening socket on the current core. Every core binds its own listener
/// on the same port; the NIC's RSS spreads connections among them.
pub struct TcpListener {
    core: Rc<Core>,
    handle: SocketHandle,
    port: u16,
}

impl TcpListener {
    /// Listens on `port` of the core's address.
    ///
    /// # Errors
    /// `AddrInUse` when the port already has a listener on this core.
    ///
    /// # Panics
    /// Outside a task of an IX runtime.
    pub fn bind(port: u16) -> io::Result<TcpListener> {
        Self::bind_with_backlog(port, DEFAULT_BACKLOG)
    }

    /// As [`TcpListener::bind`] with an accept queue of `backlog` connections.
    ///
    /// # Errors
    /// As [`TcpListener::bind`].
    ///
    /// # Panics
    /// Outside a task of an IX runtime.
    pub fn bind_with_backlog(port: u16, backlog: usize) -> io::Result<TcpListener> {
        let core = current();
        let handle = core.stack(|s| s.tcp_listen(port, backlog)).map_err(io_error)?;
        Ok(TcpListener { core, handle, port })
    }

    /// The port listened on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Waits for the next established connection.
    ///
    /// # Errors
    /// `ConnectionAborted` once the runtime is shutting down (the listener
    /// stops accepting so that connections can drain).
    pub async fn accept(&self) -> io::Result<(TcpStream, SocketAddrV4)> {
        poll_fn(|cx| self.poll_accept(cx)).await
    }

    /// Polls for the next established connection.
    ///
    /// - `Ready(Ok((stream, peer)))`: a connection.
    /// - `Ready(Err(_))`: the runtime is shutting down.
    /// - `Pending`: none yet; the task is woken when one arrives.
    pub fn poll_accept(&self, cx: &mut Context<'_>) -> Poll<io::Result<(TcpStream, SocketAddrV4)>> {
        if self.core.draining() {
            return Poll::Ready(Err(io::Error::new(io::ErrorKind::ConnectionAborted, "runtime shutting down")));
        }
        ready!(coop::poll_proceed(cx));
        match self.core.stack(|s| s.tcp_accept(self.handle)).map_err(io_error)? {
            Some(handle) => {
                let stream = TcpStream::from_handle(self.core.clone(), handle)?;
                let peer = stream.peer;
                Poll::Ready(Ok((stream, peer)))
            }
            None => {
                self.core.register(self.handle, Interest::Read, cx.waker());
                Poll::Pending
            }
        }
    }
}

impl Drop for TcpListener {
    fn drop(&mut self) {
        self.core.forget(self.handle);
        self.core.stack(|s| s.close(self.handle));
    }
}

impl std::fmt::Debug for TcpListener {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TcpListener").field("core", &self.core.index()).field("port", &self.port).finish()
    }
}

/// A TCP connection owned by the current core.
///
/// Dropping it closes it: gracefully (FIN after the queued data) when all
/// received data was read, with a RST otherwise, as Linux does.
pub struct TcpStream {
    core: Rc<Core>,
    handle: SocketHandle,
    local: SocketAddrV4,
    peer: SocketAddrV4,
    /// What `AsyncRead` has taken from the stack and not yet handed out.
    read_partial: Option<RxChunk>,
}

impl TcpStream {
    fn from_handle(core: Rc<Core>, handle: SocketHandle) -> io::Result<Self> {
        let info = core.stack(|s| s.tcp_info(handle)).map_err(io_error)?;
        Ok(TcpStream { core, handle, local: info.tuple.local, peer: info.tuple.remote, read_partial: None })
    }

    /// Connects to `addr` from a local port whose return traffic the NIC steers
    /// to this core.
    ///
    /// # Errors
    /// `ConnectionRefused`, `TimedOut`, `AddrNotAvailable` (no port left).
    ///
    /// # Panics
    /// Outside a task of an IX runtime.
    pub async fn connect(addr: SocketAddrV4) -> io::Result<TcpStream> {
        let core = current();
        let now = core.now();
        let handle = {
            let filter = core.port_filter();
            let accept = |port: u16| filter.is_none_or(|f| f(port, addr));
            core.stack(|s| s.tcp_connect(addr, now, &accept)).map_err(io_error)?
        };
        let stream = TcpStream::from_handle(core, handle)?;
        poll_fn(|cx| stream.poll_established(cx)).await?;
        Ok(stream)
    }

    fn poll_established(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let (state, err) = self.core.stack(|s| (s.tcp_state(self.handle), s.tcp_error(self.handle)));
        match (state.map_err(io_error)?, err.map_err(io_error)?) {
            (_, Some(e)) => Poll::Ready(Err(io_error(SocketError::Tcp(e)))),
            (State::SynSent | State::SynReceived, None) => {
                self.core.register(self.handle, Interest::Write, cx.waker());
                Poll::Pending
            }
            (State::Closed, None) => Poll::Ready(Err(io_error(SocketError::Tcp(TcpError::NotConnected)))),
            _ => Poll::Ready(Ok(())),
        }
    }

    /// The peer's address.
    pub fn peer_addr(&self) -> SocketAddrV4 {
        self.peer
    }

    /// Our address.
    pub fn local_addr(&self) -> SocketAddrV4 {
        self.local
    }

    /// The next chunk of received data, without copying; `None` at end of
    /// stream. Holding chunks keeps their bytes out of the receive window.
    ///
    /// # Errors
    /// `ConnectionReset`, `TimedOut` and the like when the connection failed.
    pub async fn recv(&self) -> io::Result<Option<RxChunk>> {
        poll_fn(|cx| self.poll_recv(cx)).await
    }

    /// Polls for received data.
    ///
    /// - `Ready(Ok(Some(chunk)))`: data.
    /// - `Ready(Ok(None))`: the peer closed and everything was read.
    /// - `Ready(Err(_))`: the connection failed.
    /// - `Pending`: nothing yet; the task is woken when data arrives.
    pub fn poll_recv(&self, cx: &mut Context<'_>) -> Poll<io::Result<Option<RxChunk>>> {
        ready!(coop::poll_proceed(cx));
        self.core.stack(|s| match s.tcp_recv(self.handle) {
            Ok(Some(chunk)) => Poll::Ready(Ok(Some(chunk))),
            Ok(None) if s.tcp_at_eof(self.handle).unwrap_or(true) => Poll::Ready(Ok(None)),
            Ok(None) => match s.tcp_state(self.handle) {
                Ok(State::Closed) => Poll::Ready(Ok(None)),
                _ => {
                    self.core.register(self.handle, Interest::Read, cx.waker());
                    Poll::Pending
                }
            },
            Err(e) => Poll::Ready(Err(io_error(e))),
        })
    }

    /// Queues all of `data` for sending, without copying it; returns once the
    /// stack has taken it (the buffer is kept until acknowledged).
    ///
    /// # Errors
    /// `BrokenPipe` after `shutdown`, or the connection's failure.
    pub async fn send(&self, mut data: Bytes) -> io::Result<()> {
        poll_fn(|cx| self.poll_send(cx, &mut data)).await
    }

    /// Queues as much of `data` as fits, advancing it; `Ready(Ok(()))` once it
    /// is empty, `Pending` while the send queue is full.
    pub fn poll_send(&self, cx: &mut Context<'_>, data: &mut Bytes) -> Poll<io::Result<()>> {
        ready!(coop::poll_proceed(cx));
        while !data.is_empty() {
            let n = self.core.stack(|s| s.tcp_send(self.handle, data.clone())).map_err(io_error)?;
            if n == 0 {
                self.core.register(self.handle, Interest::Write, cx.waker());
                return Poll::Pending;
            }
            let _ = data.split_to(n);
        }
        Poll::Ready(Ok(()))
    }

    /// A writable buffer in the packet region (3840 bytes of room), to fill and
    /// pass to [`TcpStream::send_frame`] for a send with no intermediate buffer.
    ///
    /// # Errors
    /// `OutOfMemory` when the core's pool is empty.
    pub fn alloc_tx(&self) -> io::Result<TxBuf> {
        self.core.stack(|s| s.alloc_tx()).map_err(io_error)
    }

    /// Queues a frame filled by the application.
    ///
    /// # Errors
    /// As [`TcpStream::send`].
    pub async fn send_frame(&self, frame: PacketBuf) -> io::Result<()> {
        let mut frame = Some(frame);
        poll_fn(|cx| {
            ready!(coop::poll_proceed(cx));
            let f = frame.take().expect("polled after completion");
            let len = f.len();
            let n = self.core.stack(|s| s.tcp_send_frame(self.handle, f.clone())).map_err(io_error)?;
            if n == len {
                return Poll::Ready(Ok(()));
            }
            let mut rest = f;
            rest.advance(n);
            frame = Some(rest);
            self.core.register(self.handle, Interest::Write, cx.waker());
            Poll::Pending
        })
        .await
    }

    /// Closes the sending side: a FIN follows the queued data.
    ///
    /// # Errors
    /// When the connection is gone.
    pub fn shutdown(&self) -> io::Result<()> {
        self.core.stack(|s| s.tcp_shutdown(self.handle)).map_err(io_error)
    }

    /// Turns Nagle's algorithm off (`true`, the default) or on.
    ///
    /// # Errors
    /// When the connection is gone.
    pub fn set_nodelay(&self, nodelay: bool) -> io::Result<()> {
        self.core.stack(|s| s.tcp_set_nodelay(self.handle, nodelay)).map_err(io_error)
    }

    /// A diagnostic snapshot (state, congestion window, RTT, queues).
    ///
    /// # Errors
    /// When the connection is gone.
    pub fn info(&self) -> io::Result<ix_net::TcpInfo> {
        self.core.stack(|s| s.tcp_info(self.handle)).map_err(io_error)
    }

    /// Copying read into `buf` (for the `AsyncRead` adapters).
    fn poll_read_into(&mut self, cx: &mut Context<'_>, buf: &mut [u8]) -> Poll<io::Result<usize>> {
        if buf.is_empty() {
            return Poll::Ready(Ok(0));
        }
        if self.read_partial.is_none() {
            match ready!(self.poll_recv(cx))? {
                Some(chunk) => self.read_partial = Some(chunk),
                None => return Poll::Ready(Ok(0)),
            }
        }
        let chunk = self.read_partial.as_mut().expect("filled above");
        let n = chunk.len().min(buf.len());
        buf[..n].copy_from_slice(&chunk[..n]);
        if n == chunk.len() {
            self.read_partial = None;
        } else {
            chunk.advance(n);
        }
        Poll::Ready(Ok(n))
    }

    /// Copying write of `data` into a frame of the packet region (for the
    /// `AsyncWrite` adapters): no allocation per write.
    fn poll_write_from(&self, cx: &mut Context<'_>, data: &[u8]) -> Poll<io::Result<usize>> {
        if data.is_empty() {
            return Poll::Ready(Ok(0));
        }
        ready!(coop::poll_proceed(cx));
        let room = self.core.stack(|s| s.tcp_send_room(self.handle)).map_err(io_error)?;
        if room == 0 {
            // Either full (wait) or closed (report it through a send attempt).
            let probe = self.core.stack(|s| s.tcp_send(self.handle, Bytes::new()));
            probe.map_err(io_error)?;
            self.core.register(self.handle, Interest::Write, cx.waker());
            return Poll::Pending;
        }
        let mut frame = self.alloc_tx()?;
        let n = data.len().min(room).min(frame.tailroom());
        frame.extend_from_slice(&data[..n]).expect("sized to the room");
        let taken = self.core.stack(|s| s.tcp_send_frame(self.handle, frame.freeze())).map_err(io_error)?;
        Poll::Ready(Ok(taken))
    }
}

impl Drop for TcpStream {
    fn drop(&mut self) {
        self.read_partial = None;
        self.core.forget(self.handle);
        self.core.stack(|s| s.close(self.handle));
    }
}

impl std::fmt::Debug for TcpStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TcpStream").field("local", &self.local).field("peer", &self.peer).finish()
    }
}

impl futures::io::AsyncRead for TcpStream {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut [u8]) -> Poll<io::Result<usize>> {
        self.get_mut().poll_read_into(cx, buf)
    }
}

impl futures::io::AsyncWrite for TcpStream {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        self.poll_write_from(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        // Queued data goes out on the core's next egress; nothing is buffered here.
        Poll::Ready(Ok(()))
    }

    fn poll_close(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(self.shutdown())
    }
}

#[cfg(feature = "tokio-io")]
impl tokio::io::AsyncRead for TcpStream {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut tokio::io::ReadBuf<'_>) -> Poll<io::Result<()>> {
        let n = ready!(self.get_mut().poll_read_into(cx, buf.initialize_unfilled()))?;
        buf.advance(n);
        Poll::Ready(Ok(()))
    }
}

#[cfg(feature = "tokio-io")]
impl tokio::io::AsyncWrite for TcpStream {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        self.poll_write_from(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(self.shutdown())
    }
}
