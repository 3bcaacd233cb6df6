//! Spawning and joining local tasks: many tasks, FIFO order, the thread-local
//! `spawn_local`, and the one-executor-per-thread rules.

mod executor_support;

use std::cell::RefCell;
use std::rc::Rc;

use futures::FutureExt;
use ix_runtime::executor::{Executor, Handle, spawn_local, yield_now};

use executor_support::{run_until_idle, single_core};

#[test]
fn ten_thousand_tasks_spawned_from_outside_all_join_with_their_output() {
    let (_handle, executor) = single_core();
    let handles: Vec<_> = (0..10_000u64).map(|i| executor.spawn_local(async move { i * 2 })).collect();
    assert_eq!(executor.task_count(), 10_000);

    assert_eq!(run_until_idle(&executor), 10_000);

    let total: u64 = handles.into_iter().map(|h| h.now_or_never().expect("finished").expect("no error")).sum();
    assert_eq!(total, 2 * (0..10_000u64).sum::<u64>());
    assert_eq!(executor.task_count(), 0);
    let stats = executor.stats();
    assert_eq!((stats.spawned, stats.completed, stats.polls, stats.panics), (10_000, 10_000, 10_000, 0));
}

#[test]
fn ten_thousand_tasks_spawned_and_awaited_from_inside_a_task() {
    let (_handle, executor) = single_core();
    let root = executor.spawn_local(async {
        let children: Vec<_> = (0..10_000u64).map(|i| spawn_local(async move { i })).collect();
        let mut total = 0;
        for child in children {
            total += child.await.expect("child completes");
        }
        total
    });

    run_until_idle(&executor);

    assert_eq!(root.now_or_never().expect("root finished").expect("no error"), (0..10_000u64).sum::<u64>());
    assert_eq!(executor.task_count(), 0);
    assert_eq!(executor.stats().spawned, 10_001);
}

#[test]
fn ready_tasks_run_in_fifo_order_and_a_yield_goes_to_the_back() {
    let (_handle, executor) = single_core();
    let log = Rc::new(RefCell::new(Vec::new()));
    for id in 0..3 {
        let log = Rc::clone(&log);
        let _detached = executor.spawn_local(async move {
            for _ in 0..3 {
                log.borrow_mut().push(id);
                yield_now().await;
            }
        });
    }

    run_until_idle(&executor);

    assert_eq!(*log.borrow(), [0, 1, 2, 0, 1, 2, 0, 1, 2]);
}

#[test]
fn run_ready_polls_at_most_max_polls_and_reports_the_count() {
    let (_handle, executor) = single_core();
    let handles: Vec<_> = (0..5).map(|i| executor.spawn_local(async move { i })).collect();

    assert_eq!(executor.run_ready(2), 2);
    assert!(executor.has_ready());
    assert_eq!(handles.iter().filter(|h| h.is_finished()).count(), 2);
    assert_eq!(executor.run_ready(10), 3);
    assert!(!executor.has_ready());
    assert_eq!(executor.run_ready(10), 0);
}

#[test]
fn spawn_local_outside_an_ix_core_panics_with_a_clear_message() {
    let outcome = std::thread::spawn(|| std::panic::catch_unwind(|| drop(spawn_local(async {})))).join();
    let payload = outcome.expect("thread joins").expect_err("spawn_local must panic without an executor");
    let message = payload
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| payload.downcast_ref::<&str>().map(|m| (*m).to_owned()))
        .unwrap_or_default();
    assert!(message.contains("not an IX core"), "unexpected message: {message:?}");
}

#[test]
fn a_second_executor_on_the_same_thread_is_refused() {
    let handle = Handle::new(2).expect("eventfd");
    let _first = Executor::new(0, &handle);
    let second = std::panic::catch_unwind(|| Executor::new(1, &handle));
    assert!(second.is_err());
}

#[test]
fn a_core_owned_by_one_executor_cannot_get_a_second_one_until_the_first_is_dropped() {
    let handle = Handle::new(1).expect("eventfd");
    let first = Executor::new(0, &handle);
    let elsewhere = handle.clone();
    let refused = std::thread::spawn(move || std::panic::catch_unwind(|| drop(Executor::new(0, &elsewhere))).is_err());
    assert!(refused.join().expect("thread joins"));

    drop(first);
    let elsewhere = handle.clone();
    let accepted = std::thread::spawn(move || std::panic::catch_unwind(|| drop(Executor::new(0, &elsewhere))).is_ok());
    assert!(accepted.join().expect("thread joins"));
}

#[test]
fn a_core_index_outside_the_handle_panics() {
    let handle = Handle::new(1).expect("eventfd");
    assert!(std::panic::catch_unwind(|| Executor::new(1, &handle)).is_err());
}
