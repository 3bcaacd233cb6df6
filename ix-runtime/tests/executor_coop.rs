//! Cooperative budget and `yield_now`: a task on an always-ready source hands
//! the core back after its budget so other tasks run.

mod executor_support;

use std::cell::Cell;
use std::future::{Future, poll_fn};
use std::pin::pin;
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll, Wake, Waker};

use ix_runtime::executor::coop::{BUDGET_DEFAULT_UNITS, poll_proceed};
use ix_runtime::executor::{Executor, Handle, yield_now};

use executor_support::run_until_idle;

/// Stops the greedy task if the budget never stops it, so a broken budget fails the test instead of hanging it.
const GREEDY_LIMIT_ITERATIONS: u32 = 1_000_000;

/// An I/O-like future that is always ready but pays one unit of budget.
async fn always_ready_io() {
    poll_fn(poll_proceed).await;
}

/// Spawns a greedy task (counting iterations on an always-ready source until
/// told to stop) and a second task that records how far the greedy one got
/// when it finally ran and then stops it. Returns (iterations seen, greedy done).
fn greedy_then_polite(executor: &Executor) -> (u32, u32) {
    let iterations = Rc::new(Cell::new(0u32));
    let stop = Rc::new(Cell::new(false));
    let seen = Rc::new(Cell::new(0u32));
    let (count, stopped) = (Rc::clone(&iterations), Rc::clone(&stop));
    let _greedy = executor.spawn_local(async move {
        while !stopped.get() && count.get() < GREEDY_LIMIT_ITERATIONS {
            always_ready_io().await;
            count.set(count.get() + 1);
        }
    });
    let (count, stopped, seen_out) = (Rc::clone(&iterations), Rc::clone(&stop), Rc::clone(&seen));
    let _polite = executor.spawn_local(async move {
        seen_out.set(count.get());
        stopped.set(true);
    });
    run_until_idle(executor);
    (seen.get(), iterations.get())
}

#[test]
fn a_task_looping_on_an_always_ready_source_yields_after_its_budget() {
    let handle = Handle::new(1).expect("eventfd");
    let executor = Executor::new(0, &handle);

    let (seen_by_other, total) = greedy_then_polite(&executor);

    assert_eq!(seen_by_other, BUDGET_DEFAULT_UNITS);
    // The iteration cut short by the budget completes on the next poll, then the loop sees the stop flag.
    assert_eq!(total, BUDGET_DEFAULT_UNITS + 1);
    assert_eq!(executor.stats().budget_yields, 1);
}

#[test]
fn the_budget_is_configurable_and_resets_before_each_poll() {
    let handle = Handle::new(1).expect("eventfd");
    let executor = Executor::new(0, &handle);
    executor.set_budget(5);

    let iterations = Rc::new(Cell::new(0u32));
    let count = Rc::clone(&iterations);
    let _task = executor.spawn_local(async move {
        for _ in 0..12 {
            always_ready_io().await;
            count.set(count.get() + 1);
        }
    });

    let mut per_poll = Vec::new();
    while executor.has_ready() {
        let before = iterations.get();
        executor.run_ready(1);
        per_poll.push(iterations.get() - before);
    }
    assert_eq!(per_poll, [5, 5, 2]);
    assert_eq!(executor.stats().budget_yields, 2);
}

#[test]
fn a_zero_budget_is_refused() {
    let handle = Handle::new(1).expect("eventfd");
    let executor = Executor::new(0, &handle);
    assert!(std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| executor.set_budget(0))).is_err());
}

#[test]
fn outside_an_executor_poll_the_budget_never_runs_out() {
    let mut cx = Context::from_waker(Waker::noop());
    for _ in 0..10 * BUDGET_DEFAULT_UNITS {
        assert_eq!(poll_proceed(&mut cx), Poll::Ready(()));
    }
}

/// A waker that records that it was woken.
struct WokenFlag(AtomicBool);

impl Wake for WokenFlag {
    fn wake(self: Arc<Self>) {
        self.0.store(true, Ordering::SeqCst);
    }
}

#[test]
fn yield_now_is_pending_once_then_ready_and_wakes_its_task() {
    let flag = Arc::new(WokenFlag(AtomicBool::new(false)));
    let waker = Waker::from(Arc::clone(&flag));
    let mut cx = Context::from_waker(&waker);
    let mut future = pin!(yield_now());

    assert_eq!(future.as_mut().poll(&mut cx), Poll::Pending);
    assert!(flag.0.load(Ordering::SeqCst));
    assert_eq!(future.as_mut().poll(&mut cx), Poll::Ready(()));
}
