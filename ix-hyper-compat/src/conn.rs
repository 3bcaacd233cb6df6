//! One HTTP connection from accept to close: protocol detection (HTTP/1.1,
//! HTTP/2 with prior knowledge, h2c upgrade), the watchdog that enforces the
//! timeouts, and graceful shutdown.

use std::future::{Future, poll_fn};
use std::io;
use std::pin::{Pin, pin};
use std::rc::Rc;
use std::task::{Context, Poll, ready};
use std::time::{Duration, Instant};

use hyper::body::{Body, Incoming};
use hyper::rt::Timer;
use hyper::server::conn::{http1, http2};
use hyper::service::Service;
use hyper::{Request, Response};
use ix_runtime::time::round_instant;

use crate::activity::{Activity, ReturnedIo, Tracked, TrackedBody, TrackedFuture, TrackedService};
use crate::h2c::{H2_PREFACE, H2cIo, SWITCHING_PROTOCOLS, upgrade_frame};
use crate::replay::{Replay, poll_read_into_vec};
use crate::signal::ShutdownWatch;

/// Limits and timeouts of a server; every field has a production default.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// From accept (or from the first byte of a later request) until the
    /// request head is complete; past it the connection is closed. This is
    /// what stops slowloris clients. Default 10 s.
    pub header_read_timeout: Duration,
    /// A connection with no request in flight that moved no byte out for this
    /// long is closed gracefully (HTTP/2: GOAWAY); a request in flight that
    /// moved no byte either way for this long is abandoned. Default 60 s.
    pub idle_timeout: Duration,
    /// A write that finds no room in the send queue for this long (the client
    /// stopped reading) closes the connection. Default 30 s.
    pub write_timeout: Duration,
    /// How long a connection told to shut down gracefully (by the server's
    /// shutdown or by its idle timeout) may take to finish. Default 5 s.
    pub graceful_timeout: Duration,
    /// Largest request head (HTTP/1: request line and headers, answered with
    /// 431 beyond it; HTTP/2: the header list). Default 16 KiB.
    pub max_header_bytes: usize,
    /// Most headers in an HTTP/1 request (431 beyond it). Default 100.
    pub max_headers: usize,
    /// Live connections per core; connections accepted beyond it are closed
    /// at once and counted. Default 10 000.
    pub max_connections_per_core: usize,
    /// Concurrent streams per HTTP/2 connection. Default 200.
    pub http2_max_concurrent_streams: u32,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            header_read_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
            write_timeout: Duration::from_secs(30),
            graceful_timeout: Duration::from_secs(5),
            max_header_bytes: 16 * 1024,
            max_headers: 100,
            max_connections_per_core: 10_000,
            http2_max_concurrent_streams: 200,
        }
    }
}

/// Which protocol a connection spoke.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    /// HTTP/1.x.
    Http1,
    /// HTTP/2 with prior knowledge (the client began with the preface).
    Http2,
    /// HTTP/2 after an HTTP/1.1 `Upgrade: h2c`.
    H2c,
}

/// How a connection ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConnectionEnd {
    /// The client closed it, or it finished after a graceful shutdown.
    Closed,
    /// A request head was not complete within `header_read_timeout`.
    HeaderTimeout,
    /// Closed by `idle_timeout`.
    IdleTimeout,
    /// The client stopped reading for `write_timeout`.
    WriteTimeout,
    /// It did not finish within `graceful_timeout` of being told to.
    GracefulTimeout,
    /// The client broke the protocol (hyper answered with its error where the
    /// protocol has one: 400, 431, GOAWAY).
    ProtocolError,
    /// The transport failed (reset, or closed in the middle of a message).
    IoError,
}

/// What one connection did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnectionReport {
    /// The protocol, once detected.
    pub protocol: Option<Protocol>,
    /// How it ended.
    pub end: ConnectionEnd,
}

/// The HTTP/1 and HTTP/2 connection builders, made once per server.
#[derive(Debug)]
pub(crate) struct Protocols<E> {
    http1: http1::Builder,
    http2: http2::Builder<E>,
}

impl<E: Clone> Protocols<E> {
    pub(crate) fn new<T>(config: &ServerConfig, exec: E, timer: T) -> Self
    where
        T: Timer + Clone + Send + Sync + 'static,
    {
        let mut h1 = http1::Builder::new();
        // hyper's own header timer also runs while a keep-alive connection
        // waits, which would make it the idle timeout; the watchdog keeps the two apart.
        h1.timer(timer.clone()).header_read_timeout(None).keep_alive(true);
        h1.max_header_size(config.max_header_bytes).max_headers(config.max_headers);
        let mut h2 = http2::Builder::new(exec);
        h2.timer(timer)
            .max_concurrent_streams(config.http2_max_concurrent_streams)
            .max_header_list_size(u32::try_from(config.max_header_bytes).unwrap_or(u32::MAX));
        Protocols { http1: h1, http2: h2 }
    }
}

/// What the first bytes of a connection said.
enum Detected {
    /// HTTP/1 (or something hyper's HTTP/1 parser will reject): replay these.
    Http1(Vec<u8>),
    /// The HTTP/2 preface: replay these.
    Http2(Vec<u8>),
    /// An h2c upgrade: the bytes after its head, and its request as a frame.
    H2c { rest: Vec<u8>, request: Vec<u8> },
    /// Closed before sending anything.
    Eof,
}

/// Reads until the protocol is known, at most `max_head` bytes (beyond that
/// it is HTTP/1, which answers 431).
fn poll_detect<I: hyper::rt::Read + Unpin>(
    io: &mut I,
    cx: &mut Context<'_>,
    read: &mut Vec<u8>,
    max_head: usize,
) -> Poll<io::Result<Detected>> {
    const READ_STEP_BYTES: usize = 4096;
    loop {
        if !read.is_empty() {
            let n = read.len().min(H2_PREFACE.len());
            if read[..n] == H2_PREFACE[..n] {
                if n == H2_PREFACE.len() {
                    return Poll::Ready(Ok(Detected::Http2(std::mem::take(read))));
                }
            } else {
                let mut headers = [httparse::EMPTY_HEADER; 100];
                let mut req = httparse::Request::new(&mut headers);
                match req.parse(read) {
                    Ok(httparse::Status::Complete(head_len)) => {
                        return Poll::Ready(Ok(match upgrade_frame(&req) {
                            Some(request) => Detected::H2c { rest: read.split_off(head_len), request },
                            None => Detected::Http1(std::mem::take(read)),
                        }));
                    }
                    Ok(httparse::Status::Partial) if read.len() < max_head => {}
                    // Too large or malformed: hyper's HTTP/1 answers it.
                    Ok(httparse::Status::Partial) | Err(_) => {
                        return Poll::Ready(Ok(Detected::Http1(std::mem::take(read))));
                    }
                }
            }
        }
        let want = READ_STEP_BYTES.min(max_head.saturating_sub(read.len()).max(H2_PREFACE.len()));
        if ready!(poll_read_into_vec(io, cx, read, want))? == 0 {
            return Poll::Ready(Ok(if read.is_empty() {
                Detected::Eof
            } else {
                Detected::Http1(std::mem::take(read))
            }));
        }
    }
}

/// What the watchdog found.
enum Verdict {
    /// Close gracefully: the connection is idle.
    Idle,
    /// Drop the connection.
    Abort(ConnectionEnd),
}

/// Enforces the timeouts of one connection with one timer, armed for the
/// earliest deadline that applies; deadlines only move later as the
/// connection works, so a timer that fires early is simply re-armed. It reads
/// the round's clock, as [`Activity`] stamps its events (see there for the bound).
struct Watchdog<T> {
    timer: T,
    config: Rc<ServerConfig>,
    activity: Rc<Activity>,
    sleep: Option<(Pin<Box<dyn hyper::rt::Sleep>>, Instant)>,
    /// When a graceful shutdown began, if one did.
    graceful_since: Option<Instant>,
}

impl<T: Timer> Watchdog<T> {
    /// - `Ready(verdict)`: a deadline passed.
    /// - `Pending`: none has; the task is woken at the next one.
    fn poll(&mut self, cx: &mut Context<'_>) -> Poll<Verdict> {
        loop {
            let now = round_instant();
            let next = match self.check(now) {
                Ok(next) => next,
                Err(verdict) => return Poll::Ready(verdict),
            };
            match &mut self.sleep {
                // Armed no later than needed and not yet fired: it will do.
                Some((_, armed)) if *armed <= next && *armed > now => {}
                Some((sleep, armed)) => {
                    self.timer.reset(sleep, next);
                    *armed = next;
                }
                None => self.sleep = Some((self.timer.sleep_until(next), next)),
            }
            let (sleep, _) = self.sleep.as_mut().expect("armed above");
            if sleep.as_mut().poll(cx).is_pending() {
                return Poll::Pending;
            }
        }
    }

    /// The next deadline, or the verdict of one that passed.
    fn check(&self, now: Instant) -> Result<Instant, Verdict> {
        let (a, c) = (&self.activity, &self.config);
        let mut next = now + c.idle_timeout.max(c.header_read_timeout);
        let mut due = |deadline: Instant, end: Verdict| {
            if now >= deadline {
                return Err(end);
            }
            next = next.min(deadline);
            Ok(())
        };
        if let Some(since) = a.write_blocked_since() {
            due(since + c.write_timeout, Verdict::Abort(ConnectionEnd::WriteTimeout))?;
        }
        if let Some(since) = self.graceful_since {
            due(since + c.graceful_timeout, Verdict::Abort(ConnectionEnd::GracefulTimeout))?;
        } else if a.in_flight() > 0 {
            due(a.last_moved() + c.idle_timeout, Verdict::Abort(ConnectionEnd::IdleTimeout))?;
        } else if let Some(since) = a.head_started() {
            due(since + c.header_read_timeout, Verdict::Abort(ConnectionEnd::HeaderTimeout))?;
        } else if a.write_blocked_since().is_none() {
            due(a.last_progress() + c.idle_timeout, Verdict::Idle)?;
        }
        Ok(next)
    }
}

/// Everything a connection needs from its server.
pub(crate) struct ConnectionContext<E, T> {
    pub(crate) config: Rc<ServerConfig>,
    pub(crate) protocols: Rc<Protocols<E>>,
    pub(crate) timer: T,
    pub(crate) shutdown: ShutdownWatch,
}

/// Serves one connection until it ends.
pub(crate) async fn serve_connection<I, S, B, E, T>(io: I, service: S, ctx: ConnectionContext<E, T>) -> ConnectionReport
where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + 'static,
    S: Service<Request<Incoming>, Response = Response<B>> + 'static,
    S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    B: Body + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    E: hyper::rt::bounds::Http2ServerConnExec<TrackedFuture<S::Future>, TrackedBody<B>> + Clone + 'static,
    T: Timer + Clone + 'static,
{
    let ConnectionContext { config, protocols, timer, mut shutdown } = ctx;
    let activity = Activity::new(round_instant());
    let returned = ReturnedIo::default();
    let mut io = Tracked::new(io, activity.clone(), returned.clone());
    let timer_for_linger = timer.clone();
    let mut dog =
        Watchdog { timer, config: config.clone(), activity: activity.clone(), sleep: None, graceful_since: None };
    let service = TrackedService::new(service, activity.clone());
    let report = |protocol, end| ConnectionReport { protocol, end };

    let mut read = Vec::new();
    let detected = poll_fn(|cx| {
        if shutdown.poll_triggered(cx) {
            return Poll::Ready(Err(ConnectionEnd::Closed));
        }
        if let Poll::Ready(verdict) = dog.poll(cx) {
            return Poll::Ready(Err(match verdict {
                Verdict::Idle => ConnectionEnd::IdleTimeout,
                Verdict::Abort(end) => end,
            }));
        }
        poll_detect(&mut io, cx, &mut read, config.max_header_bytes).map_err(|_| ConnectionEnd::IoError)
    })
    .await;
    let detected = match detected {
        Ok(d) => d,
        Err(end) => return report(None, end),
    };
    match detected {
        Detected::Eof => report(None, ConnectionEnd::Closed),
        Detected::Http1(bytes) => {
            let conn = protocols.http1.serve_connection(Replay::new(bytes, io), service);
            let end = drive(conn, |c| c.graceful_shutdown(), &mut shutdown, &mut dog).await;
            if end == ConnectionEnd::ProtocolError {
                // hyper answered (400, 431) and let the IO go: close it so that
                // the answer reaches the client.
                let io = returned.borrow_mut().take();
                if let Some(io) = io {
                    linger(io, &timer_for_linger).await;
                }
            }
            report(Some(Protocol::Http1), end)
        }
        Detected::Http2(bytes) => {
            activity.stop_tracking_heads();
            let conn = protocols.http2.serve_connection(Replay::new(bytes, io), service);
            let end = drive(conn, |c| c.graceful_shutdown(), &mut shutdown, &mut dog).await;
            report(Some(Protocol::Http2), end)
        }
        Detected::H2c { rest, request } => {
            activity.stop_tracking_heads();
            if let Err(end) = write_all(&mut io, SWITCHING_PROTOCOLS, &mut dog).await {
                return report(Some(Protocol::H2c), end);
            }
            let conn = protocols.http2.serve_connection(H2cIo::new(Replay::new(rest, io), request), service);
            let end = drive(conn, |c| c.graceful_shutdown(), &mut shutdown, &mut dog).await;
            report(Some(Protocol::H2c), end)
        }
    }
}

/// Writes all of `bytes`, under the watchdog's write timeout.
async fn write_all<I: hyper::rt::Write + Unpin, T: Timer>(
    io: &mut I,
    mut bytes: &[u8],
    dog: &mut Watchdog<T>,
) -> Result<(), ConnectionEnd> {
    poll_fn(|cx| {
        while !bytes.is_empty() {
            match Pin::new(&mut *io).poll_write(cx, bytes) {
                Poll::Ready(Ok(0)) | Poll::Ready(Err(_)) => return Poll::Ready(Err(ConnectionEnd::IoError)),
                Poll::Ready(Ok(n)) => bytes = &bytes[n..],
                Poll::Pending => {
                    if let Poll::Ready(Verdict::Abort(end)) = dog.poll(cx) {
                        return Poll::Ready(Err(end));
                    }
                    return Poll::Pending;
                }
            }
        }
        Poll::Ready(Ok(()))
    })
    .await
}

/// Polls a hyper connection to its end, starting a graceful shutdown when the
/// server shuts down or the connection idles, and dropping it when a
/// deadline passes.
async fn drive<C, T>(
    conn: C,
    graceful: fn(Pin<&mut C>),
    shutdown: &mut ShutdownWatch,
    dog: &mut Watchdog<T>,
) -> ConnectionEnd
where
    C: Future<Output = hyper::Result<()>>,
    T: Timer,
{
    let mut conn = pin!(conn);
    let mut idled = false;
    poll_fn(|cx| {
        loop {
            if dog.graceful_since.is_none() && shutdown.poll_triggered(cx) {
                graceful(conn.as_mut());
                dog.graceful_since = Some(round_instant());
            }
            if let Poll::Ready(result) = conn.as_mut().poll(cx) {
                return Poll::Ready(match result {
                    Ok(()) if idled => ConnectionEnd::IdleTimeout,
                    Ok(()) => ConnectionEnd::Closed,
                    Err(e) => classify(&e),
                });
            }
            match ready!(dog.poll(cx)) {
                Verdict::Idle => {
                    idled = true;
                    graceful(conn.as_mut());
                    dog.graceful_since = Some(round_instant());
                }
                Verdict::Abort(end) => return Poll::Ready(end),
            }
        }
    })
    .await
}

/// Most a lingering close waits, and reads, before it drops the connection.
const LINGER_MAX: Duration = Duration::from_secs(1);
const LINGER_MAX_BYTES: usize = 1 << 20;

/// Closes a connection that hyper gave up on after answering with an error:
/// a FIN after the answer, then the client's remaining input read and thrown
/// away until it closes too (at most [`LINGER_MAX`] and [`LINGER_MAX_BYTES`]).
/// Dropping at once would answer the unread input with a RST, which can
/// overtake the answer and destroy it at the client (as nginx's
/// `lingering_close` avoids).
async fn linger<I, T>(mut io: I, timer: &T)
where
    I: hyper::rt::Read + hyper::rt::Write + Unpin,
    T: Timer,
{
    let mut deadline = timer.sleep(LINGER_MAX);
    let mut scratch = Vec::with_capacity(4096);
    let (mut drained, mut shut) = (0, false);
    poll_fn(|cx| {
        if deadline.as_mut().poll(cx).is_ready() {
            return Poll::Ready(());
        }
        if !shut {
            // Ready or failed: either way the FIN is queued or the connection is gone.
            ready!(Pin::new(&mut io).poll_shutdown(cx)).ok();
            shut = true;
        }
        while drained < LINGER_MAX_BYTES {
            scratch.clear();
            match ready!(poll_read_into_vec(&mut io, cx, &mut scratch, 4096)) {
                Ok(0) | Err(_) => return Poll::Ready(()),
                Ok(n) => drained += n,
            }
        }
        Poll::Ready(())
    })
    .await;
}

/// Whether hyper's error is an HTTP/2 error other than the transport's: a frame, header block, flow-control or
/// stream-limit violation (h2 answered it with GOAWAY or RST_STREAM), or the client's own GOAWAY with an error.
fn broke_http2(e: &hyper::Error) -> bool {
    std::error::Error::source(e).and_then(|cause| cause.downcast_ref::<h2::Error>()).is_some_and(|h2| !h2.is_io())
}

/// Sorts hyper's error into the client's fault or the transport's.
fn classify(e: &hyper::Error) -> ConnectionEnd {
    if e.is_parse() || e.is_parse_too_large() || e.is_parse_version_h2() || e.is_user() || broke_http2(e) {
        tracing::debug!(error = %e, "client broke the protocol");
        return ConnectionEnd::ProtocolError;
    }
    tracing::debug!(error = %e, "connection failed");
    ConnectionEnd::IoError
}
