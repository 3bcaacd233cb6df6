//! A core's side of the board it shares with `ixcp`: the counters it
//! publishes (about once a millisecond and before it blocks), the busy time it
//! measures, and the idle policy that follows the mode `ixcp` asks for.

use std::time::{Duration, Instant};

use ix_driver::ixcp::core_board::current_thread_id;
use ix_driver::ixcp::{CoreMode, CoreSample, CoreSlot};

use crate::core::Core;
use crate::idle::IdlePolicy;

/// How often a core publishes its counters at most while it runs.
const PUBLISH_EVERY: Duration = Duration::from_millis(1);

/// One core's link to its board slot.
pub(crate) struct CoreBoardLink {
    slot: CoreSlot,
    thread_id: u64,
    /// Nanoseconds spent in rounds that found work.
    busy_ns: u64,
    /// When the last round ended (or the core woke from a block).
    round_end: Instant,
    published_at: Instant,
    mode: CoreMode,
}

impl CoreBoardLink {
    /// Links the calling thread (the core's) to `slot`, publishing its id.
    pub(crate) fn new(slot: CoreSlot) -> CoreBoardLink {
        let now = Instant::now();
        let link = CoreBoardLink {
            slot,
            thread_id: current_thread_id(),
            busy_ns: 0,
            round_end: now,
            published_at: now,
            mode: CoreMode::Block,
        };
        link.slot.publish(&CoreSample { thread_id: link.thread_id, ..CoreSample::default() });
        link
    }

    /// Counts a round that just ended, and publishes when it is time.
    pub(crate) fn round_done(&mut self, worked: bool, core: &Core) {
        let now = Instant::now();
        if worked {
            self.busy_ns += now.saturating_duration_since(self.round_end).as_nanos() as u64;
        }
        self.round_end = now;
        if now.saturating_duration_since(self.published_at) >= PUBLISH_EVERY {
            self.publish(core, now);
        }
    }

    /// Publishes before the core blocks, so that `ixcp` sees an idle core's
    /// last counters.
    pub(crate) fn blocking(&mut self, core: &Core) {
        self.publish(core, Instant::now());
    }

    /// The core woke from a block: the time blocked was not busy.
    pub(crate) fn woke(&mut self) {
        self.round_end = Instant::now();
    }

    /// The idle policy the mode `ixcp` asks for means: busy-polling, or
    /// blocking as `configured` (the runtime's adaptive policy; the default
    /// one when the runtime was set to busy-poll).
    pub(crate) fn idle_policy(&mut self, configured: IdlePolicy) -> IdlePolicy {
        self.mode = self.slot.asked_mode();
        match (self.mode, configured) {
            (CoreMode::BusyPoll, _) => IdlePolicy::BusyPoll,
            (CoreMode::Block, IdlePolicy::BusyPoll) => IdlePolicy::default(),
            (CoreMode::Block, adaptive) => adaptive,
        }
    }

    fn publish(&mut self, core: &Core, now: Instant) {
        self.published_at = now;
        let stats = core.stats();
        let (r#loop, queue) = (stats.r#loop, stats.queue);
        self.slot.publish(&CoreSample {
            thread_id: self.thread_id,
            mode_in_effect: self.mode,
            rounds: r#loop.rounds,
            busy_ns: self.busy_ns,
            batches: r#loop.batches,
            rx_packets: r#loop.rx_packets,
            tx_packets: r#loop.tx_packets,
            blocks: r#loop.blocks,
            connections: stats.connections,
            drops: queue.rx_drops + queue.tx_drops,
            pool_free: stats.pool_free.into(),
            pool_capacity: stats.pool_capacity.into(),
            published: 0,
        });
    }
}
