//! The accept loop: one per core (or per thread), with the connection limit,
//! a task per connection, counters, and graceful shutdown when the listener
//! stops (the runtime drains) or the server's [`Shutdown`] is triggered.

use std::cell::Cell;
use std::future::{Future, poll_fn};
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll};

use hyper::body::{Body, Incoming};
use hyper::rt::{Executor, Timer};
use hyper::service::Service;
use hyper::{Request, Response};
use ix_runtime::metrics::{AppSample, MetricKind};
use ix_runtime::net::TcpListener;
use tracing::Instrument as _;

use crate::activity::{TrackedBody, TrackedFuture};
use crate::conn::{
    ConnectionContext, ConnectionEnd, ConnectionReport, Protocol, Protocols, ServerConfig, serve_connection,
};
use crate::signal::{LiveConnections, Shutdown};
use crate::{IxIo, IxTimer, LocalExec};

/// A source of connections for [`Server::serve_with`].
pub trait Accept {
    /// The connection's IO.
    type Io: hyper::rt::Read + hyper::rt::Write + Unpin + 'static;

    /// Polls for the next connection.
    ///
    /// - `Ready(Ok((io, peer)))`: a connection.
    /// - `Ready(Err(_))`: the listener stopped (shutdown); the server stops
    ///   accepting and shuts its connections down gracefully.
    /// - `Pending`: none yet; the task is woken when one arrives.
    fn poll_accept(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<(Self::Io, SocketAddr)>>;
}

impl Accept for &TcpListener {
    type Io = IxIo;

    fn poll_accept(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<(IxIo, SocketAddr)>> {
        TcpListener::poll_accept(self, cx).map_ok(|(stream, peer)| (IxIo::new(stream), SocketAddr::V4(peer)))
    }
}

/// What a server counted, on one core.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ServeCounters {
    /// Connections accepted (including those refused over the limit).
    pub accepted: u64,
    /// Connections closed at once because the core had `max_connections_per_core`.
    pub refused_over_limit: u64,
    /// Connections live now.
    pub live: u64,
    /// Connections that spoke HTTP/1.x, HTTP/2 with prior knowledge, and HTTP/2 by h2c upgrade.
    pub http1: u64,
    /// See `http1`.
    pub http2: u64,
    /// See `http1`.
    pub h2c: u64,
    /// Connections closed cleanly (by the client, or after a graceful shutdown).
    pub closed: u64,
    /// Connections closed by the header read timeout.
    pub header_timeouts: u64,
    /// Connections closed by the idle timeout.
    pub idle_timeouts: u64,
    /// Connections closed because the client stopped reading.
    pub write_timeouts: u64,
    /// Connections that did not finish a graceful shutdown in time.
    pub graceful_timeouts: u64,
    /// Connections whose client broke the protocol.
    pub protocol_errors: u64,
    /// Connections whose transport failed.
    pub io_errors: u64,
}

impl ServeCounters {
    /// The counters as Prometheus samples (`ix_http_*`), for
    /// `ix_runtime::metrics::MetricsBoard::publish`.
    pub fn metrics(&self) -> Vec<AppSample> {
        use MetricKind::{Counter, Gauge};
        let rows: [(&'static str, &'static str, MetricKind, u64); 13] = [
            ("ix_http_accepted_total", "Connections accepted.", Counter, self.accepted),
            (
                "ix_http_refused_over_limit_total",
                "Connections closed at once: over the limit.",
                Counter,
                self.refused_over_limit,
            ),
            ("ix_http_connections_live", "HTTP connections live now.", Gauge, self.live),
            ("ix_http_http1_total", "Connections that spoke HTTP/1.x.", Counter, self.http1),
            ("ix_http_http2_total", "Connections that spoke HTTP/2 with prior knowledge.", Counter, self.http2),
            ("ix_http_h2c_total", "Connections upgraded to HTTP/2 by h2c.", Counter, self.h2c),
            ("ix_http_closed_total", "Connections closed cleanly.", Counter, self.closed),
            (
                "ix_http_header_timeouts_total",
                "Connections closed by the header read timeout.",
                Counter,
                self.header_timeouts,
            ),
            ("ix_http_idle_timeouts_total", "Connections closed by the idle timeout.", Counter, self.idle_timeouts),
            (
                "ix_http_write_timeouts_total",
                "Connections closed: the client stopped reading.",
                Counter,
                self.write_timeouts,
            ),
            (
                "ix_http_graceful_timeouts_total",
                "Connections that outlived a graceful shutdown.",
                Counter,
                self.graceful_timeouts,
            ),
            (
                "ix_http_protocol_errors_total",
                "Connections whose client broke the protocol.",
                Counter,
                self.protocol_errors,
            ),
            ("ix_http_io_errors_total", "Connections whose transport failed.", Counter, self.io_errors),
        ];
        rows.into_iter().map(|(name, help, kind, value)| AppSample { name, help, kind, value }).collect()
    }

    fn record(&mut self, report: ConnectionReport) {
        match report.protocol {
            Some(Protocol::Http1) => self.http1 += 1,
            Some(Protocol::Http2) => self.http2 += 1,
            Some(Protocol::H2c) => self.h2c += 1,
            None => {}
        }
        match report.end {
            ConnectionEnd::Closed => self.closed += 1,
            ConnectionEnd::HeaderTimeout => self.header_timeouts += 1,
            ConnectionEnd::IdleTimeout => self.idle_timeouts += 1,
            ConnectionEnd::WriteTimeout => self.write_timeouts += 1,
            ConnectionEnd::GracefulTimeout => self.graceful_timeouts += 1,
            ConnectionEnd::ProtocolError => self.protocol_errors += 1,
            ConnectionEnd::IoError => self.io_errors += 1,
        }
    }
}

/// A connection task, as handed to the executor.
pub type ConnectionTask = Pin<Box<dyn Future<Output = ()>>>;

/// An HTTP/1.1 + HTTP/2 server for one core (or one thread): build one per
/// core, inside the core's task, and call [`Server::serve`]. Everything in
/// it is `!Send` and stays on the core.
pub struct Server<E = LocalExec, T = IxTimer> {
    config: Rc<ServerConfig>,
    protocols: Rc<Protocols<E>>,
    exec: E,
    timer: T,
    shutdown: Shutdown,
    live: Rc<LiveConnections>,
    counters: Rc<Cell<ServeCounters>>,
}

impl Server {
    /// A server on IX: connections run as tasks of the current core
    /// ([`LocalExec`]) and time on its wheel ([`IxTimer`]).
    pub fn new(config: ServerConfig) -> Server {
        Server::with_runtime(config, LocalExec, IxTimer)
    }
}

impl<E, T> Server<E, T>
where
    E: Executor<ConnectionTask> + Clone + 'static,
    T: Timer + Clone + Send + Sync + 'static,
{
    /// A server on another runtime: `exec` runs the connection tasks and
    /// hyper's HTTP/2 streams (they need not be `Send`), `timer` gives hyper and
    /// the timeouts their sleeps.
    pub fn with_runtime(config: ServerConfig, exec: E, timer: T) -> Server<E, T> {
        let protocols = Rc::new(Protocols::new(&config, exec.clone(), timer.clone()));
        Server {
            config: Rc::new(config),
            protocols,
            exec,
            timer,
            shutdown: Shutdown::new(),
            live: Rc::new(LiveConnections::default()),
            counters: Rc::new(Cell::new(ServeCounters::default())),
        }
    }

    /// The counters so far.
    pub fn counters(&self) -> ServeCounters {
        ServeCounters { live: self.live.count() as u64, ..self.counters.get() }
    }

    /// The server's shutdown signal: triggering it stops the accept loop and
    /// shuts every connection down gracefully.
    pub fn shutdown_signal(&self) -> Shutdown {
        self.shutdown.clone()
    }

    /// Serves connections from an IX listener of this core until the runtime
    /// shuts down (or [`Server::shutdown_signal`] is triggered), then shuts the
    /// connections down gracefully and returns once they are closed.
    pub async fn serve<M, S, B>(&self, listener: &TcpListener, make_service: M) -> ServeCounters
    where
        M: FnMut(SocketAddr) -> S,
        S: Service<Request<Incoming>, Response = Response<B>> + 'static,
        S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
        B: Body + 'static,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
        E: hyper::rt::bounds::Http2ServerConnExec<TrackedFuture<S::Future>, TrackedBody<B>>,
    {
        self.serve_with(listener, make_service).await
    }

    /// As [`Server::serve`], from any source of connections.
    pub async fn serve_with<A, M, S, B>(&self, mut accept: A, mut make_service: M) -> ServeCounters
    where
        A: Accept,
        M: FnMut(SocketAddr) -> S,
        S: Service<Request<Incoming>, Response = Response<B>> + 'static,
        S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
        B: Body + 'static,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
        E: hyper::rt::bounds::Http2ServerConnExec<TrackedFuture<S::Future>, TrackedBody<B>>,
    {
        let mut stop = self.shutdown.watch();
        loop {
            let next =
                poll_fn(
                    |cx| if stop.poll_triggered(cx) { Poll::Ready(None) } else { accept.poll_accept(cx).map(Some) },
                );
            let (io, peer) = match next.await {
                Some(Ok(accepted)) => accepted,
                Some(Err(e)) => {
                    tracing::info!(reason = %e, "listener stopped; shutting connections down gracefully");
                    break;
                }
                None => break,
            };
            self.update(|c| c.accepted += 1);
            if self.live.count() >= self.config.max_connections_per_core {
                self.update(|c| c.refused_over_limit += 1);
                tracing::debug!(%peer, "connection refused: over the limit");
                drop(io);
                continue;
            }
            tracing::debug!(%peer, "connection accepted");
            let slot = self.live.enter();
            let ctx = ConnectionContext {
                config: self.config.clone(),
                protocols: self.protocols.clone(),
                timer: self.timer.clone(),
                shutdown: self.shutdown.watch(),
            };
            let connection = serve_connection(io, make_service(peer), ctx);
            let counters = self.counters.clone();
            // Events of the connection's task (hyper's, the TLS handshake's) carry its peer.
            let span = tracing::debug_span!("connection", %peer);
            self.exec.execute(Box::pin(
                async move {
                    let report = connection.await;
                    tracing::debug!(protocol = ?report.protocol, end = ?report.end, "connection closed");
                    let mut c = counters.get();
                    c.record(report);
                    counters.set(c);
                    drop(slot);
                }
                .instrument(span),
            ));
        }
        // New connections are refused from here on (a listener owned by the
        // source closes now), while the live ones finish.
        drop(accept);
        self.shutdown.trigger();
        self.live.all_closed().await;
        self.counters()
    }

    fn update(&self, f: impl FnOnce(&mut ServeCounters)) {
        let mut c = self.counters.get();
        f(&mut c);
        self.counters.set(c);
    }
}

impl<E, T> std::fmt::Debug for Server<E, T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server").field("config", &self.config).field("live", &self.live.count()).finish()
    }
}

/// Serves HTTP/1.1 and HTTP/2 on `port` of the current IX core until the
/// runtime shuts down; call it from every core's task. See [`Server`] to
/// observe counters or to know when the core listens.
///
/// # Errors
/// When the port cannot be bound on this core.
///
/// # Panics
/// Outside a task of an IX runtime.
pub async fn serve<M, S, B>(port: u16, make_service: M, config: ServerConfig) -> io::Result<ServeCounters>
where
    M: FnMut(SocketAddr) -> S,
    S: Service<Request<Incoming>, Response = Response<B>> + 'static,
    S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    B: Body + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let listener = TcpListener::bind(port)?;
    Ok(Server::new(config).serve(&listener, make_service).await)
}
