//! [`yield_now`]: give the core to the other ready tasks once, then continue.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

/// Returns a future that lets every task already queued on this core run
/// before the caller continues: it wakes its task and returns `Pending` once.
pub fn yield_now() -> YieldNow {
    YieldNow { yielded: false }
}

/// The future of [`yield_now`].
#[derive(Debug)]
#[must_use = "futures do nothing unless awaited"]
pub struct YieldNow {
    yielded: bool,
}

impl Future for YieldNow {
    type Output = ();

    /// # Poll outcomes
    /// - `Poll::Pending` on the first poll, after waking the task (it goes to
    ///   the back of the ready queue).
    /// - `Poll::Ready(())` on every later poll.
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.yielded {
            return Poll::Ready(());
        }
        self.yielded = true;
        cx.waker().wake_by_ref();
        Poll::Pending
    }
}
