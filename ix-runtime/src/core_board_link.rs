//! A core's side of the board it shares with `ixcp`: the counters it
//! publishes (about once a millisecond and before it blocks), the busy time it
//! measures, the idle policy that follows the mode `ixcp` asks for, and its
//! switches to busy-polling on its own after a burst.

use std::time::{Duration, Instant};

use ix_driver::ixcp::core_board::{SelfPollRule, current_thread_id, thread_cpu_ns};
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

/// A core's switches to busy-polling on its own: a blocking core that
/// receives a burst the board's [`SelfPollRule`] calls large polls from the
/// next empty round on, without waiting for `ixcp`'s next period, until
/// `ixcp` answers the switch (it then follows the mode asked with that
/// answer, which may be block again), it finds no work for the rule's idle
/// time, or the rule's limit passes unanswered. Pure: the board's words and
/// the clock are read by its owner.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct SelfPoll {
    /// Switches so far (published; `ixcp` answers a count).
    count: u64,
    /// When the switch under way began, and when its last round that found
    /// work began.
    since: Option<(Instant, Instant)>,
}

impl SelfPoll {
    /// A round at `now` received `received` frames of at most `burst_max`
    /// while `ixcp` asked `asked`: whether the core switches now. A core
    /// polling already (by `ixcp`'s word or on its own) does not.
    fn after_burst(
        &mut self,
        rule: &SelfPollRule,
        asked: CoreMode,
        (received, burst_max): (usize, usize),
        now: Instant,
    ) -> bool {
        if asked != CoreMode::Block || self.since.is_some() || !rule.switches(received, burst_max) {
            return false;
        }
        self.count += 1;
        self.since = Some((now, now));
        true
    }

    /// A round begun at `now` found work.
    fn worked(&mut self, now: Instant) {
        if let Some((_, worked)) = &mut self.since {
            *worked = now;
        }
    }

    /// The mode the core follows at `now`, `ixcp` having answered
    /// `answered` switches and asking `asked`: busy-poll while a switch is
    /// unanswered, younger than the rule's limit and has found work within
    /// the rule's idle time; what `ixcp` asks otherwise.
    fn mode(&mut self, (answered, asked): (u64, CoreMode), rule: &SelfPollRule, now: Instant) -> CoreMode {
        if let Some((since, worked)) = self.since {
            if answered >= self.count
                || now.saturating_duration_since(since) >= rule.limit
                || now.saturating_duration_since(worked) >= rule.idle
            {
                self.since = None;
            }
        }
        if self.since.is_some() { CoreMode::BusyPoll } else { asked }
    }

    fn polling(&self) -> bool {
        self.since.is_some()
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
    /// The mode `ixcp` asked, as read last.
    asked: CoreMode,
    self_poll: SelfPoll,
    /// The receive burst bound (the runtime's batch).
    burst_max: usize,
}

impl CoreBoardLink {
    /// Links the calling thread (the core's) to `slot`, publishing its id;
    /// `burst_max` is the core's receive burst bound.
    pub(crate) fn new(slot: CoreSlot, burst_max: usize) -> CoreBoardLink {
        let now = Instant::now();
        let link = CoreBoardLink {
            slot,
            thread_id: current_thread_id(),
            busy: BusyTime::starting_at(thread_cpu_ns()),
            round_start: now,
            last_round_worked: false,
            published_at: now,
            asked: CoreMode::Block,
            self_poll: SelfPoll::default(),
            burst_max,
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

    /// The current round, begun at `now`, ended; `worked` says whether it
    /// found work, `received` how many frames its receive burst returned. A
    /// blocking core whose burst was large switches itself to busy-polling
    /// (see [`SelfPoll`]) and publishes at once, so that `ixcp`'s next
    /// decision sees it.
    pub(crate) fn round_ended(&mut self, worked: bool, received: usize, now: Instant, core: &Core) {
        self.last_round_worked = worked;
        if worked {
            self.self_poll.worked(now);
        }
        if received == 0 || self.asked != CoreMode::Block || self.self_poll.polling() {
            return;
        }
        let rule = self.slot.self_poll_rule();
        if self.self_poll.after_burst(&rule, self.asked, (received, self.burst_max), now) {
            tracing::debug!(received, switches = self.self_poll.count, "a burst: the core polls on its own");
            self.publish(core, now);
        }
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

    /// The idle policy at `now` of the mode `ixcp` asks for, or of a switch
    /// to polling on the core's own under way: busy-polling, or blocking as
    /// `configured` (the runtime's adaptive policy; the default one when the
    /// runtime was set to busy-poll).
    pub(crate) fn idle_policy(&mut self, configured: IdlePolicy, now: Instant) -> IdlePolicy {
        let answer = self.slot.answer();
        self.asked = answer.1;
        let mode = if self.self_poll.polling() {
            self.self_poll.mode(answer, &self.slot.self_poll_rule(), now)
        } else {
            self.asked
        };
        match (mode, configured) {
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
        let mode_in_effect = if self.self_poll.polling() { CoreMode::BusyPoll } else { self.asked };
        self.slot.publish(&CoreSample {
            thread_id: self.thread_id,
            mode_in_effect,
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
            self_polls: self.self_poll.count,
        });
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use ix_driver::ixcp::CoreMode::{Block, BusyPoll};
    use ix_driver::ixcp::core_board::SelfPollRule;

    use super::{BusyTime, PUBLISH_EVERY, SelfPoll, publication_due};

    const MS: u64 = 1_000_000;

    const RULE: SelfPollRule =
        SelfPollRule { batch: 16, limit: Duration::from_millis(200), idle: Duration::from_millis(200) };

    #[test]
    fn a_blocking_core_polls_from_the_round_of_a_large_burst_until_ixcp_answers() {
        let t0 = Instant::now();
        let mut switch = SelfPoll::default();
        assert!(!switch.after_burst(&RULE, Block, (15, 64), t0), "a small burst");
        assert_eq!(switch.mode((0, Block), &RULE, t0), Block);
        assert!(switch.after_burst(&RULE, Block, (16, 64), t0));
        assert_eq!(switch.count, 1);
        // Polling from the next empty round on, ixcp still asking block and not yet answering.
        let ms = Duration::from_millis(1);
        assert_eq!(switch.mode((0, Block), &RULE, t0 + ms), BusyPoll);
        assert!(!switch.after_burst(&RULE, Block, (64, 64), t0 + 2 * ms), "one switch at a time");
        assert_eq!(switch.count, 1);
        // ixcp answers with block: the core blocks again...
        assert_eq!(switch.mode((1, Block), &RULE, t0 + 50 * ms), Block);
        // ... and a later burst switches it again.
        assert!(switch.after_burst(&RULE, Block, (64, 64), t0 + 60 * ms));
        // ixcp answers with busy-poll: the core polls by its word.
        assert_eq!(switch.mode((2, BusyPoll), &RULE, t0 + 70 * ms), BusyPoll);
        assert!(!switch.polling());
    }

    #[test]
    fn an_answer_to_an_earlier_switch_does_not_end_a_later_one() {
        let t0 = Instant::now();
        let ms = Duration::from_millis(1);
        let mut switch = SelfPoll::default();
        assert!(switch.after_burst(&RULE, Block, (64, 64), t0));
        assert_eq!(switch.mode((1, Block), &RULE, t0 + ms), Block);
        // The core switches again just after ixcp read its count of 1 ...
        assert!(switch.after_burst(&RULE, Block, (64, 64), t0 + 2 * ms));
        // ... so ixcp's answer of 1 (with block) is not an answer to this one.
        assert_eq!(switch.mode((1, Block), &RULE, t0 + 3 * ms), BusyPoll);
        assert_eq!(switch.mode((2, Block), &RULE, t0 + 4 * ms), Block);
    }

    #[test]
    fn an_unanswered_switch_ends_at_the_limit() {
        let t0 = Instant::now();
        let mut switch = SelfPoll::default();
        assert!(switch.after_burst(&RULE, Block, (64, 64), t0));
        let ms = Duration::from_millis(1);
        // Work keeps coming: only the limit ends the switch.
        for at in (1..200).map(|i| t0 + i * ms) {
            switch.worked(at);
        }
        assert_eq!(switch.mode((0, Block), &RULE, t0 + RULE.limit - Duration::from_nanos(1)), BusyPoll);
        assert_eq!(switch.mode((0, Block), &RULE, t0 + RULE.limit), Block);
    }

    #[test]
    fn a_switch_ends_once_the_core_found_no_work_for_the_idle_time() {
        let t0 = Instant::now();
        let us = Duration::from_micros(1);
        let rule = SelfPollRule { idle: 200 * us, ..RULE };
        let mut switch = SelfPoll::default();
        assert!(switch.after_burst(&rule, Block, (64, 64), t0));
        // The backlog drains over 5 ms of working rounds: it keeps polling ...
        for i in 1..=50 {
            switch.worked(t0 + 100 * i * us);
            assert_eq!(switch.mode((0, Block), &rule, t0 + (100 * i + 50) * us), BusyPoll);
        }
        // ... then finds nothing for 200 us and blocks again, unanswered.
        assert_eq!(switch.mode((0, Block), &rule, t0 + 5199 * us), BusyPoll);
        assert_eq!(switch.mode((0, Block), &rule, t0 + 5200 * us), Block);
        assert!(!switch.polling());
    }

    #[test]
    fn a_polling_core_or_a_rule_of_zero_never_switches() {
        let t0 = Instant::now();
        let mut switch = SelfPoll::default();
        assert!(!switch.after_burst(&RULE, BusyPoll, (64, 64), t0), "polling already by ixcp's word");
        assert!(!switch.after_burst(&SelfPollRule { batch: 0, ..RULE }, Block, (64, 64), t0), "off");
        // A full burst of a small bound switches below the rule's batch.
        assert!(switch.after_burst(&RULE, Block, (4, 4), t0));
        assert_eq!(switch.count, 1);
    }

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
