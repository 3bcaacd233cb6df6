//! Executor micro benchmarks, IX against tokio current_thread and multi_thread
//! in one run: spawn + join per task, and a two-task wake ping-pong.

use std::future::Future;
use std::hint::black_box;
use std::sync::Arc;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use futures::FutureExt;
use ix_runtime::executor::{Executor, Handle, spawn_local};

#[path = "support/ping_pong.rs"]
mod ping_pong;
use ping_pong::PingPong;

const SPAWN_BATCH_TASKS: u64 = 1_000;
const PING_PONG_ROUND_TRIPS: u64 = 1_000;
const TOKIO_WORKER_THREADS: usize = 2;

fn ix_run_to_end<T>(executor: &Executor, root: impl Future<Output = T> + 'static) -> T {
    let handle = executor.spawn_local(root);
    while executor.has_ready() {
        executor.run_ready(usize::MAX);
    }
    handle.now_or_never().expect("root finished").expect("root completed")
}

fn tokio_runtimes() -> [(&'static str, tokio::runtime::Runtime); 2] {
    let current = tokio::runtime::Builder::new_current_thread().build().expect("tokio current_thread");
    let multi = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(TOKIO_WORKER_THREADS)
        .build()
        .expect("tokio multi_thread");
    [("tokio_current_thread", current), ("tokio_multi_thread", multi)]
}

fn spawn_join(c: &mut Criterion) {
    let mut group = c.benchmark_group("spawn_join");
    group.throughput(Throughput::Elements(SPAWN_BATCH_TASKS));

    let handle = Handle::new(1).expect("eventfd");
    let executor = Executor::new(0, &handle);
    group.bench_function("ix", |b| {
        b.iter(|| {
            ix_run_to_end(&executor, async {
                let children: Vec<_> =
                    (0..SPAWN_BATCH_TASKS).map(|i| spawn_local(async move { black_box(i) })).collect();
                let mut total = 0;
                for child in children {
                    total += child.await.expect("child completes");
                }
                total
            })
        });
    });

    for (name, runtime) in tokio_runtimes() {
        group.bench_function(name, |b| {
            b.iter(|| {
                runtime.block_on(async {
                    let children: Vec<_> =
                        (0..SPAWN_BATCH_TASKS).map(|i| tokio::spawn(async move { black_box(i) })).collect();
                    let mut total = 0;
                    for child in children {
                        total += child.await.expect("child completes");
                    }
                    total
                })
            });
        });
    }
    group.finish();
}

fn ping_pong(c: &mut Criterion) {
    let mut group = c.benchmark_group("wake_ping_pong");
    group.throughput(Throughput::Elements(PING_PONG_ROUND_TRIPS));

    let handle = Handle::new(1).expect("eventfd");
    let executor = Executor::new(0, &handle);
    group.bench_function("ix", |b| {
        b.iter(|| {
            let game = PingPong::new();
            let first = spawn_local(Arc::clone(&game).play(0, 0..PING_PONG_ROUND_TRIPS));
            ix_run_to_end(&executor, async move {
                game.play(1, 0..PING_PONG_ROUND_TRIPS).await;
                first.await.expect("side 0 completes");
            });
        });
    });

    for (name, runtime) in tokio_runtimes() {
        group.bench_function(name, |b| {
            b.iter(|| {
                runtime.block_on(async {
                    let game = PingPong::new();
                    let first = tokio::spawn(Arc::clone(&game).play(0, 0..PING_PONG_ROUND_TRIPS));
                    let second = tokio::spawn(game.play(1, 0..PING_PONG_ROUND_TRIPS));
                    first.await.expect("side 0 completes");
                    second.await.expect("side 1 completes");
                });
            });
        });
    }
    group.finish();
}

criterion_group!(benches, spawn_join, ping_pong);
criterion_main!(benches);
