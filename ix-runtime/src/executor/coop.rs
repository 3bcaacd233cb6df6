//! Cooperative scheduling budget: how much work one task poll may do before it
//! must hand the core back, so a task on an always-ready source cannot starve others.

use std::cell::Cell;
use std::task::{Context, Poll};

/// Units of budget each task poll starts with unless the executor was told otherwise.
pub const BUDGET_DEFAULT_UNITS: u32 = 128;

/// What is left of the current task poll's budget on this thread.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Budget {
    /// No executor poll is in progress (or the caller is not an IX core): never yield.
    Unconstrained,
    /// Units left in the current task poll.
    Remaining(u32),
    /// The current task poll ran out of units and was told to yield.
    Exhausted,
}

thread_local! {
    static BUDGET: Cell<Budget> = const { Cell::new(Budget::Unconstrained) };
}

/// Consumes one unit of the current task poll's budget. I/O futures call it
/// before doing work that could otherwise succeed forever.
///
/// Outside a task poll of an IX executor the budget is unconstrained and this
/// always returns `Ready`.
///
/// # Poll outcomes
/// - `Poll::Ready(())`: a unit was consumed (or there is no budget); go ahead.
/// - `Poll::Pending`: the budget of this task poll is used up. The task has
///   already been woken, so it runs again after the tasks queued before it;
///   the caller returns `Pending` without doing the work.
pub fn poll_proceed(cx: &mut Context<'_>) -> Poll<()> {
    BUDGET.with(|budget| match budget.get() {
        Budget::Unconstrained => Poll::Ready(()),
        Budget::Remaining(units) if units > 0 => {
            budget.set(Budget::Remaining(units - 1));
            Poll::Ready(())
        }
        Budget::Remaining(_) | Budget::Exhausted => {
            budget.set(Budget::Exhausted);
            cx.waker().wake_by_ref();
            Poll::Pending
        }
    })
}

/// Runs `poll` with a fresh budget of `units`, then makes the thread
/// unconstrained again. Returns what `poll` returned and whether it ran out.
pub(crate) fn with_budget<R>(units: u32, poll: impl FnOnce() -> R) -> (R, bool) {
    BUDGET.with(|budget| budget.set(Budget::Remaining(units)));
    let result = poll();
    let exhausted = BUDGET.with(|budget| budget.replace(Budget::Unconstrained)) == Budget::Exhausted;
    (result, exhausted)
}
