//! hyper's `rt::Timer` on the current core's timer wheel. hyper requires its
//! sleeps to be `Send + Sync`; [`IxSleep`] holds only plain data (see
//! `ix_runtime::time::SyncSleep`), so it is, without any `unsafe impl`.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use ix_runtime::time::SyncSleep;

/// Furthest a sleep is armed: a duration past this is treated as "never" in practice.
const SLEEP_MAX: Duration = Duration::from_secs(30 * 365 * 24 * 3600);

/// hyper's timer on IX: sleeps are entries of the polling core's timer wheel
/// (16 µs ticks), woken by the core's loop with no thread or syscall per timer.
#[derive(Debug, Clone, Copy, Default)]
pub struct IxTimer;

/// A sleep on the wheel of the core that polls it.
///
/// hyper polls its sleeps from the connection's task, which lives on one core,
/// so the entry stays on that core. Polled on another IX core it re-arms
/// there; polled on a thread that is not an IX core it panics, since there is
/// no wheel to arm (see `ix_runtime::time::SyncSleep`).
#[derive(Debug)]
pub struct IxSleep {
    inner: SyncSleep,
}

impl IxSleep {
    fn until(deadline: Instant) -> IxSleep {
        IxSleep { inner: SyncSleep::until(deadline) }
    }
}

impl Future for IxSleep {
    type Output = ();

    /// - `Ready(())`: the deadline has passed.
    /// - `Pending`: armed on this core's wheel.
    ///
    /// # Panics
    /// Off an IX core.
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        Pin::new(&mut self.inner).poll(cx)
    }
}

impl hyper::rt::Sleep for IxSleep {}

impl hyper::rt::Timer for IxTimer {
    fn sleep(&self, duration: Duration) -> Pin<Box<dyn hyper::rt::Sleep>> {
        let now = Instant::now();
        let deadline = now.checked_add(duration).unwrap_or(now + SLEEP_MAX);
        Box::pin(IxSleep::until(deadline))
    }

    fn sleep_until(&self, deadline: Instant) -> Pin<Box<dyn hyper::rt::Sleep>> {
        Box::pin(IxSleep::until(deadline))
    }

    /// Moves the deadline of one of our sleeps in place (no allocation).
    fn reset(&self, sleep: &mut Pin<Box<dyn hyper::rt::Sleep>>, new_deadline: Instant) {
        match sleep.as_mut().downcast_mut_pin::<IxSleep>() {
            Some(ours) => ours.get_mut().inner.reset(new_deadline),
            None => *sleep = self.sleep_until(new_deadline),
        }
    }
}
