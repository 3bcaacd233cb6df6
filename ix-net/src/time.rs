//! The stack's clock: an [`Instant`] in microseconds since an arbitrary origin.
//! The stack never reads a clock itself; the runtime passes a monotonic `now`
//! in, and tests pass a virtual one.

use std::fmt;
use std::ops::{Add, AddAssign, Sub, SubAssign};
use std::time::Duration;

/// A point in time, in whole microseconds since the clock's origin.
///
/// The origin is whatever the driver chose (the runtime's start, or zero in a
/// simulation); only differences between instants mean anything. Arithmetic
/// with [`Duration`] truncates the duration to whole microseconds and
/// saturates at the ends of the range instead of wrapping.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Instant {
    micros: u64,
}

impl Instant {
    /// The clock's origin.
    pub const ZERO: Instant = Instant { micros: 0 };

    /// The latest representable instant (about 584,000 years after the origin).
    pub const MAX: Instant = Instant { micros: u64::MAX };

    /// The instant `micros` microseconds after the origin.
    pub const fn from_micros(micros: u64) -> Instant {
        Instant { micros }
    }

    /// The instant `millis` milliseconds after the origin, saturating at
    /// [`Instant::MAX`].
    pub const fn from_millis(millis: u64) -> Instant {
        Instant { micros: millis.saturating_mul(1_000) }
    }

    /// The instant `micros` microseconds later, saturating at [`Instant::MAX`]
    /// (adding a `Duration` does the same after truncating it to microseconds).
    pub const fn saturating_add_micros(self, micros: u64) -> Instant {
        Instant { micros: self.micros.saturating_add(micros) }
    }

    /// Microseconds since the origin.
    pub const fn as_micros(self) -> u64 {
        self.micros
    }

    /// Milliseconds since the origin, rounded down.
    pub const fn as_millis(self) -> u64 {
        self.micros / 1_000
    }

    /// The time elapsed from `earlier` to `self`, or `None` if `earlier` is
    /// later than `self`.
    pub fn checked_duration_since(self, earlier: Instant) -> Option<Duration> {
        self.micros.checked_sub(earlier.micros).map(Duration::from_micros)
    }

    /// The time elapsed from `earlier` to `self`, or zero if `earlier` is later.
    pub fn saturating_duration_since(self, earlier: Instant) -> Duration {
        self.checked_duration_since(earlier).unwrap_or_default()
    }
}

/// Whole microseconds in `duration`, saturating at `u64::MAX`.
pub(crate) fn duration_micros(duration: Duration) -> u64 {
    u64::try_from(duration.as_micros()).unwrap_or(u64::MAX)
}

impl Add<Duration> for Instant {
    type Output = Instant;

    fn add(self, rhs: Duration) -> Instant {
        self.saturating_add_micros(duration_micros(rhs))
    }
}

impl AddAssign<Duration> for Instant {
    fn add_assign(&mut self, rhs: Duration) {
        *self = *self + rhs;
    }
}

impl Sub<Duration> for Instant {
    type Output = Instant;

    fn sub(self, rhs: Duration) -> Instant {
        Instant { micros: self.micros.saturating_sub(duration_micros(rhs)) }
    }
}

impl SubAssign<Duration> for Instant {
    fn sub_assign(&mut self, rhs: Duration) {
        *self = *self - rhs;
    }
}

/// `later - earlier`: the elapsed time, zero if `earlier` is actually later
/// (see [`Instant::checked_duration_since`] to tell the two apart).
impl Sub<Instant> for Instant {
    type Output = Duration;

    fn sub(self, rhs: Instant) -> Duration {
        self.saturating_duration_since(rhs)
    }
}

/// Seconds with six decimals, e.g. `12.000345s`.
impl fmt::Display for Instant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{:06}s", self.micros / 1_000_000, self.micros % 1_000_000)
    }
}

impl fmt::Debug for Instant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn constructors_agree() {
        assert_eq!(Instant::from_millis(3), Instant::from_micros(3_000));
        assert_eq!(Instant::from_micros(3_999).as_millis(), 3);
        assert_eq!(Instant::ZERO.as_micros(), 0);
        assert_eq!(Instant::from_millis(u64::MAX), Instant::MAX);
    }

    #[test]
    fn duration_arithmetic_truncates_to_micros_and_saturates() {
        let mut t = Instant::from_micros(10);
        t += Duration::from_nanos(2_999);
        assert_eq!(t, Instant::from_micros(12));
        assert_eq!(t - Duration::from_micros(20), Instant::ZERO);
        assert_eq!(Instant::MAX + Duration::from_secs(1), Instant::MAX);
        assert_eq!(Instant::ZERO + Duration::MAX, Instant::MAX);
        t -= Duration::from_micros(2);
        assert_eq!(t, Instant::from_micros(10));
    }

    #[test]
    fn difference_between_instants_saturates() {
        let a = Instant::from_micros(1_500);
        let b = Instant::from_micros(500);
        assert_eq!(a - b, Duration::from_millis(1));
        assert_eq!(b - a, Duration::ZERO);
        assert_eq!(a.checked_duration_since(b), Some(Duration::from_millis(1)));
        assert_eq!(b.checked_duration_since(a), None);
        assert!(b < a);
    }

    #[test]
    fn displays_seconds_with_micros() {
        assert_eq!(Instant::from_micros(12_000_345).to_string(), "12.000345s");
        assert_eq!(format!("{:?}", Instant::ZERO), "0.000000s");
    }
}
