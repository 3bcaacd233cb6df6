//! The Internet checksum (RFC 1071) summed in carry-free 32-bit lanes, the IPv4
//! pseudo-header sum, and the incremental update of RFC 1624.

use std::net::Ipv4Addr;

/// Bytes summed into plain (carry-free) lanes before they are added to the
/// running sum: 2^14 32-bit words per lane stay below 2^46, so the lanes never
/// overflow.
const LANE_BLOCK_BYTES: usize = 1 << 16;
/// Independent 32-bit lanes, so the compiler can keep them in vector registers.
const LANES: usize = 8;

/// Adds `data` to the running one's-complement sum `sum` and returns the new
/// sum, unfolded. Pieces can be chained, but every piece except the last must
/// have an even length (a checksum sums 16-bit words).
#[inline]
pub fn accumulate(mut sum: u64, data: &[u8]) -> u64 {
    // Summing 32-bit words without end-around carries is the same sum modulo
    // 0xffff (2^16 is 1 modulo 0xffff). The words are read little-endian (plain
    // loads, no byte shuffles) and the folded result swapped back (RFC 1071
    // section 2(B): the sum is independent of byte order up to that swap).
    let mut rest = data;
    // Up to a block (every IPv4 packet), no loop over blocks to set up.
    while rest.len() >= LANE_BLOCK_BYTES {
        let (block, tail) = rest.split_at(LANE_BLOCK_BYTES);
        sum = add_word(sum, lane_sum(block.chunks_exact(4 * LANES)));
        rest = tail;
    }
    let mut words = rest.chunks_exact(4 * LANES);
    sum = add_word(sum, lane_sum(&mut words));
    let mut pairs = words.remainder().chunks_exact(2);
    for pair in &mut pairs {
        sum = add_word(sum, u64::from(u16::from_be_bytes([pair[0], pair[1]])));
    }
    if let [last] = pairs.remainder() {
        sum = add_word(sum, u64::from(*last) << 8);
    }
    sum
}

/// The sum of groups of `LANES` 32-bit words, at most a block's worth, folded
/// and in network byte order.
#[inline]
fn lane_sum<'a>(groups: impl Iterator<Item = &'a [u8]>) -> u64 {
    let mut lanes = [0u64; LANES];
    for group in groups {
        for (lane, word) in lanes.iter_mut().zip(group.chunks_exact(4)) {
            *lane += u64::from(u32::from_le_bytes([word[0], word[1], word[2], word[3]]));
        }
    }
    u64::from(fold(lanes.iter().sum()).swap_bytes())
}

#[inline]
fn add_word(sum: u64, word: u64) -> u64 {
    let (total, carry) = sum.overflowing_add(word);
    total + u64::from(carry)
}

/// [`accumulate`]`(0, header)` for a 20-byte IPv4 header without options, the
/// header of nearly every packet: its five 32-bit words added at once (the
/// general sum takes them as ten 16-bit pairs, each with its end-around carry).
#[inline]
pub fn accumulate_ipv4_header(header: &[u8; 20]) -> u64 {
    let word = |at: usize| u64::from(u32::from_le_bytes([header[at], header[at + 1], header[at + 2], header[at + 3]]));
    let sum = word(0) + word(4) + word(8) + word(12) + word(16);
    // Little-endian words, so the folded sum is swapped back, as in `lane_sum`.
    u64::from(fold(sum).swap_bytes())
}

/// Folds an unfolded sum from [`accumulate`] into 16 bits (not complemented).
#[inline]
pub fn fold(mut sum: u64) -> u16 {
    sum = (sum & 0xffff_ffff) + (sum >> 32);
    sum = (sum & 0xffff_ffff) + (sum >> 32);
    sum = (sum & 0xffff) + (sum >> 16);
    sum = (sum & 0xffff) + (sum >> 16);
    // Two folds at each width leave at most 16 bits.
    sum as u16
}

/// The Internet checksum of `data`: the complement of its one's-complement sum.
#[inline]
pub fn checksum(data: &[u8]) -> u16 {
    !fold(accumulate(0, data))
}

/// Whether an unfolded sum taken over data that includes its checksum field
/// is all ones, that is, whether that checksum is valid.
#[inline]
pub fn is_valid(sum: u64) -> bool {
    fold(sum) == 0xffff
}

/// The unfolded sum of the IPv4 pseudo-header used by TCP and UDP: source,
/// destination, protocol and the length of the transport segment.
#[inline]
pub fn ipv4_pseudo_header_sum(src: Ipv4Addr, dst: Ipv4Addr, protocol: u8, length: u16) -> u64 {
    u64::from(src.to_bits()) + u64::from(dst.to_bits()) + u64::from(protocol) + u64::from(length)
}

/// The transport checksum of `segment` (checksum field zeroed by the caller)
/// under the IPv4 pseudo-header.
///
/// # Panics
/// Panics if `segment` is longer than 65535 bytes, which no IPv4 packet holds.
#[inline]
pub fn transport_checksum(src: Ipv4Addr, dst: Ipv4Addr, protocol: u8, segment: &[u8]) -> u16 {
    let length = u16::try_from(segment.len()).expect("transport segment longer than 65535 bytes");
    !fold(accumulate(ipv4_pseudo_header_sum(src, dst, protocol, length), segment))
}

/// Whether the transport checksum stored inside `segment` is valid under the
/// IPv4 pseudo-header. A segment longer than 65535 bytes is never valid.
#[inline]
pub fn verify_transport(src: Ipv4Addr, dst: Ipv4Addr, protocol: u8, segment: &[u8]) -> bool {
    match u16::try_from(segment.len()) {
        Ok(length) => is_valid(accumulate(ipv4_pseudo_header_sum(src, dst, protocol, length), segment)),
        Err(_) => false,
    }
}

/// The new checksum of a header in which one 16-bit field changed from
/// `old_field` to `new_field`, without summing the header again (RFC 1624,
/// equation 3: `HC' = ~(~HC + ~m + m')`).
#[inline]
pub fn incremental_update(old_checksum: u16, old_field: u16, new_field: u16) -> u16 {
    let sum = u64::from(!old_checksum) + u64::from(!old_field) + u64::from(new_field);
    !fold(sum)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// The obvious byte-pair loop, as the reference for the word-wise sum.
    fn reference_sum(data: &[u8]) -> u16 {
        let mut sum: u32 = 0;
        for pair in data.chunks(2) {
            let word = u32::from(pair[0]) << 8 | u32::from(*pair.get(1).unwrap_or(&0));
            sum += word;
            sum = (sum & 0xffff) + (sum >> 16);
        }
        sum as u16
    }

    #[test]
    fn rfc1071_example_sums_to_ddf2() {
        // RFC 1071 section 3: bytes 00 01 f2 03 f4 f5 f6 f7 sum to 0xddf2.
        let data = [0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7];
        assert_eq!(fold(accumulate(0, &data)), 0xddf2);
        assert_eq!(checksum(&data), 0x220d);
    }

    #[test]
    fn odd_length_pads_last_byte_on_the_right() {
        assert_eq!(fold(accumulate(0, &[0x12, 0x34, 0x56])), 0x1234 + 0x5600);
    }

    #[test]
    fn rfc1071_header_checksum_of_known_ipv4_header() {
        // A classic example header: 4500 0073 0000 4000 4011 [b861] c0a8 0001 c0a8 00c7.
        let mut header = [
            0x45, 0x00, 0x00, 0x73, 0x00, 0x00, 0x40, 0x00, 0x40, 0x11, 0x00, 0x00, 0xc0, 0xa8, 0x00, 0x01, 0xc0, 0xa8,
            0x00, 0xc7,
        ];
        assert_eq!(checksum(&header), 0xb861);
        header[10..12].copy_from_slice(&0xb861u16.to_be_bytes());
        assert!(is_valid(accumulate(0, &header)));
    }

    #[test]
    fn all_zero_data_has_checksum_ffff() {
        assert_eq!(checksum(&[0; 40]), 0xffff);
    }

    #[test]
    fn rfc1624_example_update() {
        // RFC 1624 section 4: HC = 0xdd2f, m = 0x5555 -> m' = 0x3285 gives 0x0000.
        assert_eq!(incremental_update(0xdd2f, 0x5555, 0x3285), 0x0000);
    }

    proptest! {
        #[test]
        fn word_sum_equals_byte_pair_sum(data in proptest::collection::vec(any::<u8>(), 0..200)) {
            prop_assert_eq!(fold(accumulate(0, &data)), reference_sum(&data));
        }

        #[test]
        fn ipv4_header_sum_equals_the_general_sum(header in any::<[u8; 20]>()) {
            prop_assert_eq!(fold(accumulate_ipv4_header(&header)), fold(accumulate(0, &header)));
            prop_assert_eq!(is_valid(accumulate_ipv4_header(&header)), is_valid(accumulate(0, &header)));
        }

        #[test]
        fn chained_pieces_equal_one_sum(
            data in proptest::collection::vec(any::<u8>(), 0..200),
            split in 0usize..100,
        ) {
            let split = (split * 2).min(data.len() & !1);
            let chained = accumulate(accumulate(0, &data[..split]), &data[split..]);
            prop_assert_eq!(fold(chained), fold(accumulate(0, &data)));
        }

        #[test]
        fn incremental_update_equals_full_recomputation(
            header in proptest::collection::vec(any::<u8>(), 20..60),
            field_index in 0usize..30,
            new_field in any::<u16>(),
        ) {
            let mut header = header;
            let len = header.len() & !1;
            header.truncate(len);
            // Checksum lives in the first word; change any other word.
            let words = len / 2;
            let at = 2 * (1 + field_index % (words - 1));
            header[0..2].fill(0);
            let old_checksum = checksum(&header);
            header[0..2].copy_from_slice(&old_checksum.to_be_bytes());
            let old_field = u16::from_be_bytes([header[at], header[at + 1]]);
            header[at..at + 2].copy_from_slice(&new_field.to_be_bytes());
            let updated = incremental_update(old_checksum, old_field, new_field);
            header[0..2].fill(0);
            let recomputed = checksum(&header);
            // 0x0000 and 0xffff are the same one's-complement number.
            prop_assert_eq!(updated % 0xffff, recomputed % 0xffff);
            header[0..2].copy_from_slice(&updated.to_be_bytes());
            prop_assert!(is_valid(accumulate(0, &header)));
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(16))]
        /// Past one carry-free block of 64 KiB, and odd lengths around it.
        #[test]
        fn lane_sum_equals_byte_pair_sum_beyond_one_block(
            data in proptest::collection::vec(any::<u8>(), 65_000..140_000),
        ) {
            prop_assert_eq!(fold(accumulate(0, &data)), reference_sum(&data));
        }
    }
}
