//! The counters a core keeps and hands out: its loop's ([`LoopStats`]) and the
//! snapshot of everything it counted ([`CoreStats`]).

use ix_driver::QueueStats;
use ix_net::StackStats;

use crate::executor::ExecutorStats;
use crate::kernel::reactor::ReactorStats;

/// Counters of one core's loop.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LoopStats {
    /// Rounds of the loop.
    pub rounds: u64,
    /// Receive bursts that returned frames.
    pub batches: u64,
    /// Frames received.
    pub rx_packets: u64,
    /// Rounds that found nothing to do.
    pub empty_rounds: u64,
    /// Times the core blocked.
    pub blocks: u64,
    /// Frames transmitted.
    pub tx_packets: u64,
    /// Tasks polled.
    pub tasks_polled: u64,
    /// Frames of another core's connection sent to it (NICs that cannot steer).
    pub handed_over: u64,
    /// Of those, frames dropped because the owner's inbound queue was full
    /// (TCP retransmits them).
    pub handover_dropped: u64,
    /// Of those, frames dropped because the owner core had already stopped
    /// (its runtime shutting down; late segments of its closed connections).
    pub handover_owner_stopped: u64,
}

impl LoopStats {
    /// Mean frames per non-empty receive batch.
    pub fn mean_batch(&self) -> f64 {
        if self.batches == 0 { 0.0 } else { self.rx_packets as f64 / self.batches as f64 }
    }
}

/// Everything one core counted, at the end of a run or from inside it.
#[derive(Debug, Clone, Copy, Default)]
pub struct CoreStats {
    /// The core.
    pub core: usize,
    /// Its loop.
    pub r#loop: LoopStats,
    /// Its queue.
    pub queue: QueueStats,
    /// Its stack.
    pub stack: StackStats,
    /// Its executor.
    pub executor: ExecutorStats,
    /// Times a task waited for a free packet buffer (the pool was empty).
    pub buffer_waits: u64,
    /// Frames handed over by another core that found no free frame here
    /// (dropped; TCP retransmits them).
    pub handover_lost: u64,
    /// Frames of the core's packet pool free now, of `pool_capacity`.
    pub pool_free: u32,
    /// Frames in the core's packet pool.
    pub pool_capacity: u32,
    /// Open TCP connections now (on the `kernel` backend: open sockets of the
    /// core, listeners and UDP sockets included).
    pub connections: u64,
    /// The `kernel` backend's reactor (zero on the dataplane).
    pub reactor: ReactorStats,
}
