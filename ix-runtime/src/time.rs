//! Time on the current core's timer wheel (16 µs ticks): `sleep`,
//! `sleep_until`, `timeout` and `interval`.

use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll};
use std::time::Duration;

use ix_net::Instant as StackInstant;
use ix_net::timer::TimerKey;

use crate::core::{Core, current};

/// A point in time on the current core's clock.
pub type Instant = StackInstant;

/// The current core's clock.
///
/// # Panics
/// Outside a task of an IX runtime.
pub fn now() -> Instant {
    current().now()
}

/// Completes at or after `deadline` (rounded up to the wheel's 16 µs tick).
/// Dropping it cancels the timer.
pub struct Sleep {
    core: Rc<Core>,
    deadline: Instant,
    key: Option<TimerKey>,
}

/// Waits for `duration`.
///
/// # Panics
/// Outside a task of an IX runtime.
pub fn sleep(duration: Duration) -> Sleep {
    let core = current();
    let deadline = core.now() + duration;
    Sleep { core, deadline, key: None }
}

/// Waits until `deadline`.
///
/// # Panics
/// Outside a task of an IX runtime.
pub fn sleep_until(deadline: Instant) -> Sleep {
    Sleep { core: current(), deadline, key: None }
}

impl Sleep {
    /// When it completes.
    pub fn deadline(&self) -> Instant {
        self.deadline
    }

    /// Moves the deadline (re-arming the timer on the next poll).
    pub fn reset(&mut self, deadline: Instant) {
        if let Some(key) = self.key.take() {
            self.core.cancel_sleep(key);
        }
        self.deadline = deadline;
    }
}

impl Future for Sleep {
    type Output = ();

    /// - `Ready(())`: the deadline has passed.
    /// - `Pending`: the timer is armed; the task is woken when it fires.
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.core.now() >= self.deadline {
            if let Some(key) = self.key.take() {
                self.core.cancel_sleep(key);
            }
            return Poll::Ready(());
        }
        if let Some(key) = self.key {
            if self.core.sleep_pending(key) {
                // Still armed, but the waker may have changed: re-arm cheaply.
                self.core.cancel_sleep(key);
            }
        }
        let key = self.core.add_sleep(self.deadline, cx.waker().clone());
        self.key = Some(key);
        Poll::Pending
    }
}

impl Drop for Sleep {
    fn drop(&mut self) {
        if let Some(key) = self.key.take() {
            self.core.cancel_sleep(key);
        }
    }
}

impl std::fmt::Debug for Sleep {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sleep").field("deadline", &self.deadline).finish()
    }
}

/// The future did not complete in time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("deadline elapsed")]
pub struct Elapsed;

pin_project_lite::pin_project! {
    /// A future bounded by a deadline; see [`timeout`].
    #[derive(Debug)]
    pub struct Timeout<F> {
        #[pin]
        future: F,
        #[pin]
        sleep: Sleep,
    }
}

/// Runs `future` for at most `duration`.
///
/// # Panics
/// Outside a task of an IX runtime.
pub fn timeout<F: Future>(duration: Duration, future: F) -> Timeout<F> {
    Timeout { future, sleep: sleep(duration) }
}

impl<F: Future> Future for Timeout<F> {
    type Output = Result<F::Output, Elapsed>;

    /// - `Ready(Ok(v))`: the future completed first.
    /// - `Ready(Err(Elapsed))`: the deadline passed first.
    /// - `Pending`: neither yet.
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        if let Poll::Ready(v) = this.future.poll(cx) {
            return Poll::Ready(Ok(v));
        }
        match this.sleep.poll(cx) {
            Poll::Ready(()) => Poll::Ready(Err(Elapsed)),
            Poll::Pending => Poll::Pending,
        }
    }
}

/// Ticks every `period`, starting one period from now; a late tick is not
/// made up for (the next one is one period after it).
#[derive(Debug)]
pub struct Interval {
    period: Duration,
    sleep: Sleep,
}

/// A ticker with the given period.
///
/// # Panics
/// If `period` is zero, or outside a task of an IX runtime.
pub fn interval(period: Duration) -> Interval {
    assert!(!period.is_zero(), "an interval needs a non-zero period");
    Interval { period, sleep: sleep(period) }
}

impl Interval {
    /// Waits for the next tick and returns its scheduled time.
    pub async fn tick(&mut self) -> Instant {
        std::future::poll_fn(|cx| self.poll_tick(cx)).await
    }

    /// - `Ready(at)`: a tick, scheduled for `at`.
    /// - `Pending`: the next tick is armed.
    pub fn poll_tick(&mut self, cx: &mut Context<'_>) -> Poll<Instant> {
        let at = self.sleep.deadline();
        match Pin::new(&mut self.sleep).poll(cx) {
            Poll::Ready(()) => {
                let now = self.sleep.core.now();
                let due = at + self.period;
                let next = if due > now { due } else { now + self.period };
                self.sleep.reset(next);
                Poll::Ready(at)
            }
            Poll::Pending => Poll::Pending,
        }
    }
}
