//! What of the tokio ecosystem works unchanged on IX, and what does not (with
//! its IX equivalent), each as `docs/porting.md` shows it: tokio's sync
//! primitives and channels, `tokio::select!` and `futures::select!`,
//! `tokio::time` against `ix_runtime::time`, `tokio::fs` against
//! `ix_runtime::spawn_blocking`, tower's `Service`, tokio-util's `CancellationToken`.

use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::FutureExt as _;
use ix_runtime::{Backend, JoinError, Runtime, spawn_local};

/// Runs `main` as the only task of a one-core IX runtime (kernel backend) and returns its output.
fn on_ix<T, F, Fut>(main: F) -> T
where
    T: Send + 'static,
    F: FnOnce() -> Fut + Send + 'static,
    Fut: Future<Output = T> + 'static,
{
    let runtime = Runtime::builder().cores(1).backend(Backend::Kernel).pin_threads(false).handle_signals(false);
    let main = Mutex::new(Some(main));
    let output = Arc::new(Mutex::new(None));
    let slot = output.clone();
    runtime
        .build()
        .unwrap()
        .run(move |_core| {
            let main = main.lock().unwrap().take().expect("one core: main runs once");
            let slot = slot.clone();
            async move {
                let value = main().await;
                *slot.lock().unwrap() = Some(value);
            }
        })
        .unwrap();
    output.lock().unwrap().take().expect("the task finished")
}

/// The panic message of a task that must panic.
async fn panic_of<F: Future + 'static>(future: F) -> String {
    match spawn_local(future).await {
        Err(JoinError::Panicked(message)) => message,
        Ok(_) => panic!("the task was expected to panic"),
        Err(other) => panic!("the task ended otherwise: {other}"),
    }
}

#[test]
fn tokio_sync_primitives_and_channels_work_unchanged_even_across_threads() {
    let (sum, notified, watched) = on_ix(|| async {
        let (tx, mut rx) = tokio::sync::mpsc::channel::<u32>(4);
        // A plain thread sends: its wakes reach the core through the task's waker.
        let producer = std::thread::spawn(move || (1..=100).for_each(|i| tx.blocking_send(i).unwrap()));
        let mut sum = 0;
        while let Some(i) = rx.recv().await {
            sum += i;
        }
        producer.join().unwrap();

        let notify = Arc::new(tokio::sync::Notify::new());
        let (lock, (watch_tx, mut watch_rx)) = (Arc::new(tokio::sync::Mutex::new(0)), tokio::sync::watch::channel(0));
        let waiter = spawn_local({
            let (notify, lock) = (notify.clone(), lock.clone());
            async move {
                notify.notified().await;
                *lock.lock().await
            }
        });
        *lock.lock().await = 7;
        notify.notify_one();
        watch_tx.send(42).unwrap();
        watch_rx.changed().await.unwrap();
        let (once_tx, once_rx) = tokio::sync::oneshot::channel();
        once_tx.send(*watch_rx.borrow()).unwrap();
        (sum, waiter.await.unwrap(), once_rx.await.unwrap())
    });
    assert_eq!((sum, notified, watched), (5050, 7, 42));
}

#[test]
fn tokio_select_and_futures_select_work_unchanged() {
    let (tokio_branch, futures_branch) = on_ix(|| async {
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<&str>();
        tx.send("message").unwrap();
        let tokio_branch = tokio::select! {
            Some(m) = rx.recv() => m,
            _ = ix_runtime::time::sleep(Duration::from_secs(5)) => "timer",
        };
        let mut never = std::future::pending::<&str>().fuse();
        let mut soon = Box::pin(ix_runtime::time::sleep(Duration::from_millis(5)).fuse());
        let futures_branch = futures::select! {
            m = never => m,
            () = soon => "slept",
        };
        (tokio_branch, futures_branch)
    });
    assert_eq!((tokio_branch, futures_branch), ("message", "slept"));
}

#[test]
fn tokio_time_panics_on_ix_and_ix_runtime_time_replaces_it() {
    let (message, timed_out, ticks) = on_ix(|| async {
        let message = panic_of(async { tokio::time::sleep(Duration::from_millis(1)).await }).await;
        // The IX equivalents: sleep, timeout, interval on the core's timer wheel.
        ix_runtime::time::sleep(Duration::from_millis(2)).await;
        let timed_out =
            ix_runtime::time::timeout(Duration::from_millis(5), std::future::pending::<()>()).await.is_err();
        let mut interval = ix_runtime::time::interval(Duration::from_millis(1));
        for _ in 0..3 {
            interval.tick().await;
        }
        (message, timed_out, 3)
    });
    assert!(message.contains("must be called from the context of a Tokio 1.x runtime"), "{message}");
    assert!(timed_out);
    assert_eq!(ticks, 3);
}

#[test]
fn tokio_fs_panics_on_ix_and_spawn_blocking_replaces_it() {
    let path = std::env::temp_dir().join(format!("ix-porting-fs-{}", std::process::id()));
    std::fs::write(&path, b"file contents").unwrap();
    let read_path = path.clone();
    let (message, contents) = on_ix(move || async move {
        let message = panic_of(tokio::fs::read(read_path.clone())).await;
        let contents = ix_runtime::spawn_blocking(move || std::fs::read(read_path)).await.unwrap().unwrap();
        (message, contents)
    });
    std::fs::remove_file(&path).unwrap();
    assert!(message.contains("must be called from the context of a Tokio 1.x runtime"), "{message}");
    assert_eq!(contents, b"file contents");
}

#[test]
fn tower_services_work_unchanged_but_tower_timeout_needs_ix_time() {
    use tower::{Service, ServiceBuilder, ServiceExt as _};
    let (answer, message) = on_ix(|| async {
        let mut doubler = ServiceBuilder::new()
            .concurrency_limit(4)
            .map_request(|x: u64| x + 1)
            .service(tower::service_fn(|x: u64| async move { Ok::<_, std::convert::Infallible>(x * 2) }));
        let answer = doubler.ready().await.unwrap().call(20).await.unwrap();
        // tower's (and tower-http's) timeout sleeps with tokio::time: it panics here.
        let timed = ServiceBuilder::new().timeout(Duration::from_secs(1)).service(doubler);
        let message = panic_of(timed.oneshot(1)).await;
        (answer, message)
    });
    assert_eq!(answer, 42);
    assert!(message.contains("must be called from the context of a Tokio 1.x runtime"), "{message}");
}

#[test]
fn ix_hyper_compat_timeout_layer_replaces_tower_http_timeout() {
    use hyper::{Request, Response, StatusCode};
    use tower::{ServiceBuilder, ServiceExt as _};
    let statuses = on_ix(|| async {
        let slow = tower::service_fn(|request: Request<()>| async move {
            let wait = if request.uri().path() == "/slow" { 50 } else { 0 };
            ix_runtime::time::sleep(Duration::from_millis(wait)).await;
            Ok::<_, std::convert::Infallible>(Response::new(String::from("done")))
        });
        let layer =
            ix_hyper_compat::TimeoutLayer::with_status_code(StatusCode::GATEWAY_TIMEOUT, Duration::from_millis(10));
        let service = ServiceBuilder::new().layer(layer).service(slow);
        let fast = service.oneshot(Request::get("/fast").body(()).unwrap()).await.unwrap();
        let slow = service.oneshot(Request::get("/slow").body(()).unwrap()).await.unwrap();
        (fast.status(), fast.into_body(), slow.status(), slow.into_body())
    });
    assert_eq!(statuses, (StatusCode::OK, "done".to_owned(), StatusCode::GATEWAY_TIMEOUT, String::new()));
}

#[test]
fn cancellation_token_works_unchanged() {
    use tokio_util::sync::CancellationToken;
    let (stopped_by, child_cancelled) = on_ix(|| async {
        let token = CancellationToken::new();
        let child = token.child_token();
        let worker = spawn_local({
            let token = token.clone();
            async move {
                tokio::select! {
                    () = token.cancelled() => "cancelled",
                    () = ix_runtime::time::sleep(Duration::from_secs(10)) => "timer",
                }
            }
        });
        // Cancelled from another thread: the wake crosses to the core.
        std::thread::spawn(move || token.cancel()).join().unwrap();
        (worker.await.unwrap(), child.is_cancelled())
    });
    assert_eq!((stopped_by, child_cancelled), ("cancelled", true));
}

#[test]
fn tokio_spawn_panics_on_ix_and_spawn_local_replaces_it() {
    let (message, spawned) = on_ix(|| async {
        let message = panic_of(async { tokio::spawn(async { 1 }).await.unwrap() }).await;
        (message, spawn_local(async { 2 }).await.unwrap())
    });
    assert!(message.contains("must be called from the context of a Tokio 1.x runtime"), "{message}");
    assert_eq!(spawned, 2);
}
