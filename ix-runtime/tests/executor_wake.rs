//! Wakers: one queue entry per batch of wakes, harmless late wakes, and wakes
//! from other threads through the inbound queue and the eventfd.

mod executor_support;

use std::cell::{Cell, RefCell};
use std::future::poll_fn;
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Poll, Waker};
use std::time::Duration;

use futures::FutureExt;
use ix_runtime::executor::{Executor, Handle};

use executor_support::{HANG_GUARD, run_until_idle, single_core, wait_readable};

/// A task that never finishes, counting its polls and publishing its waker.
fn counting_task(executor: &Executor) -> (Rc<Cell<u32>>, Rc<RefCell<Option<Waker>>>) {
    let polls = Rc::new(Cell::new(0));
    let waker = Rc::new(RefCell::new(None));
    let (count, slot) = (Rc::clone(&polls), Rc::clone(&waker));
    let _detached = executor.spawn_local(poll_fn(move |cx| {
        count.set(count.get() + 1);
        *slot.borrow_mut() = Some(cx.waker().clone());
        Poll::<()>::Pending
    }));
    (polls, waker)
}

#[test]
fn a_task_woken_many_times_before_it_runs_is_polled_once() {
    let (_handle, executor) = single_core();
    let (polls, waker) = counting_task(&executor);
    run_until_idle(&executor);
    assert_eq!(polls.get(), 1);

    let waker = waker.borrow().clone().expect("waker published");
    for _ in 0..100 {
        waker.wake_by_ref();
    }
    assert_eq!(run_until_idle(&executor), 1);
    assert_eq!(polls.get(), 2);

    let clone = waker.clone();
    waker.wake_by_ref();
    clone.wake();
    assert_eq!(run_until_idle(&executor), 1);
    assert_eq!(polls.get(), 3);
}

#[test]
fn a_wake_during_the_tasks_own_poll_queues_it_again() {
    let (_handle, executor) = single_core();
    let polls = Rc::new(Cell::new(0));
    let count = Rc::clone(&polls);
    let task = executor.spawn_local(poll_fn(move |cx| {
        count.set(count.get() + 1);
        if count.get() < 3 {
            cx.waker().wake_by_ref();
            cx.waker().wake_by_ref();
            Poll::Pending
        } else {
            Poll::Ready(())
        }
    }));

    assert_eq!(run_until_idle(&executor), 3);
    assert_eq!(task.now_or_never(), Some(Ok(())));
}

#[test]
fn a_waker_of_a_finished_task_does_nothing_even_after_its_slot_is_reused() {
    let (_handle, executor) = single_core();
    let stale = Rc::new(RefCell::new(None));
    let slot = Rc::clone(&stale);
    let first = executor.spawn_local(poll_fn(move |cx| {
        *slot.borrow_mut() = Some(cx.waker().clone());
        Poll::Ready(())
    }));
    run_until_idle(&executor);
    assert!(first.is_finished());
    let stale = stale.borrow_mut().take().expect("waker kept");

    stale.wake_by_ref();
    assert!(!executor.has_ready());

    let (polls, _waker) = counting_task(&executor);
    run_until_idle(&executor);
    stale.wake_by_ref();
    let from_elsewhere = stale.clone();
    std::thread::spawn(move || from_elsewhere.wake()).join().expect("thread joins");
    drop(stale);

    assert!(!executor.has_ready());
    assert_eq!(executor.drain_remote(), 0);
    assert_eq!(run_until_idle(&executor), 0);
    assert_eq!(polls.get(), 1);
}

#[test]
fn a_waker_sent_to_another_thread_wakes_the_task_through_the_eventfd_and_drain_remote() {
    let (_handle, executor) = single_core();
    let released = Arc::new(AtomicBool::new(false));
    let waker_out: Rc<RefCell<Option<Waker>>> = Rc::new(RefCell::new(None));
    let (flag, slot) = (Arc::clone(&released), Rc::clone(&waker_out));
    let task = executor.spawn_local(poll_fn(move |cx| {
        if flag.load(Ordering::Acquire) {
            return Poll::Ready("released");
        }
        *slot.borrow_mut() = Some(cx.waker().clone());
        Poll::Pending
    }));
    run_until_idle(&executor);
    assert!(!wait_readable(executor.wake_fd(), Duration::ZERO), "eventfd readable before any remote wake");

    let waker = waker_out.borrow_mut().take().expect("waker published");
    let flag = Arc::clone(&released);
    std::thread::spawn(move || {
        flag.store(true, Ordering::Release);
        for _ in 0..10 {
            waker.wake_by_ref();
        }
    })
    .join()
    .expect("thread joins");

    assert!(!executor.has_ready(), "a foreign wake must not touch the local queue");
    assert!(wait_readable(executor.wake_fd(), HANG_GUARD));
    assert_eq!(executor.drain_remote(), 1);
    assert!(!wait_readable(executor.wake_fd(), Duration::ZERO), "drain_remote lowers the eventfd");
    run_until_idle(&executor);
    assert_eq!(task.now_or_never(), Some(Ok("released")));
    assert_eq!(executor.stats().remote_wakes, 1);
}

#[test]
fn wakers_are_send_and_sync() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<Waker>();
    assert_send_sync::<Handle>();
}
