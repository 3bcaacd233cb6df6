//! TCP on the dataplane: a listener per core, zero-copy streams (`recv` hands
//! out views of received frames, `send` keeps the caller's `Bytes`), and the
//! copying `futures::io` / `tokio::io` adapters.

use std::future::poll_fn;
use std::io::{self, IoSlice};
use std::net::SocketAddrV4;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll, ready};

use bytes::Bytes;
use ix_driver::{PacketBuf, PoolPressure, TxBuf};
use ix_net::tcp::State;
use ix_net::{RxChunk, SocketError, TcpError};

use crate::core::{Core, CoreNet, current};
use crate::dataplane::{DataplaneSocket, io_error};
use crate::executor::coop;
use crate::kernel::sockets::{KernelListener, KernelStream};
use crate::net::outgoing::Outgoing;
use crate::readiness::Interest;

/// Accept queue per listener unless `bind_with_backlog` says otherwise.
pub const DEFAULT_BACKLOG: usize = 1024;

/// Whether a dataplane connection being opened is established: `Pending`
/// (woken on a change) while its handshake runs.
fn poll_established(socket: &DataplaneSocket, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
    let (state, err) = socket.stack(|s, handle| (s.tcp_state(handle), s.tcp_error(handle)));
    match (state.map_err(io_error)?, err.map_err(io_error)?) {
        (_, Some(e)) => Poll::Ready(Err(io_error(SocketError::Tcp(e)))),
        (State::SynSent | State::SynReceived, None) => {
            socket.register(Interest::Write, cx.waker());
            Poll::Pending
        }
        (State::Closed, None) => Poll::Ready(Err(io_error(SocketError::Tcp(TcpError::NotConnected)))),
        _ => Poll::Ready(Ok(())),
    }
}

/// A listening socket on the current core. Every core binds its own listener
/// on the same port; the NIC's RSS (or, on the `kernel` backend,
/// `SO_REUSEPORT`) spreads connections among them.
pub struct TcpListener {
    core: Rc<Core>,
    inner: ListenerInner,
    port: u16,
}

enum ListenerInner {
    Dataplane(DataplaneSocket),
    Kernel(KernelListener),
}

impl TcpListener {
    /// Listens on `port` of the core's address. On the `kernel` backend port 0
    /// picks a free port ([`TcpListener::port`] tells which).
    ///
    /// # Errors
    /// `AddrInUse` when the port already has a listener on this core; on the
    /// `kernel` backend, what `bind(2)` or `listen(2)` reports.
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
        let (inner, port) = match core.net() {
            CoreNet::Dataplane(net) => {
                let handle = net.stack(|s| s.tcp_listen(port, backlog)).map_err(io_error)?;
                (ListenerInner::Dataplane(DataplaneSocket::new(net.clone(), handle)), port)
            }
            CoreNet::Kernel(net) => {
                let listener = KernelListener::bind(core.clone(), net.clone(), port, backlog)?;
                let port = listener.local_port()?;
                (ListenerInner::Kernel(listener), port)
            }
        };
        Ok(TcpListener { core, inner, port })
    }

    /// The port listened on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Waits for the next established connection.
    ///
    /// # Errors
    /// `ConnectionAborted` once the runtime is shutting down (the listener
    /// stops listening: new connections are refused, those not yet accepted
    /// are reset, and the accepted ones drain); on the `kernel` backend, what
    /// `accept(2)` reports.
    ///
    /// # Cancel safety
    /// Cancel-safe: a connection is taken from the accept queue only by the
    /// call that returns it, so a dropped `accept` loses none.
    pub async fn accept(&self) -> io::Result<(TcpStream, SocketAddrV4)> {
        poll_fn(|cx| self.poll_accept(cx)).await
    }

    /// Polls for the next established connection.
    ///
    /// - `Ready(Ok((stream, peer)))`: a connection.
    /// - `Ready(Err(_))`: as [`TcpListener::accept`].
    /// - `Pending`: none yet; the task is woken when one arrives. Only the
    ///   waker of the last `Pending` poll is kept: when two tasks accept on one
    ///   listener, the one that polled first is not woken.
    pub fn poll_accept(&self, cx: &mut Context<'_>) -> Poll<io::Result<(TcpStream, SocketAddrV4)>> {
        if self.core.draining() {
            // The dataplane's listeners closed when the drain started.
            if let ListenerInner::Kernel(listener) = &self.inner {
                listener.stop_listening();
            }
            return Poll::Ready(Err(io::Error::new(io::ErrorKind::ConnectionAborted, "runtime shutting down")));
        }
        ready!(coop::poll_proceed(cx));
        let listener = match &self.inner {
            ListenerInner::Kernel(listener) => {
                let (stream, peer) = ready!(listener.poll_accept(cx))?;
                return Poll::Ready(Ok((TcpStream::from_kernel(stream)?, peer)));
            }
            ListenerInner::Dataplane(listener) => listener,
        };
        match listener.stack(|s, handle| s.tcp_accept(handle)).map_err(io_error)? {
            Some(conn) => {
                let socket = DataplaneSocket::new(listener.net().clone(), conn);
                let stream = TcpStream::from_dataplane(self.core.clone(), socket)?;
                let peer = stream.peer;
                Poll::Ready(Ok((stream, peer)))
            }
            None => {
                listener.register(Interest::Read, cx.waker());
                Poll::Pending
            }
        }
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
///
/// # One waker per direction
/// The stream keeps one waker for reading (`recv`, `poll_recv`, `poll_read`)
/// and one for writing (`send`, `send_frame`, their `poll_` forms,
/// `poll_write`, and `connect` while the handshake runs), as tokio's streams
/// do. A task that polls a direction replaces the waker of the task that
/// polled it before, which is then not woken: give each direction to one task
/// at a time. (A task waiting for a free pool frame is an exception: every
/// such task is woken when a frame is free.)
pub struct TcpStream {
    inner: StreamInner,
    local: SocketAddrV4,
    peer: SocketAddrV4,
    /// What `AsyncRead` has taken from the stack and not yet handed out.
    read_partial: Option<RxChunk>,
}

enum StreamInner {
    Dataplane { core: Rc<Core>, socket: DataplaneSocket },
    Kernel(KernelStream),
}

impl TcpStream {
    fn from_dataplane(core: Rc<Core>, socket: DataplaneSocket) -> io::Result<Self> {
        let info = socket.stack(|s, handle| s.tcp_info(handle)).map_err(io_error)?;
        let (local, peer) = (info.tuple.local, info.tuple.remote);
        Ok(TcpStream { inner: StreamInner::Dataplane { core, socket }, local, peer, read_partial: None })
    }

    fn from_kernel(stream: KernelStream) -> io::Result<Self> {
        let (local, peer) = stream.addrs()?;
        Ok(TcpStream { inner: StreamInner::Kernel(stream), local, peer, read_partial: None })
    }

    /// Connects to `addr`. On the dataplane the local port is one whose return
    /// traffic the NIC steers to this core.
    ///
    /// # Errors
    /// `ConnectionRefused`, `TimedOut`, `AddrNotAvailable` (no port left),
    /// `HostUnreachable` (no route), `OutOfMemory` (the connection limit or an
    /// empty pool); on the `kernel` backend, what `connect(2)` reports.
    ///
    /// # Panics
    /// Outside a task of an IX runtime.
    ///
    /// # Cancel safety
    /// Not cancel-safe: dropping the future abandons the connection. Its socket
    /// is closed (on the dataplane a connection still in SYN-SENT is deleted at
    /// once; one that was just established is closed with a FIN), and a later
    /// `connect` starts over with a new local port.
    pub async fn connect(addr: SocketAddrV4) -> io::Result<TcpStream> {
        let core = current();
        let net = match core.net() {
            CoreNet::Dataplane(net) => net.clone(),
            CoreNet::Kernel(net) => {
                let stream = KernelStream::connect(core.clone(), net.clone(), addr)?;
                poll_fn(|cx| stream.poll_connected(cx)).await?;
                return TcpStream::from_kernel(stream);
            }
        };
        let now = core.now();
        let handle = {
            let filter = net.port_filter();
            let accept = |port: u16| filter.is_none_or(|f| f(port, addr));
            net.stack(|s| s.tcp_connect(addr, now, &accept)).map_err(io_error)?
        };
        // Owned from here, so that a connect abandoned mid-way closes the socket.
        let socket = DataplaneSocket::new(net, handle);
        poll_fn(|cx| poll_established(&socket, cx)).await?;
        TcpStream::from_dataplane(core, socket)
    }

    /// The peer's address.
    pub fn peer_addr(&self) -> SocketAddrV4 {
        self.peer
    }

    /// Our address.
    pub fn local_addr(&self) -> SocketAddrV4 {
        self.local
    }

    /// The next chunk of received data, without copying on the dataplane (on
    /// the `kernel` backend the kernel copies into a pool frame); `None` at end
    /// of stream. Holding chunks keeps their bytes out of the receive window.
    ///
    /// # Errors
    /// `ConnectionReset`, `TimedOut` and the like when the connection failed.
    ///
    /// # Cancel safety
    /// Cancel-safe: received data is taken from the connection only by the
    /// call that returns it, so a dropped `recv` loses none.
    pub async fn recv(&self) -> io::Result<Option<RxChunk>> {
        poll_fn(|cx| self.poll_recv(cx)).await
    }

    /// Polls for received data.
    ///
    /// - `Ready(Ok(Some(chunk)))`: data.
    /// - `Ready(Ok(None))`: the peer closed and everything was read.
    /// - `Ready(Err(_))`: the connection failed.
    /// - `Pending`: nothing yet; the task is woken when data arrives (or, on the
    ///   `kernel` backend, when a pool frame is free again). See "One waker
    ///   per direction" on [`TcpStream`].
    pub fn poll_recv(&self, cx: &mut Context<'_>) -> Poll<io::Result<Option<RxChunk>>> {
        ready!(coop::poll_proceed(cx));
        let socket = match &self.inner {
            StreamInner::Kernel(k) => return k.poll_recv(cx),
            StreamInner::Dataplane { socket, .. } => socket,
        };
        socket.stack(|s, handle| match s.tcp_recv(handle) {
            Ok(Some(chunk)) => Poll::Ready(Ok(Some(chunk))),
            Ok(None) if s.tcp_at_eof(handle).unwrap_or(true) => Poll::Ready(Ok(None)),
            Ok(None) => match s.tcp_state(handle) {
                Ok(State::Closed) => Poll::Ready(Ok(None)),
                _ => {
                    socket.register(Interest::Read, cx.waker());
                    Poll::Pending
                }
            },
            Err(e) => Poll::Ready(Err(io_error(e))),
        })
    }

    /// Queues all of `data` for sending, without copying it on the dataplane;
    /// returns once the stack (or the kernel) has taken it.
    ///
    /// # Errors
    /// `BrokenPipe` after `shutdown`, or the connection's failure.
    ///
    /// # Cancel safety
    /// Not cancel-safe: `data` is queued in pieces as the send queue has room,
    /// so a future dropped before it completes may have queued a prefix of
    /// `data` (which will be sent) and not the rest. A caller that may cancel
    /// (in `select!`, under a timeout) and must know what went out uses
    /// [`TcpStream::poll_send`], which advances its `data` past every byte
    /// queued, and resumes with what is left.
    pub async fn send(&self, mut data: Bytes) -> io::Result<()> {
        poll_fn(|cx| self.poll_send(cx, &mut data)).await
    }

    /// Queues as much of `data` as fits, advancing it past what was queued.
    ///
    /// - `Ready(Ok(()))`: all of `data` is queued (it is empty).
    /// - `Ready(Err(_))`: as [`TcpStream::send`]; `data` holds what was not queued.
    /// - `Pending`: the send queue is full; the task is woken when it has room
    ///   (see "One waker per direction" on [`TcpStream`]).
    pub fn poll_send(&self, cx: &mut Context<'_>, data: &mut Bytes) -> Poll<io::Result<()>> {
        self.poll_queue(cx, data)
    }

    /// Queues `data` until it is empty or the send queue is full: the loop
    /// behind [`TcpStream::poll_send`] and [`TcpStream::poll_send_frame`].
    fn poll_queue<B: Outgoing>(&self, cx: &mut Context<'_>, data: &mut B) -> Poll<io::Result<()>> {
        ready!(coop::poll_proceed(cx));
        let socket = match &self.inner {
            StreamInner::Kernel(k) => return k.poll_send_all(cx, data),
            StreamInner::Dataplane { socket, .. } => socket,
        };
        while !data.is_empty() {
            let n = socket.stack(|s, handle| data.clone().queue(s, handle)).map_err(io_error)?;
            if n == 0 {
                socket.register(Interest::Write, cx.waker());
                return Poll::Pending;
            }
            data.consume(n);
        }
        Poll::Ready(Ok(()))
    }

    fn core(&self) -> &Rc<Core> {
        match &self.inner {
            StreamInner::Dataplane { core, .. } => core,
            StreamInner::Kernel(k) => k.core(),
        }
    }

    /// A writable buffer in the packet region (3840 bytes of room), to fill and
    /// pass to [`TcpStream::send_frame`] for a send with no intermediate buffer.
    ///
    /// # Errors
    /// `OutOfMemory` when the core's pool is empty.
    pub fn alloc_tx(&self) -> io::Result<TxBuf> {
        self.core().with_pool(|p| p.alloc()).map_err(|_| io_error(SocketError::NoBuffers))
    }

    /// Queues a frame filled by the application.
    ///
    /// # Errors
    /// As [`TcpStream::send`].
    ///
    /// # Cancel safety
    /// Not cancel-safe, as [`TcpStream::send`]: a dropped future may have
    /// queued a prefix of the frame. [`TcpStream::poll_send_frame`] advances
    /// the frame past what was queued.
    pub async fn send_frame(&self, frame: PacketBuf) -> io::Result<()> {
        let mut frame = frame;
        poll_fn(|cx| self.poll_send_frame(cx, &mut frame)).await
    }

    /// Queues as much of `frame` as fits, advancing it past what was queued.
    /// Outcomes as [`TcpStream::poll_send`].
    pub fn poll_send_frame(&self, cx: &mut Context<'_>, frame: &mut PacketBuf) -> Poll<io::Result<()>> {
        self.poll_queue(cx, frame)
    }

    /// Closes the sending side: a FIN follows the queued data.
    ///
    /// # Errors
    /// When the connection is gone.
    pub fn shutdown(&self) -> io::Result<()> {
        match &self.inner {
            StreamInner::Dataplane { socket, .. } => socket.stack(|s, h| s.tcp_shutdown(h)).map_err(io_error),
            StreamInner::Kernel(k) => k.shutdown(),
        }
    }

    /// Turns Nagle's algorithm off (`true`, the default) or on.
    ///
    /// # Errors
    /// When the connection is gone.
    pub fn set_nodelay(&self, nodelay: bool) -> io::Result<()> {
        match &self.inner {
            StreamInner::Dataplane { socket, .. } => {
                socket.stack(|s, h| s.tcp_set_nodelay(h, nodelay)).map_err(io_error)
            }
            StreamInner::Kernel(k) => k.set_nodelay(nodelay),
        }
    }

    /// A diagnostic snapshot (state, congestion window, RTT, queues) of a
    /// dataplane connection.
    ///
    /// # Errors
    /// When the connection is gone; `Unsupported` on the `kernel` backend, whose
    /// connections the kernel keeps (read them with `ss -ti`).
    pub fn info(&self) -> io::Result<ix_net::TcpInfo> {
        match &self.inner {
            StreamInner::Dataplane { socket, .. } => socket.stack(|s, h| s.tcp_info(h)).map_err(io_error),
            StreamInner::Kernel(_) => Err(io::Error::new(
                io::ErrorKind::Unsupported,
                "the kernel backend's connections are the kernel's: read them with `ss -ti`",
            )),
        }
    }

    /// Copying read into `buf`: what the `AsyncRead` adapters use.
    ///
    /// - `Ready(Ok(n))`, `n > 0`: `n` bytes were copied.
    /// - `Ready(Ok(0))`: end of stream (or `buf` is empty).
    /// - `Ready(Err(_))`: the connection failed.
    /// - `Pending`: nothing to read yet; the task is woken when there is (see
    ///   "One waker per direction" on [`TcpStream`]).
    ///
    /// Bytes of a chunk that did not fit `buf` are kept in the stream for the
    /// next read: no byte is lost between calls.
    pub fn poll_read(&mut self, cx: &mut Context<'_>, buf: &mut [u8]) -> Poll<io::Result<usize>> {
        if buf.is_empty() {
            return Poll::Ready(Ok(0));
        }
        if let (None, StreamInner::Kernel(k)) = (&self.read_partial, &self.inner) {
            ready!(coop::poll_proceed(cx));
            return k.poll_read(cx, buf);
        }
        self.poll_read_received(cx, buf.len(), |bytes| buf[..bytes.len()].copy_from_slice(bytes))
    }

    /// The dataplane's copying read: hands `put` the next at most `room`
    /// (non-zero) received bytes, keeping the rest of their chunk for the next
    /// read, and returns how many it handed (0: end of stream). Writing into
    /// the caller's memory is `put`'s, so a caller with uninitialised memory
    /// (tokio's `ReadBuf`) need not zero it first. As [`TcpStream::poll_read`]
    /// otherwise.
    fn poll_read_received(
        &mut self,
        cx: &mut Context<'_>,
        room: usize,
        put: impl FnOnce(&[u8]),
    ) -> Poll<io::Result<usize>> {
        if self.read_partial.is_none() {
            match ready!(self.poll_recv(cx))? {
                Some(chunk) => self.read_partial = Some(chunk),
                None => return Poll::Ready(Ok(0)),
            }
        }
        let chunk = self.read_partial.as_mut().expect("filled above");
        let n = chunk.len().min(room);
        put(&chunk[..n]);
        if n == chunk.len() {
            self.read_partial = None;
        } else {
            chunk.advance(n);
        }
        Poll::Ready(Ok(n))
    }

    /// Copying write of `data`: on the dataplane into one frame of the packet
    /// region (no allocation per write). Returns how many bytes were taken.
    ///
    /// - `Ready(Ok(n))`: `n` bytes queued (0 only for empty `data`).
    /// - `Ready(Err(_))`: the connection failed or was shut down.
    /// - `Pending`: the send queue is full; nothing was taken, and the task is
    ///   woken when there is room.
    pub fn poll_write(&self, cx: &mut Context<'_>, data: &[u8]) -> Poll<io::Result<usize>> {
        self.poll_write_vectored(cx, &[IoSlice::new(data)])
    }

    /// Copying write of several slices, packed into one frame of the packet
    /// region on the dataplane (into heap memory while the core's pool is
    /// under pressure; one `sendmsg` on the `kernel` backend).
    /// Outcomes as [`TcpStream::poll_write`].
    pub fn poll_write_vectored(&self, cx: &mut Context<'_>, bufs: &[IoSlice<'_>]) -> Poll<io::Result<usize>> {
        let total: usize = bufs.iter().map(|b| b.len()).sum();
        if total == 0 {
            return Poll::Ready(Ok(0));
        }
        ready!(coop::poll_proceed(cx));
        let socket = match &self.inner {
            StreamInner::Kernel(k) => return k.poll_write_vectored(cx, bufs),
            StreamInner::Dataplane { socket, .. } => socket,
        };
        let room = socket.stack(|s, h| s.tcp_send_room(h)).map_err(io_error)?;
        if room == 0 {
            // Either full (wait) or closed (report it through a send attempt).
            socket.stack(|s, h| s.tcp_send(h, Bytes::new())).map_err(io_error)?;
            socket.register(Interest::Write, cx.waker());
            return Poll::Pending;
        }
        // A queued frame stays pinned until the peer acknowledges it: while
        // the pool is short of frames, the copy goes to the heap instead.
        let frame =
            socket.net().with_pool(|p| (p.pressure() == PoolPressure::Normal).then(|| p.alloc().ok()).flatten());
        let Some(mut frame) = frame else {
            let data = gather(bufs, total.min(room));
            let taken = socket.stack(|s, h| s.tcp_send(h, data)).map_err(io_error)?;
            return Poll::Ready(Ok(taken));
        };
        let mut budget = total.min(room).min(frame.tailroom());
        for buf in bufs {
            let n = buf.len().min(budget);
            frame.extend_from_slice(&buf[..n]).expect("sized to the room");
            budget -= n;
            if budget == 0 {
                break;
            }
        }
        let taken = socket.stack(|s, h| s.tcp_send_frame(h, frame.freeze())).map_err(io_error)?;
        Poll::Ready(Ok(taken))
    }
}

/// The first `len` bytes of `bufs`, copied into one heap buffer.
fn gather(bufs: &[IoSlice<'_>], len: usize) -> Bytes {
    let mut data = bytes::BytesMut::with_capacity(len);
    for buf in bufs {
        let n = buf.len().min(len - data.len());
        data.extend_from_slice(&buf[..n]);
    }
    data.freeze()
}

impl Drop for TcpStream {
    fn drop(&mut self) {
        // The held chunk goes back to the pool before the socket closes.
        self.read_partial = None;
    }
}

impl std::fmt::Debug for TcpStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let backend = if matches!(self.inner, StreamInner::Kernel(_)) { "kernel" } else { "dataplane" };
        f.debug_struct("TcpStream")
            .field("local", &self.local)
            .field("peer", &self.peer)
            .field("backend", &backend)
            .finish()
    }
}

impl futures::io::AsyncRead for TcpStream {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut [u8]) -> Poll<io::Result<usize>> {
        TcpStream::poll_read(self.get_mut(), cx, buf)
    }
}

impl futures::io::AsyncWrite for TcpStream {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        TcpStream::poll_write(&self, cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        TcpStream::poll_write_vectored(&self, cx, bufs)
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
    /// On the dataplane the received bytes are copied into `buf`'s unfilled
    /// part without zeroing it first (tokio-util's codecs hand over
    /// uninitialised spare capacity, 8 KiB and more, on every read); the
    /// `kernel` backend's `read(2)` needs initialised memory, so it zeroes.
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut tokio::io::ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if buf.remaining() == 0 {
            return Poll::Ready(Ok(()));
        }
        if let (None, StreamInner::Kernel(_)) = (&this.read_partial, &this.inner) {
            let n = ready!(TcpStream::poll_read(this, cx, buf.initialize_unfilled()))?;
            buf.advance(n);
            return Poll::Ready(Ok(()));
        }
        ready!(this.poll_read_received(cx, buf.remaining(), |bytes| buf.put_slice(bytes)))?;
        Poll::Ready(Ok(()))
    }
}

#[cfg(feature = "tokio-io")]
impl tokio::io::AsyncWrite for TcpStream {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        TcpStream::poll_write(&self, cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        TcpStream::poll_write_vectored(&self, cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(self.shutdown())
    }
}
