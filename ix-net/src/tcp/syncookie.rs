//! SYN cookies: a stateless SYN-ACK whose initial sequence number carries what
//! the handshake needs (as Linux does), and the SipHash-2-4 keyed hash behind it.

use crate::tcp::FourTuple;
use crate::time::Instant;

/// The MSS values a cookie can carry, smallest first. A client's MSS is
/// rounded down to one of these; 536 is the IPv4 default every host accepts.
pub const COOKIE_MSS_TABLE: [u16; 4] = [536, 1300, 1440, 1460];

/// The period of the cookie's time counter. A cookie is accepted during the
/// period it was made in and the next one: between 64 and 128 seconds.
pub const COOKIE_PERIOD_SECS: u64 = 64;

/// Bits of the cookie under the time counter: they hold the MSS index plus a
/// keyed hash.
const COUNTER_SHIFT: u32 = 24;
const LOW_MASK: u32 = (1 << COUNTER_SHIFT) - 1;

/// Counter values a cookie may lag behind the current one and still pass.
const MAX_COUNTER_AGE: u32 = 1;

/// Low bits of our TSval that carry the client's options when it sent
/// timestamps: 4 bits of window scale and 1 bit of SACK-permitted.
const TS_OPTION_BITS: u32 = 5;
const TS_OPTION_MASK: u32 = (1 << TS_OPTION_BITS) - 1;
const TS_WSCALE_MASK: u32 = 0xf;
/// The window-scale field value for "the client sent no window scale".
const TS_WSCALE_NONE: u32 = 0xf;
const TS_SACK_BIT: u32 = 1 << 4;
/// The largest window scale shift (RFC 7323 §2.3).
const WSCALE_MAX: u8 = 14;

/// Makes and checks SYN cookies with a 128-bit secret.
///
/// The cookie, sent as our initial sequence number in the SYN-ACK, is
/// `H1 + (counter << 24) + ((H2 + mss_index) mod 2^24)` modulo 2^32, where
/// `counter` counts [`COOKIE_PERIOD_SECS`] periods of the stack's clock,
/// `H1 = SipHash(secret, tuple, client ISN)` and
/// `H2 = SipHash(secret, tuple, client ISN, counter)`. Without the secret a
/// forged ACK passes with a probability of about 2^-22.
///
/// The secret must be random and kept for at least two periods: the stack
/// draws one at start; simulations pass a fixed one to stay deterministic.
#[derive(Clone)]
pub struct SynCookies {
    secret: [u8; 16],
}

impl std::fmt::Debug for SynCookies {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SynCookies { secret: <hidden> }")
    }
}

/// The client options a SYN cookie can remember in our timestamp, when the
/// client offered timestamps (without them, a cookie connection has neither
/// window scaling nor SACK).
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
pub struct CookieTsOptions {
    /// The client's window scale shift, `None` if it sent no window scale
    /// option. Shifts above 14 are taken as 14 (RFC 7323 §2.3).
    pub window_scale: Option<u8>,
    /// Whether the client sent SACK-permitted.
    pub sack_permitted: bool,
}

impl SynCookies {
    /// Cookies keyed by `secret`.
    pub fn new(secret: [u8; 16]) -> Self {
        SynCookies { secret }
    }

    /// The cookie to send as our initial sequence number in the SYN-ACK that
    /// answers a SYN on `tuple` (`local` is the listener), whose sequence
    /// number was `client_isn` and whose MSS option was `mss` (536 if absent).
    ///
    /// Returns the cookie and the MSS it encodes: the largest entry of
    /// [`COOKIE_MSS_TABLE`] not above `mss`, or 536 if `mss` is smaller. Use
    /// that MSS for the connection, since it is what [`validate`] will return.
    ///
    /// [`validate`]: SynCookies::validate
    pub fn generate(&self, now: Instant, tuple: FourTuple, client_isn: u32, mss: u16) -> (u32, u16) {
        let index = COOKIE_MSS_TABLE.iter().rposition(|&entry| entry <= mss).unwrap_or(0);
        let counter = counter_at(now);
        let low = self.counter_hash(tuple, client_isn, counter).wrapping_add(index as u32);
        let cookie =
            self.tuple_hash(tuple, client_isn).wrapping_add(counter << COUNTER_SHIFT).wrapping_add(low & LOW_MASK);
        (cookie, COOKIE_MSS_TABLE[index])
    }

    /// Checks the cookie echoed by the ACK that completes a handshake on
    /// `tuple`, and returns the MSS it encodes, or `None` if it is not a
    /// cookie of ours for this tuple made in the current or previous period.
    ///
    /// Both numbers come from that ACK: `client_isn` is its sequence number
    /// minus one (the client's SYN consumed one), and `cookie` is its
    /// acknowledgement number minus one (our SYN-ACK consumed one).
    pub fn validate(&self, now: Instant, tuple: FourTuple, client_isn: u32, cookie: u32) -> Option<u16> {
        let unmasked = cookie.wrapping_sub(self.tuple_hash(tuple, client_isn));
        let current = counter_at(now);
        let age = current.wrapping_sub(unmasked >> COUNTER_SHIFT) & (u32::MAX >> COUNTER_SHIFT);
        if age > MAX_COUNTER_AGE {
            return None;
        }
        let counter = current.wrapping_sub(age);
        let index = unmasked.wrapping_sub(self.counter_hash(tuple, client_isn, counter)) & LOW_MASK;
        COOKIE_MSS_TABLE.get(index as usize).copied()
    }

    /// `H1`: masks the counter; independent of time.
    fn tuple_hash(&self, tuple: FourTuple, client_isn: u32) -> u32 {
        self.hash(1, tuple, client_isn, 0)
    }

    /// `H2`: authenticates the counter and the MSS index.
    fn counter_hash(&self, tuple: FourTuple, client_isn: u32, counter: u32) -> u32 {
        self.hash(2, tuple, client_isn, counter)
    }

    fn hash(&self, domain: u8, tuple: FourTuple, client_isn: u32, counter: u32) -> u32 {
        let mut message = [0u8; 21];
        message[0] = domain;
        message[1..5].copy_from_slice(&tuple.local.ip().octets());
        message[5..7].copy_from_slice(&tuple.local.port().to_be_bytes());
        message[7..11].copy_from_slice(&tuple.remote.ip().octets());
        message[11..13].copy_from_slice(&tuple.remote.port().to_be_bytes());
        message[13..17].copy_from_slice(&client_isn.to_be_bytes());
        message[17..21].copy_from_slice(&counter.to_be_bytes());
        siphash_2_4(&self.secret, &message) as u32
    }
}

/// The cookie time counter at `now`, modulo 2^32.
fn counter_at(now: Instant) -> u32 {
    (now.as_micros() / (COOKIE_PERIOD_SECS * 1_000_000)) as u32
}

/// Our TSval for a cookie SYN-ACK: `ts_now` with its low 5 bits replaced by
/// the client's options, moved back by 32 if that would put it ahead of
/// `ts_now` (a timestamp must not run ahead of the clock it claims).
///
/// The client echoes it as TSecr in its ACK, where [`decode_ts_options`]
/// reads the options back. Use it only when the client's SYN carried a
/// timestamp option.
pub fn encode_ts_options(ts_now: u32, options: CookieTsOptions) -> u32 {
    let window_scale = options.window_scale.map_or(TS_WSCALE_NONE, |shift| u32::from(shift.min(WSCALE_MAX)));
    let sack = if options.sack_permitted { TS_SACK_BIT } else { 0 };
    let ts = (ts_now & !TS_OPTION_MASK) | window_scale | sack;
    if ts > ts_now { ts.wrapping_sub(TS_OPTION_MASK + 1) } else { ts }
}

/// The client options stored by [`encode_ts_options`], read from the TSecr of
/// the ACK that completes a cookie handshake. The bits are not authenticated
/// beyond the cookie itself: a client can only claim options for itself.
pub fn decode_ts_options(tsecr: u32) -> CookieTsOptions {
    let window_scale = tsecr & TS_WSCALE_MASK;
    CookieTsOptions {
        window_scale: (window_scale != TS_WSCALE_NONE).then_some(window_scale as u8),
        sack_permitted: tsecr & TS_SACK_BIT != 0,
    }
}

/// SipHash-2-4 of `message` under a 128-bit `key` (Aumasson and Bernstein,
/// 2012): a keyed hash fast on short inputs, for SYN cookies and any other
/// value an off-path attacker must not predict (such as RFC 6528 ISNs).
pub fn siphash_2_4(key: &[u8; 16], message: &[u8]) -> u64 {
    let (k0_bytes, k1_bytes) = key.split_at(8);
    let k0 = u64::from_le_bytes(k0_bytes.try_into().expect("8 bytes"));
    let k1 = u64::from_le_bytes(k1_bytes.try_into().expect("8 bytes"));
    let mut state = SipState([
        k0 ^ 0x736f_6d65_7073_6575,
        k1 ^ 0x646f_7261_6e64_6f6d,
        k0 ^ 0x6c79_6765_6e65_7261,
        k1 ^ 0x7465_6462_7974_6573,
    ]);
    let mut words = message.chunks_exact(8);
    for word in &mut words {
        state.absorb(u64::from_le_bytes(word.try_into().expect("8 bytes")));
    }
    // The last word: the remaining bytes, and the length modulo 256 on top.
    let mut last = [0u8; 8];
    last[..words.remainder().len()].copy_from_slice(words.remainder());
    last[7] = message.len() as u8;
    state.absorb(u64::from_le_bytes(last));
    state.0[2] ^= 0xff;
    for _ in 0..4 {
        state.round();
    }
    state.0.iter().fold(0, |hash, v| hash ^ v)
}

/// The four 64-bit words of SipHash's internal state.
struct SipState([u64; 4]);

impl SipState {
    /// Mixes in one message word with two compression rounds.
    fn absorb(&mut self, word: u64) {
        self.0[3] ^= word;
        self.round();
        self.round();
        self.0[0] ^= word;
    }

    fn round(&mut self) {
        let [v0, v1, v2, v3] = &mut self.0;
        *v0 = v0.wrapping_add(*v1);
        *v1 = v1.rotate_left(13) ^ *v0;
        *v0 = v0.rotate_left(32);
        *v2 = v2.wrapping_add(*v3);
        *v3 = v3.rotate_left(16) ^ *v2;
        *v0 = v0.wrapping_add(*v3);
        *v3 = v3.rotate_left(21) ^ *v0;
        *v2 = v2.wrapping_add(*v1);
        *v1 = v1.rotate_left(17) ^ *v2;
        *v2 = v2.rotate_left(32);
    }
}

#[cfg(test)]
mod tests {
    use std::net::{Ipv4Addr, SocketAddrV4};
    use std::time::Duration;

    use proptest::prelude::*;

    use super::*;

    const SECRET: [u8; 16] = *b"sixteen byte key";

    fn tuple() -> FourTuple {
        FourTuple {
            local: SocketAddrV4::new(Ipv4Addr::new(10, 0, 0, 1), 80),
            remote: SocketAddrV4::new(Ipv4Addr::new(192, 0, 2, 7), 51_234),
        }
    }

    /// SipHash-2-4 outputs for key 00..0f and message 00..n-1, n = 0..16, from
    /// the reference implementation's published test vectors.
    const SIPHASH_VECTORS: [u64; 17] = [
        0x726f_db47_dd0e_0e31,
        0x74f8_39c5_93dc_67fd,
        0x0d6c_8009_d9a9_4f5a,
        0x8567_6696_d7fb_7e2d,
        0xcf27_94e0_2771_87b7,
        0x1876_5564_cd99_a68d,
        0xcbc9_466e_58fe_e3ce,
        0xab02_00f5_8b01_d137,
        0x93f5_f579_9a93_2462,
        0x9e00_82df_0ba9_e4b0,
        0x7a5d_bbc5_94dd_b9f3,
        0xf4b3_2f46_226b_ada7,
        0x751e_8fbc_860e_e5fb,
        0x14ea_5627_c084_3d90,
        0xf723_ca90_8e7a_f2ee,
        0xa129_ca61_49be_45e5,
        0x3f2a_cc7f_57c2_9bdb,
    ];

    #[test]
    fn siphash_matches_the_published_vectors() {
        let key: [u8; 16] = std::array::from_fn(|i| i as u8);
        let message: Vec<u8> = (0..16).collect();
        for (len, &expected) in SIPHASH_VECTORS.iter().enumerate() {
            assert_eq!(siphash_2_4(&key, &message[..len]), expected, "length {len}");
        }
    }

    #[test]
    fn round_trip_in_the_same_and_the_next_period() {
        let cookies = SynCookies::new(SECRET);
        let made = Instant::from_micros(10_000_000);
        for (index, &mss) in COOKIE_MSS_TABLE.iter().enumerate() {
            let isn = 0xffff_fff0 + index as u32;
            let (cookie, mss_used) = cookies.generate(made, tuple(), isn, mss);
            assert_eq!(mss_used, mss);
            for later_secs in [0, 50, 117] {
                let now = made + Duration::from_secs(later_secs);
                assert_eq!(cookies.validate(now, tuple(), isn, cookie), Some(mss), "mss {mss}, {later_secs} s later");
            }
        }
    }

    #[test]
    fn expired_and_future_counters_are_rejected() {
        let cookies = SynCookies::new(SECRET);
        let made = Instant::from_micros(63_999_999);
        let (cookie, _) = cookies.generate(made, tuple(), 1, 1460);
        let next_period = Instant::from_micros(64_000_000);
        assert_eq!(cookies.validate(next_period, tuple(), 1, cookie), Some(1460));
        let two_periods_on = Instant::from_micros(128_000_000);
        assert_eq!(cookies.validate(two_periods_on, tuple(), 1, cookie), None);
        let (from_the_future, _) = cookies.generate(next_period, tuple(), 1, 1460);
        assert_eq!(cookies.validate(made, tuple(), 1, from_the_future), None);
    }

    #[test]
    fn tampering_is_rejected() {
        let cookies = SynCookies::new(SECRET);
        let now = Instant::from_millis(5);
        let (cookie, _) = cookies.generate(now, tuple(), 1_000, 1460);
        // Bits 0 and 1 only move between MSS indices; every other bit matters.
        for bit in 2..32 {
            let forged = cookie ^ (1 << bit);
            assert_eq!(cookies.validate(now, tuple(), 1_000, forged), None, "bit {bit}");
        }
        let mut other_port = tuple();
        other_port.remote.set_port(51_235);
        assert_eq!(cookies.validate(now, other_port, 1_000, cookie), None);
        assert_eq!(cookies.validate(now, tuple(), 1_001, cookie), None);
        let other_secret = SynCookies::new(*b"another 16B key!");
        assert_eq!(other_secret.validate(now, tuple(), 1_000, cookie), None);
    }

    #[test]
    fn mss_rounds_down_to_the_table() {
        let cookies = SynCookies::new(SECRET);
        let now = Instant::ZERO;
        for (asked, used) in
            [(9000, 1460), (1460, 1460), (1459, 1440), (1400, 1300), (1300, 1300), (1000, 536), (200, 536)]
        {
            let (cookie, mss) = cookies.generate(now, tuple(), 42, asked);
            assert_eq!(mss, used, "asked {asked}");
            assert_eq!(cookies.validate(now, tuple(), 42, cookie), Some(used));
        }
    }

    #[test]
    fn timestamp_options_round_trip_without_running_ahead() {
        let scales = (0..=WSCALE_MAX).map(Some).chain([None]);
        for window_scale in scales {
            for sack_permitted in [false, true] {
                let options = CookieTsOptions { window_scale, sack_permitted };
                for ts_now in [0, 3, 31, 32, 1_000_007, u32::MAX] {
                    let tsval = encode_ts_options(ts_now, options);
                    assert_eq!(decode_ts_options(tsval), options);
                    assert!(ts_now.wrapping_sub(tsval) <= TS_OPTION_MASK, "{ts_now} {tsval}");
                }
            }
        }
        let too_large = CookieTsOptions { window_scale: Some(15), sack_permitted: false };
        let decoded = decode_ts_options(encode_ts_options(1 << 20, too_large));
        assert_eq!(decoded.window_scale, Some(WSCALE_MAX));
    }

    proptest! {
        #[test]
        #[allow(deprecated)] // std's SipHasher is SipHash-2-4: a second opinion.
        fn siphash_agrees_with_std(key: [u8; 16], message in prop::collection::vec(any::<u8>(), 0..64)) {
            use std::hash::Hasher;
            let k0 = u64::from_le_bytes(key[..8].try_into().unwrap());
            let k1 = u64::from_le_bytes(key[8..].try_into().unwrap());
            let mut reference = std::hash::SipHasher::new_with_keys(k0, k1);
            reference.write(&message);
            prop_assert_eq!(siphash_2_4(&key, &message), reference.finish());
        }

        #[test]
        fn any_cookie_round_trips(
            secret: [u8; 16],
            local: (u32, u16),
            remote: (u32, u16),
            isn: u32,
            mss: u16,
            made_micros in 0u64..1 << 50,
            later_micros in 0u64..COOKIE_PERIOD_SECS * 1_000_000,
        ) {
            let tuple = FourTuple {
                local: SocketAddrV4::new(local.0.into(), local.1),
                remote: SocketAddrV4::new(remote.0.into(), remote.1),
            };
            let cookies = SynCookies::new(secret);
            let made = Instant::from_micros(made_micros);
            let (cookie, used) = cookies.generate(made, tuple, isn, mss);
            let later = made + Duration::from_micros(later_micros);
            prop_assert_eq!(cookies.validate(later, tuple, isn, cookie), Some(used));
        }
    }
}
