//! How `ixcp` decides what each dataplane core does: a core's load over one
//! period (the share of the period its loop spent in rounds that found work)
//! and a pure decision, busy-poll on a CPU of its own or block sharing one,
//! with hysteresis; and the rule by which a core switches itself to polling.

use std::time::Duration;

use serde::Deserialize;

use super::core_board::{CoreMode, CoreSample, SelfPollRule};

/// The thresholds of the decision (the `[policy]` table of the configuration).
#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CpuPolicy {
    /// How often `ixcp` decides, in milliseconds.
    pub period_ms: u64,
    /// A blocking core whose load reaches this share (0 to 1) of one period
    /// gets a polling CPU, if its dataplane's share and a free CPU allow.
    pub poll_above: f64,
    /// A polling core whose load stays below this share ...
    pub block_below: f64,
    /// ... for this many periods in a row goes back to blocking.
    pub block_after_periods: u32,
    /// A blocking core that receives a burst of at least this many frames (or
    /// a full burst of its own bound, if smaller) switches itself to
    /// busy-polling at once, without waiting for the next decision, which
    /// then keeps it polling or sends it back (see [`starting_state`]); 0:
    /// never.
    pub self_poll_batch: u32,
    /// The scheduler slice `ixcp` gives each dataplane core's thread, in
    /// microseconds (the kernel clamps it to 100-100,000), whenever it places
    /// the thread; 0 leaves the kernel's (1.4 ms here). A slice shorter than
    /// that of the task running on a shared CPU lets a blocking core that
    /// wakes preempt that task at once instead of at its slice's end, which
    /// with 250 Hz ticks comes up to 4 ms later (see [`set_slice`]).
    ///
    /// [`set_slice`]: super::thread_placement::set_slice
    pub slice_us: u64,
    /// The short window of the step rule, in milliseconds; 0: the rule is
    /// off. Every such window `ixcp` also reads the load of each blocking
    /// core, and one whose load reached `step_above` in `step_windows`
    /// windows in a row gets a polling CPU at once, without waiting for the
    /// period's decision (see [`StepWatch`]).
    pub step_window_ms: u64,
    /// The load (0 to 1) of one short window that counts towards a step.
    pub step_above: f64,
    /// How many short windows in a row at `step_above` or more make a step.
    pub step_windows: u32,
}

impl Default for CpuPolicy {
    fn default() -> Self {
        CpuPolicy {
            period_ms: 100,
            poll_above: 0.30,
            block_below: 0.10,
            block_after_periods: 10,
            self_poll_batch: SELF_POLL_BATCH_DEFAULT,
            slice_us: 0,
            step_window_ms: 0,
            step_above: 0.8,
            step_windows: 2,
        }
    }
}

/// The default of [`CpuPolicy::self_poll_batch`]: 0, the rule off. Measured in
/// round 8 (`docs/control-plane.md`), a trigger of 16 frames (a quarter of the
/// runtime's default burst of 64) fired 12-16 times a second at a tenth of the
/// load on this VM, where host stalls and the batch job's time slices leave
/// such bursts, and cost the batch job a third of its CPU; a single burst is
/// no sign of a step. Set it in `[policy]` to try it.
pub const SELF_POLL_BATCH_DEFAULT: u32 = 0;

/// Periods a core polls on its own at most when `ixcp` does not answer (a
/// stalled or stopped daemon): past the next decision, and the one after.
const SELF_POLL_LIMIT_PERIODS: u32 = 2;

/// How long a core polling on its own may find no work before it blocks
/// again, in microseconds. Under a load that needs polling the gaps are far
/// shorter (at 60,000 requests a second, Poisson, a gap of 200 us comes once
/// in e^12, about 160,000, requests); after a blip (a backlog after a host
/// stall, at a tenth of the load) the core drains it and blocks within one
/// such gap, instead of polling until `ixcp`'s next decision.
pub const SELF_POLL_IDLE_US: u64 = 200;

impl CpuPolicy {
    /// The decision period.
    pub fn period(&self) -> Duration {
        Duration::from_millis(self.period_ms)
    }

    /// Checks the thresholds: a period of 10 ms to 10 s, and
    /// `0 <= block_below < poll_above <= 1` (the gap is the hysteresis).
    ///
    /// # Errors
    /// A sentence saying which value is out of range.
    pub fn check(&self) -> Result<(), String> {
        if !(10..=10_000).contains(&self.period_ms) {
            return Err(format!("policy.period_ms = {} is not in 10..=10000", self.period_ms));
        }
        if !(0.0 <= self.block_below && self.block_below < self.poll_above && self.poll_above <= 1.0) {
            return Err(format!(
                "policy needs 0 <= block_below < poll_above <= 1, not {} and {}",
                self.block_below, self.poll_above
            ));
        }
        if self.step_window_ms != 0 && !(2..=self.period_ms).contains(&self.step_window_ms) {
            return Err(format!(
                "policy.step_window_ms = {} is neither 0 (off) nor in 2..=period_ms ({})",
                self.step_window_ms, self.period_ms
            ));
        }
        if self.step_window_ms != 0 && (!(self.step_above > 0.0 && self.step_above <= 1.0) || self.step_windows == 0) {
            return Err(format!(
                "policy needs 0 < step_above <= 1 and step_windows >= 1, not {} and {}",
                self.step_above, self.step_windows
            ));
        }
        Ok(())
    }

    /// The short window of the step rule, if it is on.
    pub fn step_window(&self) -> Option<Duration> {
        (self.step_window_ms > 0).then(|| Duration::from_millis(self.step_window_ms))
    }

    /// The slice to give a core's thread, if any (see [`CpuPolicy::slice_us`]).
    pub fn slice(&self) -> Option<Duration> {
        (self.slice_us > 0).then(|| Duration::from_micros(self.slice_us))
    }

    /// The self-poll rule of a dataplane's board: switch at
    /// `self_poll_batch` frames when its cores `may_poll` (its share is not
    /// 0 and a polling CPU is free or held by it), never otherwise; poll on
    /// one's own for two periods at most, and no longer than
    /// [`SELF_POLL_IDLE_US`] without work.
    pub fn self_poll_rule(&self, may_poll: bool) -> SelfPollRule {
        SelfPollRule {
            batch: if may_poll { self.self_poll_batch } else { 0 },
            limit: self.period() * SELF_POLL_LIMIT_PERIODS,
            idle: Duration::from_micros(SELF_POLL_IDLE_US),
        }
    }
}

/// What the policy remembers of one core between periods.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CoreState {
    /// The mode `ixcp` asked for last.
    pub mode: CoreMode,
    /// Periods in a row a polling core's load was below `block_below`.
    pub calm_periods: u32,
}

/// The load of one core over one period: the busy nanoseconds it published
/// between two samples over the wall time between them, clamped to 0..=1
/// (the counters are the dataplane's word: a counter that went backwards or
/// jumped reads as idle or fully busy, never as more).
pub fn core_load(before: &CoreSample, after: &CoreSample, wall: Duration) -> f64 {
    let wall_ns = wall.as_nanos() as f64;
    if wall_ns <= 0.0 {
        return 0.0;
    }
    let busy = after.busy_ns.saturating_sub(before.busy_ns) as f64;
    (busy / wall_ns).clamp(0.0, 1.0)
}

/// The step rule's memory of one blocking core: how many short windows in a
/// row its load reached `step_above`.
///
/// A step in load (10% to 90% of the peak, say) keeps a blocking core fully
/// busy from its start until it polls: every short window reads about 1. A
/// host stall at a low load leaves a backlog that the core drains at full
/// speed in a few milliseconds, and then it is idle again: one window reads
/// high, or two read part of it each, and the count starts again. So the rule
/// asks for `step_windows` windows in a row, each at `step_above`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StepWatch {
    high_windows: u32,
}

impl StepWatch {
    /// Counts one short window's `load` of a core that blocks; true when the
    /// windows make a step (and the count starts again).
    pub fn observe(&mut self, policy: &CpuPolicy, load: f64) -> bool {
        if load >= policy.step_above {
            self.high_windows = self.high_windows.saturating_add(1);
        } else {
            self.high_windows = 0;
        }
        let step = self.high_windows >= policy.step_windows.max(1);
        if step {
            self.high_windows = 0;
        }
        step
    }

    /// Forgets the windows counted (the core polls, or a period's decision
    /// judged it).
    pub fn reset(&mut self) {
        self.high_windows = 0;
    }
}

/// The state of a core the step rule moved to polling: polling, with one calm
/// period left, as a core that switched itself (see [`starting_state`]): the
/// next period's decision keeps it polling if its load stays at `block_below`
/// or more, and sends it back at once otherwise.
pub fn stepped_state(policy: &CpuPolicy) -> CoreState {
    CoreState { mode: CoreMode::BusyPoll, calm_periods: policy.block_after_periods.saturating_sub(1) }
}

/// The state a decision starts from: `asked`, what `ixcp` asked last, unless
/// the core `switched_itself` to polling since (it published a self-poll
/// count `ixcp` has not answered) while asked to block. Then the core polls,
/// and enters the decision as a polling core with one calm period left: its
/// load over the period keeps it polling (at least `block_below`, with a
/// polling CPU free) or sends it back to blocking at once. So a burst that was
/// a blip (a backlog after a host stall) costs one period of polling at most,
/// not `block_after_periods`.
pub fn starting_state(policy: &CpuPolicy, asked: CoreState, switched_itself: bool) -> CoreState {
    match asked.mode {
        CoreMode::Block if switched_itself => stepped_state(policy),
        _ => asked,
    }
}

/// Decides a core's mode for the next period from its `load` over the last
/// one; `may_poll` says whether a polling CPU is free for it within its
/// dataplane's share (a core polling already keeps its CPU while it may).
///
/// Rises fast, falls slow: one busy period gives a polling CPU, and
/// `block_after_periods` calm periods in a row take it back; loads between the
/// two thresholds change nothing. A core that may no longer poll blocks at once.
pub fn decide(policy: &CpuPolicy, state: CoreState, load: f64, may_poll: bool) -> CoreState {
    match state.mode {
        CoreMode::Block if may_poll && load >= policy.poll_above => {
            CoreState { mode: CoreMode::BusyPoll, calm_periods: 0 }
        }
        CoreMode::Block => CoreState { mode: CoreMode::Block, calm_periods: 0 },
        CoreMode::BusyPoll if !may_poll => CoreState { mode: CoreMode::Block, calm_periods: 0 },
        CoreMode::BusyPoll if load < policy.block_below => {
            let calm_periods = state.calm_periods.saturating_add(1);
            if calm_periods >= policy.block_after_periods {
                CoreState { mode: CoreMode::Block, calm_periods: 0 }
            } else {
                CoreState { mode: CoreMode::BusyPoll, calm_periods }
            }
        }
        CoreMode::BusyPoll => CoreState { mode: CoreMode::BusyPoll, calm_periods: 0 },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use CoreMode::{Block, BusyPoll};

    fn state(mode: CoreMode, calm_periods: u32) -> CoreState {
        CoreState { mode, calm_periods }
    }

    #[test]
    fn decisions_follow_the_table() {
        let policy = CpuPolicy {
            period_ms: 100,
            poll_above: 0.3,
            block_below: 0.1,
            block_after_periods: 3,
            ..Default::default()
        };
        // (state before, load, may poll, state after)
        let table = [
            (state(Block, 0), 0.0, true, state(Block, 0)),
            (state(Block, 0), 0.29, true, state(Block, 0)),
            (state(Block, 0), 0.30, true, state(BusyPoll, 0)),
            (state(Block, 0), 1.0, true, state(BusyPoll, 0)),
            (state(Block, 0), 1.0, false, state(Block, 0)),
            (state(BusyPoll, 0), 0.5, true, state(BusyPoll, 0)),
            (state(BusyPoll, 2), 0.2, true, state(BusyPoll, 0)),
            (state(BusyPoll, 0), 0.09, true, state(BusyPoll, 1)),
            (state(BusyPoll, 1), 0.0, true, state(BusyPoll, 2)),
            (state(BusyPoll, 2), 0.0, true, state(Block, 0)),
            (state(BusyPoll, 0), 0.9, false, state(Block, 0)),
            (state(BusyPoll, u32::MAX), 0.0, true, state(Block, 0)),
        ];
        for (before, load, may_poll, after) in table {
            assert_eq!(
                decide(&policy, before, load, may_poll),
                after,
                "{before:?} at load {load}, may poll {may_poll}"
            );
        }
    }

    #[test]
    fn a_core_that_switched_itself_is_kept_polling_by_its_load_or_sent_back_at_once() {
        let policy = CpuPolicy {
            period_ms: 100,
            poll_above: 0.6,
            block_below: 0.25,
            block_after_periods: 10,
            ..Default::default()
        };
        // (asked before, switched itself, load, may poll, state after)
        let table = [
            // The step: busy enough for a polling core, a CPU free: kept.
            (state(Block, 0), true, 0.4, true, state(BusyPoll, 0)),
            (state(Block, 0), true, 0.25, true, state(BusyPoll, 0)),
            // A blip: calm over the period, back to blocking at the first decision.
            (state(Block, 0), true, 0.1, true, state(Block, 0)),
            (state(Block, 0), true, 0.0, true, state(Block, 0)),
            // No CPU free, or a share of 0: back at once, however busy.
            (state(Block, 0), true, 0.9, false, state(Block, 0)),
            // Without a switch, a blocking core needs poll_above as before.
            (state(Block, 0), false, 0.4, true, state(Block, 0)),
            (state(Block, 0), false, 0.6, true, state(BusyPoll, 0)),
            // A core polling by ixcp's word that also counted a switch (it
            // switched just before ixcp asked it to poll) keeps its calm count.
            (state(BusyPoll, 3), true, 0.1, true, state(BusyPoll, 4)),
            (state(BusyPoll, 3), true, 0.5, true, state(BusyPoll, 0)),
        ];
        for (asked, switched, load, may_poll, after) in table {
            let start = starting_state(&policy, asked, switched);
            assert_eq!(
                decide(&policy, start, load, may_poll),
                after,
                "{asked:?}, switched itself {switched}, at load {load}, may poll {may_poll}"
            );
        }
        // With a single calm period configured, a blip is sent back too.
        let one = CpuPolicy { block_after_periods: 1, ..policy };
        assert_eq!(decide(&one, starting_state(&one, state(Block, 0), true), 0.1, true), state(Block, 0));
    }

    #[test]
    fn the_self_poll_rule_is_off_when_the_core_may_not_poll() {
        assert_eq!(CpuPolicy::default().self_poll_rule(true).batch, SELF_POLL_BATCH_DEFAULT, "off by default");
        let policy = CpuPolicy { self_poll_batch: 16, ..CpuPolicy::default() };
        let on = policy.self_poll_rule(true);
        assert_eq!(on.batch, 16);
        assert_eq!(on.limit, Duration::from_millis(200), "two periods");
        assert_eq!(policy.self_poll_rule(false).batch, 0);
        assert_eq!(CpuPolicy { self_poll_batch: 0, ..policy }.self_poll_rule(true).batch, 0);
    }

    #[test]
    fn a_falling_load_releases_the_cpu_after_the_calm_periods_only() {
        let policy = CpuPolicy::default();
        let mut core = decide(&policy, CoreState::default(), 0.8, true);
        assert_eq!(core.mode, BusyPoll);
        for period in 1..policy.block_after_periods {
            core = decide(&policy, core, 0.01, true);
            assert_eq!(core.mode, BusyPoll, "still polling after {period} calm periods");
        }
        assert_eq!(decide(&policy, core, 0.01, true).mode, Block);
    }

    #[test]
    fn loads_are_clamped_hostile_counters_included() {
        let at = |busy_ns| CoreSample { busy_ns, ..Default::default() };
        let period = Duration::from_millis(100);
        assert_eq!(core_load(&at(0), &at(50_000_000), period), 0.5);
        assert_eq!(core_load(&at(0), &at(u64::MAX), period), 1.0, "a jump reads as fully busy");
        assert_eq!(core_load(&at(900), &at(100), period), 0.0, "a counter that went back reads as idle");
        assert_eq!(core_load(&at(0), &at(100), Duration::ZERO), 0.0);
    }

    /// The loads of a run of short windows, each the share of its window a
    /// core was busy, for a core busy from `start_ms` for `busy_ms`.
    fn windows(window_ms: u64, count: u64, start_ms: u64, busy_ms: u64) -> Vec<f64> {
        (0..count)
            .map(|i| {
                let (from, to) = (i * window_ms, (i + 1) * window_ms);
                let busy = to.min(start_ms + busy_ms).saturating_sub(from.max(start_ms));
                busy as f64 / window_ms as f64
            })
            .collect()
    }

    /// The first window (from 1) at which the rule sees a step, if any.
    fn step_at(policy: &CpuPolicy, loads: &[f64]) -> Option<usize> {
        let mut watch = StepWatch::default();
        loads.iter().position(|&load| watch.observe(policy, load)).map(|i| i + 1)
    }

    #[test]
    fn a_step_is_seen_within_the_short_windows_and_a_stall_s_drain_is_not() {
        let policy = CpuPolicy { step_window_ms: 10, ..CpuPolicy::default() };
        assert!(policy.check().is_ok());
        // A step: fully busy from 3 ms into the first window on; seen at the
        // end of the third (the first is only part busy), 30 ms.
        assert_eq!(step_at(&policy, &windows(10, 20, 3, 1_000)), Some(3));
        // Busy from a window's start: two windows, 20 ms.
        assert_eq!(step_at(&policy, &windows(10, 20, 0, 1_000)), Some(2));
        // A step that leaves the core busy 85% of each window is a step too.
        assert_eq!(step_at(&policy, &[0.1, 0.85, 0.85, 0.1]), Some(3));
        // A host stall's drain at 10% of the peak: 100 ms of requests at a
        // tenth of the rate the core serves, about 10 ms at full busy, at any
        // alignment; and a longer one of 15 ms.
        for start in 0..10 {
            assert_eq!(step_at(&policy, &windows(10, 20, start, 10)), None, "a 10 ms drain from {start} ms");
            assert_eq!(step_at(&policy, &windows(10, 20, start, 15)), None, "a 15 ms drain from {start} ms");
        }
        // Two drains with a calm window between them are two blips.
        assert_eq!(step_at(&policy, &[0.0, 1.0, 0.2, 1.0, 0.0]), None);
        // Steady 10% and steady half load: nothing.
        assert_eq!(step_at(&policy, &[0.13; 50]), None);
        assert_eq!(step_at(&policy, &[0.5; 50]), None);
        // Three windows asked: a drain of two full windows is not a step.
        let three = CpuPolicy { step_windows: 3, ..policy };
        assert_eq!(step_at(&three, &windows(10, 20, 0, 20)), None);
        assert_eq!(step_at(&three, &windows(10, 20, 0, 30)), Some(3));
    }

    #[test]
    fn a_core_moved_by_the_step_rule_stays_polling_only_if_its_period_is_busy() {
        let policy = CpuPolicy { step_window_ms: 10, poll_above: 0.6, block_below: 0.25, ..CpuPolicy::default() };
        let moved = stepped_state(&policy);
        assert_eq!(moved.mode, BusyPoll);
        assert_eq!(decide(&policy, moved, 0.9, true), state(BusyPoll, 0), "the step held");
        assert_eq!(decide(&policy, moved, 0.1, true), state(Block, 0), "a blip: back at the next decision");
        assert_eq!(decide(&policy, moved, 0.9, false), state(Block, 0), "no CPU for it any more");
    }

    #[test]
    fn a_slice_is_given_to_core_threads_only_when_set() {
        assert_eq!(CpuPolicy::default().slice(), None, "the kernel's slice by default");
        let policy = CpuPolicy { slice_us: 100, ..CpuPolicy::default() };
        assert_eq!(policy.slice(), Some(Duration::from_micros(100)));
    }

    #[test]
    fn thresholds_are_checked() {
        assert!(CpuPolicy::default().check().is_ok());
        assert_eq!(CpuPolicy::default().step_window(), None, "the step rule is off by default");
        let bad = [
            CpuPolicy { period_ms: 5, ..Default::default() },
            CpuPolicy { poll_above: 0.1, block_below: 0.1, ..Default::default() },
            CpuPolicy { poll_above: 1.5, ..Default::default() },
            CpuPolicy { block_below: -0.1, ..Default::default() },
            CpuPolicy { poll_above: f64::NAN, ..Default::default() },
            CpuPolicy { step_window_ms: 1, ..Default::default() },
            CpuPolicy { step_window_ms: 200, ..Default::default() },
            CpuPolicy { step_window_ms: 10, step_above: 0.0, ..Default::default() },
            CpuPolicy { step_window_ms: 10, step_above: f64::NAN, ..Default::default() },
            CpuPolicy { step_window_ms: 10, step_windows: 0, ..Default::default() },
        ];
        for policy in bad {
            assert!(policy.check().is_err(), "{policy:?}");
        }
    }
}
