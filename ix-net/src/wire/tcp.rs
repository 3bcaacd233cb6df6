//! TCP (RFC 9293): the segment view, flags, options (MSS, window scale,
//! SACK-permitted, SACK blocks, timestamps) parsed as hostile input, the repr,
//! and the checksum over the IPv4 pseudo-header.

use core::fmt;
use core::ops::{BitAnd, BitOr, BitOrAssign};
use std::net::Ipv4Addr;

use super::checksum;
use super::field::{Field, read_u16, read_u32, write_u16, write_u32};
use super::{IpProtocol, WireError, byte_view};

/// Length of a TCP header without options.
pub const TCP_HEADER_LEN: usize = 20;
/// Most option bytes a header can carry (data offset 15 words minus 5).
pub const TCP_OPTIONS_MAX_LEN: usize = 40;
/// Option bytes of timestamps alone, NOP-aligned (RFC 7323 Appendix A).
const TIMESTAMPS_ALIGNED_LEN: usize = 12;
/// Most SACK blocks one option can carry (RFC 2018: 2 + 8n bytes, n <= 4).
const SACK_BLOCKS_MAX: usize = 4;
/// Largest window shift allowed; larger ones are read as 14 (RFC 7323 2.3).
const WINDOW_SCALE_MAX: u8 = 14;

mod option_kind {
    pub(super) const END: u8 = 0;
    pub(super) const NOP: u8 = 1;
    pub(super) const MSS: u8 = 2;
    pub(super) const WINDOW_SCALE: u8 = 3;
    pub(super) const SACK_PERMITTED: u8 = 4;
    pub(super) const SACK: u8 = 5;
    pub(super) const TIMESTAMPS: u8 = 8;
}

mod fields {
    use super::Field;
    pub(super) const SOURCE_PORT: Field = 0..2;
    pub(super) const DESTINATION_PORT: Field = 2..4;
    pub(super) const SEQ_NUMBER: Field = 4..8;
    pub(super) const ACK_NUMBER: Field = 8..12;
    pub(super) const DATA_OFFSET: usize = 12;
    pub(super) const FLAGS: usize = 13;
    pub(super) const WINDOW: Field = 14..16;
    pub(super) const CHECKSUM: Field = 16..18;
    pub(super) const URGENT_POINTER: Field = 18..20;
}

/// The eight TCP control flags, as a set.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct TcpFlags(u8);

impl TcpFlags {
    /// No more data from sender.
    pub const FIN: TcpFlags = TcpFlags(0x01);
    /// Synchronize sequence numbers.
    pub const SYN: TcpFlags = TcpFlags(0x02);
    /// Reset the connection.
    pub const RST: TcpFlags = TcpFlags(0x04);
    /// Push.
    pub const PSH: TcpFlags = TcpFlags(0x08);
    /// The acknowledgment number is significant.
    pub const ACK: TcpFlags = TcpFlags(0x10);
    /// The urgent pointer is significant.
    pub const URG: TcpFlags = TcpFlags(0x20);
    /// ECN echo (RFC 3168).
    pub const ECE: TcpFlags = TcpFlags(0x40);
    /// Congestion window reduced (RFC 3168).
    pub const CWR: TcpFlags = TcpFlags(0x80);

    const NAMES: [(TcpFlags, &'static str); 8] = [
        (Self::FIN, "FIN"),
        (Self::SYN, "SYN"),
        (Self::RST, "RST"),
        (Self::PSH, "PSH"),
        (Self::ACK, "ACK"),
        (Self::URG, "URG"),
        (Self::ECE, "ECE"),
        (Self::CWR, "CWR"),
    ];

    /// The empty set.
    #[inline]
    pub const fn empty() -> TcpFlags {
        TcpFlags(0)
    }

    /// The set whose bits are the flags byte of a header.
    #[inline]
    pub const fn from_bits(bits: u8) -> TcpFlags {
        TcpFlags(bits)
    }

    /// The flags byte of a header.
    #[inline]
    pub const fn bits(self) -> u8 {
        self.0
    }

    /// Whether every flag of `other` is set here.
    #[inline]
    pub const fn contains(self, other: TcpFlags) -> bool {
        self.0 & other.0 == other.0
    }

    /// Whether any flag of `other` is set here.
    #[inline]
    pub const fn intersects(self, other: TcpFlags) -> bool {
        self.0 & other.0 != 0
    }

    /// Whether no flag is set.
    #[inline]
    pub const fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// Sets the flags of `other`.
    #[inline]
    pub fn insert(&mut self, other: TcpFlags) {
        self.0 |= other.0;
    }

    /// Clears the flags of `other`.
    #[inline]
    pub fn remove(&mut self, other: TcpFlags) {
        self.0 &= !other.0;
    }
}

impl BitOr for TcpFlags {
    type Output = TcpFlags;
    #[inline]
    fn bitor(self, other: TcpFlags) -> TcpFlags {
        TcpFlags(self.0 | other.0)
    }
}

impl BitOrAssign for TcpFlags {
    #[inline]
    fn bitor_assign(&mut self, other: TcpFlags) {
        self.0 |= other.0;
    }
}

impl BitAnd for TcpFlags {
    type Output = TcpFlags;
    #[inline]
    fn bitand(self, other: TcpFlags) -> TcpFlags {
        TcpFlags(self.0 & other.0)
    }
}

impl fmt::Debug for TcpFlags {
    /// Lists the names of the flags set, as `SYN | ACK`, or `(empty)`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_empty() {
            return f.write_str("(empty)");
        }
        let mut separator = "";
        for (flag, name) in Self::NAMES {
            if self.contains(flag) {
                write!(f, "{separator}{name}")?;
                separator = " | ";
            }
        }
        Ok(())
    }
}

byte_view! {
    /// A view of a TCP segment over a byte buffer holding exactly the segment
    /// (the IPv4 payload).
    pub struct TcpPacket;
}

impl<T: AsRef<[u8]>> TcpPacket<T> {
    /// Checks that the buffer holds the fixed header and that the data
    /// offset covers it and stays within the buffer.
    ///
    /// # Errors
    /// [`WireError::Truncated`] if the buffer is shorter than 20 bytes;
    /// [`WireError::BadLength`] if the data offset is below 5 words or runs
    /// past the buffer.
    #[inline]
    pub fn check_len(&self) -> Result<(), WireError> {
        let len = self.buffer.as_ref().len();
        if len < TCP_HEADER_LEN {
            return Err(WireError::Truncated);
        }
        let header_len = self.header_len();
        if header_len < TCP_HEADER_LEN || header_len > len {
            return Err(WireError::BadLength);
        }
        Ok(())
    }

    /// The source port.
    #[inline]
    pub fn src_port(&self) -> u16 {
        read_u16(self.buffer.as_ref(), fields::SOURCE_PORT)
    }

    /// The destination port.
    #[inline]
    pub fn dst_port(&self) -> u16 {
        read_u16(self.buffer.as_ref(), fields::DESTINATION_PORT)
    }

    /// The sequence number.
    #[inline]
    pub fn seq_number(&self) -> u32 {
        read_u32(self.buffer.as_ref(), fields::SEQ_NUMBER)
    }

    /// The acknowledgment number.
    #[inline]
    pub fn ack_number(&self) -> u32 {
        read_u32(self.buffer.as_ref(), fields::ACK_NUMBER)
    }

    /// The header length in bytes, options included (data offset times 4).
    #[inline]
    pub fn header_len(&self) -> usize {
        usize::from(self.buffer.as_ref()[fields::DATA_OFFSET] >> 4) * 4
    }

    /// The control flags.
    #[inline]
    pub fn flags(&self) -> TcpFlags {
        TcpFlags(self.buffer.as_ref()[fields::FLAGS])
    }

    /// The advertised window, unscaled.
    #[inline]
    pub fn window_len(&self) -> u16 {
        read_u16(self.buffer.as_ref(), fields::WINDOW)
    }

    /// The checksum field.
    #[inline]
    pub fn checksum(&self) -> u16 {
        read_u16(self.buffer.as_ref(), fields::CHECKSUM)
    }

    /// The urgent pointer.
    #[inline]
    pub fn urgent_at(&self) -> u16 {
        read_u16(self.buffer.as_ref(), fields::URGENT_POINTER)
    }

    /// The raw option bytes; see [`TcpOptions::parse`].
    #[inline]
    pub fn options(&self) -> &[u8] {
        &self.buffer.as_ref()[TCP_HEADER_LEN..self.header_len()]
    }

    /// The payload after the header.
    #[inline]
    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[self.header_len()..]
    }

    /// Whether the checksum over the segment and the pseudo-header of `src`
    /// and `dst` is valid.
    #[inline]
    pub fn verify_checksum(&self, src: Ipv4Addr, dst: Ipv4Addr) -> bool {
        checksum::verify_transport(src, dst, IpProtocol::Tcp.into(), self.buffer.as_ref())
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> TcpPacket<T> {
    /// Sets the source port.
    #[inline]
    pub fn set_src_port(&mut self, value: u16) {
        write_u16(self.buffer.as_mut(), fields::SOURCE_PORT, value);
    }

    /// Sets the destination port.
    #[inline]
    pub fn set_dst_port(&mut self, value: u16) {
        write_u16(self.buffer.as_mut(), fields::DESTINATION_PORT, value);
    }

    /// Sets the sequence number.
    #[inline]
    pub fn set_seq_number(&mut self, value: u32) {
        write_u32(self.buffer.as_mut(), fields::SEQ_NUMBER, value);
    }

    /// Sets the acknowledgment number.
    #[inline]
    pub fn set_ack_number(&mut self, value: u32) {
        write_u32(self.buffer.as_mut(), fields::ACK_NUMBER, value);
    }

    /// Sets the header length in bytes (and clears the reserved bits).
    ///
    /// # Panics
    /// Panics if `header_len` is not a multiple of 4 between 20 and 60.
    #[inline]
    pub fn set_header_len(&mut self, header_len: usize) {
        assert!(
            header_len % 4 == 0 && (TCP_HEADER_LEN..=TCP_HEADER_LEN + TCP_OPTIONS_MAX_LEN).contains(&header_len),
            "TCP header length {header_len} is not a multiple of 4 in 20..=60"
        );
        // Checked above: header_len / 4 is at most 15.
        self.buffer.as_mut()[fields::DATA_OFFSET] = ((header_len / 4) as u8) << 4;
    }

    /// Sets the control flags.
    #[inline]
    pub fn set_flags(&mut self, flags: TcpFlags) {
        self.buffer.as_mut()[fields::FLAGS] = flags.0;
    }

    /// Sets the advertised window.
    #[inline]
    pub fn set_window_len(&mut self, value: u16) {
        write_u16(self.buffer.as_mut(), fields::WINDOW, value);
    }

    /// Sets the checksum field to `value` as is.
    #[inline]
    pub fn set_checksum(&mut self, value: u16) {
        write_u16(self.buffer.as_mut(), fields::CHECKSUM, value);
    }

    /// Sets the urgent pointer.
    #[inline]
    pub fn set_urgent_at(&mut self, value: u16) {
        write_u16(self.buffer.as_mut(), fields::URGENT_POINTER, value);
    }

    /// The raw option bytes, writable.
    #[inline]
    pub fn options_mut(&mut self) -> &mut [u8] {
        let end = self.header_len();
        &mut self.buffer.as_mut()[TCP_HEADER_LEN..end]
    }

    /// The payload after the header, writable.
    #[inline]
    pub fn payload_mut(&mut self) -> &mut [u8] {
        let start = self.header_len();
        &mut self.buffer.as_mut()[start..]
    }
}

/// The TCP options this stack understands. Unknown options are skipped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct TcpOptions {
    /// Maximum segment size (SYN only).
    pub mss: Option<u16>,
    /// Window shift count, at most 14 (SYN only).
    pub window_scale: Option<u8>,
    /// SACK permitted (SYN only).
    pub sack_permitted: bool,
    /// Timestamps: (TSval, TSecr).
    pub timestamps: Option<(u32, u32)>,
    /// SACK blocks as (left edge, right edge); the first `sack_count` are
    /// meaningful, the rest are zero.
    pub sack_blocks: [(u32, u32); 4],
    /// How many of `sack_blocks` are meaningful (0 to 4).
    pub sack_count: u8,
}

/// How [`TcpOptions`] will be written: how many SACK blocks fit, whether each
/// option is NOP-padded to a 4-byte boundary as Linux does, and the length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct OptionsLayout {
    sack_blocks: usize,
    aligned: bool,
    len: usize,
}

impl TcpOptions {
    /// Parses the option bytes of a header.
    ///
    /// End-of-list stops parsing; NOPs are skipped; options of unknown kind
    /// are skipped by their length; a repeated option replaces the earlier
    /// one. A window scale above 14 is read as 14 (RFC 7323).
    ///
    /// # Errors
    /// [`WireError::BadOption`] if an option (other than end-of-list and NOP)
    /// has no length byte, a length below 2 or running past the end, or a
    /// length wrong for its kind (MSS 4, window scale 3, SACK-permitted 2,
    /// timestamps 10, SACK 2 + 8n with n from 1 to 4).
    pub fn parse(mut bytes: &[u8]) -> Result<TcpOptions, WireError> {
        let mut options = TcpOptions::default();
        // The layout of nearly every segment after the handshake (RFC 7323
        // Appendix A): NOP, NOP, timestamps. Read at once, the same result as
        // the loop below would give.
        if let &[option_kind::NOP, option_kind::NOP, option_kind::TIMESTAMPS, 10, a, b, c, d, e, f, g, h] = bytes {
            options.timestamps = Some((u32::from_be_bytes([a, b, c, d]), u32::from_be_bytes([e, f, g, h])));
            return Ok(options);
        }
        while let [kind, rest @ ..] = bytes {
            match *kind {
                option_kind::END => break,
                option_kind::NOP => {
                    bytes = rest;
                    continue;
                }
                _ => {}
            }
            let Some(&len) = rest.first() else {
                return Err(WireError::BadOption);
            };
            let len = usize::from(len);
            if len < 2 || len > bytes.len() {
                return Err(WireError::BadOption);
            }
            let (option, tail) = bytes.split_at(len);
            options.apply(*kind, &option[2..])?;
            bytes = tail;
        }
        Ok(options)
    }

    /// Records one option of `kind` whose value (after kind and length) is
    /// `value`.
    fn apply(&mut self, kind: u8, value: &[u8]) -> Result<(), WireError> {
        match (kind, value) {
            (option_kind::MSS, &[high, low]) => self.mss = Some(u16::from_be_bytes([high, low])),
            (option_kind::WINDOW_SCALE, &[shift]) => {
                self.window_scale = Some(shift.min(WINDOW_SCALE_MAX));
            }
            (option_kind::SACK_PERMITTED, []) => self.sack_permitted = true,
            (option_kind::TIMESTAMPS, &[a, b, c, d, e, f, g, h]) => {
                let value = u32::from_be_bytes([a, b, c, d]);
                let echo_reply = u32::from_be_bytes([e, f, g, h]);
                self.timestamps = Some((value, echo_reply));
            }
            (option_kind::SACK, _) if value.len() % 8 == 0 && (8..=8 * SACK_BLOCKS_MAX).contains(&value.len()) => {
                self.sack_blocks = [(0, 0); SACK_BLOCKS_MAX];
                for (block, edges) in self.sack_blocks.iter_mut().zip(value.chunks_exact(8)) {
                    *block = (read_u32(edges, 0..4), read_u32(edges, 4..8));
                }
                // At most 4 blocks, checked by the guard above.
                self.sack_count = (value.len() / 8) as u8;
            }
            (
                option_kind::MSS
                | option_kind::WINDOW_SCALE
                | option_kind::SACK_PERMITTED
                | option_kind::TIMESTAMPS
                | option_kind::SACK,
                _,
            ) => return Err(WireError::BadOption),
            _ => {}
        }
        Ok(())
    }

    /// Length of the options when each is NOP-padded to 4 bytes.
    fn aligned_len(&self, sack_blocks: usize) -> usize {
        let mss = if self.mss.is_some() { 4 } else { 0 };
        let sack_permitted_and_timestamps = match (self.sack_permitted, self.timestamps) {
            (_, Some(_)) => 12,
            (true, None) => 4,
            (false, None) => 0,
        };
        let window_scale = if self.window_scale.is_some() { 4 } else { 0 };
        let sack = if sack_blocks > 0 { 4 + 8 * sack_blocks } else { 0 };
        mss + sack_permitted_and_timestamps + window_scale + sack
    }

    /// Length of the options written back to back, before final padding.
    fn packed_len(&self, sack_blocks: usize) -> usize {
        let mss = if self.mss.is_some() { 4 } else { 0 };
        let sack_permitted = if self.sack_permitted { 2 } else { 0 };
        let timestamps = if self.timestamps.is_some() { 10 } else { 0 };
        let window_scale = if self.window_scale.is_some() { 3 } else { 0 };
        let sack = if sack_blocks > 0 { 2 + 8 * sack_blocks } else { 0 };
        mss + sack_permitted + timestamps + window_scale + sack
    }

    /// Chooses the layout: as many SACK blocks as fit in 40 bytes, NOP-aligned
    /// if that fits, else packed with end-of-list padding at the end.
    fn layout(&self) -> OptionsLayout {
        let wanted = usize::from(self.sack_count).min(SACK_BLOCKS_MAX);
        for sack_blocks in (1..=wanted).rev() {
            let aligned_len = self.aligned_len(sack_blocks);
            if aligned_len <= TCP_OPTIONS_MAX_LEN {
                return OptionsLayout { sack_blocks, aligned: true, len: aligned_len };
            }
            let packed_len = self.packed_len(sack_blocks).next_multiple_of(4);
            if packed_len <= TCP_OPTIONS_MAX_LEN {
                return OptionsLayout { sack_blocks, aligned: false, len: packed_len };
            }
        }
        // Without SACK blocks the aligned layout is at most 20 bytes.
        OptionsLayout { sack_blocks: 0, aligned: true, len: self.aligned_len(0) }
    }

    /// Length of the option bytes [`emit`](Self::emit) writes, a multiple
    /// of 4 and at most [`TCP_OPTIONS_MAX_LEN`].
    #[inline]
    pub fn emitted_len(&self) -> usize {
        if self.timestamps_only().is_some() {
            return TIMESTAMPS_ALIGNED_LEN;
        }
        self.layout().len
    }

    /// The timestamps, when they are the only option: the options of nearly
    /// every segment after the handshake, written and read at once.
    #[inline]
    fn timestamps_only(&self) -> Option<(u32, u32)> {
        match self {
            TcpOptions { mss: None, window_scale: None, sack_permitted: false, timestamps, sack_count: 0, .. } => {
                *timestamps
            }
            _ => None,
        }
    }

    /// Writes the options into the start of `buf` and returns how many bytes
    /// were written ([`emitted_len`](Self::emitted_len)). The order is the
    /// one Linux uses (MSS, SACK-permitted, timestamps, window scale), then
    /// SACK blocks: as many as fit in 40 bytes (3 next to timestamps).
    ///
    /// # Panics
    /// Panics if `buf` is shorter than [`emitted_len`](Self::emitted_len).
    pub fn emit(&self, buf: &mut [u8]) -> usize {
        if let Some((value, echo_reply)) = self.timestamps_only() {
            let out = &mut buf[..TIMESTAMPS_ALIGNED_LEN];
            out[..4].copy_from_slice(&[option_kind::NOP, option_kind::NOP, option_kind::TIMESTAMPS, 10]);
            out[4..8].copy_from_slice(&value.to_be_bytes());
            out[8..].copy_from_slice(&echo_reply.to_be_bytes());
            return TIMESTAMPS_ALIGNED_LEN;
        }
        self.emit_by_layout(buf)
    }

    /// [`emit`](Self::emit) for any set of options.
    fn emit_by_layout(&self, buf: &mut [u8]) -> usize {
        let layout = self.layout();
        let mut out = OptionWriter { buf: &mut buf[..layout.len], at: 0, aligned: layout.aligned };
        if let Some(mss) = self.mss {
            out.put(&[option_kind::MSS, 4]);
            out.put(&mss.to_be_bytes());
        }
        if let Some((value, echo_reply)) = self.timestamps {
            if self.sack_permitted {
                out.put(&[option_kind::SACK_PERMITTED, 2]);
            } else {
                out.align_with_nops(2);
            }
            out.put(&[option_kind::TIMESTAMPS, 10]);
            out.put(&value.to_be_bytes());
            out.put(&echo_reply.to_be_bytes());
        } else if self.sack_permitted {
            out.align_with_nops(2);
            out.put(&[option_kind::SACK_PERMITTED, 2]);
        }
        if let Some(shift) = self.window_scale {
            out.align_with_nops(1);
            out.put(&[option_kind::WINDOW_SCALE, 3, shift]);
        }
        if layout.sack_blocks > 0 {
            out.align_with_nops(2);
            // At most 2 + 8 * 4 = 34.
            out.put(&[option_kind::SACK, (2 + 8 * layout.sack_blocks) as u8]);
            for (left, right) in &self.sack_blocks[..layout.sack_blocks] {
                out.put(&left.to_be_bytes());
                out.put(&right.to_be_bytes());
            }
        }
        out.buf[out.at..].fill(option_kind::END);
        layout.len
    }
}

/// A cursor writing options into a buffer sized by the chosen layout.
struct OptionWriter<'a> {
    buf: &'a mut [u8],
    at: usize,
    aligned: bool,
}

impl OptionWriter<'_> {
    fn put(&mut self, bytes: &[u8]) {
        self.buf[self.at..self.at + bytes.len()].copy_from_slice(bytes);
        self.at += bytes.len();
    }

    /// In the aligned layout, writes `count` NOPs; in the packed one, nothing.
    fn align_with_nops(&mut self, count: usize) {
        if self.aligned {
            self.buf[self.at..self.at + count].fill(option_kind::NOP);
            self.at += count;
        }
    }
}

/// The logical TCP header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TcpRepr {
    /// Source port.
    pub src_port: u16,
    /// Destination port.
    pub dst_port: u16,
    /// Sequence number.
    pub seq: u32,
    /// Acknowledgment number (meaningful with ACK).
    pub ack: u32,
    /// Control flags.
    pub flags: TcpFlags,
    /// Advertised window, unscaled.
    pub window: u16,
    /// Urgent pointer (meaningful with URG).
    pub urgent: u16,
    /// Options.
    pub options: TcpOptions,
    /// Header length in bytes of the parsed segment, where its payload
    /// starts. Ignored by [`emit`](Self::emit), which writes
    /// [`header_len`](Self::header_len) bytes.
    pub payload_offset: usize,
}

impl TcpRepr {
    /// Reads a checked segment carried from `src_ip` to `dst_ip`, verifying
    /// its checksum if `verify_checksum` (pass `false` when the NIC already
    /// did).
    ///
    /// # Errors
    /// [`WireError::BadChecksum`] if asked to verify and the checksum is
    /// wrong; [`WireError::BadOption`] as in [`TcpOptions::parse`].
    pub fn parse<T: AsRef<[u8]>>(
        packet: &TcpPacket<T>,
        src_ip: Ipv4Addr,
        dst_ip: Ipv4Addr,
        verify_checksum: bool,
    ) -> Result<TcpRepr, WireError> {
        if verify_checksum && !packet.verify_checksum(src_ip, dst_ip) {
            return Err(WireError::BadChecksum);
        }
        Ok(TcpRepr {
            src_port: packet.src_port(),
            dst_port: packet.dst_port(),
            seq: packet.seq_number(),
            ack: packet.ack_number(),
            flags: packet.flags(),
            window: packet.window_len(),
            urgent: packet.urgent_at(),
            options: TcpOptions::parse(packet.options())?,
            payload_offset: packet.header_len(),
        })
    }

    /// Length of the header [`emit`](Self::emit) writes: 20 bytes plus the
    /// options padded to 4 bytes.
    #[inline]
    pub fn header_len(&self) -> usize {
        TCP_HEADER_LEN + self.options.emitted_len()
    }

    /// Writes the header into the start of `buf` with a zero checksum; call
    /// [`fill_tcp_checksum`] once the payload is in place. (An established
    /// connection writes most of its headers from a [`TcpHeaderTemplate`].)
    ///
    /// # Panics
    /// Panics if `buf` is shorter than [`header_len`](Self::header_len).
    pub fn emit(&self, buf: &mut [u8]) {
        let header_len = self.header_len();
        let mut packet = TcpPacket::new_unchecked(&mut buf[..header_len]);
        packet.set_src_port(self.src_port);
        packet.set_dst_port(self.dst_port);
        packet.set_seq_number(self.seq);
        packet.set_ack_number(self.ack);
        packet.set_header_len(header_len);
        packet.set_flags(self.flags);
        packet.set_window_len(self.window);
        packet.set_checksum(0);
        packet.set_urgent_at(self.urgent);
        self.options.emit(packet.options_mut());
    }
}

/// Bytes of the header a [`TcpHeaderTemplate`] writes at most: timestamps
/// its only option.
const TEMPLATE_HEADER_MAX_LEN: usize = TCP_HEADER_LEN + TIMESTAMPS_ALIGNED_LEN;

/// The header of one connection's segments that carry no option but the
/// timestamps (when the connection uses them): nearly every segment after the
/// handshake. The ports, the data offset, the urgent pointer and the option
/// layout are written once; [`emit`](Self::emit) copies them and writes the
/// fields of one segment ([`TcpHeaderFields`]) over the copy: the bytes
/// [`TcpRepr::emit`] writes for the same header, checksum zero.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TcpHeaderTemplate {
    bytes: [u8; TEMPLATE_HEADER_MAX_LEN],
    timestamps: bool,
}

/// What varies between the headers written from one [`TcpHeaderTemplate`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TcpHeaderFields {
    /// Sequence number.
    pub seq: u32,
    /// Acknowledgment number.
    pub ack: u32,
    /// Control flags.
    pub flags: TcpFlags,
    /// Advertised window, unscaled.
    pub window: u16,
    /// (TSval, TSecr); ignored by a template without timestamps.
    pub timestamps: (u32, u32),
}

impl TcpHeaderTemplate {
    /// The template of the segments from `src_port` to `dst_port`, with the
    /// timestamps option when `timestamps`.
    pub fn new(src_port: u16, dst_port: u16, timestamps: bool) -> Self {
        let mut bytes = [0u8; TEMPLATE_HEADER_MAX_LEN];
        let header_len = if timestamps { TEMPLATE_HEADER_MAX_LEN } else { TCP_HEADER_LEN };
        write_u16(&mut bytes, fields::SOURCE_PORT, src_port);
        write_u16(&mut bytes, fields::DESTINATION_PORT, dst_port);
        bytes[fields::DATA_OFFSET] = ((header_len / 4) as u8) << 4;
        // The same layout as `TcpOptions::emit` (RFC 7323 Appendix A).
        bytes[TCP_HEADER_LEN..TCP_HEADER_LEN + 4].copy_from_slice(&[
            option_kind::NOP,
            option_kind::NOP,
            option_kind::TIMESTAMPS,
            10,
        ]);
        Self { bytes, timestamps }
    }

    /// Length of the headers this template writes: 32 bytes with
    /// timestamps, 20 without.
    #[inline]
    pub fn header_len(&self) -> usize {
        if self.timestamps { TEMPLATE_HEADER_MAX_LEN } else { TCP_HEADER_LEN }
    }

    /// Writes the header with `header`'s fields into the start of `buf`, with a
    /// zero checksum; call [`fill_tcp_checksum`] once the payload is in place.
    ///
    /// # Panics
    /// Panics if `buf` is shorter than [`header_len`](Self::header_len).
    #[inline]
    pub fn emit(&self, header: &TcpHeaderFields, buf: &mut [u8]) {
        // Composed in a copy of the template and stored at once: one store
        // of the whole header instead of one bounds-checked store per field.
        let mut bytes = self.bytes;
        write_u32(&mut bytes, fields::SEQ_NUMBER, header.seq);
        write_u32(&mut bytes, fields::ACK_NUMBER, header.ack);
        bytes[fields::FLAGS] = header.flags.0;
        write_u16(&mut bytes, fields::WINDOW, header.window);
        if self.timestamps {
            let (value, echo_reply) = header.timestamps;
            write_u32(&mut bytes, TCP_HEADER_LEN + 4..TCP_HEADER_LEN + 8, value);
            write_u32(&mut bytes, TCP_HEADER_LEN + 8..TEMPLATE_HEADER_MAX_LEN, echo_reply);
            buf[..TEMPLATE_HEADER_MAX_LEN].copy_from_slice(&bytes);
        } else {
            buf[..TCP_HEADER_LEN].copy_from_slice(&bytes[..TCP_HEADER_LEN]);
        }
    }
}

/// Computes the checksum of a whole TCP segment (header and payload) carried
/// from `src` to `dst` and stores it.
///
/// # Panics
/// Panics if `segment` is shorter than [`TCP_HEADER_LEN`] or longer than
/// 65535 bytes.
pub fn fill_tcp_checksum(segment: &mut [u8], src: Ipv4Addr, dst: Ipv4Addr) {
    let mut packet = TcpPacket::new_unchecked(segment);
    packet.set_checksum(0);
    let value = checksum::transport_checksum(src, dst, IpProtocol::Tcp.into(), packet.buffer);
    packet.set_checksum(value);
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const CLIENT: Ipv4Addr = Ipv4Addr::new(192, 168, 1, 100);
    const SERVER: Ipv4Addr = Ipv4Addr::new(93, 184, 216, 34);

    /// A SYN as Linux 6.x sends it: 40-byte header, options MSS 1460,
    /// SACK-permitted, timestamps, NOP, window scale 7.
    fn linux_syn() -> [u8; 40] {
        let mut bytes = [
            0xa4, 0xe2, 0x00, 0x50, // ports 42210 -> 80
            0x6b, 0x8b, 0x45, 0x67, // seq
            0x00, 0x00, 0x00, 0x00, // ack
            0xa0, 0x02, // data offset 10, SYN
            0xfa, 0xf0, // window 64240
            0x00, 0x00, 0x00, 0x00, // checksum, urgent
            0x02, 0x04, 0x05, 0xb4, // MSS 1460
            0x04, 0x02, // SACK permitted
            0x08, 0x0a, 0x9a, 0x3c, 0x11, 0x22, 0x00, 0x00, 0x00, 0x00, // timestamps
            0x01, // NOP
            0x03, 0x03, 0x07, // window scale 7
        ];
        fill_tcp_checksum(&mut bytes, CLIENT, SERVER);
        bytes
    }

    fn parse(bytes: &[u8]) -> Result<TcpRepr, WireError> {
        TcpRepr::parse(&TcpPacket::new_checked(bytes)?, CLIENT, SERVER, true)
    }

    fn options_with(bytes: &[u8]) -> Result<TcpOptions, WireError> {
        TcpOptions::parse(bytes)
    }

    #[test]
    fn parses_linux_syn_options() {
        let repr = parse(&linux_syn()).unwrap();
        assert_eq!((repr.src_port, repr.dst_port), (42210, 80));
        assert_eq!(repr.seq, 0x6b8b_4567);
        assert_eq!(repr.flags, TcpFlags::SYN);
        assert_eq!(repr.window, 64240);
        assert_eq!(repr.payload_offset, 40);
        assert_eq!(repr.options.mss, Some(1460));
        assert!(repr.options.sack_permitted);
        assert_eq!(repr.options.timestamps, Some((0x9a3c_1122, 0)));
        assert_eq!(repr.options.window_scale, Some(7));
        assert_eq!(repr.options.sack_count, 0);
    }

    #[test]
    fn emits_syn_byte_for_byte_as_linux() {
        let repr = parse(&linux_syn()).unwrap();
        let mut bytes = [0u8; 40];
        repr.emit(&mut bytes);
        fill_tcp_checksum(&mut bytes, CLIENT, SERVER);
        assert_eq!(bytes, linux_syn());
    }

    #[test]
    fn emits_syn_without_timestamps_with_linux_nops() {
        let options =
            TcpOptions { mss: Some(1460), sack_permitted: true, window_scale: Some(7), ..TcpOptions::default() };
        let mut bytes = [0u8; 12];
        assert_eq!(options.emit(&mut bytes), 12);
        assert_eq!(bytes, [2, 4, 0x05, 0xb4, 1, 1, 4, 2, 1, 3, 3, 7]);
    }

    proptest! {
        /// A header written from a template, with timestamps or without, is
        /// the one the repr writes field by field; the bytes after it are
        /// left alone.
        #[test]
        fn a_templated_header_is_the_reprs(
            ports in any::<(u16, u16)>(),
            seq in any::<u32>(),
            ack in any::<u32>(),
            flags in any::<u8>(),
            window in any::<u16>(),
            timestamps in any::<(u32, u32)>(),
            with_timestamps in any::<bool>(),
        ) {
            let repr = TcpRepr {
                src_port: ports.0,
                dst_port: ports.1,
                seq,
                ack,
                flags: TcpFlags::from_bits(flags),
                window,
                urgent: 0,
                options: TcpOptions { timestamps: with_timestamps.then_some(timestamps), ..TcpOptions::default() },
                payload_offset: 0,
            };
            let template = TcpHeaderTemplate::new(ports.0, ports.1, with_timestamps);
            let fields = TcpHeaderFields { seq, ack, flags: TcpFlags::from_bits(flags), window, timestamps };
            prop_assert_eq!(template.header_len(), repr.header_len());
            let (mut templated, mut by_fields) = ([0xa5u8; 40], [0xa5u8; 40]);
            template.emit(&fields, &mut templated);
            repr.emit(&mut by_fields);
            prop_assert_eq!(templated, by_fields);
        }
    }

    #[test]
    fn emits_timestamps_alone_after_two_nops() {
        let options = TcpOptions { timestamps: Some((1, 2)), ..TcpOptions::default() };
        let mut bytes = [0u8; 12];
        assert_eq!(options.emit(&mut bytes), 12);
        assert_eq!(bytes, [1, 1, 8, 10, 0, 0, 0, 1, 0, 0, 0, 2]);
    }

    fn with_sack_blocks(count: u8, timestamps: bool) -> TcpOptions {
        TcpOptions {
            timestamps: timestamps.then_some((7, 8)),
            sack_blocks: [(1, 2), (3, 4), (5, 6), (7, 8)],
            sack_count: count,
            ..TcpOptions::default()
        }
    }

    #[test]
    fn sack_with_timestamps_emits_three_blocks_at_most() {
        let options = with_sack_blocks(4, true);
        assert_eq!(options.emitted_len(), 40);
        let mut bytes = [0u8; 40];
        options.emit(&mut bytes);
        let parsed = TcpOptions::parse(&bytes).unwrap();
        assert_eq!(parsed.sack_count, 3);
        assert_eq!(parsed.sack_blocks, [(1, 2), (3, 4), (5, 6), (0, 0)]);
        assert_eq!(parsed.timestamps, Some((7, 8)));
    }

    #[test]
    fn sack_without_timestamps_emits_four_blocks() {
        let options = with_sack_blocks(4, false);
        assert_eq!(options.emitted_len(), 36);
        let mut bytes = [0u8; 36];
        options.emit(&mut bytes);
        assert_eq!(TcpOptions::parse(&bytes).unwrap(), options);
    }

    #[test]
    fn options_too_long_to_align_are_packed() {
        // Window scale, SACK-permitted and four blocks: 44 bytes aligned,
        // 39 packed.
        let options = TcpOptions { window_scale: Some(2), sack_permitted: true, ..with_sack_blocks(4, false) };
        assert_eq!(options.emitted_len(), 40);
        let mut bytes = [0xaa; 40];
        options.emit(&mut bytes);
        assert_eq!(bytes[39], option_kind::END);
        assert_eq!(TcpOptions::parse(&bytes).unwrap(), options);
    }

    #[test]
    fn unknown_option_is_skipped_by_its_length() {
        let options = options_with(&[30, 4, 0xde, 0xad, 2, 4, 0x05, 0x78]).unwrap();
        assert_eq!(options.mss, Some(1400));
    }

    #[test]
    fn end_of_list_stops_parsing() {
        let options = options_with(&[1, 0, 2, 1, 0xff, 0xff]).unwrap();
        assert_eq!(options, TcpOptions::default());
    }

    #[test]
    fn window_scale_above_fourteen_reads_as_fourteen() {
        assert_eq!(options_with(&[3, 3, 200, 0]).unwrap().window_scale, Some(14));
    }

    #[test]
    fn option_lengths_zero_one_or_past_end_are_bad_option() {
        for bytes in [&[30, 0][..], &[30, 1], &[30, 5, 0, 0], &[2], &[1, 1, 8]] {
            assert_eq!(options_with(bytes), Err(WireError::BadOption), "{bytes:?}");
        }
    }

    #[test]
    fn option_size_wrong_for_its_kind_is_bad_option() {
        let cases: [&[u8]; 9] = [
            &[2, 3, 5],
            &[2, 5, 5, 0xb4, 0],
            &[3, 2],
            &[3, 4, 7, 0],
            &[4, 3, 0],
            &[8, 9, 0, 0, 0, 0, 0, 0, 0],
            &[5, 2],
            &[5, 9, 0, 0, 0, 0, 0, 0, 0],
            &[
                5, 42, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
                0, 0, 0, 0, 0, 0, 0, 0,
            ],
        ];
        for bytes in cases {
            assert_eq!(options_with(bytes), Err(WireError::BadOption), "{bytes:?}");
        }
    }

    #[test]
    fn bad_option_in_segment_is_reported() {
        let mut bytes = linux_syn();
        bytes[38] = 0; // window scale length 0
        fill_tcp_checksum(&mut bytes, CLIENT, SERVER);
        assert_eq!(parse(&bytes), Err(WireError::BadOption));
    }

    #[test]
    fn data_offset_below_five_is_bad_length() {
        for offset in 0..5u8 {
            let mut bytes = linux_syn();
            bytes[12] = offset << 4;
            assert_eq!(TcpPacket::new_checked(&bytes[..]), Err(WireError::BadLength));
        }
    }

    #[test]
    fn data_offset_past_the_end_is_bad_length() {
        let mut bytes = linux_syn();
        bytes[12] = 0xb0; // 44 bytes in a 40-byte segment
        assert_eq!(TcpPacket::new_checked(&bytes[..]), Err(WireError::BadLength));
    }

    #[test]
    fn every_truncation_is_rejected() {
        let bytes = linux_syn();
        for len in 0..bytes.len() {
            assert!(parse(&bytes[..len]).is_err(), "length {len}");
        }
    }

    #[test]
    fn corrupted_segment_is_bad_checksum_unless_unverified() {
        let mut bytes = linux_syn();
        bytes[5] ^= 0x80;
        assert_eq!(parse(&bytes), Err(WireError::BadChecksum));
        let packet = TcpPacket::new_checked(&bytes[..]).unwrap();
        assert!(TcpRepr::parse(&packet, CLIENT, SERVER, false).is_ok());
    }

    #[test]
    fn payload_follows_the_options() {
        let repr = TcpRepr { payload_offset: 0, ..parse(&linux_syn()).unwrap() };
        let mut bytes = [0u8; 45];
        repr.emit(&mut bytes);
        bytes[40..].copy_from_slice(b"hello");
        fill_tcp_checksum(&mut bytes, CLIENT, SERVER);
        let packet = TcpPacket::new_checked(&bytes[..]).unwrap();
        assert_eq!(packet.payload(), b"hello");
        assert!(packet.verify_checksum(CLIENT, SERVER));
    }

    #[test]
    fn flags_combine_and_list_their_names() {
        let mut flags = TcpFlags::SYN | TcpFlags::ACK;
        assert!(flags.contains(TcpFlags::SYN));
        assert!(!flags.contains(TcpFlags::SYN | TcpFlags::FIN));
        assert!(flags.intersects(TcpFlags::ACK | TcpFlags::RST));
        assert_eq!(format!("{flags:?}"), "SYN | ACK");
        flags.remove(TcpFlags::SYN);
        flags |= TcpFlags::FIN;
        assert_eq!(flags.bits(), 0x11);
        assert_eq!(format!("{:?}", TcpFlags::empty()), "(empty)");
        assert_eq!((flags & TcpFlags::FIN), TcpFlags::FIN);
    }

    fn arbitrary_options() -> impl Strategy<Value = TcpOptions> {
        (
            proptest::option::of(any::<u16>()),
            proptest::option::of(0u8..=WINDOW_SCALE_MAX),
            any::<bool>(),
            proptest::option::of(any::<(u32, u32)>()),
            any::<[(u32, u32); 4]>(),
            0u8..=4,
        )
            .prop_map(|(mss, window_scale, sack_permitted, timestamps, blocks, count)| {
                let mut sack_blocks = [(0, 0); 4];
                sack_blocks[..usize::from(count)].copy_from_slice(&blocks[..usize::from(count)]);
                TcpOptions { mss, window_scale, sack_permitted, timestamps, sack_blocks, sack_count: count }
            })
    }

    proptest! {
        #[test]
        fn emit_then_parse_round_trips(
            ports in any::<(u16, u16)>(),
            seq_ack in any::<(u32, u32)>(),
            flags in any::<u8>(),
            window_urgent in any::<(u16, u16)>(),
            options in arbitrary_options(),
        ) {
            let repr = TcpRepr {
                src_port: ports.0,
                dst_port: ports.1,
                seq: seq_ack.0,
                ack: seq_ack.1,
                flags: TcpFlags::from_bits(flags),
                window: window_urgent.0,
                urgent: window_urgent.1,
                options,
                payload_offset: 0,
            };
            let header_len = repr.header_len();
            prop_assert!(header_len % 4 == 0 && header_len <= 60);
            let mut bytes = [0u8; 60];
            repr.emit(&mut bytes);
            fill_tcp_checksum(&mut bytes[..header_len], CLIENT, SERVER);
            let parsed = parse(&bytes[..header_len]).unwrap();
            // Blocks that did not fit are dropped: compare with what fit.
            let kept = options.layout().sack_blocks;
            let mut expected = TcpRepr { payload_offset: header_len, ..repr };
            expected.options.sack_count = kept as u8;
            expected.options.sack_blocks[kept..].fill((0, 0));
            prop_assert_eq!(parsed, expected);
            // ... and as many fit as could.
            prop_assert!(kept == usize::from(options.sack_count)
                || options.packed_len(kept + 1).next_multiple_of(4) > TCP_OPTIONS_MAX_LEN);
        }

        #[test]
        fn aligned_timestamps_read_at_once_as_the_general_parser_reads_them(
            value in any::<[u8; 8]>(),
            length in prop_oneof![Just(10u8), any::<u8>()],
        ) {
            let mut aligned = vec![option_kind::NOP, option_kind::NOP, option_kind::TIMESTAMPS, length];
            aligned.extend_from_slice(&value);
            // The same option with its NOPs behind it: only the general loop
            // reads this layout.
            let mut trailing = vec![option_kind::TIMESTAMPS, length];
            trailing.extend_from_slice(&value);
            trailing.extend_from_slice(&[option_kind::NOP, option_kind::NOP]);
            prop_assert_eq!(TcpOptions::parse(&aligned), TcpOptions::parse(&trailing));
        }

        #[test]
        fn timestamps_alone_are_written_at_once_as_the_general_writer_writes_them(
            timestamps in any::<(u32, u32)>(),
            stale_blocks in any::<[(u32, u32); 4]>(),
        ) {
            // Blocks beyond `sack_count` are not sent, whatever they hold.
            let options = TcpOptions { timestamps: Some(timestamps), sack_blocks: stale_blocks, ..TcpOptions::default() };
            let (mut fast, mut general) = ([0xee; 40], [0xee; 40]);
            let len = options.emit(&mut fast);
            prop_assert_eq!(len, options.emit_by_layout(&mut general));
            prop_assert_eq!(len, options.emitted_len());
            prop_assert_eq!(len, options.layout().len);
            prop_assert_eq!(fast, general);
        }

        #[test]
        fn options_parser_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..48)) {
            let _ = TcpOptions::parse(&bytes);
        }
    }
}
