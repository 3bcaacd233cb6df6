//! A tower middleware that bounds a request's handling on the core's timer
//! wheel: the IX stand-in for `tower_http::timeout::TimeoutLayer`, whose
//! `tokio::time::sleep` panics outside a tokio runtime.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use hyper::{Request, Response, StatusCode};
use ix_runtime::time::SyncSleep;
use tower_layer::Layer;
use tower_service::Service;

/// Answers a status of one's choice (`408 Request Timeout`, usually) with an
/// empty body when the inner service has not produced a response within the
/// timeout, as tower-http's `TimeoutLayer` does, with the same constructor; the
/// inner future is dropped then. The timer is an
/// entry of the polling core's wheel, and the service and its future are
/// `Send + Sync` when the inner ones are, so it fits inside axum's `Router::layer`.
#[derive(Debug, Clone, Copy)]
pub struct TimeoutLayer {
    status: StatusCode,
    timeout: Duration,
}

impl TimeoutLayer {
    /// Requests get `timeout` to be answered, or `status`.
    pub fn with_status_code(status: StatusCode, timeout: Duration) -> TimeoutLayer {
        TimeoutLayer { status, timeout }
    }
}

impl<S> Layer<S> for TimeoutLayer {
    type Service = Timeout<S>;

    fn layer(&self, inner: S) -> Timeout<S> {
        Timeout { inner, status: self.status, timeout: self.timeout }
    }
}

/// The service [`TimeoutLayer`] makes.
#[derive(Debug, Clone, Copy)]
pub struct Timeout<S> {
    inner: S,
    status: StatusCode,
    timeout: Duration,
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for Timeout<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
    ResBody: Default,
{
    type Response = Response<ResBody>;
    type Error = S::Error;
    type Future = TimeoutFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<ReqBody>) -> Self::Future {
        let now = Instant::now();
        let deadline = now.checked_add(self.timeout).unwrap_or(now);
        TimeoutFuture { inner: self.inner.call(request), sleep: SyncSleep::until(deadline), status: self.status }
    }
}

pin_project_lite::pin_project! {
    /// The response of a [`Timeout`] service: the inner one's, or 408 at the deadline.
    #[derive(Debug)]
    pub struct TimeoutFuture<F> {
        #[pin]
        inner: F,
        #[pin]
        sleep: SyncSleep,
        status: StatusCode,
    }
}

impl<F, ResBody, E> Future for TimeoutFuture<F>
where
    F: Future<Output = Result<Response<ResBody>, E>>,
    ResBody: Default,
{
    type Output = Result<Response<ResBody>, E>;

    /// - `Ready(result)`: the inner service answered first.
    /// - `Ready(Ok(status))`: the deadline passed first: the layer's status, empty body.
    /// - `Pending`: neither yet; the deadline is armed on this core's wheel.
    ///
    /// # Panics
    /// When polled off an IX core (there is no wheel to arm).
    ///
    /// # Cancel safety
    /// Dropping it drops the inner future and disarms the timer.
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        if let Poll::Ready(result) = this.inner.poll(cx) {
            return Poll::Ready(result);
        }
        match this.sleep.poll(cx) {
            Poll::Ready(()) => {
                let mut response = Response::new(ResBody::default());
                *response.status_mut() = *this.status;
                tracing::debug!(status = %this.status, "request timed out");
                Poll::Ready(Ok(response))
            }
            Poll::Pending => Poll::Pending,
        }
    }
}
