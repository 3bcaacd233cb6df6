//! Timer wheel costs in the steady state of a busy core: arming and cancelling
//! (a retransmission timer reset by every ACK), and arming then firing.

use std::hint::black_box;
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use ix_net::time::Instant;
use ix_net::timer::{TICK_MICROS, TimerWheel};

/// Timers already armed while measuring, as for this many idle connections.
const ARMED_TIMERS: u64 = 10_000;

/// A deadline spread over the wheels: 200 ms to about 3 s ahead.
fn spread(i: u64) -> Duration {
    Duration::from_micros(200_000 + (i * 7_919) % 3_000_000)
}

fn populated_wheel() -> TimerWheel<u64> {
    let mut wheel = TimerWheel::with_capacity(Instant::ZERO, 2 * ARMED_TIMERS as usize);
    for i in 0..ARMED_TIMERS {
        wheel.insert(Instant::ZERO + spread(i), i);
    }
    wheel
}

fn insert_cancel(c: &mut Criterion) {
    let mut wheel = populated_wheel();
    let mut i = 0u64;
    c.bench_function("timer_wheel/insert+cancel", |b| {
        b.iter(|| {
            i += 1;
            let key = wheel.insert(Instant::ZERO + spread(i), i);
            black_box(wheel.cancel(key))
        })
    });
}

fn insert_fire(c: &mut Criterion) {
    let mut wheel = populated_wheel();
    let mut now = Instant::ZERO;
    let mut i = 0u64;
    let mut fired = 0u64;
    c.bench_function("timer_wheel/insert+advance_one_tick", |b| {
        b.iter(|| {
            i += 1;
            wheel.insert(now + spread(i), i);
            now += Duration::from_micros(TICK_MICROS);
            wheel.advance(now, &mut |_, value| fired = fired.wrapping_add(value));
        })
    });
    black_box(fired);
}

criterion_group!(benches, insert_cancel, insert_fire);
criterion_main!(benches);
