//! Time on the current core's timer wheel (16 µs ticks): `sleep`,
//! `sleep_until`, `timeout`, `interval`, `SyncSleep` for adapters whose
//! timers must be `Send + Sync`, and the round's clock (`round_instant`).

use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use ix_net::Instant as StackInstant;
use ix_net::timer::TimerKey;

use crate::core::{Core, current, try_current, try_with_core};

/// A point in time on the current core's clock.
pub type Instant = StackInstant;

/// The current core's clock.
///
/// # Panics
/// Outside a task of an IX runtime.
pub fn now() -> Instant {
    current().now()
}

/// When the current round of this core's loop began: the clock reading that
/// the round's timers, stack and idle policy use, read once per round, so it
/// costs no clock read. It is behind the true time by at most the time the
/// round has run so far (the tasks polled before the caller in this round).
///
/// For time stamps of events, where one round of error is harmless (a
/// connection's last read, for a timeout of seconds). A deadline computed from
/// it comes early by as much; for a deadline that must not, read
/// `std::time::Instant::now()` (or use [`sleep`], which does).
///
/// Off an IX core it reads the clock.
pub fn round_instant() -> std::time::Instant {
    try_with_core(|core| core.round_instant()).unwrap_or_else(std::time::Instant::now)
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

/// A sleep made only of plain data, so it is `Send + Sync`: a deadline on the
/// monotonic clock and, once polled, the wheel entry it armed, named by its
/// core's process-wide id and the entry's key. It exists for adapters whose
/// timer futures must be `Send + Sync` (hyper's `rt::Sleep`) while the wheel
/// itself belongs to one core; code on the core should use [`Sleep`].
///
/// It arms on the wheel of the core that polls it. Polled on another IX core
/// than the one it armed on, it arms there afresh; the first entry then fires
/// on its own core, waking the task once for nothing. Reset or dropped on
/// another thread than its core's, it cannot reach that wheel and leaves the
/// entry to fire the same way (the wheel frees it then). Nothing is shared
/// between threads but the waker, which is `Send + Sync` by contract.
#[derive(Debug)]
pub struct SyncSleep {
    deadline: std::time::Instant,
    armed: Option<ArmedEntry>,
}

/// A wheel entry armed by a [`SyncSleep`].
#[derive(Debug)]
struct ArmedEntry {
    core_id: u64,
    key: TimerKey,
    waker: Waker,
}

impl SyncSleep {
    /// A sleep until `deadline`. It needs no core until it is polled.
    pub fn until(deadline: std::time::Instant) -> SyncSleep {
        SyncSleep { deadline, armed: None }
    }

    /// When it completes.
    pub fn deadline(&self) -> std::time::Instant {
        self.deadline
    }

    /// Moves the deadline (re-arming on the next poll).
    pub fn reset(&mut self, deadline: std::time::Instant) {
        self.disarm();
        self.deadline = deadline;
    }

    /// Cancels the armed entry when running on its core (see the type's docs
    /// for elsewhere).
    fn disarm(&mut self) {
        let Some(entry) = self.armed.take() else { return };
        if let Some(core) = try_current() {
            if core.id() == entry.core_id {
                core.cancel_sleep(entry.key);
            }
        }
    }
}

impl Future for SyncSleep {
    type Output = ();

    /// - `Ready(())`: the deadline has passed by the round's clock
    ///   ([`round_instant`]), which is never ahead of the true time, so the
    ///   sleep never ends early; a deadline that passed during the round is
    ///   seen by the next one.
    /// - `Pending`: an entry on this core's wheel will wake the task.
    ///
    /// # Panics
    /// On a thread that is not an IX core (there is no wheel to arm).
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if round_instant() >= self.deadline {
            self.disarm();
            return Poll::Ready(());
        }
        let core =
            try_current().expect("SyncSleep polled off an IX core: poll it from a task of an ix_runtime::Runtime");
        if let Some(entry) = &self.armed {
            let same_core = entry.core_id == core.id();
            if same_core && entry.waker.will_wake(cx.waker()) && core.sleep_pending(entry.key) {
                return Poll::Pending;
            }
        }
        self.disarm();
        let key = core.add_sleep(core.instant_from_std(self.deadline), cx.waker().clone());
        self.armed = Some(ArmedEntry { core_id: core.id(), key, waker: cx.waker().clone() });
        Poll::Pending
    }
}

impl Drop for SyncSleep {
    fn drop(&mut self) {
        self.disarm();
    }
}
