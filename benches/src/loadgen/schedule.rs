//! Open-loop arrival schedules: Poisson inter-arrival times from a seeded RNG,
//! as absolute intended send times (never accumulated sleeps).

use std::time::{Duration, Instant};

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

/// The intended send times of a Poisson process of rate `rate_per_sec` that
/// starts at `start`. Each time is `start` plus the sum of exponential gaps,
/// kept in exact nanoseconds, so a late wake-up never shifts later arrivals.
#[derive(Debug)]
pub struct PoissonSchedule {
    rng: SmallRng,
    start: Instant,
    mean_gap_ns: f64,
    /// Offset of the last arrival from `start`, in nanoseconds (f64 keeps the
    /// fractional part of each gap, so the long-run rate is exact).
    offset_ns: f64,
}

impl PoissonSchedule {
    /// A schedule of `rate_per_sec` arrivals per second on average from `start`.
    ///
    /// # Panics
    /// If `rate_per_sec` is not a positive finite number.
    pub fn new(rate_per_sec: f64, seed: u64, start: Instant) -> Self {
        assert!(rate_per_sec.is_finite() && rate_per_sec > 0.0, "a Poisson rate must be positive and finite");
        Self { rng: SmallRng::seed_from_u64(seed), start, mean_gap_ns: 1e9 / rate_per_sec, offset_ns: 0.0 }
    }

    /// The next intended send time.
    pub fn next_arrival(&mut self) -> Instant {
        // Inverse transform: -ln(U) is exponential with mean 1 for U in (0, 1].
        let u: f64 = 1.0 - self.rng.random::<f64>();
        self.offset_ns += -u.ln() * self.mean_gap_ns;
        self.start + Duration::from_nanos(self.offset_ns as u64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arrivals_are_increasing_and_meet_the_rate() {
        let start = Instant::now();
        let mut schedule = PoissonSchedule::new(50_000.0, 7, start);
        let mut last = start;
        let mut count = 0u64;
        loop {
            let at = schedule.next_arrival();
            assert!(at >= last, "arrivals go forward");
            last = at;
            if at >= start + Duration::from_secs(20) {
                break;
            }
            count += 1;
        }
        // 1M expected arrivals: the Poisson count's standard deviation is 0.1%.
        let expected = 1_000_000.0;
        assert!((count as f64 - expected).abs() / expected < 0.005, "count {count}");
    }

    #[test]
    fn gaps_are_exponential() {
        let start = Instant::now();
        let mut schedule = PoissonSchedule::new(1000.0, 3, start);
        let mut prev = start;
        let (mut n, mut sum, mut sum_sq, mut above_mean) = (0u32, 0.0, 0.0, 0u32);
        for _ in 0..100_000 {
            let at = schedule.next_arrival();
            let gap = (at - prev).as_secs_f64() * 1000.0; // in mean gaps (1 ms)
            prev = at;
            n += 1;
            sum += gap;
            sum_sq += gap * gap;
            above_mean += u32::from(gap > 1.0);
        }
        let mean = sum / f64::from(n);
        let var = sum_sq / f64::from(n) - mean * mean;
        assert!((mean - 1.0).abs() < 0.02, "mean {mean}");
        assert!((var - 1.0).abs() < 0.05, "variance {var}");
        // P(gap > mean) = 1/e for an exponential.
        let p = f64::from(above_mean) / f64::from(n);
        assert!((p - (-1.0f64).exp()).abs() < 0.01, "P(gap > mean) {p}");
    }

    #[test]
    fn the_same_seed_gives_the_same_schedule() {
        let start = Instant::now();
        let mut a = PoissonSchedule::new(1e4, 11, start);
        let mut b = PoissonSchedule::new(1e4, 11, start);
        for _ in 0..1000 {
            assert_eq!(a.next_arrival(), b.next_arrival());
        }
    }
}
