//! Two sides taking turns through wakers, for the benchmarks that time a wake:
//! within one executor (`executor.rs`) or between two cores (`idle_wake.rs`).

use std::future::poll_fn;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::Poll;

use futures::task::AtomicWaker;

/// Two sides taking turns: side `s` acts when `turn` is `2 * round + s`, then hands over.
pub struct PingPong {
    turn: AtomicU64,
    wakers: [AtomicWaker; 2],
}

impl PingPong {
    pub fn new() -> Arc<Self> {
        Arc::new(Self { turn: AtomicU64::new(0), wakers: [AtomicWaker::new(), AtomicWaker::new()] })
    }

    /// Plays the turns of `rounds` (numbered from 0 for the game) as `side` (0 or 1).
    pub async fn play(self: Arc<Self>, side: u64, rounds: std::ops::Range<u64>) {
        for round in rounds {
            let mine = 2 * round + side;
            poll_fn(|cx| {
                self.wakers[side as usize].register(cx.waker());
                if self.turn.load(Ordering::Acquire) == mine { Poll::Ready(()) } else { Poll::Pending }
            })
            .await;
            self.turn.store(mine + 1, Ordering::Release);
            self.wakers[1 - side as usize].wake();
        }
    }
}
