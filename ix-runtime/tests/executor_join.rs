//! Join handles: panics contained and reported, abort, detaching on drop, and
//! what handles see when the executor goes away.

mod executor_support;

use std::cell::{Cell, RefCell};
use std::future::pending;
use std::rc::Rc;

use futures::FutureExt;
use ix_runtime::executor::{Executor, JoinError, JoinHandle, yield_now};

use executor_support::{run_until_idle, single_core};

/// Sets its flag when dropped, to see when a task's future is dropped.
struct DropFlag(Rc<Cell<bool>>);

impl Drop for DropFlag {
    fn drop(&mut self) {
        self.0.set(true);
    }
}

/// Spawns a task that never finishes and has been polled once; returns its
/// handle and a flag set when its future is dropped.
fn spawn_parked(executor: &Executor) -> (JoinHandle<()>, Rc<Cell<bool>>) {
    let dropped = Rc::new(Cell::new(false));
    let guard = DropFlag(Rc::clone(&dropped));
    let task = executor.spawn_local(async move {
        let _guard = guard;
        pending::<()>().await;
    });
    run_until_idle(executor);
    assert!(!task.is_finished() && !dropped.get());
    (task, dropped)
}

#[test]
fn a_panicking_task_is_reported_through_its_handle_and_stats_while_others_finish() {
    let (_handle, executor) = single_core();
    let before = executor.spawn_local(async { 1 });
    let panicking = executor.spawn_local(async {
        yield_now().await;
        panic!("boom in task");
    });
    let after = executor.spawn_local(async {
        yield_now().await;
        yield_now().await;
        3
    });

    run_until_idle(&executor);

    assert_eq!(before.now_or_never(), Some(Ok(1)));
    assert_eq!(panicking.now_or_never(), Some(Err(JoinError::Panicked("boom in task".to_owned()))));
    assert_eq!(after.now_or_never(), Some(Ok(3)));
    let stats = executor.stats();
    assert_eq!((stats.panics, stats.completed), (1, 3));
    assert_eq!(executor.task_count(), 0);
}

#[test]
fn a_formatted_panic_message_is_kept() {
    let (_handle, executor) = single_core();
    let code = 7;
    let task = executor.spawn_local(async move {
        if code == 7 {
            panic!("bad code {code}");
        }
    });
    run_until_idle(&executor);
    assert_eq!(task.now_or_never(), Some(Err(JoinError::Panicked("bad code 7".to_owned()))));
}

#[test]
fn abort_drops_the_future_at_once_and_the_handle_reports_aborted() {
    let (_handle, executor) = single_core();
    let (task, dropped) = spawn_parked(&executor);

    task.abort();

    assert!(dropped.get());
    assert!(task.is_finished());
    run_until_idle(&executor);
    assert_eq!(executor.task_count(), 0);
    assert_eq!(task.now_or_never(), Some(Err(JoinError::Aborted)));
}

#[test]
fn a_task_aborting_itself_stops_when_its_poll_returns_pending() {
    let (_handle, executor) = single_core();
    let own_handle: Rc<RefCell<Option<JoinHandle<()>>>> = Rc::new(RefCell::new(None));
    let reached_end = Rc::new(Cell::new(false));
    let task = {
        let own_handle = Rc::clone(&own_handle);
        let reached_end = Rc::clone(&reached_end);
        executor.spawn_local(async move {
            if let Some(me) = own_handle.borrow().as_ref() {
                me.abort();
            }
            yield_now().await;
            reached_end.set(true);
        })
    };
    *own_handle.borrow_mut() = Some(task);

    run_until_idle(&executor);

    assert!(!reached_end.get());
    assert_eq!(executor.task_count(), 0);
    let task = own_handle.borrow_mut().take().expect("handle kept");
    assert_eq!(task.now_or_never(), Some(Err(JoinError::Aborted)));
}

#[test]
fn abort_after_completion_keeps_the_output() {
    let (_handle, executor) = single_core();
    let task = executor.spawn_local(async { "done" });
    run_until_idle(&executor);
    task.abort();
    assert_eq!(task.now_or_never(), Some(Ok("done")));
}

#[test]
fn dropping_a_join_handle_detaches_the_task_which_still_runs_to_the_end() {
    let (_handle, executor) = single_core();
    let finished = Rc::new(Cell::new(false));
    let flag = Rc::clone(&finished);
    drop(executor.spawn_local(async move {
        for _ in 0..3 {
            yield_now().await;
        }
        flag.set(true);
    }));

    run_until_idle(&executor);

    assert!(finished.get());
    assert_eq!(executor.stats().completed, 1);
}

#[test]
fn a_task_awaiting_another_is_woken_when_it_finishes() {
    let (_handle, executor) = single_core();
    let inner = executor.spawn_local(async {
        for _ in 0..5 {
            yield_now().await;
        }
        41
    });
    let outer = executor.spawn_local(async move { inner.await.expect("inner completes") + 1 });

    run_until_idle(&executor);

    assert_eq!(outer.now_or_never(), Some(Ok(42)));
}

#[test]
fn dropping_the_executor_drops_its_tasks_and_their_handles_report_cancelled() {
    let (_handle, executor) = single_core();
    let (task, dropped) = spawn_parked(&executor);

    drop(executor);

    assert!(dropped.get());
    assert_eq!(task.now_or_never(), Some(Err(JoinError::Cancelled)));
}
