//! The store's clock: whole seconds since the server started (memcached's
//! `rel_time_t`), the conversion of a client's expiration time to it, and a
//! manual variant that tests advance by hand.

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use crate::protocol::REALTIME_MAXDELTA_SECS;

/// The first value of the clock: 0 means "never expires" and 1 "already
/// expired", so a live clock starts above both.
const CLOCK_START_SECS: u32 = 2;

/// Seconds since the server started.
#[derive(Debug)]
pub struct Clock {
    source: Source,
    /// Unix time (seconds) at which this clock read 0.
    epoch_unix: i64,
}

#[derive(Debug)]
enum Source {
    System(Instant),
    Manual(AtomicU32),
}

fn unix_now() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs() as i64)
}

impl Clock {
    /// The real clock, starting now.
    pub fn system() -> Self {
        Self { source: Source::System(Instant::now()), epoch_unix: unix_now() - i64::from(CLOCK_START_SECS) }
    }

    /// A clock that moves only through [`Clock::advance`] (for tests).
    pub fn manual() -> Self {
        Self { source: Source::Manual(AtomicU32::new(CLOCK_START_SECS)), epoch_unix: unix_now() - 2 }
    }

    /// Moves a manual clock forward; a system clock ignores it.
    pub fn advance(&self, secs: u32) {
        if let Source::Manual(now) = &self.source {
            now.fetch_add(secs, Ordering::Relaxed);
        }
    }

    /// Seconds since the start (at least 2).
    pub fn now(&self) -> u32 {
        match &self.source {
            Source::System(start) => {
                CLOCK_START_SECS.saturating_add(u32::try_from(start.elapsed().as_secs()).unwrap_or(u32::MAX))
            }
            Source::Manual(now) => now.load(Ordering::Relaxed),
        }
    }

    /// Seconds since the start at the given clock reading, as a Unix time.
    pub fn unix_time(&self, now: u32) -> i64 {
        self.epoch_unix + i64::from(now)
    }

    /// memcached's rule for a client's expiration time: 0 never expires; a
    /// negative time has already expired; up to 30 days is relative to now;
    /// above that it is a Unix time. Returns the expiry on this clock (0: never).
    pub fn expiry(&self, exptime: i64, now: u32) -> u32 {
        if exptime == 0 {
            return 0;
        }
        if exptime < 0 {
            return 1;
        }
        if exptime <= REALTIME_MAXDELTA_SECS {
            return now.saturating_add(u32::try_from(exptime).unwrap_or(u32::MAX));
        }
        if exptime <= self.epoch_unix {
            return 1;
        }
        u32::try_from(exptime - self.epoch_unix).unwrap_or(u32::MAX)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expiration_times_follow_memcached() {
        let clock = Clock::manual();
        let now = clock.now();
        assert_eq!(clock.expiry(0, now), 0);
        assert_eq!(clock.expiry(-1, now), 1);
        assert_eq!(clock.expiry(10, now), now + 10);
        assert_eq!(clock.expiry(REALTIME_MAXDELTA_SECS, now), now + REALTIME_MAXDELTA_SECS as u32);
        let in_an_hour = clock.unix_time(now) + 3600;
        assert_eq!(clock.expiry(in_an_hour, now), now + 3600);
        assert_eq!(clock.expiry(REALTIME_MAXDELTA_SECS + 1, now), 1, "a Unix time in 1970 has passed");
        clock.advance(5);
        assert_eq!(clock.now(), now + 5);
    }
}
