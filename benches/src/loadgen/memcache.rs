//! memcached text protocol requests (`get`/`set` mix over a key space, keys
//! and values sized by a distribution) and a strict parser of
//! `VALUE`/`END`/`STORED` and error replies.

use std::sync::OnceLock;

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

use crate::loadgen::protocol::{Outcome, Parsed, ProtocolError, find_crlf, parse_decimal};
use crate::loadgen::sizes::{KvPreset, SizeDistribution, VALUE_DRAW_MAX_BYTES};

/// Longest reply line accepted (memcached keys are at most 250 bytes).
const LINE_MAX_BYTES: usize = 2048;
/// Largest value accepted in a `VALUE` reply, in bytes.
pub const VALUE_MAX_BYTES: usize = 16 * 1024 * 1024;
/// Longest key memcached accepts.
pub const KEY_MAX_BYTES: usize = 250;

/// The shape of a memcached workload.
#[derive(Debug, Clone, PartialEq)]
pub struct MemcacheWorkload {
    /// Share of requests that are `get` (the rest are `set`), in [0, 1].
    pub get_ratio: f64,
    /// Number of distinct keys, chosen uniformly.
    pub keys: u64,
    /// Key lengths in bytes (each key's length is fixed by its index; at
    /// least long enough for the index).
    pub key_bytes: SizeDistribution,
    /// Value lengths in bytes, drawn for each `set`.
    pub value_bytes: SizeDistribution,
}

impl MemcacheWorkload {
    /// Fixed-size keys and values.
    pub fn fixed(get_ratio: f64, keys: u64, key_bytes: usize, value_bytes: usize) -> Self {
        let (key_bytes, value_bytes) = (SizeDistribution::Fixed(key_bytes), SizeDistribution::Fixed(value_bytes));
        Self { get_ratio, keys, key_bytes, value_bytes }
    }

    /// A named workload over `keys` keys.
    pub fn preset(preset: KvPreset, keys: u64) -> Self {
        Self { get_ratio: preset.get_ratio(), keys, key_bytes: preset.key_sizes(), value_bytes: preset.value_sizes() }
    }

    /// The key of index `i`: `key:` then the index, zero-padded to the length
    /// the key distribution gives this index (a hash of it is the uniform draw,
    /// so a key keeps its length across connections and runs).
    pub fn key(&self, i: u64) -> Vec<u8> {
        let u = (splitmix64(i) >> 11) as f64 / (1u64 << 53) as f64;
        // A drawn length stays within memcached's limit; a fixed one is taken
        // as asked, and `validate` rejects it when too long.
        let max = if matches!(self.key_bytes, SizeDistribution::Fixed(_)) { usize::MAX } else { KEY_MAX_BYTES };
        let digits = self.key_bytes.at(u, max).saturating_sub(4).max(1);
        format!("key:{i:0digits$}").into_bytes()
    }

    /// Checks the workload's bounds.
    ///
    /// # Errors
    /// A message naming the bad field.
    pub fn validate(&self) -> Result<(), String> {
        if !(0.0..=1.0).contains(&self.get_ratio) {
            return Err(format!("get ratio {} is not in [0, 1]", self.get_ratio));
        }
        if self.keys == 0 {
            return Err("the key space needs at least one key".into());
        }
        let longest = self.key(self.keys - 1).len();
        if longest > KEY_MAX_BYTES {
            return Err(format!("keys of {longest} bytes are over memcached's {KEY_MAX_BYTES}"));
        }
        match self.value_bytes {
            SizeDistribution::Fixed(n) if n > VALUE_MAX_BYTES => {
                Err(format!("values of {n} bytes are over {VALUE_MAX_BYTES}"))
            }
            _ => Ok(()),
        }
    }

    /// The largest value a `set` may carry.
    fn value_max_bytes(&self) -> usize {
        match self.value_bytes {
            SizeDistribution::Fixed(n) => n.min(VALUE_MAX_BYTES),
            _ => VALUE_DRAW_MAX_BYTES,
        }
    }
}

/// SplitMix64's finaliser: spreads key indices over 64 bits.
fn splitmix64(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// The bytes every value is a prefix of (`abc...z` repeated), made once.
fn value_pattern() -> &'static [u8] {
    static PATTERN: OnceLock<Vec<u8>> = OnceLock::new();
    PATTERN.get_or_init(|| (0..VALUE_MAX_BYTES).map(|i| b'a' + (i % 26) as u8).collect())
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Expect {
    Get,
    Set,
}

/// One connection's memcached client: draws each request from its own seeded RNG.
#[derive(Debug)]
pub struct MemcacheClient {
    workload: MemcacheWorkload,
    rng: SmallRng,
    expect: Expect,
    /// The key of the `get` in flight (a `VALUE` must name it).
    key: Vec<u8>,
}

impl MemcacheClient {
    /// A client drawing from `seed`.
    pub fn new(workload: MemcacheWorkload, seed: u64) -> Self {
        Self { workload, rng: SmallRng::seed_from_u64(seed), expect: Expect::Get, key: Vec::new() }
    }

    /// Appends the next request: a `get` with probability `get_ratio`, else a `set`.
    pub fn write_request(&mut self, out: &mut Vec<u8>) {
        let index = self.rng.random_range(0..self.workload.keys);
        if self.rng.random::<f64>() < self.workload.get_ratio {
            self.write_get(index, out);
        } else {
            self.write_set(index, out);
        }
    }

    /// Appends `get KEY` for key `index`.
    pub fn write_get(&mut self, index: u64, out: &mut Vec<u8>) {
        self.key = self.workload.key(index);
        self.expect = Expect::Get;
        out.extend_from_slice(b"get ");
        out.extend_from_slice(&self.key);
        out.extend_from_slice(b"\r\n");
    }

    /// Appends `set KEY 0 0 LEN` and a value of a drawn length for key `index`.
    pub fn write_set(&mut self, index: u64, out: &mut Vec<u8>) {
        self.key = self.workload.key(index);
        self.expect = Expect::Set;
        let len = self.workload.value_bytes.sample(&mut self.rng, self.workload.value_max_bytes());
        out.extend_from_slice(b"set ");
        out.extend_from_slice(&self.key);
        out.extend_from_slice(format!(" 0 0 {len}\r\n").as_bytes());
        out.extend_from_slice(&value_pattern()[..len]);
        out.extend_from_slice(b"\r\n");
    }

    /// Looks for the complete reply to the last request at the front of `buf`.
    ///
    /// # Errors
    /// A reply that is not one the request allows, a `VALUE` for another key, a
    /// value not followed by CRLF and `END`, or an oversized line or value.
    pub fn parse_response(&self, buf: &[u8]) -> Result<Parsed, ProtocolError> {
        let Some(line_end) = find_crlf(&buf[..buf.len().min(LINE_MAX_BYTES + 2)], 0) else {
            return if buf.len() > LINE_MAX_BYTES {
                Err(ProtocolError::TooLarge { what: "reply line", limit: LINE_MAX_BYTES })
            } else {
                Ok(Parsed::Incomplete)
            };
        };
        let line = &buf[..line_end];
        let done = |len: usize, outcome| Ok(Parsed::Complete { len, outcome, close: false });
        if let Some(outcome) = error_reply(line) {
            return done(line_end + 2, outcome);
        }
        match self.expect {
            Expect::Set if line == b"STORED" => done(line_end + 2, Outcome::Success),
            Expect::Set if line == b"NOT_STORED" => done(line_end + 2, Outcome::ErrorReply),
            Expect::Get if line == b"END" => done(line_end + 2, Outcome::Miss),
            Expect::Get if line.starts_with(b"VALUE ") => self.parse_value(buf, line, line_end + 2),
            _ => Err(ProtocolError::Malformed("not a reply this request allows")),
        }
    }

    /// `VALUE key flags bytes [cas]` at `line`, its data starting at `data_at`.
    fn parse_value(&self, buf: &[u8], line: &[u8], data_at: usize) -> Result<Parsed, ProtocolError> {
        let mut fields = line.split(|&b| b == b' ');
        let (_, key, flags, len) = (fields.next(), fields.next(), fields.next(), fields.next());
        let cas = fields.next();
        if fields.next().is_some() || cas.is_some_and(|c| parse_decimal(c).is_none()) {
            return Err(ProtocolError::Malformed("VALUE line has extra fields"));
        }
        if key != Some(self.key.as_slice()) {
            return Err(ProtocolError::Malformed("VALUE for a key that was not asked for"));
        }
        if flags.and_then(parse_decimal).is_none_or(|f| f > u64::from(u32::MAX)) {
            return Err(ProtocolError::Malformed("bad VALUE flags"));
        }
        let len = len.and_then(parse_decimal).ok_or(ProtocolError::Malformed("bad VALUE length"))?;
        if len > VALUE_MAX_BYTES as u64 {
            return Err(ProtocolError::TooLarge { what: "VALUE", limit: VALUE_MAX_BYTES });
        }
        let data_end = data_at + len as usize;
        let total = data_end + b"\r\nEND\r\n".len();
        if buf.len() < total {
            // Check what has arrived of the trailer, so garbage fails early.
            let arrived = &buf[buf.len().min(data_end)..];
            return if b"\r\nEND\r\n".starts_with(arrived) {
                Ok(Parsed::Incomplete)
            } else {
                Err(ProtocolError::Malformed("value not followed by CRLF END CRLF"))
            };
        }
        if &buf[data_end..total] != b"\r\nEND\r\n" {
            return Err(ProtocolError::Malformed("value not followed by CRLF END CRLF"));
        }
        Ok(Parsed::Complete { len: total, outcome: Outcome::Success, close: false })
    }
}

/// `ERROR`, `CLIENT_ERROR msg`, `SERVER_ERROR msg`: valid replies to anything.
fn error_reply(line: &[u8]) -> Option<Outcome> {
    let is_error = line == b"ERROR" || line.starts_with(b"CLIENT_ERROR ") || line.starts_with(b"SERVER_ERROR ");
    is_error.then_some(Outcome::ErrorReply)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn workload() -> MemcacheWorkload {
        MemcacheWorkload::fixed(0.9, 1000, 16, 8)
    }

    fn client_after_get(index: u64) -> MemcacheClient {
        let mut c = MemcacheClient::new(workload(), 1);
        c.write_get(index, &mut Vec::new());
        c
    }

    fn complete(len: usize, outcome: Outcome) -> Result<Parsed, ProtocolError> {
        Ok(Parsed::Complete { len, outcome, close: false })
    }

    #[test]
    fn keys_have_the_asked_length() {
        assert_eq!(workload().key(42), b"key:000000000042");
        assert!(workload().validate().is_ok());
        let too_long = MemcacheWorkload::fixed(0.9, 1000, 300, 8);
        assert!(too_long.validate().is_err());
        let too_large = MemcacheWorkload::fixed(0.9, 1000, 16, VALUE_MAX_BYTES + 1);
        assert!(too_large.validate().is_err());
    }

    #[test]
    fn requests_follow_the_get_ratio() {
        let mut c = MemcacheClient::new(workload(), 9);
        let mut gets = 0;
        for _ in 0..10_000 {
            let mut out = Vec::new();
            c.write_request(&mut out);
            if out.starts_with(b"get key:") {
                gets += 1;
            } else {
                assert!(out.starts_with(b"set key:") && out.ends_with(b" 0 0 8\r\nabcdefgh\r\n"), "{out:?}");
            }
        }
        assert!((8800..9200).contains(&gets), "{gets} gets");
    }

    #[test]
    fn etc_keys_keep_their_length_and_sets_carry_drawn_values() {
        let etc = MemcacheWorkload::preset(KvPreset::Etc, 100_000);
        assert!(etc.validate().is_ok());
        assert_eq!(etc.key(99), etc.key(99));
        let lengths: std::collections::HashSet<usize> = (0..1000).map(|i| etc.key(i).len()).collect();
        assert!(lengths.len() > 10, "{lengths:?}");
        let mut c = MemcacheClient::new(etc, 3);
        let mut sizes = std::collections::HashSet::new();
        for i in 0..200 {
            let mut out = Vec::new();
            c.write_set(i, &mut out);
            let head_end = out.windows(2).position(|w| w == b"\r\n").unwrap();
            let len: usize =
                std::str::from_utf8(&out[..head_end]).unwrap().rsplit(' ').next().unwrap().parse().unwrap();
            assert_eq!(out.len(), head_end + 2 + len + 2, "the value has the announced length");
            sizes.insert(len);
        }
        assert!(sizes.len() > 20, "{sizes:?}");
    }

    #[test]
    fn value_replies_complete_only_when_whole() {
        let c = client_after_get(7);
        let r = b"VALUE key:000000000007 0 5\r\nhello\r\nEND\r\n";
        for cut in 0..r.len() {
            assert_eq!(c.parse_response(&r[..cut]), Ok(Parsed::Incomplete), "cut at {cut}");
        }
        assert_eq!(c.parse_response(r), complete(r.len(), Outcome::Success));
        let with_cas = b"VALUE key:000000000007 3 5 99\r\nhello\r\nEND\r\n";
        assert_eq!(c.parse_response(with_cas), complete(with_cas.len(), Outcome::Success));
        assert_eq!(c.parse_response(b"END\r\n"), complete(5, Outcome::Miss));
    }

    #[test]
    fn set_and_error_replies() {
        let mut c = MemcacheClient::new(workload(), 1);
        c.write_set(3, &mut Vec::new());
        assert_eq!(c.parse_response(b"STORED\r\n"), complete(8, Outcome::Success));
        assert_eq!(c.parse_response(b"NOT_STORED\r\n"), complete(12, Outcome::ErrorReply));
        assert_eq!(c.parse_response(b"SERVER_ERROR out of memory\r\n"), complete(28, Outcome::ErrorReply));
        assert!(c.parse_response(b"END\r\n").is_err(), "END does not answer a set");
    }

    #[test]
    fn malformed_replies_are_errors() {
        let c = client_after_get(7);
        let bad: &[&[u8]] = &[
            b"VALUE key:000000000008 0 5\r\nhello\r\nEND\r\n",
            b"VALUE key:000000000007 x 5\r\nhello\r\nEND\r\n",
            b"VALUE key:000000000007 0 -5\r\nhello\r\nEND\r\n",
            b"VALUE key:000000000007 0 5 1 2\r\nhello\r\nEND\r\n",
            b"VALUE key:000000000007 0 5\r\nhelloXXEND\r\n",
            b"VALUE key:000000000007 0 5\r\nhello\r\nEN!\r\n",
            b"VALUE key:000000000007 0 99999999999\r\n",
            b"STORED\r\n",
            b"HTTP/1.1 200 OK\r\n",
        ];
        for r in bad {
            assert!(c.parse_response(r).is_err(), "accepted {:?}", String::from_utf8_lossy(r));
        }
        let long = vec![b'V'; LINE_MAX_BYTES + 3];
        assert!(matches!(c.parse_response(&long), Err(ProtocolError::TooLarge { .. })));
    }

    #[test]
    fn random_bytes_never_panic() {
        let c = client_after_get(7);
        crate::loadgen::protocol::for_each_mutation(b"VALUE key:000000000007 0 5\r\nhello\r\nEND\r\n", 4, |r| {
            let _ = c.parse_response(r);
        });
    }
}
