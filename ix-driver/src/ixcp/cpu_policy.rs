//! How `ixcp` decides what each dataplane core does: a core's load over one
//! period, on one scale whether it polled or blocked (its busy share while it
//! polls; its frame rate against the capacity it showed polling while it
//! blocks), and a pure decision, busy-poll on a CPU of its own or block sharing
//! one, with hysteresis.

use std::time::Duration;

use serde::Deserialize;

use super::core_board::{CoreMode, CoreSample};

/// The thresholds of the decision (the `[policy]` table of the configuration).
#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CpuPolicy {
    /// How often `ixcp` decides, in milliseconds.
    pub period_ms: u64,
    /// A blocking core whose load ([`core_load`], 0 to 1) over one period
    /// reaches this gets a polling CPU, if its dataplane's share and a free
    /// CPU allow.
    pub poll_above: f64,
    /// A polling core whose load stays below this ...
    pub block_below: f64,
    /// ... for this many periods in a row goes back to blocking.
    pub block_after_periods: u32,
}

impl Default for CpuPolicy {
    fn default() -> Self {
        CpuPolicy { period_ms: 100, poll_above: 0.30, block_below: 0.10, block_after_periods: 10 }
    }
}

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
        Ok(())
    }
}

/// What the policy remembers of one core between periods.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CoreState {
    /// The mode `ixcp` asked for last.
    pub mode: CoreMode,
    /// Periods in a row a polling core's load was below `block_below`.
    pub calm_periods: u32,
    /// The core's capacity, what a blocking core's frame rate is measured
    /// against: frames received per second of busy time, a moving average
    /// over the periods it polled throughout; until it has polled, the most
    /// a blocking period showed (a lower bound: a blocking core's busy time
    /// reads high). 0 until a period had [`CAPACITY_MIN_FRAMES`].
    pub capacity_fps: u64,
    /// Whether `capacity_fps` comes from polling periods.
    pub capacity_polled: bool,
}

/// Frames a polling period needs before its busy time says anything of the
/// core's capacity (fewer: the rounds' fixed costs outweigh the frames').
pub const CAPACITY_MIN_FRAMES: u64 = 200;

/// What one period showed of a core, from two of its samples.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CorePeriod {
    /// Its busy nanoseconds over the period's wall time, clamped to 0..=1.
    pub busy: f64,
    /// Frames it received.
    pub rx_frames: u64,
    /// The period's wall time.
    pub seconds: f64,
    /// Whether it was busy-polling at both samples (its mode in effect).
    pub polled: bool,
    /// Whether it was blocking at both samples.
    pub blocked: bool,
    /// Whether it published at all since the last sample.
    pub published: bool,
}

/// One period of a core: the counters it published between two samples over
/// the wall time between them. The counters are the dataplane's word: a
/// counter that went backwards counts as nothing, a busy time that jumped
/// reads as fully busy, never as more.
pub fn core_period(before: &CoreSample, after: &CoreSample, wall: Duration) -> CorePeriod {
    let seconds = wall.as_secs_f64();
    let busy_ns = after.busy_ns.saturating_sub(before.busy_ns) as f64;
    CorePeriod {
        busy: if seconds > 0.0 { (busy_ns / 1e9 / seconds).clamp(0.0, 1.0) } else { 0.0 },
        rx_frames: after.rx_packets.saturating_sub(before.rx_packets),
        seconds,
        polled: before.mode_in_effect == CoreMode::BusyPoll && after.mode_in_effect == CoreMode::BusyPoll,
        blocked: before.mode_in_effect == CoreMode::Block && after.mode_in_effect == CoreMode::Block,
        published: after.published != before.published,
    }
}

/// A core's load over `period`, 0 to 1, on the same scale in both modes.
///
/// A polling core's busy share is its own work: its empty rounds are not
/// busy, and nothing else runs on its CPU. A blocking core's is not: the
/// rounds after each wake-up run on caches another process left cold, and a
/// round the scheduler or the host interrupts stretches, so the same frames
/// read busier, and a host stall can make one period read fully busy. So a
/// blocking core's load is its frame rate over its capacity: about the busy
/// share it would have if it polled. Before any period had enough frames to
/// give a capacity, its busy share stands in.
pub fn core_load(state: &CoreState, period: &CorePeriod) -> f64 {
    if period.polled || state.capacity_fps == 0 || period.seconds <= 0.0 {
        return period.busy;
    }
    (period.rx_frames as f64 / period.seconds / state.capacity_fps as f64).clamp(0.0, 1.0)
}

/// The capacity after `period` (see [`CoreState::capacity_fps`]): a period
/// with enough frames and some busy time shows `frames / busy seconds`. A
/// polling one moves the capacity a quarter of the way there (sets it, the
/// first time); a blocking one raises it to that, while no polling period did
/// yet; a period the core moved in says nothing.
fn learned_capacity(state: &CoreState, period: &CorePeriod) -> (u64, bool) {
    let kept = (state.capacity_fps, state.capacity_polled);
    if period.rx_frames < CAPACITY_MIN_FRAMES || period.busy <= 0.0 || period.seconds <= 0.0 {
        return kept;
    }
    let shown = (period.rx_frames as f64 / period.seconds / period.busy) as u64;
    let capacity = state.capacity_fps;
    match (period.polled, period.blocked, state.capacity_polled) {
        (true, _, true) => (capacity - capacity / 4 + shown / 4, true),
        (true, _, false) => (shown, true),
        (false, true, false) => (capacity.max(shown), false),
        _ => kept,
    }
}

/// Decides a core's mode for the next period from what it did over the last
/// one; `may_poll` says whether a polling CPU is free for it within its
/// dataplane's share (a core polling already keeps its CPU while it may).
///
/// Rises fast, falls slow: one busy period gives a polling CPU, and
/// `block_after_periods` calm periods in a row take it back; loads between the
/// two thresholds change nothing. A core that may no longer poll blocks at
/// once. A period in which the core published nothing (stopped, or not
/// scheduled) says nothing of its load: it changes neither the mode nor the
/// count of calm periods.
pub fn decide(policy: &CpuPolicy, state: CoreState, period: &CorePeriod, may_poll: bool) -> CoreState {
    let (capacity_fps, capacity_polled) = learned_capacity(&state, period);
    let load = core_load(&state, period);
    let (mode, calm_periods) = match state.mode {
        CoreMode::BusyPoll if !may_poll => (CoreMode::Block, 0),
        _ if !period.published => (state.mode, state.calm_periods),
        CoreMode::Block if may_poll && load >= policy.poll_above => (CoreMode::BusyPoll, 0),
        CoreMode::Block => (CoreMode::Block, 0),
        CoreMode::BusyPoll if load < policy.block_below => {
            let calm_periods = state.calm_periods.saturating_add(1);
            if calm_periods >= policy.block_after_periods {
                (CoreMode::Block, 0)
            } else {
                (CoreMode::BusyPoll, calm_periods)
            }
        }
        CoreMode::BusyPoll => (CoreMode::BusyPoll, 0),
    };
    CoreState { mode, calm_periods, capacity_fps, capacity_polled }
}

#[cfg(test)]
mod tests {
    use super::*;
    use CoreMode::{Block, BusyPoll};

    fn state(mode: CoreMode, calm_periods: u32) -> CoreState {
        CoreState { mode, calm_periods, capacity_fps: 0, capacity_polled: false }
    }

    /// A period of 100 ms with this busy share, in which the core published
    /// and followed `mode` throughout, receiving `fps` frames a second.
    fn period_of(mode: CoreMode, busy: f64, fps: u64) -> CorePeriod {
        CorePeriod {
            busy,
            rx_frames: fps / 10,
            seconds: 0.1,
            polled: mode == BusyPoll,
            blocked: mode == Block,
            published: true,
        }
    }

    #[test]
    fn decisions_follow_the_table() {
        let policy = CpuPolicy { period_ms: 100, poll_above: 0.3, block_below: 0.1, block_after_periods: 3 };
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
                decide(&policy, before, &period_of(before.mode, load, 0), may_poll),
                after,
                "{before:?} at load {load}, may poll {may_poll}"
            );
        }
    }

    #[test]
    fn a_falling_load_releases_the_cpu_after_the_calm_periods_only() {
        let policy = CpuPolicy::default();
        let mut core = decide(&policy, CoreState::default(), &period_of(Block, 0.8, 0), true);
        assert_eq!(core.mode, BusyPoll);
        for period in 1..policy.block_after_periods {
            core = decide(&policy, core, &period_of(BusyPoll, 0.01, 0), true);
            assert_eq!(core.mode, BusyPoll, "still polling after {period} calm periods");
        }
        assert_eq!(decide(&policy, core, &period_of(BusyPoll, 0.01, 0), true).mode, Block);
    }

    #[test]
    fn a_blocking_core_is_measured_against_the_capacity_it_showed_polling() {
        // The efficiency run's thresholds; the figures are its 10% and 90%
        // windows (scripts/ixcp-efficiency.sh): polling at 90% of the peak, the
        // core was busy 0.55 of the time for 130,000 frames a second.
        let policy = CpuPolicy { period_ms: 100, poll_above: 0.4, block_below: 0.25, block_after_periods: 10 };
        let polled = decide(&policy, state(BusyPoll, 0), &period_of(BusyPoll, 0.55, 130_000), true);
        assert_eq!(polled.capacity_fps, 236_363, "130,000 frames a second in 0.55 of it");
        let blocking = CoreState { mode: Block, ..polled };
        // At 10%, one period that a host stall or a burst made read fully
        // busy: its frames say 0.06, and the core stays blocking.
        let stalled = period_of(Block, 1.0, 14_500);
        assert!((core_load(&blocking, &stalled) - 0.061).abs() < 0.001);
        assert_eq!(decide(&policy, blocking, &stalled, true).mode, Block);
        // At 90%, a blocking core's busy share may read anything; its frames
        // say 0.55, over `poll_above`.
        let loaded = period_of(Block, 0.30, 130_000);
        assert!((core_load(&blocking, &loaded) - 0.55).abs() < 0.001);
        assert_eq!(decide(&policy, blocking, &loaded, true).mode, BusyPoll);
        // A core that has not polled yet is judged by its busy share.
        assert_eq!(decide(&policy, state(Block, 0), &stalled, true).mode, BusyPoll);
        assert_eq!(decide(&policy, state(Block, 0), &loaded, true).mode, Block);
    }

    #[test]
    fn a_host_stall_at_10_percent_does_not_send_a_blocking_core_to_polling() {
        // The efficiency run's 10% windows: a blocking core busy 0.15 of the
        // time for 14,500 frames a second, and now and then one period that a
        // host stall or the burst after it made read 0.85 or fully busy.
        let policy = CpuPolicy { period_ms: 100, poll_above: 0.4, block_below: 0.25, block_after_periods: 10 };
        let mut core = state(Block, 0);
        for busy in [0.16, 0.14, 0.15] {
            core = decide(&policy, core, &period_of(Block, busy, 14_500), true);
        }
        assert_eq!((core.mode, core.capacity_fps, core.capacity_polled), (Block, 103_571, false));
        for busy in [0.85, 1.0] {
            let stalled = period_of(Block, busy, 14_500);
            assert!((core_load(&core, &stalled) - 0.14).abs() < 0.001);
            core = decide(&policy, core, &stalled, true);
            assert_eq!(core.mode, Block, "a period read {busy} busy");
        }
    }

    #[test]
    fn the_capacity_follows_polling_periods_once_there_are_some() {
        let policy = CpuPolicy::default();
        // Blocking periods with enough frames raise it, and only raise it.
        let mut core = decide(&policy, state(Block, 0), &period_of(Block, 0.5, 50_000), true);
        assert_eq!((core.capacity_fps, core.capacity_polled), (100_000, false));
        core = decide(&policy, core, &period_of(Block, 0.5, 40_000), true);
        assert_eq!(core.capacity_fps, 100_000);
        // The first polling period sets it; the next move it a quarter of the way.
        let mut core = decide(&policy, CoreState { mode: BusyPoll, ..core }, &period_of(BusyPoll, 0.5, 30_000), true);
        assert_eq!((core.capacity_fps, core.capacity_polled), (60_000, true));
        core = decide(&policy, core, &period_of(BusyPoll, 0.5, 50_000), true);
        assert_eq!(core.capacity_fps, 70_000);
        // Then blocking periods, polling ones with too few frames or no busy
        // time, and a period the core moved in say nothing of it.
        for period in [
            period_of(Block, 0.1, 1_000_000),
            period_of(BusyPoll, 0.001, (CAPACITY_MIN_FRAMES - 1) * 10),
            period_of(BusyPoll, 0.0, 100_000),
            CorePeriod { polled: false, ..period_of(BusyPoll, 0.1, 1_000_000) },
        ] {
            assert_eq!(decide(&policy, core, &period, true).capacity_fps, 70_000, "{period:?}");
        }
    }

    #[test]
    fn a_period_without_a_publication_changes_nothing_but_a_lost_share() {
        let policy = CpuPolicy { block_after_periods: 2, ..CpuPolicy::default() };
        let silent = |mode| CorePeriod { published: false, ..period_of(mode, 0.0, 0) };
        // A polling core that published nothing for many periods (a long
        // round, or off its CPU) is not calm: it keeps polling.
        let mut core = state(BusyPoll, 1);
        for _ in 0..100 {
            core = decide(&policy, core, &silent(BusyPoll), true);
        }
        assert_eq!(core, state(BusyPoll, 1));
        assert_eq!(decide(&policy, state(Block, 0), &silent(Block), true), state(Block, 0));
        assert_eq!(decide(&policy, state(BusyPoll, 1), &silent(BusyPoll), false), state(Block, 0));
    }

    #[test]
    fn periods_are_clamped_hostile_counters_included() {
        let at = |busy_ns, rx_packets, published| CoreSample { busy_ns, rx_packets, published, ..Default::default() };
        let wall = Duration::from_millis(100);
        let period = core_period(&at(0, 0, 0), &at(50_000_000, 700, 3), wall);
        assert_eq!((period.busy, period.rx_frames, period.published, period.polled), (0.5, 700, true, false));
        assert_eq!(core_period(&at(0, 0, 0), &at(u64::MAX, 0, 1), wall).busy, 1.0, "a jump reads as fully busy");
        let back = core_period(&at(900, 900, 5), &at(100, 100, 5), wall);
        assert_eq!((back.busy, back.rx_frames, back.published), (0.0, 0, false), "counters that went back");
        assert_eq!(core_period(&at(0, 0, 0), &at(100, 0, 1), Duration::ZERO).busy, 0.0);
        let polling = CoreSample { mode_in_effect: BusyPoll, ..at(0, 0, 0) };
        assert!(core_period(&polling, &CoreSample { published: 1, ..polling }, wall).polled);
        assert!(!core_period(&at(0, 0, 0), &polling, wall).polled, "it moved during the period");
        // A capacity of u64::MAX frames a second (a hostile jump) reads as idle.
        let huge = CoreState { capacity_fps: u64::MAX, ..state(Block, 0) };
        assert!(core_load(&huge, &period_of(Block, 1.0, 1_000)) < 1e-12);
    }

    #[test]
    fn thresholds_are_checked() {
        assert!(CpuPolicy::default().check().is_ok());
        let bad = [
            CpuPolicy { period_ms: 5, ..Default::default() },
            CpuPolicy { poll_above: 0.1, block_below: 0.1, ..Default::default() },
            CpuPolicy { poll_above: 1.5, ..Default::default() },
            CpuPolicy { block_below: -0.1, ..Default::default() },
            CpuPolicy { poll_above: f64::NAN, ..Default::default() },
        ];
        for policy in bad {
            assert!(policy.check().is_err(), "{policy:?}");
        }
    }
}
