//! TCP sequence numbers: 32-bit values compared and subtracted modulo 2^32
//! (RFC 9293 §3.4).

use std::cmp::Ordering;
use std::fmt;
use std::ops::{Add, AddAssign, Sub};

/// A TCP sequence or acknowledgement number.
///
/// Arithmetic wraps modulo 2^32. Ordering is circular: `a < b` means `b` is
/// ahead of `a` by less than 2^31, that is, `(b - a)` as a signed 32-bit
/// number is positive. That is why `SeqNum` is only [`PartialOrd`]: two numbers
/// exactly 2^31 apart are neither before nor after each other
/// (`partial_cmp` returns `None`), and the order is not transitive over more
/// than half the number space. Within one connection's windows, which are far
/// smaller than 2^31, it behaves as the RFC's comparisons expect.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct SeqNum(pub u32);

impl SeqNum {
    /// The later of two sequence numbers in circular order (`self` if they are
    /// equal or exactly 2^31 apart).
    #[must_use]
    pub fn max(self, other: SeqNum) -> SeqNum {
        if other > self { other } else { self }
    }

    /// The earlier of two sequence numbers in circular order (`self` if they
    /// are equal or exactly 2^31 apart).
    #[must_use]
    pub fn min(self, other: SeqNum) -> SeqNum {
        if other < self { other } else { self }
    }

    /// Whether `self` lies in the `len` numbers starting at `start`:
    /// `start <= self < start + len`, modulo 2^32. An empty window (`len == 0`)
    /// contains nothing; RFC 9293's special cases for zero windows are the
    /// caller's. A `len` of 2^32 or more contains every number.
    pub fn in_window(self, start: SeqNum, len: usize) -> bool {
        (self.0.wrapping_sub(start.0) as usize) < len
    }

    /// The number of octets from `earlier` to `self`, or `None` if `earlier`
    /// is after `self` in circular order.
    pub fn octets_since(self, earlier: SeqNum) -> Option<usize> {
        let distance = self - earlier;
        usize::try_from(distance).ok()
    }
}

/// Advances by `rhs` octets, wrapping. Only the low 32 bits of `rhs` count.
impl Add<usize> for SeqNum {
    type Output = SeqNum;

    fn add(self, rhs: usize) -> SeqNum {
        self + rhs as u32
    }
}

/// Advances by `rhs` octets, wrapping.
impl Add<u32> for SeqNum {
    type Output = SeqNum;

    fn add(self, rhs: u32) -> SeqNum {
        SeqNum(self.0.wrapping_add(rhs))
    }
}

impl AddAssign<usize> for SeqNum {
    fn add_assign(&mut self, rhs: usize) {
        *self = *self + rhs;
    }
}

impl AddAssign<u32> for SeqNum {
    fn add_assign(&mut self, rhs: u32) {
        *self = *self + rhs;
    }
}

/// Steps back by `rhs` octets, wrapping (for example `ack - 1u32`).
impl Sub<u32> for SeqNum {
    type Output = SeqNum;

    fn sub(self, rhs: u32) -> SeqNum {
        SeqNum(self.0.wrapping_sub(rhs))
    }
}

/// The signed distance from `rhs` to `self`: positive when `self` is ahead.
/// Use [`SeqNum::octets_since`] for a length that must not be negative.
impl Sub<SeqNum> for SeqNum {
    type Output = i32;

    fn sub(self, rhs: SeqNum) -> i32 {
        self.0.wrapping_sub(rhs.0) as i32
    }
}

/// Circular order (RFC 9293 §3.4); `None` for numbers exactly 2^31 apart.
impl PartialOrd for SeqNum {
    fn partial_cmp(&self, other: &SeqNum) -> Option<Ordering> {
        match *self - *other {
            i32::MIN => None,
            distance => Some(distance.cmp(&0)),
        }
    }
}

impl fmt::Display for SeqNum {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

impl fmt::Debug for SeqNum {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SeqNum({})", self.0)
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    const NEAR_WRAP: SeqNum = SeqNum(u32::MAX - 9);

    #[test]
    fn addition_wraps() {
        assert_eq!(NEAR_WRAP + 10u32, SeqNum(0));
        assert_eq!(NEAR_WRAP + 25usize, SeqNum(15));
        let mut seq = NEAR_WRAP;
        seq += 20usize;
        seq += 1u32;
        assert_eq!(seq, SeqNum(11));
        assert_eq!(SeqNum(0) - 1u32, SeqNum(u32::MAX));
    }

    #[test]
    fn difference_is_signed_across_the_wrap() {
        assert_eq!(SeqNum(5) - NEAR_WRAP, 15);
        assert_eq!(NEAR_WRAP - SeqNum(5), -15);
        assert_eq!(SeqNum(5).octets_since(NEAR_WRAP), Some(15));
        assert_eq!(NEAR_WRAP.octets_since(SeqNum(5)), None);
        assert_eq!(SeqNum(7).octets_since(SeqNum(7)), Some(0));
    }

    #[test]
    fn order_follows_the_circle() {
        let after_wrap = SeqNum(3);
        assert!(NEAR_WRAP < after_wrap);
        assert!(after_wrap > NEAR_WRAP);
        assert!(after_wrap >= after_wrap);
        assert!(SeqNum(100) < SeqNum(200));
        // Ahead by just under half the space is still ahead...
        assert!(SeqNum(0) < SeqNum(0x7fff_ffff));
        // ...ahead by just over half is behind.
        assert!(SeqNum(0) > SeqNum(0x8000_0001));
    }

    #[test]
    fn half_the_space_apart_is_unordered() {
        let (a, b) = (SeqNum(1), SeqNum(0x8000_0001));
        assert_eq!(a.partial_cmp(&b), None);
        assert_eq!(b.partial_cmp(&a), None);
        assert_eq!((a < b, b < a, a == b), (false, false, false));
        assert_eq!(a.max(b), a);
        assert_eq!(b.min(a), b);
    }

    #[test]
    fn max_and_min_across_the_wrap() {
        assert_eq!(NEAR_WRAP.max(SeqNum(2)), SeqNum(2));
        assert_eq!(SeqNum(2).max(NEAR_WRAP), SeqNum(2));
        assert_eq!(NEAR_WRAP.min(SeqNum(2)), NEAR_WRAP);
        assert_eq!(SeqNum(2).min(NEAR_WRAP), NEAR_WRAP);
    }

    #[test]
    fn window_membership_across_the_wrap() {
        let start = NEAR_WRAP;
        assert!(start.in_window(start, 1));
        assert!(!start.in_window(start, 0));
        assert!(SeqNum(0).in_window(start, 20));
        assert!(SeqNum(9).in_window(start, 20));
        assert!(!SeqNum(10).in_window(start, 20));
        assert!(!(start - 1u32).in_window(start, 20));
        assert!(SeqNum(12345).in_window(start, 1 << 32));
    }

    proptest! {
        #[test]
        fn order_agrees_with_offsets(base: u32, offset in 1u32..0x8000_0000) {
            let (a, b) = (SeqNum(base), SeqNum(base) + offset);
            prop_assert!(a < b);
            prop_assert_eq!(b.partial_cmp(&a), Some(Ordering::Greater));
            prop_assert_eq!(b - a, offset as i32);
            prop_assert_eq!(a + offset as usize, b);
            prop_assert!(b.in_window(a, offset as usize + 1));
            prop_assert!(!b.in_window(a, offset as usize));
        }
    }
}
