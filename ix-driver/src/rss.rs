//! Receive-side scaling in software, as a NIC does it: the Toeplitz hash over the
//! IPv4 4-tuple, the redirection table from hash to queue, and the port probing
//! that makes an outgoing connection's replies land on the connecting core.

use std::fmt;
use std::net::Ipv4Addr;
use std::ops::RangeInclusive;

use crate::error::DriverError;

/// Length of a Toeplitz key in bytes (320 bits), as NICs and NDIS take it.
pub const RSS_KEY_BYTES: usize = 40;

/// The longest input hashed with lookup tables: an IPv4 4-tuple.
pub const RSS_INPUT_MAX_BYTES: usize = 12;

/// Entries in a redirection table unless configured otherwise (most NICs have
/// 128; IX used 512 flow groups).
pub const DEFAULT_RETA_ENTRIES: usize = 128;

/// The key Microsoft publishes with its RSS verification suite, which many NICs
/// also load by default.
pub const RSS_DEFAULT_KEY: [u8; RSS_KEY_BYTES] = [
    0x6d, 0x5a, 0x56, 0xda, 0x25, 0x5b, 0x0e, 0xc2, 0x41, 0x67, 0x25, 0x3d, 0x43, 0xa3, 0x8f, 0xb0, 0xd0, 0xca, 0x2b,
    0xcb, 0xae, 0x7b, 0x30, 0xb4, 0x77, 0xcb, 0x2d, 0xa3, 0x80, 0x30, 0xf2, 0x0c, 0x6a, 0x42, 0xb7, 0x3b, 0xbe, 0xac,
    0x01, 0xfa,
];

/// The Toeplitz hash with a fixed key, precomputed into one 256-entry table per
/// input byte position.
///
/// The hash is linear over GF(2): each set input bit XORs in the 32-bit window
/// of the key that starts at that bit. The windows of the eight bits of input
/// byte `i` combine into `table[i][byte]`, so hashing `n` bytes is `n` lookups
/// XORed together.
#[derive(Clone)]
pub struct Toeplitz {
    key: [u8; RSS_KEY_BYTES],
    tables: Box<[[u32; 256]; RSS_INPUT_MAX_BYTES]>,
}

impl fmt::Debug for Toeplitz {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Toeplitz").field("key", &self.key).finish_non_exhaustive()
    }
}

impl Default for Toeplitz {
    fn default() -> Self {
        Self::new(RSS_DEFAULT_KEY)
    }
}

impl Toeplitz {
    /// Builds the lookup tables (12 KiB) for `key`.
    pub fn new(key: [u8; RSS_KEY_BYTES]) -> Self {
        let mut tables = Box::new([[0u32; 256]; RSS_INPUT_MAX_BYTES]);
        for (pos, table) in tables.iter_mut().enumerate() {
            // Key bits pos*8 .. pos*8 + 39, left-aligned in the low 40 bits.
            let span = key[pos..pos + 5].iter().fold(0u64, |acc, &b| (acc << 8) | u64::from(b));
            // window[b]: the 32 key bits starting at input bit b of this byte
            // (b = 0 is the byte's most significant bit).
            let window: [u32; 8] = std::array::from_fn(|b| (span >> (8 - b)) as u32);
            for value in 1..256usize {
                let low_bit = value.trailing_zeros() as usize;
                table[value] = table[value & (value - 1)] ^ window[7 - low_bit];
            }
        }
        Self { key, tables }
    }

    /// The key the tables were built from.
    pub fn key(&self) -> &[u8; RSS_KEY_BYTES] {
        &self.key
    }

    /// Hashes `input` in NIC order (first byte first, most significant bit first).
    ///
    /// # Panics
    /// If `input` is longer than [`RSS_INPUT_MAX_BYTES`].
    pub fn hash(&self, input: &[u8]) -> u32 {
        assert!(
            input.len() <= RSS_INPUT_MAX_BYTES,
            "Toeplitz input of {} bytes exceeds {RSS_INPUT_MAX_BYTES}",
            input.len()
        );
        input.iter().zip(self.tables.iter()).fold(0, |acc, (&byte, table)| acc ^ table[byte as usize])
    }

    /// The hash a NIC computes for IPv4 without ports: source then destination
    /// address.
    pub fn hash_ipv4(&self, src: Ipv4Addr, dst: Ipv4Addr) -> u32 {
        let mut input = [0u8; 8];
        input[..4].copy_from_slice(&src.octets());
        input[4..].copy_from_slice(&dst.octets());
        self.hash(&input)
    }

    /// The hash a NIC computes for TCP or UDP over IPv4: source address,
    /// destination address, source port, destination port, in network byte order.
    pub fn hash_ipv4_tcp_udp(&self, src: Ipv4Addr, dst: Ipv4Addr, src_port: u16, dst_port: u16) -> u32 {
        let mut input = [0u8; RSS_INPUT_MAX_BYTES];
        input[..4].copy_from_slice(&src.octets());
        input[4..8].copy_from_slice(&dst.octets());
        input[8..10].copy_from_slice(&src_port.to_be_bytes());
        input[10..].copy_from_slice(&dst_port.to_be_bytes());
        self.hash(&input)
    }
}

/// The NIC's redirection (indirection) table: the low bits of the hash pick an
/// entry, the entry names a receive queue. The control plane moves flow groups
/// between cores by rewriting entries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RedirectionTable {
    entries: Box<[u16]>,
}

impl RedirectionTable {
    /// A table of `entries` entries filled round-robin over `queues` queues
    /// (entry `i` names queue `i % queues`).
    ///
    /// # Errors
    /// [`DriverError::Config`] when `entries` is not a power of two or `queues`
    /// is zero.
    pub fn new(entries: usize, queues: u16) -> Result<Self, DriverError> {
        if !entries.is_power_of_two() {
            return Err(DriverError::Config(format!(
                "a redirection table needs a power-of-two number of entries, not {entries}"
            )));
        }
        if queues == 0 {
            return Err(DriverError::Config("a redirection table needs at least one queue".into()));
        }
        Ok(Self { entries: (0..entries).map(|i| (i % usize::from(queues)) as u16).collect() })
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Always false: a table has at least one entry.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The entry (flow group) a hash selects.
    pub fn entry_for_hash(&self, hash: u32) -> usize {
        hash as usize & (self.entries.len() - 1)
    }

    /// The queue a hash is delivered to.
    pub fn queue_for_hash(&self, hash: u32) -> u16 {
        self.entries[self.entry_for_hash(hash)]
    }

    /// The queue an entry names.
    ///
    /// # Panics
    /// If `entry` is not below [`RedirectionTable::len`].
    pub fn queue(&self, entry: usize) -> u16 {
        self.entries[entry]
    }

    /// Points `entry` at `queue` (the control plane's flow-group migration).
    ///
    /// # Panics
    /// If `entry` is not below [`RedirectionTable::len`].
    pub fn set(&mut self, entry: usize, queue: u16) {
        let len = self.entries.len();
        assert!(entry < len, "redirection entry {entry} out of a {len}-entry table");
        self.entries[entry] = queue;
    }
}

/// Finds a local port for an outgoing connection whose replies the NIC will
/// deliver to `queue` (IX's port probing).
///
/// Replies travel remote → local, so each candidate is hashed as the NIC will
/// see the incoming packets: source = (`remote_ip`, `remote_port`), destination
/// = (`local_ip`, port). The Toeplitz hash is not symmetric with a general key:
/// the hash of the outgoing direction says nothing about where replies land, so
/// probing with the tuple the wrong way round picks ports for the wrong core.
/// (A key made of one repeated 16-bit pattern, e.g. `0x6d5a`, is symmetric, at
/// the price of a weaker spread.)
///
/// Candidates are tried from `start` (or the first port of `ports` when `start`
/// lies outside it) upward, wrapping round, each once. Whether the port is free
/// is the caller's business: pass the port after the last one taken as `start`.
/// A port found here only stays on `queue` while the table entry it hashes to
/// is not rewritten; after a flow-group migration the connection's replies
/// follow the table, not the port choice.
///
/// Returns `None` when no port in the range maps to `queue`, or the range is
/// empty.
#[allow(clippy::too_many_arguments)]
pub fn find_port_for_queue(
    table: &RedirectionTable,
    toeplitz: &Toeplitz,
    local_ip: Ipv4Addr,
    remote_ip: Ipv4Addr,
    remote_port: u16,
    queue: u16,
    ports: RangeInclusive<u16>,
    start: u16,
) -> Option<u16> {
    let (lo, hi) = (*ports.start(), *ports.end());
    if lo > hi {
        return None;
    }
    let first = if ports.contains(&start) { start } else { lo };
    let candidates = (first..=hi).chain(lo..first);
    candidates.into_iter().find(|&port| {
        let hash = toeplitz.hash_ipv4_tcp_udp(remote_ip, local_ip, remote_port, port);
        table.queue_for_hash(hash) == queue
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One row: (source, source port, destination, destination port, IPv4
    /// hash, TCP/IPv4 hash).
    type VerificationRow = ([u8; 4], u16, [u8; 4], u16, u32, u32);

    /// The five IPv4 rows of Microsoft's "Verifying the RSS Hash Calculation".
    const VERIFICATION_ROWS: [VerificationRow; 5] = [
        ([66, 9, 149, 187], 2794, [161, 142, 100, 80], 1766, 0x323e_8fc2, 0x51cc_c178),
        ([199, 92, 111, 2], 14230, [65, 69, 140, 83], 4739, 0xd718_262a, 0xc626_b0ea),
        ([24, 19, 198, 95], 12898, [12, 22, 207, 184], 38024, 0xd2d0_a5de, 0x5c2b_394a),
        ([38, 27, 205, 30], 48228, [209, 142, 163, 6], 2217, 0x8298_9176, 0xafc7_327f),
        ([153, 39, 163, 191], 44251, [202, 188, 127, 2], 1303, 0x5d18_09c5, 0x10e8_28a2),
    ];

    /// The definition, one bit at a time, to check the tables against.
    fn hash_bit_by_bit(key: &[u8; RSS_KEY_BYTES], input: &[u8]) -> u32 {
        let key_bit = |i: usize| (key[i / 8] >> (7 - i % 8)) & 1;
        let mut result = 0u32;
        for bit in 0..input.len() * 8 {
            if (input[bit / 8] >> (7 - bit % 8)) & 1 == 1 {
                let window = (0..32).fold(0u32, |acc, j| (acc << 1) | u32::from(key_bit(bit + j)));
                result ^= window;
            }
        }
        result
    }

    #[test]
    fn matches_every_row_of_the_microsoft_verification_table() {
        let toeplitz = Toeplitz::default();
        for (src, sport, dst, dport, ipv4, tcp) in VERIFICATION_ROWS {
            let (src, dst) = (Ipv4Addr::from(src), Ipv4Addr::from(dst));
            assert_eq!(toeplitz.hash_ipv4(src, dst), ipv4, "IPv4 {src} -> {dst}");
            assert_eq!(
                toeplitz.hash_ipv4_tcp_udp(src, dst, sport, dport),
                tcp,
                "TCP/IPv4 {src}:{sport} -> {dst}:{dport}"
            );
        }
    }

    #[test]
    fn tables_agree_with_the_bitwise_definition_for_any_key() {
        let mut state = 0x1234_5678_9abc_def0u64;
        let mut next = || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        for _ in 0..50 {
            let key: [u8; RSS_KEY_BYTES] = std::array::from_fn(|_| next() as u8);
            let toeplitz = Toeplitz::new(key);
            for len in 0..=RSS_INPUT_MAX_BYTES {
                let input: Vec<u8> = (0..len).map(|_| next() as u8).collect();
                assert_eq!(toeplitz.hash(&input), hash_bit_by_bit(&key, &input), "len {len}");
            }
        }
    }

    #[test]
    #[should_panic(expected = "exceeds")]
    fn longer_input_than_the_tables_panics() {
        Toeplitz::default().hash(&[0; RSS_INPUT_MAX_BYTES + 1]);
    }

    #[test]
    fn redirection_table_fills_round_robin_and_can_be_rewritten() {
        let mut table = RedirectionTable::new(DEFAULT_RETA_ENTRIES, 3).unwrap();
        assert_eq!(table.len(), 128);
        assert_eq!((0..6).map(|e| table.queue(e)).collect::<Vec<_>>(), [0, 1, 2, 0, 1, 2]);
        assert_eq!(table.entry_for_hash(0xffff_ff85), 5);
        assert_eq!(table.queue_for_hash(0xffff_ff85), 2);
        table.set(5, 0);
        assert_eq!(table.queue_for_hash(0xffff_ff85), 0);
        assert!(RedirectionTable::new(512, 4).is_ok());
        assert!(RedirectionTable::new(100, 4).is_err());
        assert!(RedirectionTable::new(0, 4).is_err());
        assert!(RedirectionTable::new(128, 0).is_err());
    }

    #[test]
    fn probed_port_lands_replies_on_the_wanted_queue() {
        let toeplitz = Toeplitz::default();
        let table = RedirectionTable::new(512, 4).unwrap();
        let local = Ipv4Addr::new(10, 0, 0, 1);
        let remote = Ipv4Addr::new(10, 0, 0, 2);
        for queue in 0..4 {
            let port = find_port_for_queue(&table, &toeplitz, local, remote, 80, queue, 40000..=40999, 40500).unwrap();
            assert!((40000..=40999).contains(&port));
            let reply = toeplitz.hash_ipv4_tcp_udp(remote, local, 80, port);
            assert_eq!(table.queue_for_hash(reply), queue);
        }
    }

    #[test]
    fn probing_wraps_round_and_gives_up_when_no_port_fits() {
        let toeplitz = Toeplitz::default();
        let mut table = RedirectionTable::new(8, 2).unwrap();
        let (local, remote) = (Ipv4Addr::new(192, 168, 1, 1), Ipv4Addr::new(192, 168, 1, 2));
        let on_queue_1 = |port: u16| table.queue_for_hash(toeplitz.hash_ipv4_tcp_udp(remote, local, 443, port)) == 1;
        let last_fit = (1000..=1100).rev().find(|&p| on_queue_1(p)).unwrap();
        let first_fit = (1000..=1100).find(|&p| on_queue_1(p)).unwrap();
        // Starting after the last fitting port wraps to the first one.
        let found = find_port_for_queue(&table, &toeplitz, local, remote, 443, 1, 1000..=1100, last_fit + 1);
        assert_eq!(found, Some(first_fit));
        // A start outside the range begins at its first port.
        let found = find_port_for_queue(&table, &toeplitz, local, remote, 443, 1, 1000..=1100, 7);
        assert_eq!(found, Some(first_fit));
        for entry in 0..table.len() {
            table.set(entry, 0);
        }
        assert_eq!(find_port_for_queue(&table, &toeplitz, local, remote, 443, 1, 1000..=1100, 1000), None);
        #[allow(clippy::reversed_empty_ranges)]
        let empty = 5..=4;
        assert_eq!(find_port_for_queue(&table, &toeplitz, local, remote, 443, 0, empty, 5), None);
    }

    #[test]
    fn the_two_directions_of_a_flow_hash_differently() {
        let toeplitz = Toeplitz::default();
        let (a, b) = (Ipv4Addr::new(10, 1, 2, 3), Ipv4Addr::new(10, 3, 2, 1));
        assert_ne!(toeplitz.hash_ipv4_tcp_udp(a, b, 1234, 80), toeplitz.hash_ipv4_tcp_udp(b, a, 80, 1234));
    }
}
