//! Base64 as memcached's meta commands read keys with the `b` flag (its
//! lenient decoder: characters outside the alphabet are skipped) and write
//! them back.

const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/// The 6-bit value of an alphabet character, 0 for the `=` pad, `None` for
/// anything else (skipped).
fn sextet(b: u8) -> Option<u8> {
    match b {
        b'A'..=b'Z' => Some(b - b'A'),
        b'a'..=b'z' => Some(b - b'a' + 26),
        b'0'..=b'9' => Some(b - b'0' + 52),
        b'+' => Some(62),
        b'/' => Some(63),
        b'=' => Some(0),
        _ => None,
    }
}

/// Decodes as memcached does: the alphabet characters (with `=`) must come
/// in groups of four; decoding stops after the first group with padding;
/// `None` when nothing decodes (memcached's 0-length failure).
pub fn decode_base64(text: &[u8]) -> Option<Vec<u8>> {
    let count = text.iter().filter(|&&b| sextet(b).is_some()).count();
    if count == 0 || count % 4 != 0 {
        return None;
    }
    let mut out = Vec::with_capacity(count / 4 * 3);
    let (mut block, mut filled, mut pad) = ([0u8; 4], 0, 0);
    for &b in text {
        let Some(value) = sextet(b) else { continue };
        pad += usize::from(b == b'=');
        block[filled] = value;
        filled += 1;
        if filled == 4 {
            out.extend_from_slice(&[
                block[0] << 2 | block[1] >> 4,
                block[1] << 4 | block[2] >> 2,
                block[2] << 6 | block[3],
            ]);
            filled = 0;
            if pad > 0 {
                if pad > 2 {
                    return None;
                }
                out.truncate(out.len() - pad);
                break;
            }
        }
    }
    (!out.is_empty()).then_some(out)
}

/// Standard base64 with padding.
pub fn encode_base64(bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let n = chunk.iter().enumerate().fold(0u32, |acc, (i, &b)| acc | u32::from(b) << (16 - 8 * i));
        for i in 0..4 {
            out.push(if i <= chunk.len() { ALPHABET[(n >> (18 - 6 * i) & 63) as usize] } else { b'=' });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_memcacheds_leniency() {
        for input in [&b"a"[..], b"ab", b"abc", b"\x00bin\xffkey \r\n"] {
            assert_eq!(decode_base64(&encode_base64(input)).as_deref(), Some(input));
        }
        assert_eq!(encode_base64(b"ab"), b"YWI=");
        assert_eq!(decode_base64(b"YW!!I="), Some(b"ab".to_vec()), "characters outside the alphabet are skipped");
        assert_eq!(decode_base64(b"abc"), None, "not a multiple of four");
        assert_eq!(decode_base64(b"!!!!"), None, "nothing to decode");
        assert_eq!(decode_base64(b"===="), None, "a block of padding");
        assert_eq!(decode_base64(b"YQ==YWJj"), Some(b"a".to_vec()), "decoding stops at the first padded block");
    }
}
