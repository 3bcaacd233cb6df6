//! `spawn_blocking` and `BlockingPool`: a core keeps serving while a closure
//! sleeps on the pool, the awaiting task resumes on its own core, and the
//! bounded queue, panics, idle threads and shutdown behave as documented.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddrV4};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};

use ix_runtime::blocking::{BlockingConfig, BlockingPool};
use ix_runtime::net::TcpListener;
use ix_runtime::{JoinError, spawn_blocking, spawn_local};

mod runtime_support;
use runtime_support::{echo, kernel_runtime};

const LOOPBACK: Ipv4Addr = Ipv4Addr::LOCALHOST;

fn thread_name() -> String {
    std::thread::current().name().unwrap_or("").to_owned()
}

/// What happened, in the order it happened.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Event {
    SleepStarted,
    Echoed(usize),
    SleepReturned,
    Resumed { thread: String },
}

#[test]
fn a_core_keeps_serving_other_connections_while_a_blocking_call_sleeps_one_second() {
    const CONNECTIONS: usize = 20;
    let port = std::net::TcpListener::bind((LOOPBACK, 0)).unwrap().local_addr().unwrap().port();
    let events = Arc::new(Mutex::new(Vec::new()));
    let log = {
        let events = events.clone();
        move |event: Event| events.lock().unwrap().push(event)
    };
    let (sleeping_tx, sleeping_rx) = mpsc::channel::<()>();
    let server_log = log.clone();
    let server = std::thread::spawn(move || {
        kernel_runtime(1).run(move |_core| {
            let (log, sleeping_tx) = (server_log.clone(), sleeping_tx.clone());
            async move {
                let listener = TcpListener::bind(port).unwrap();
                let sleeper_log = log.clone();
                let sleeper = spawn_local(async move {
                    let inner_log = sleeper_log.clone();
                    let on_pool = spawn_blocking(move || {
                        inner_log(Event::SleepStarted);
                        sleeping_tx.send(()).unwrap();
                        std::thread::sleep(Duration::from_secs(1));
                        inner_log(Event::SleepReturned);
                        thread_name()
                    })
                    .await
                    .unwrap();
                    sleeper_log(Event::Resumed { thread: thread_name() });
                    on_pool
                });
                // Serve exactly the test's connections, then wait for the sleeper.
                for _ in 0..CONNECTIONS {
                    let (stream, _) = listener.accept().await.unwrap();
                    spawn_local(echo(stream));
                }
                assert_eq!(sleeper.await.unwrap(), "ix-blocking");
            }
        })
    });
    sleeping_rx.recv_timeout(Duration::from_secs(30)).expect("the blocking closure started");
    for i in 0..CONNECTIONS {
        let mut stream = std::net::TcpStream::connect(SocketAddrV4::new(LOOPBACK, port)).unwrap();
        let message = format!("connection {i} while the pool sleeps");
        stream.write_all(message.as_bytes()).unwrap();
        let mut reply = vec![0; message.len()];
        stream.read_exact(&mut reply).unwrap();
        assert_eq!(reply, message.as_bytes());
        log(Event::Echoed(i));
    }
    server.join().unwrap().unwrap();
    let events = events.lock().unwrap().clone();
    let mut expected = vec![Event::SleepStarted];
    expected.extend((0..CONNECTIONS).map(Event::Echoed));
    expected.push(Event::SleepReturned);
    expected.push(Event::Resumed { thread: "ix-core-0".to_owned() });
    assert_eq!(events, expected, "every echo finished while the closure slept, and the task resumed on its core");
}

#[test]
fn the_awaiting_task_resumes_on_its_own_core() {
    const CLOSURES_PER_CORE: usize = 50;
    let checked = Arc::new(AtomicUsize::new(0));
    let counted = checked.clone();
    kernel_runtime(2)
        .run(move |core| {
            let counted = counted.clone();
            async move {
                let handles: Vec<_> =
                    (0..CLOSURES_PER_CORE).map(|i| spawn_blocking(move || (i * 2, thread_name()))).collect();
                for (i, handle) in handles.into_iter().enumerate() {
                    let (doubled, pool_thread) = handle.await.unwrap();
                    assert_eq!(doubled, i * 2);
                    assert_eq!(pool_thread, "ix-blocking");
                    assert_eq!(ix_runtime::core_index(), core);
                    assert_eq!(thread_name(), format!("ix-core-{core}"));
                    counted.fetch_add(1, Ordering::Relaxed);
                }
            }
        })
        .unwrap();
    assert_eq!(checked.load(Ordering::Relaxed), 2 * CLOSURES_PER_CORE);
}

fn small_pool(max_threads: usize, queue_capacity: usize, keep_alive: Duration) -> BlockingPool {
    BlockingPool::new(BlockingConfig {
        max_threads,
        queue_capacity,
        keep_alive,
        thread_name: "test-blocking".to_owned(),
    })
}

#[test]
fn a_full_queue_rejects_and_shutdown_drops_queued_closures_but_not_the_running_one() {
    let pool = small_pool(1, 2, Duration::from_secs(60));
    let (release_tx, release_rx) = mpsc::channel::<()>();
    let (started_tx, started_rx) = mpsc::channel::<()>();
    let running = pool.spawn(move || {
        started_tx.send(()).unwrap();
        release_rx.recv().unwrap();
        "finished"
    });
    started_rx.recv_timeout(Duration::from_secs(30)).unwrap();
    let ran = Arc::new(AtomicUsize::new(0));
    let queued: Vec<_> = (0..2)
        .map(|_| {
            let ran = ran.clone();
            pool.spawn(move || ran.fetch_add(1, Ordering::SeqCst))
        })
        .collect();
    let ran_too = ran.clone();
    let refused = pool.spawn(move || ran_too.fetch_add(1, Ordering::SeqCst));
    assert_eq!(futures::executor::block_on(refused), Err(JoinError::Rejected));
    let stats = pool.stats();
    assert_eq!((stats.threads, stats.busy, stats.queued, stats.rejected), (1, 1, 2, 1));

    // The running closure holds its thread: shutdown times out, the queue is dropped.
    assert!(!pool.shutdown(Duration::from_millis(50)));
    for handle in queued {
        assert_eq!(futures::executor::block_on(handle), Err(JoinError::Cancelled));
    }
    let late = pool.spawn(|| ());
    assert_eq!(futures::executor::block_on(late), Err(JoinError::Cancelled));
    release_tx.send(()).unwrap();
    assert_eq!(futures::executor::block_on(running), Ok("finished"));
    assert!(pool.shutdown(Duration::from_secs(30)), "the last thread exits once its closure returned");
    assert_eq!(ran.load(Ordering::SeqCst), 0, "no queued or rejected closure ran");
    let stats = pool.stats();
    assert_eq!((stats.threads, stats.completed, stats.cancelled), (0, 1, 3));
}

#[test]
fn a_panicking_closure_reports_its_message_and_the_thread_keeps_working() {
    let pool = small_pool(1, 8, Duration::from_secs(60));
    let panicked = pool.spawn(|| -> u32 { panic!("blocking boom {}", 7) });
    assert_eq!(futures::executor::block_on(panicked), Err(JoinError::Panicked("blocking boom 7".to_owned())));
    assert_eq!(futures::executor::block_on(pool.spawn(|| 41 + 1)), Ok(42));
    assert_eq!(pool.stats().threads_started, 1, "the same thread ran both");
    assert!(pool.shutdown(Duration::from_secs(30)));
}

#[test]
fn threads_grow_to_the_bound_and_idle_ones_exit_after_the_keep_alive() {
    let pool = small_pool(3, 16, Duration::from_millis(50));
    let (release_tx, release_rx) = mpsc::channel::<()>();
    let release_rx = Arc::new(Mutex::new(release_rx));
    let handles: Vec<_> = (0..6)
        .map(|i| {
            let release_rx = release_rx.clone();
            pool.spawn(move || {
                release_rx.lock().unwrap().recv().unwrap();
                i
            })
        })
        .collect();
    let stats = pool.stats();
    assert_eq!((stats.threads, stats.threads_started), (3, 3), "no more threads than the bound");
    for _ in 0..6 {
        release_tx.send(()).unwrap();
    }
    let results: Vec<_> = handles.into_iter().map(|h| futures::executor::block_on(h).unwrap()).collect();
    assert_eq!(results, (0..6).collect::<Vec<_>>());
    let deadline = Instant::now() + Duration::from_secs(30);
    while pool.stats().threads > 0 {
        assert!(Instant::now() < deadline, "idle threads exit after their keep-alive: {:?}", pool.stats());
        std::thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(pool.stats().completed, 6);
}
