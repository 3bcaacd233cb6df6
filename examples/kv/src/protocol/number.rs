//! Number parsing with memcached's rules (its `safe_strto*` helpers over C's
//! `strtol` family): what a command line token and an item's value accept.

/// `isspace` in the C locale.
fn is_c_space(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | 0x0b | 0x0c | b'\r')
}

/// Splits an optional sign and the digits that follow it; `None` when no digit.
fn sign_and_digits(token: &[u8]) -> Option<(bool, &[u8])> {
    let (negative, rest) = match token.first() {
        Some(b'-') => (true, &token[1..]),
        Some(b'+') => (false, &token[1..]),
        _ => (false, token),
    };
    (!rest.is_empty() && rest.iter().all(u8::is_ascii_digit)).then_some((negative, rest))
}

fn digits_value(digits: &[u8]) -> Option<u64> {
    digits.iter().try_fold(0u64, |acc, &d| acc.checked_mul(10)?.checked_add(u64::from(d - b'0')))
}

/// `strtoull`'s reading of a sign and digits: a negative number is negated
/// modulo 2^64, and memcached refuses the result only when it is negative as
/// a signed number (so `-0` is 0 and `-18446744073709551615` is 1).
fn unsigned_value(negative: bool, digits: &[u8]) -> Option<u64> {
    let magnitude = digits_value(digits)?;
    if !negative {
        return Some(magnitude);
    }
    let value = magnitude.wrapping_neg();
    ((value as i64) >= 0).then_some(value)
}

/// An unsigned 64-bit token (CAS unique, delta), as `safe_strtoull`.
pub(crate) fn parse_u64(token: &[u8]) -> Option<u64> {
    let (negative, digits) = sign_and_digits(token)?;
    unsigned_value(negative, digits)
}

/// The 32-bit client flags, as `safe_strtoul` reads them. memcached 1.6.18
/// then silently truncates values above 2^32-1; this server refuses them
/// (`CLIENT_ERROR bad command line format`).
pub(crate) fn parse_u32(token: &[u8]) -> Option<u32> {
    parse_u64(token).and_then(|v| u32::try_from(v).ok())
}

/// A signed 32-bit token (expiration time, data length), exactly as
/// memcached's `safe_strtol` reads it: `strtol` into 64 bits (out of range
/// is refused), then stored into 32 bits, so `4294967297` reads as 1 and
/// `2147483648` as -2147483648, as in memcached.
pub(crate) fn parse_i32(token: &[u8]) -> Option<i64> {
    let (negative, digits) = sign_and_digits(token)?;
    let magnitude = digits_value(digits)?;
    let value = if negative { 0i64.checked_sub_unsigned(magnitude)? } else { i64::try_from(magnitude).ok()? };
    Some(i64::from(value as i32))
}

/// A decimal fraction token as `safe_strtod` reads it (`lru tune`, `slabs
/// automove ratio`).
pub(crate) fn parse_f64(token: &[u8]) -> Option<f64> {
    let text = std::str::from_utf8(token).ok()?;
    let finite_syntax = text.bytes().all(|b| b.is_ascii_digit() || matches!(b, b'.' | b'-' | b'+' | b'e' | b'E'));
    if !finite_syntax {
        return None;
    }
    text.parse::<f64>().ok().filter(|v| v.is_finite())
}

/// The number an item's value holds, for `incr`/`decr`, exactly as memcached
/// reads it with `strtoull` (its data is followed by `\r\n`): leading
/// whitespace, an optional sign, at least one digit, then whitespace or the
/// end (what follows that whitespace is ignored). `None`
/// means "non-numeric value".
pub fn parse_counter_value(data: &[u8]) -> Option<u64> {
    if data.is_empty() {
        return None;
    }
    let start = data.iter().position(|&b| !is_c_space(b)).unwrap_or(data.len());
    let (negative, after_sign) = match data.get(start) {
        Some(b'-') => (true, start + 1),
        Some(b'+') => (false, start + 1),
        _ => (false, start),
    };
    let digits_end = data[after_sign..].iter().position(|b| !b.is_ascii_digit()).map_or(data.len(), |p| p + after_sign);
    if digits_end == after_sign {
        return None;
    }
    // Past the data comes memcached's "\r\n" suffix, which is whitespace.
    if data.get(digits_end).is_some_and(|&b| !is_c_space(b)) {
        return None;
    }
    unsigned_value(negative, &data[after_sign..digits_end])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens() {
        assert_eq!(parse_u64(b"18446744073709551615"), Some(u64::MAX));
        assert_eq!(parse_u64(b"18446744073709551616"), None);
        assert_eq!(parse_u64(b"-1"), None);
        assert_eq!(parse_u64(b"-0"), Some(0));
        assert_eq!(parse_u64(b"-18446744073709551615"), Some(1), "strtoull negates modulo 2^64");
        assert_eq!(parse_u64(b"x"), None);
        assert_eq!(parse_u64(b""), None);
        assert_eq!(parse_u32(b"4294967295"), Some(u32::MAX));
        assert_eq!(parse_u32(b"4294967296"), None);
        assert_eq!(parse_i32(b"-1"), Some(-1));
        assert_eq!(parse_i32(b"2147483647"), Some(i64::from(i32::MAX)));
        assert_eq!(parse_i32(b"2147483648"), Some(-2147483648), "memcached stores strtol's long into 32 bits");
        assert_eq!(parse_i32(b"4294967297"), Some(1));
        assert_eq!(parse_i32(b"9223372036854775808"), None, "out of strtol's range");
        assert_eq!(parse_i32(b"1x"), None);
    }

    #[test]
    fn counter_values_follow_strtoull() {
        assert_eq!(parse_counter_value(b"12"), Some(12));
        assert_eq!(parse_counter_value(b" 12"), Some(12));
        assert_eq!(parse_counter_value(b"12 "), Some(12));
        assert_eq!(parse_counter_value(b"12 abc"), Some(12));
        assert_eq!(parse_counter_value(b"0012"), Some(12));
        assert_eq!(parse_counter_value(b"12a"), None);
        assert_eq!(parse_counter_value(b"abc"), None);
        assert_eq!(parse_counter_value(b""), None);
        assert_eq!(parse_counter_value(b" "), None);
        assert_eq!(parse_counter_value(b"18446744073709551616"), None);
        assert_eq!(parse_counter_value(b"-0"), Some(0));
        assert_eq!(parse_counter_value(b"-5"), None);
    }
}
