//! A core's side of the board it shares with `ixcp`: the counters it
//! publishes (about once a millisecond and before it blocks), the busy time it
//! measures, and the idle policy that follows the mode `ixcp` asks for.

use std::time::{Duration, Instant};

use ix_driver::ixcp::core_board::{current_thread_id, thread_cpu_ns};
use ix_driver::ixcp::{CoreMode, CoreSample, CoreSlot};

use crate::core::Core;
use crate::idle::IdlePolicy;

/// How often a core publishes its counters at most while it runs.
const PUBLISH_EVERY: Duration = Duration::from_millis(1);

/// A core's busy time: the wall time of rounds that found work, settled at
/// each publication against the CPU time the thread got meanwhile, so that a
/// round stretched by a host stall (steal) or by another thread holding the
/// CPU counts only what the core ran. Pure: the clocks are read by its owner.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct BusyTime {
    /// Settled busy nanoseconds, as published.
    settled_ns: u64,
    /// Wall nanoseconds of working rounds since the last settlement.
    pending_ns: u64,
    /// The thread's CPU time at the last settlement.
    cpu_at_settlement_ns: u64,
}

impl BusyTime {
    fn starting_at(cpu_ns: u64) -> BusyTime {
        BusyTime { cpu_at_settlement_ns: cpu_ns, ..BusyTime::default() }
    }

    /// A round that found work took `wall_ns`.
    fn worked(&mut self, wall_ns: u64) {
        self.pending_ns = self.pending_ns.saturating_add(wall_ns);
    }

    /// Settles the pending wall time against the thread's CPU time `cpu_ns`
    /// now: at most the CPU time since the last settlement counts.
    fn settle(&mut self, cpu_ns: u64) -> u64 {
        let ran = cpu_ns.saturating_sub(self.cpu_at_settlement_ns);
        self.settled_ns = self.settled_ns.saturating_add(self.pending_ns.min(ran));
        self.pending_ns = 0;
        self.cpu_at_settlement_ns = cpu_ns;
        self.settled_ns
    }
}

/// Whether a core that last published at `published_at` publishes at `now`.
fn publication_due(published_at: Instant, now: Instant) -> bool {
    now.saturating_duration_since(published_at) >= PUBLISH_EVERY
}

/// One core's link to its board slot.
pub(crate) struct CoreBoardLink {
    slot: CoreSlot,
    thread_id: u64,
    /// Time spent in rounds that found work.
    busy: BusyTime,
    /// When the current round began.
    round_start: Instant,
    /// Whether the last round that ended found work.
    last_round_worked: bool,
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
            busy: BusyTime::starting_at(thread_cpu_ns()),
            round_start: now,
            last_round_worked: false,
            published_at: now,
            mode: CoreMode::Block,
        };
        link.slot.publish(&CoreSample { thread_id: link.thread_id, ..CoreSample::default() });
        link
    }

    /// A round begins at `now` (the core's clock as the loop read it for the
    /// round): the previous round, which lasted until now, counts as busy if it
    /// found work (a round that found none, and the block that may have
    /// followed it, do not). Publishes when it is time.
    pub(crate) fn round_began(&mut self, now: Instant, core: &Core) {
        if std::mem::take(&mut self.last_round_worked) {
            self.busy.worked(now.saturating_duration_since(self.round_start).as_nanos() as u64);
        }
        self.round_start = now;
        if publication_due(self.published_at, now) {
            self.publish(core, now);
        }
    }

    /// The current round ended; `worked` says whether it found work.
    pub(crate) fn round_ended(&mut self, worked: bool) {
        self.last_round_worked = worked;
    }

    /// Publishes before the core blocks, so that `ixcp` sees an idle core's
    /// last counters, unless the last publication is less than
    /// [`PUBLISH_EVERY`] old: a core blocking after each request would
    /// otherwise pay a system call (its thread's CPU time) per request. What
    /// is left unpublished is at most that much busy time, published at the
    /// first round that finds it due (an idle core wakes at least every
    /// `IDLE_BLOCK_MAX_MS`). Reads the clock (the round's reading may be a
    /// whole round old, and a block costs a system call anyway).
    pub(crate) fn blocking(&mut self, core: &Core) {
        let now = Instant::now();
        if publication_due(self.published_at, now) {
            self.publish(core, now);
        }
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
        let busy_ns = self.busy.settle(thread_cpu_ns());
        self.slot.publish(&CoreSample {
            thread_id: self.thread_id,
            mode_in_effect: self.mode,
            rounds: r#loop.rounds,
            busy_ns,
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

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use super::{BusyTime, PUBLISH_EVERY, publication_due};

    const MS: u64 = 1_000_000;

    #[test]
    fn busy_time_is_the_working_rounds_wall_time_when_the_thread_ran_throughout() {
        let mut busy = BusyTime::starting_at(5 * MS);
        busy.worked(300_000);
        busy.worked(200_000);
        // 1 ms of CPU time: the working rounds and the empty ones between them.
        assert_eq!(busy.settle(6 * MS), 500_000);
        busy.worked(MS);
        assert_eq!(busy.settle(7 * MS), 1_500_000, "settlements add up");
    }

    #[test]
    fn a_round_stretched_by_a_stall_counts_only_the_cpu_time_the_thread_got() {
        let mut busy = BusyTime::starting_at(0);
        // A 100 ms round during which the host took the CPU away: 0.2 ms ran.
        busy.worked(100 * MS);
        assert_eq!(busy.settle(200_000), 200_000);
        // Blocked since: no CPU time, nothing pending.
        assert_eq!(busy.settle(200_000), 200_000);
        // A clock that went back (it cannot; a hostile one) counts nothing.
        busy.worked(MS);
        assert_eq!(busy.settle(100_000), 200_000);
    }

    #[test]
    fn a_core_publishes_at_most_once_per_period_even_when_it_blocks_after_every_request() {
        let published = Instant::now();
        // A core blocking every 100 us (a request each) publishes once a period, not at each block.
        let blocks: Vec<bool> =
            (1..=20).map(|i| publication_due(published, published + Duration::from_micros(100 * i))).collect();
        assert_eq!(blocks.iter().filter(|&&due| due).count(), 11, "from 1 ms on: {blocks:?}");
        assert!(!publication_due(published, published + PUBLISH_EVERY - Duration::from_nanos(1)));
        assert!(publication_due(published, published + PUBLISH_EVERY));
        // A clock read before the publication (it cannot happen; a hostile one) is not due.
        assert!(!publication_due(published + PUBLISH_EVERY, published));
    }

    #[test]
    fn busy_time_left_unpublished_at_a_block_is_counted_at_the_next_settlement() {
        let mut busy = BusyTime::starting_at(0);
        busy.worked(300_000);
        assert_eq!(busy.settle(MS), 300_000);
        // Work, then a block within the period (no settlement), then work after the wake-up.
        busy.worked(200_000);
        busy.worked(100_000);
        assert_eq!(busy.settle(2 * MS), 600_000, "nothing lost by skipping the publication at the block");
    }
}
