//! What a core does when a round finds no work: the [`IdlePolicy`] a runtime is
//! configured with, and [`IdleSpin`], the per-core state that applies it.

use std::fmt;
use std::str::FromStr;
use std::time::{Duration, Instant};

/// What a core does when a round finds no work.
///
/// Spelled on command lines as `busy`, `block`, `adaptive` (the default spin
/// budget) or `adaptive:US` (a spin budget of `US` microseconds), as parsed by
/// [`FromStr`] and written by [`Display`](fmt::Display).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IdlePolicy {
    /// Never block: the lowest latency, one CPU always busy.
    BusyPoll,
    /// Keep polling for `spin` after the last round that found work (as
    /// Linux's `busy_poll` budget), then block on the queue's and the
    /// executor's descriptors until work or the next timer.
    Adaptive {
        /// How long a core keeps polling an idle queue before it blocks.
        spin: Duration,
    },
    /// Block as soon as a round finds nothing, as tokio does.
    Block,
}

impl IdlePolicy {
    /// The spin budget of `adaptive` without a number, in microseconds.
    ///
    /// Reasoned, not yet settled by measurement: a busy-polling core answers a
    /// lone request in about 27 us here (issue #19), so a budget of a few such
    /// round trips keeps a lightly loaded core polling, while an idle one
    /// blocks within 0.1 ms. `ix-bench --unloaded` compares budgets; the one
    /// run so far was too disturbed to choose (see `docs/results.md`).
    pub const DEFAULT_SPIN_US: u64 = 100;

    /// `Adaptive` with a spin budget of `us` microseconds.
    pub const fn adaptive_us(us: u64) -> Self {
        IdlePolicy::Adaptive { spin: Duration::from_micros(us) }
    }
}

impl Default for IdlePolicy {
    fn default() -> Self {
        IdlePolicy::adaptive_us(Self::DEFAULT_SPIN_US)
    }
}

impl fmt::Display for IdlePolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            IdlePolicy::BusyPoll => f.write_str("busy"),
            IdlePolicy::Adaptive { spin } => write!(f, "adaptive:{}", spin.as_micros()),
            IdlePolicy::Block => f.write_str("block"),
        }
    }
}

/// An idle policy that could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("idle policy {0:?}: expected busy, block, adaptive or adaptive:MICROSECONDS")]
pub struct ParseIdlePolicyError(String);

impl FromStr for IdlePolicy {
    type Err = ParseIdlePolicyError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let bad = || ParseIdlePolicyError(text.to_string());
        match text.split_once(':') {
            None => match text {
                "busy" => Ok(IdlePolicy::BusyPoll),
                "block" => Ok(IdlePolicy::Block),
                "adaptive" => Ok(IdlePolicy::default()),
                _ => Err(bad()),
            },
            Some(("adaptive", us)) => us.parse().map(IdlePolicy::adaptive_us).map_err(|_| bad()),
            Some(_) => Err(bad()),
        }
    }
}

/// One core's idle state under its policy: when the current run of empty
/// rounds began. Pure logic, driven by the loop's clock readings, so that the
/// policy is tested without time passing.
#[derive(Debug, Clone)]
pub(crate) struct IdleSpin {
    policy: IdlePolicy,
    idle_since: Option<Instant>,
}

impl IdleSpin {
    pub(crate) fn new(policy: IdlePolicy) -> Self {
        Self { policy, idle_since: None }
    }

    /// Follows `policy` from now on (ixcp's mode word changes it at run
    /// time); a spin under way keeps its start.
    pub(crate) fn set_policy(&mut self, policy: IdlePolicy) {
        self.policy = policy;
    }

    /// A round found work: the next empty round starts a new spin.
    pub(crate) fn worked(&mut self) {
        self.idle_since = None;
    }

    /// A round found nothing at `now`: whether the core should block now.
    /// Blocking ends the spin, so the round after the wake-up starts afresh.
    pub(crate) fn should_block(&mut self, now: Instant) -> bool {
        let block = match self.policy {
            IdlePolicy::BusyPoll => false,
            IdlePolicy::Block => true,
            IdlePolicy::Adaptive { spin } => now.saturating_duration_since(*self.idle_since.get_or_insert(now)) >= spin,
        };
        if block {
            self.idle_since = None;
        }
        block
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const US: Duration = Duration::from_micros(1);

    #[test]
    fn busy_poll_never_blocks() {
        let mut idle = IdleSpin::new(IdlePolicy::BusyPoll);
        let t0 = Instant::now();
        assert!((0..1000).all(|i| !idle.should_block(t0 + 1000 * US * i)));
    }

    #[test]
    fn block_blocks_at_the_first_empty_round() {
        let mut idle = IdleSpin::new(IdlePolicy::Block);
        assert!(idle.should_block(Instant::now()));
    }

    #[test]
    fn adaptive_spins_for_its_budget_from_the_first_empty_round() {
        let mut idle = IdleSpin::new(IdlePolicy::adaptive_us(50));
        let t0 = Instant::now() + 10_000 * US;
        assert!(!idle.should_block(t0));
        assert!(!idle.should_block(t0 + 49 * US));
        assert!(idle.should_block(t0 + 50 * US));
        // Blocking ended the spin: the round after the wake-up spins again.
        assert!(!idle.should_block(t0 + 5000 * US));
        assert!(idle.should_block(t0 + 5050 * US));
    }

    #[test]
    fn work_restarts_the_budget() {
        let mut idle = IdleSpin::new(IdlePolicy::adaptive_us(50));
        let t0 = Instant::now();
        assert!(!idle.should_block(t0));
        assert!(!idle.should_block(t0 + 40 * US));
        idle.worked();
        assert!(!idle.should_block(t0 + 60 * US));
        assert!(!idle.should_block(t0 + 100 * US));
        assert!(idle.should_block(t0 + 110 * US));
    }

    #[test]
    fn a_zero_budget_blocks_at_once() {
        let mut idle = IdleSpin::new(IdlePolicy::adaptive_us(0));
        assert!(idle.should_block(Instant::now()));
    }

    #[test]
    fn a_clock_that_steps_back_does_not_block_early() {
        let mut idle = IdleSpin::new(IdlePolicy::adaptive_us(50));
        let t0 = Instant::now() + 10_000 * US;
        assert!(!idle.should_block(t0));
        assert!(!idle.should_block(t0 - 5 * US));
    }

    #[test]
    fn policies_read_and_write_their_spelling() {
        for (text, policy) in [
            ("busy", IdlePolicy::BusyPoll),
            ("block", IdlePolicy::Block),
            ("adaptive", IdlePolicy::default()),
            ("adaptive:25", IdlePolicy::adaptive_us(25)),
            ("adaptive:0", IdlePolicy::adaptive_us(0)),
        ] {
            assert_eq!(text.parse::<IdlePolicy>(), Ok(policy), "{text}");
            assert_eq!(policy.to_string().parse::<IdlePolicy>(), Ok(policy));
        }
        assert_eq!(IdlePolicy::default().to_string(), format!("adaptive:{}", IdlePolicy::DEFAULT_SPIN_US));
        for bad in [
            "",
            "spin",
            "adaptive:",
            "adaptive:-1",
            "adaptive:1.5",
            "busy:3",
            "block:x",
            "adaptive:99999999999999999999",
        ] {
            assert!(bad.parse::<IdlePolicy>().is_err(), "{bad}");
        }
    }
}
