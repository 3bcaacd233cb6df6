//! The mem wire's clock: real monotonic time for ordinary runs, or a manual
//! clock a deterministic simulation advances by hand.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

/// The time source of a wire, in microseconds from an arbitrary origin. Delayed
/// frames come due against it.
pub trait WireClock: Send + Sync + fmt::Debug {
    /// Microseconds now; never decreases.
    fn now_micros(&self) -> u64;
}

/// Real time: microseconds since the clock was made.
#[derive(Debug, Clone, Copy)]
pub struct MonotonicClock {
    origin: Instant,
}

impl MonotonicClock {
    /// A clock reading zero now.
    pub fn new() -> Self {
        Self { origin: Instant::now() }
    }
}

impl Default for MonotonicClock {
    fn default() -> Self {
        Self::new()
    }
}

impl WireClock for MonotonicClock {
    fn now_micros(&self) -> u64 {
        u64::try_from(self.origin.elapsed().as_micros()).unwrap_or(u64::MAX)
    }
}

/// Simulated time that moves only when told to, for reproducible tests.
#[derive(Debug, Default)]
pub struct ManualClock {
    now_micros: AtomicU64,
}

impl ManualClock {
    /// A clock reading `start_micros`.
    pub fn new(start_micros: u64) -> Self {
        Self { now_micros: AtomicU64::new(start_micros) }
    }

    /// Moves the clock forward by `micros` and returns the new time.
    pub fn advance(&self, micros: u64) -> u64 {
        self.now_micros.fetch_add(micros, Ordering::AcqRel) + micros
    }

    /// Sets the clock to `micros`.
    ///
    /// # Panics
    /// If `micros` is earlier than the current reading: time does not go back.
    pub fn set(&self, micros: u64) {
        let before = self.now_micros.fetch_max(micros, Ordering::AcqRel);
        assert!(before <= micros, "ManualClock set back from {before} to {micros} us");
    }
}

impl WireClock for ManualClock {
    fn now_micros(&self) -> u64 {
        self.now_micros.load(Ordering::Acquire)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manual_clock_moves_only_forward_when_told() {
        let clock = ManualClock::new(10);
        assert_eq!(clock.now_micros(), 10);
        assert_eq!(clock.advance(5), 15);
        clock.set(40);
        assert_eq!(clock.now_micros(), 40);
        let back = std::panic::catch_unwind(|| clock.set(39));
        assert!(back.is_err());
        assert_eq!(clock.now_micros(), 40);
    }

    #[test]
    fn monotonic_clock_never_goes_back() {
        let clock = MonotonicClock::new();
        let a = clock.now_micros();
        let b = clock.now_micros();
        assert!(b >= a);
    }
}
