//! What a connection is doing, for its watchdog: requests in flight, when the
//! current request head began, when bytes last moved out, whether a write is
//! stuck. Fed by an IO wrapper ([`Tracked`]) and a service wrapper ([`TrackedService`]).
//!
//! Times are the core's round clock (`ix_runtime::time::round_instant`), which
//! costs no clock read: an event is stamped with the start of the round it
//! happened in, so a timeout counted from it may end up to that round's
//! length (microseconds, at most milliseconds) short of its full length.

use std::cell::{Cell, RefCell};
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll, ready};
use std::time::Instant;

use ix_runtime::time::round_instant;

use hyper::body::{Body, Frame, SizeHint};
use hyper::rt::ReadBufCursor;
use hyper::{Request, Response};

/// One connection's activity. Shared (by `Rc`) between its IO, its service
/// and its watchdog, all on one thread.
#[derive(Debug)]
pub(crate) struct Activity {
    in_flight: Cell<usize>,
    /// Whether bytes arriving while no request is in flight start a head
    /// (HTTP/1; in HTTP/2 they may be pings or settings).
    track_heads: Cell<bool>,
    /// When the request head being received began, if one is.
    head_started: Cell<Option<Instant>>,
    /// When a request last began or finished, or a write last made progress.
    last_progress: Cell<Instant>,
    /// When a read last completed.
    last_read: Cell<Instant>,
    /// Since when writes have found no room, if they do.
    write_blocked_since: Cell<Option<Instant>>,
}

impl Activity {
    /// A connection accepted at `now`: its first request head is due from now on.
    pub(crate) fn new(now: Instant) -> Rc<Activity> {
        Rc::new(Activity {
            in_flight: Cell::new(0),
            track_heads: Cell::new(true),
            head_started: Cell::new(Some(now)),
            last_progress: Cell::new(now),
            last_read: Cell::new(now),
            write_blocked_since: Cell::new(None),
        })
    }

    pub(crate) fn in_flight(&self) -> usize {
        self.in_flight.get()
    }

    pub(crate) fn head_started(&self) -> Option<Instant> {
        self.head_started.get()
    }

    pub(crate) fn last_progress(&self) -> Instant {
        self.last_progress.get()
    }

    /// When bytes last moved either way, or a request began or finished.
    pub(crate) fn last_moved(&self) -> Instant {
        self.last_progress.get().max(self.last_read.get())
    }

    pub(crate) fn write_blocked_since(&self) -> Option<Instant> {
        self.write_blocked_since.get()
    }

    /// HTTP/2 from here on: the protocol's own frames are not request heads.
    pub(crate) fn stop_tracking_heads(&self) {
        self.track_heads.set(false);
        self.head_started.set(None);
    }

    /// A read completed: data, or the end of the stream (which ends the
    /// connection anyway, so it needs no telling apart).
    fn on_read(&self) {
        let now = round_instant();
        self.last_read.set(now);
        if self.track_heads.get() && self.in_flight.get() == 0 && self.head_started.get().is_none() {
            self.head_started.set(Some(now));
        }
    }

    fn on_write(&self, result: &Poll<io::Result<usize>>) {
        match result {
            Poll::Ready(Ok(n)) if *n > 0 => {
                self.last_progress.set(round_instant());
                self.write_blocked_since.set(None);
            }
            Poll::Pending if self.write_blocked_since.get().is_none() => {
                self.write_blocked_since.set(Some(round_instant()));
            }
            _ => {}
        }
    }

    fn request_started(self: &Rc<Self>) -> InFlight {
        self.in_flight.set(self.in_flight.get() + 1);
        self.head_started.set(None);
        self.last_progress.set(round_instant());
        InFlight { activity: self.clone() }
    }
}

/// One request in flight, from the service call until its response body is
/// dropped (finished, failed or abandoned).
#[derive(Debug)]
pub(crate) struct InFlight {
    activity: Rc<Activity>,
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.activity.in_flight.set(self.activity.in_flight.get() - 1);
        self.activity.last_progress.set(round_instant());
    }
}

/// Where a [`Tracked`] IO goes when hyper drops it, so that the connection
/// can still close it with care (see `conn::linger`).
pub(crate) type ReturnedIo<I> = Rc<RefCell<Option<I>>>;

/// An IO that reports reads and writes to an [`Activity`], and hands itself
/// back through a [`ReturnedIo`] when dropped.
#[derive(Debug)]
pub(crate) struct Tracked<I> {
    /// Always `Some` until dropped.
    io: Option<I>,
    activity: Rc<Activity>,
    returned: ReturnedIo<I>,
}

impl<I> Tracked<I> {
    pub(crate) fn new(io: I, activity: Rc<Activity>, returned: ReturnedIo<I>) -> Self {
        Tracked { io: Some(io), activity, returned }
    }

    fn io(&mut self) -> &mut I {
        self.io.as_mut().expect("present until dropped")
    }
}

impl<I> Drop for Tracked<I> {
    fn drop(&mut self) {
        *self.returned.borrow_mut() = self.io.take();
    }
}

impl<I: hyper::rt::Read + Unpin> hyper::rt::Read for Tracked<I> {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: ReadBufCursor<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let result = ready!(Pin::new(this.io()).poll_read(cx, buf));
        if result.is_ok() {
            this.activity.on_read();
        }
        Poll::Ready(result)
    }
}

impl<I: hyper::rt::Write + Unpin> hyper::rt::Write for Tracked<I> {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let result = Pin::new(this.io()).poll_write(cx, buf);
        this.activity.on_write(&result);
        result
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let result = Pin::new(this.io()).poll_write_vectored(cx, bufs);
        this.activity.on_write(&result);
        result
    }

    fn is_write_vectored(&self) -> bool {
        self.io.as_ref().is_some_and(|io| io.is_write_vectored())
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(self.get_mut().io()).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(self.get_mut().io()).poll_shutdown(cx)
    }
}

/// A service whose requests are counted in flight until their response body
/// is dropped.
#[derive(Debug)]
pub(crate) struct TrackedService<S> {
    service: S,
    activity: Rc<Activity>,
}

impl<S> TrackedService<S> {
    pub(crate) fn new(service: S, activity: Rc<Activity>) -> Self {
        TrackedService { service, activity }
    }
}

impl<S, ReqBody, ResBody> hyper::service::Service<Request<ReqBody>> for TrackedService<S>
where
    S: hyper::service::Service<Request<ReqBody>, Response = Response<ResBody>>,
{
    type Response = Response<TrackedBody<ResBody>>;
    type Error = S::Error;
    type Future = TrackedFuture<S::Future>;

    fn call(&self, req: Request<ReqBody>) -> Self::Future {
        let in_flight = self.activity.request_started();
        TrackedFuture { future: self.service.call(req), in_flight: Some(in_flight) }
    }
}

pin_project_lite::pin_project! {
    /// The response future of a [`TrackedService`].
    #[derive(Debug)]
    pub struct TrackedFuture<F> {
        #[pin]
        future: F,
        in_flight: Option<InFlight>,
    }
}

impl<F, B, E> Future for TrackedFuture<F>
where
    F: Future<Output = Result<Response<B>, E>>,
{
    type Output = Result<Response<TrackedBody<B>>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let response = ready!(this.future.poll(cx))?;
        let in_flight = this.in_flight.take();
        Poll::Ready(Ok(response.map(|body| TrackedBody { body, _in_flight: in_flight })))
    }
}

pin_project_lite::pin_project! {
    /// A response body that ends its request's time in flight when dropped.
    #[derive(Debug)]
    pub struct TrackedBody<B> {
        #[pin]
        body: B,
        _in_flight: Option<InFlight>,
    }
}

impl<B: Body> Body for TrackedBody<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<B::Data>, B::Error>>> {
        self.project().body.poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}
