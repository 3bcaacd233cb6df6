//! Cross-core work: `Handle::spawn_on` between core threads each running a loop,
//! the bound and errors of inbound queues, and remote results and panics.

mod executor_support;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread;

use futures::FutureExt;
use ix_runtime::executor::{Executor, Handle, JoinError, SpawnError, spawn_local, yield_now};

use executor_support::{HANG_GUARD, run_core_until, run_until_idle, wait_readable};

#[test]
fn two_core_threads_spawn_on_each_other_and_get_the_results_back() {
    const ROUNDS: u64 = 200;
    let handle = Handle::new(2).expect("eventfd");
    let roots_done = Arc::new(AtomicUsize::new(0));
    let children_run = Arc::new(AtomicUsize::new(0));

    let cores: Vec<_> = (0..2)
        .map(|core| {
            let (handle, roots_done, children_run) =
                (handle.clone(), Arc::clone(&roots_done), Arc::clone(&children_run));
            thread::spawn(move || {
                let executor = Executor::new(core, &handle);
                let other = 1 - core;
                let (remote, root_done) = (handle.clone(), Arc::clone(&roots_done));
                let root = executor.spawn_local(async move {
                    let mut total = 0;
                    for round in 0..ROUNDS {
                        let children = Arc::clone(&children_run);
                        let result = remote.spawn_on(other, async move {
                            // Runs on the other core, whose thread-local executor takes local spawns.
                            drop(spawn_local(async move { children.fetch_add(1, Ordering::SeqCst) }));
                            yield_now().await;
                            round * 10
                        });
                        total += result.expect("inbound queue has room").await.expect("remote task completes");
                    }
                    root_done.fetch_add(1, Ordering::SeqCst);
                    total
                });
                run_core_until(&executor, || roots_done.load(Ordering::SeqCst) == 2);
                let total = root.now_or_never().expect("root finished").expect("root completes");
                (total, executor.stats())
            })
        })
        .collect();

    for core in cores {
        let (total, stats) = core.join().expect("core thread did not panic");
        assert_eq!(total, 10 * (0..ROUNDS).sum::<u64>());
        assert_eq!(stats.remote_spawned, ROUNDS);
        assert_eq!(stats.panics, 0);
    }
    assert_eq!(children_run.load(Ordering::SeqCst), 2 * ROUNDS as usize);
}

#[test]
fn a_thread_that_is_not_a_core_awaits_a_remote_handle_with_any_executor() {
    let handle = Handle::new(1).expect("eventfd");
    let stop = Arc::new(AtomicUsize::new(0));
    let core = {
        let (handle, stop) = (handle.clone(), Arc::clone(&stop));
        thread::spawn(move || {
            let executor = Executor::new(0, &handle);
            run_core_until(&executor, || stop.load(Ordering::SeqCst) == 1);
        })
    };

    let answer = handle.spawn_on(0, async { 6 * 7 }).expect("queued");
    let answer = futures::executor::block_on(answer);
    stop.store(1, Ordering::SeqCst);
    core.join().expect("core thread did not panic");

    assert_eq!(answer, Ok(42));
}

#[test]
fn spawn_on_raises_the_eventfd_and_the_task_starts_after_drain_remote() {
    let handle = Handle::new(1).expect("eventfd");
    let executor = Executor::new(0, &handle);
    let sender = handle.clone();
    let task = thread::spawn(move || sender.spawn_on(0, async { "ran" }).expect("queued")).join().expect("joins");

    assert!(!executor.has_ready());
    assert!(wait_readable(executor.wake_fd(), HANG_GUARD));
    assert_eq!(executor.drain_remote(), 1);
    run_until_idle(&executor);

    assert_eq!(task.now_or_never(), Some(Ok("ran")));
    let stats = executor.stats();
    assert_eq!((stats.spawned, stats.remote_spawned), (1, 1));
}

#[test]
fn a_full_inbound_queue_refuses_spawns_until_the_core_drains_it() {
    let handle = Handle::with_inbound_capacity(1, 2).expect("eventfd");
    let executor = Executor::new(0, &handle);
    let first = handle.spawn_on(0, async { 1 }).expect("room for one");
    let second = handle.spawn_on(0, async { 2 }).expect("room for two");

    let refused = handle.spawn_on(0, async { 3 });
    assert_eq!(refused.err(), Some(SpawnError::Full { core: 0, capacity: 2 }));

    executor.drain_remote();
    let third = handle.spawn_on(0, async { 3 }).expect("room again after the drain");
    executor.drain_remote();
    run_until_idle(&executor);
    let results: Vec<_> = [first, second, third].into_iter().map(|h| h.now_or_never()).collect();
    assert_eq!(results, [Some(Ok(1)), Some(Ok(2)), Some(Ok(3))]);
}

#[test]
fn spawn_on_a_core_that_does_not_exist_is_an_error() {
    let handle = Handle::new(2).expect("eventfd");
    let refused = handle.spawn_on(5, async {});
    assert_eq!(refused.err(), Some(SpawnError::NoSuchCore { core: 5, cores: 2 }));
}

#[test]
fn a_panic_in_a_remote_task_reaches_its_remote_handle() {
    let handle = Handle::new(1).expect("eventfd");
    let executor = Executor::new(0, &handle);
    let task = handle.spawn_on(0, async { panic!("remote boom") }).expect("queued");

    executor.drain_remote();
    run_until_idle(&executor);

    let result: Option<Result<(), JoinError>> = task.now_or_never();
    assert_eq!(result, Some(Err(JoinError::Panicked("remote boom".to_owned()))));
    assert_eq!(executor.stats().panics, 1);
}

#[test]
fn dropping_an_executor_cancels_queued_remote_tasks_and_closes_the_core() {
    let handle = Handle::new(1).expect("eventfd");
    let executor = Executor::new(0, &handle);
    let never_started = handle.spawn_on(0, async { 1 }).expect("queued");

    drop(executor);

    assert_eq!(never_started.now_or_never(), Some(Err(JoinError::Cancelled)));
    assert_eq!(handle.spawn_on(0, async {}).err(), Some(SpawnError::Closed { core: 0 }));
}
