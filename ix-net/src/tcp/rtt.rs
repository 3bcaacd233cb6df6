//! The retransmission timeout: RFC 6298's smoothed round-trip time estimator
//! with exponential backoff.

use std::time::Duration;

use crate::time::duration_micros;
use crate::timer::TICK_MICROS;

/// Default lower bound of the retransmission timeout, as Linux (RFC 6298
/// suggests 1 s; 200 ms recovers faster from losses on short paths).
pub const RTO_MIN_MS: u64 = 200;

/// Default upper bound of the retransmission timeout, backoff included.
pub const RTO_MAX_MS: u64 = 60_000;

/// The retransmission timeout before the first sample (RFC 6298 §2.1).
pub const RTO_INITIAL_MS: u64 = 1_000;

/// The bounds and clock granularity an [`RttEstimator`] works with.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct RttConfig {
    /// The smallest timeout computed from samples (default [`RTO_MIN_MS`]).
    pub rto_min: Duration,
    /// The largest timeout, backoff included (default [`RTO_MAX_MS`]).
    pub rto_max: Duration,
    /// The timeout before any sample (default [`RTO_INITIAL_MS`]).
    pub rto_initial: Duration,
    /// G, the granularity of the clock the samples are measured with: the
    /// variance term never counts for less (default one timer-wheel tick,
    /// [`TICK_MICROS`]; use 1 ms if samples come from millisecond timestamps).
    pub granularity: Duration,
}

impl Default for RttConfig {
    fn default() -> Self {
        RttConfig {
            rto_min: Duration::from_millis(RTO_MIN_MS),
            rto_max: Duration::from_millis(RTO_MAX_MS),
            rto_initial: Duration::from_millis(RTO_INITIAL_MS),
            granularity: Duration::from_micros(TICK_MICROS),
        }
    }
}

/// The smoothed RTT and its variation, per RFC 6298, in microseconds.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
struct Smoothed {
    srtt_micros: u64,
    rttvar_micros: u64,
}

/// Estimates a connection's round-trip time and derives its retransmission
/// timeout (RTO), following RFC 6298:
///
/// - first sample R: SRTT = R, RTTVAR = R/2;
/// - later samples: RTTVAR = 3/4·RTTVAR + 1/4·|SRTT − R|, then
///   SRTT = 7/8·SRTT + 1/8·R;
/// - RTO = SRTT + max(G, 4·RTTVAR), kept within `[rto_min, rto_max]`;
/// - each [`backoff`](RttEstimator::backoff) doubles the RTO (up to
///   `rto_max`) until the next sample.
///
/// Choosing samples is the caller's job (the connection times its own
/// transmissions: Karn's rule, and timestamps only to tell which copy of a
/// retransmitted segment arrived; see `docs/loss-recovery.md`).
/// [`on_sample_in_flight`] damps the gains as RFC 7323 §4.2 suggests, for a
/// caller that takes many samples per round trip and wants them to weigh as
/// much as the one sample RFC 6298 assumes.
///
/// Linux applies its minimum (also 200 ms) to the variance term instead, so its
/// RTO is at least SRTT + 200 ms; here it bounds the result, as RFC 6298 §2.4
/// does (the comparison is in `docs/loss-recovery.md`).
///
/// [`on_sample_in_flight`]: RttEstimator::on_sample_in_flight
///
/// The estimator works in whole microseconds: the bounds are truncated to
/// microseconds once, and the timeout is derived when a sample or a backoff
/// changes it, not each time it is read (it is read for every RTO armed).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct RttEstimator {
    config: RttConfig,
    bounds: BoundsMicros,
    smoothed: Option<Smoothed>,
    /// How many times the timeout doubled since the last sample.
    backoffs: u32,
    /// The current timeout, backoff included.
    rto_micros: u64,
}

/// [`RttConfig`] in whole microseconds.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
struct BoundsMicros {
    rto_min: u64,
    rto_max: u64,
    rto_initial: u64,
    granularity: u64,
}

impl BoundsMicros {
    fn of(config: &RttConfig) -> Self {
        BoundsMicros {
            rto_min: duration_micros(config.rto_min),
            rto_max: duration_micros(config.rto_max),
            rto_initial: duration_micros(config.rto_initial),
            granularity: duration_micros(config.granularity),
        }
    }
}

impl Default for RttEstimator {
    fn default() -> Self {
        RttEstimator::new(RttConfig::default())
    }
}

impl RttEstimator {
    /// An estimator with no sample yet: the RTO is `config.rto_initial`.
    pub fn new(config: RttConfig) -> Self {
        let bounds = BoundsMicros::of(&config);
        let mut estimator = RttEstimator { config, bounds, smoothed: None, backoffs: 0, rto_micros: 0 };
        estimator.rto_micros = estimator.derive_rto_micros();
        estimator
    }

    /// Takes one round-trip measurement into the estimate and clears any
    /// backoff. RFC 6298's gains: alpha = 1/8, beta = 1/4.
    pub fn on_sample(&mut self, rtt: Duration) {
        self.on_sample_in_flight(rtt, 1);
    }

    /// Takes one of `expected_samples` measurements expected in this round
    /// trip, with the gains divided accordingly (RFC 7323 §4.2: alpha' =
    /// alpha / ExpectedSamples, beta' = beta / ExpectedSamples, where
    /// ExpectedSamples = ceil(FlightSize / (SMSS · 2)) when every other segment
    /// is acknowledged). The first sample of a connection is taken whole.
    /// `expected_samples` of 0 counts as 1.
    pub fn on_sample_in_flight(&mut self, rtt: Duration, expected_samples: u32) {
        let sample = duration_micros(rtt);
        let divisor = u64::from(expected_samples.max(1));
        self.backoffs = 0;
        self.smoothed = Some(match self.smoothed {
            None => Smoothed { srtt_micros: sample, rttvar_micros: sample / 2 },
            Some(Smoothed { srtt_micros, rttvar_micros }) => {
                // RTTVAR uses the error against the old SRTT (RFC 6298 §2.3).
                let error = srtt_micros.abs_diff(sample);
                Smoothed {
                    rttvar_micros: approach(rttvar_micros, error, 4 * divisor),
                    srtt_micros: approach(srtt_micros, sample, 8 * divisor),
                }
            }
        });
        self.rto_micros = self.derive_rto_micros();
    }

    /// Doubles the timeout after it expired (RFC 6298 §5.5), up to `rto_max`.
    /// The next sample undoes it.
    pub fn backoff(&mut self) {
        if self.rto_micros < self.bounds.rto_max {
            self.backoffs += 1;
            self.rto_micros = self.derive_rto_micros();
        }
    }

    /// The current retransmission timeout, backoff included.
    pub fn rto(&self) -> Duration {
        Duration::from_micros(self.rto_micros)
    }

    /// [`RttEstimator::rto`] in microseconds.
    pub fn rto_micros(&self) -> u64 {
        self.rto_micros
    }

    fn derive_rto_micros(&self) -> u64 {
        let bounds = &self.bounds;
        let base = match self.smoothed {
            None => bounds.rto_initial,
            Some(Smoothed { srtt_micros, rttvar_micros }) => {
                srtt_micros.saturating_add(rttvar_micros.saturating_mul(4).max(bounds.granularity))
            }
        };
        // Not `clamp`: it panics when a configuration has min > max.
        let base = base.max(bounds.rto_min).min(bounds.rto_max);
        base.saturating_mul(1u64.checked_shl(self.backoffs).unwrap_or(u64::MAX)).min(bounds.rto_max)
    }

    /// The smoothed round-trip time, or `None` before the first sample.
    pub fn srtt(&self) -> Option<Duration> {
        self.srtt_micros().map(Duration::from_micros)
    }

    /// [`RttEstimator::srtt`] in microseconds.
    pub fn srtt_micros(&self) -> Option<u64> {
        self.smoothed.map(|smoothed| smoothed.srtt_micros)
    }

    /// The round-trip time variation, or `None` before the first sample.
    pub fn rttvar(&self) -> Option<Duration> {
        self.smoothed.map(|smoothed| Duration::from_micros(smoothed.rttvar_micros))
    }

    /// How many times the timeout was doubled since the last sample.
    pub fn backoffs(&self) -> u32 {
        self.backoffs
    }

    /// The bounds this estimator works with.
    pub fn config(&self) -> &RttConfig {
        &self.config
    }
}

/// Moves `current` a `1/divisor` of the way towards `target` (an exponentially
/// weighted moving average with gain `1/divisor`), rounding towards `current`.
fn approach(current: u64, target: u64, divisor: u64) -> u64 {
    if target >= current { current + (target - current) / divisor } else { current - (current - target) / divisor }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(millis: u64) -> Duration {
        Duration::from_millis(millis)
    }

    #[test]
    fn starts_at_the_initial_timeout() {
        let rtt = RttEstimator::default();
        assert_eq!(rtt.rto(), ms(1_000));
        assert_eq!(rtt.srtt(), None);
        assert_eq!(rtt.rttvar(), None);
    }

    #[test]
    fn first_sample_sets_srtt_and_half_as_variation() {
        let mut rtt = RttEstimator::default();
        rtt.on_sample(ms(100));
        assert_eq!(rtt.srtt(), Some(ms(100)));
        assert_eq!(rtt.rttvar(), Some(ms(50)));
        // 100 + 4 * 50
        assert_eq!(rtt.rto(), ms(300));
    }

    #[test]
    fn later_samples_follow_the_rfc_formulas() {
        let mut rtt = RttEstimator::default();
        rtt.on_sample(ms(400));
        // RTTVAR = 3/4 * 200 + 1/4 * |400 - 800| = 250; SRTT = 7/8 * 400 + 1/8 * 800 = 450.
        rtt.on_sample(ms(800));
        assert_eq!(rtt.rttvar(), Some(ms(250)));
        assert_eq!(rtt.srtt(), Some(ms(450)));
        assert_eq!(rtt.rto(), ms(1_450));
        // RTTVAR = 3/4 * 250 + 1/4 * |450 - 50| = 287.5; SRTT = 7/8 * 450 + 1/8 * 50 = 400.
        rtt.on_sample(ms(50));
        assert_eq!(rtt.rttvar(), Some(Duration::from_micros(287_500)));
        assert_eq!(rtt.srtt(), Some(ms(400)));
        assert_eq!(rtt.rto(), ms(1_550));
    }

    #[test]
    fn timeout_is_clamped_to_the_bounds() {
        let mut rtt = RttEstimator::default();
        rtt.on_sample(ms(10));
        // 10 + 4 * 5 = 30 ms, raised to RTO_MIN.
        assert_eq!(rtt.rto(), ms(RTO_MIN_MS));
        rtt.on_sample(Duration::from_secs(100));
        assert_eq!(rtt.rto(), ms(RTO_MAX_MS));
    }

    #[test]
    fn granularity_floors_the_variance_term() {
        let config = RttConfig { rto_min: Duration::ZERO, granularity: ms(10), ..RttConfig::default() };
        let mut rtt = RttEstimator::new(config);
        rtt.on_sample(ms(40));
        // The same RTT again and again drives RTTVAR towards zero.
        for _ in 0..100 {
            rtt.on_sample(ms(40));
        }
        assert_eq!(rtt.rto(), ms(50));
    }

    #[test]
    fn backoff_doubles_up_to_the_maximum_and_a_sample_resets_it() {
        let mut rtt = RttEstimator::default();
        rtt.backoff();
        assert_eq!(rtt.rto(), ms(2_000));
        rtt.backoff();
        assert_eq!(rtt.rto(), ms(4_000));
        for _ in 0..100 {
            rtt.backoff();
        }
        assert_eq!(rtt.rto(), ms(RTO_MAX_MS));
        assert_eq!(rtt.backoffs(), 6);
        rtt.on_sample(ms(100));
        assert_eq!(rtt.backoffs(), 0);
        assert_eq!(rtt.rto(), ms(300));
    }

    #[test]
    fn samples_in_flight_divide_the_gains() {
        let mut rtt = RttEstimator::default();
        rtt.on_sample_in_flight(ms(400), 4);
        assert_eq!(rtt.srtt(), Some(ms(400)));
        // Gains 1/32 and 1/16: RTTVAR = 200 + (400 - 200) / 16 = 212.5;
        // SRTT = 400 + (800 - 400) / 32 = 412.5.
        rtt.on_sample_in_flight(ms(800), 4);
        assert_eq!(rtt.rttvar(), Some(Duration::from_micros(212_500)));
        assert_eq!(rtt.srtt(), Some(Duration::from_micros(412_500)));
    }
}
