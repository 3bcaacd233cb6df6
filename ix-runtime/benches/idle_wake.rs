//! The cost of waking a blocked core: two one-core runtimes (`kernel` backend,
//! idle policy `block`) pinned to one CPU take turns through cross-thread
//! wakers, so each turn is one core blocking and the other being woken on the
//! CPU they share, as a blocking dataplane core shares its CPU under `ixcp`.
//!
//!   cargo bench -p ix-runtime --bench idle_wake

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use ix_runtime::{Backend, IdlePolicy, Runtime};

#[path = "support/ping_pong.rs"]
mod ping_pong;
use ping_pong::PingPong;

/// The CPU both cores share: the last one, away from CPU 0's interrupts.
fn shared_cpu() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get()) - 1
}

/// One side of `rounds` rounds of the game (and one round before them, once
/// both runtimes run) on a runtime of its own, on the shared CPU; side 0
/// returns how long the `rounds` took.
fn play_on_a_runtime(game: Arc<PingPong>, side: u64, rounds: u64) -> Option<Duration> {
    let elapsed = Arc::new(Mutex::new(None));
    let out = Arc::clone(&elapsed);
    Runtime::builder()
        .cores(1)
        .backend(Backend::Kernel)
        .idle(IdlePolicy::Block)
        .first_cpu(shared_cpu())
        .handle_signals(false)
        .build()
        .expect("a kernel-backend runtime")
        .run(move |_core| {
            let (game, out) = (Arc::clone(&game), Arc::clone(&out));
            async move {
                Arc::clone(&game).play(side, 0..1).await;
                let start = Instant::now();
                game.play(side, 1..rounds + 1).await;
                *out.lock().expect("not poisoned") = Some(start.elapsed());
            }
        })
        .expect("the runtime runs");
    let elapsed = *elapsed.lock().expect("not poisoned");
    elapsed.filter(|_| side == 0)
}

fn blocked_core_wake(c: &mut Criterion) {
    let mut group = c.benchmark_group("blocked_core_wake");
    // An iteration is a round: each side's core blocks once and is woken once.
    group.throughput(Throughput::Elements(2));
    group.bench_function("ix_block", |b| {
        b.iter_custom(|rounds| {
            let game = PingPong::new();
            let other = Arc::clone(&game);
            let side_1 = std::thread::spawn(move || play_on_a_runtime(other, 1, rounds));
            let elapsed = play_on_a_runtime(game, 0, rounds).expect("side 0 timed its rounds");
            side_1.join().expect("side 1 finishes");
            elapsed
        });
    });
    group.finish();
}

criterion_group!(benches, blocked_core_wake);
criterion_main!(benches);
