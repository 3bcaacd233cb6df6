//! Hostile input for `ix_net::wire`: a million random and mutated frames run
//! through the whole parse chain (Ethernet, then ARP or IPv4, then TCP, UDP or
//! ICMP), checking that nothing panics and that each lie is caught as its cause.

use std::net::Ipv4Addr;

use ix_net::wire::{
    ArpOperation, ArpPacket, ArpRepr, ETHERNET_HEADER_LEN, EtherType, EthernetAddress, EthernetFrame, EthernetRepr,
    IPV4_HEADER_LEN, Icmpv4DstUnreachable, Icmpv4Packet, Icmpv4Repr, IpProtocol, Ipv4Packet, Ipv4Repr, TcpFlags,
    TcpOptions, TcpPacket, TcpRepr, UdpPacket, UdpRepr, WireError, fill_tcp_checksum, fill_udp_checksum,
};

const FRAMES: u64 = 1_000_000;
const SEED: u64 = 0x1c5e_ed00_2014_0ad1;

const CLIENT: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 1);
const SERVER: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 2);

/// SplitMix64: small, seeded, deterministic.
struct SplitMix64(u64);

impl SplitMix64 {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A value in `0..bound`; `bound` must not be 0.
    fn below(&mut self, bound: usize) -> usize {
        (self.next() % bound as u64) as usize
    }

    fn byte(&mut self) -> u8 {
        self.next() as u8
    }
}

/// Which transport a template carries, and where its header starts.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Transport {
    None,
    Tcp,
    Udp,
    Icmp,
}

struct Template {
    bytes: Vec<u8>,
    /// Offset of the transport header (0 when there is none).
    l4: usize,
    transport: Transport,
}

/// Where a frame ended: a clean parse, or one cause of rejection.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Outcome {
    Parsed,
    Rejected(WireError),
}

const OUTCOME_NAMES: [&str; 8] =
    ["parsed", "Truncated", "BadLength", "BadChecksum", "BadVersion", "BadOption", "Fragmented", "Unsupported"];

impl Outcome {
    fn index(self) -> usize {
        match self {
            Outcome::Parsed => 0,
            Outcome::Rejected(WireError::Truncated) => 1,
            Outcome::Rejected(WireError::BadLength) => 2,
            Outcome::Rejected(WireError::BadChecksum) => 3,
            Outcome::Rejected(WireError::BadVersion) => 4,
            Outcome::Rejected(WireError::BadOption) => 5,
            Outcome::Rejected(WireError::Fragmented) => 6,
            Outcome::Rejected(WireError::Unsupported) => 7,
        }
    }
}

fn ethernet(ethertype: EtherType, bytes: &mut [u8]) {
    EthernetRepr { src: EthernetAddress([2, 0, 0, 0, 0, 1]), dst: EthernetAddress([2, 0, 0, 0, 0, 2]), ethertype }
        .emit(bytes);
}

/// An Ethernet + IPv4 frame around a transport message of `l4_len` bytes
/// written by `write_l4`, padded to the 60-byte Ethernet minimum.
fn ipv4_frame(protocol: IpProtocol, l4_len: usize, write_l4: impl FnOnce(&mut [u8])) -> Template {
    let l4 = ETHERNET_HEADER_LEN + IPV4_HEADER_LEN;
    let mut bytes = vec![0u8; (l4 + l4_len).max(60)];
    ethernet(EtherType::Ipv4, &mut bytes);
    Ipv4Repr {
        src: CLIENT,
        dst: SERVER,
        protocol,
        payload_len: l4_len,
        ttl: 64,
        dont_frag: true,
        ident: 0x4242,
        dscp_ecn: 0,
    }
    .emit(&mut bytes[ETHERNET_HEADER_LEN..]);
    write_l4(&mut bytes[l4..l4 + l4_len]);
    let transport = match protocol {
        IpProtocol::Tcp => Transport::Tcp,
        IpProtocol::Udp => Transport::Udp,
        _ => Transport::Icmp,
    };
    Template { bytes, l4, transport }
}

fn tcp_template(options: TcpOptions, flags: TcpFlags, payload: &[u8]) -> Template {
    let repr = TcpRepr {
        src_port: 40000,
        dst_port: 80,
        seq: 0x0102_0304,
        ack: 0x0a0b_0c0d,
        flags,
        window: 29200,
        urgent: 0,
        options,
        payload_offset: 0,
    };
    let header_len = repr.header_len();
    ipv4_frame(IpProtocol::Tcp, header_len + payload.len(), |segment| {
        repr.emit(segment);
        segment[header_len..].copy_from_slice(payload);
        fill_tcp_checksum(segment, CLIENT, SERVER);
    })
}

fn templates() -> Vec<Template> {
    let syn_options = TcpOptions {
        mss: Some(1460),
        window_scale: Some(7),
        sack_permitted: true,
        timestamps: Some((0x1234_5678, 0)),
        ..TcpOptions::default()
    };
    let sack_options = TcpOptions {
        timestamps: Some((9, 10)),
        sack_blocks: [(100, 200), (300, 400), (500, 600), (0, 0)],
        sack_count: 3,
        ..TcpOptions::default()
    };
    let udp = ipv4_frame(IpProtocol::Udp, 8 + 13, |datagram| {
        UdpRepr { src_port: 5353, dst_port: 53 }.emit(datagram, 13);
        datagram[8..].copy_from_slice(b"query payload");
        fill_udp_checksum(datagram, CLIENT, SERVER);
    });
    let echo = Icmpv4Repr::EchoRequest { ident: 7, seq_no: 1, data: b"0123456789abcdef" };
    let unreachable = Icmpv4Repr::DstUnreachable {
        reason: Icmpv4DstUnreachable::PortUnreachable,
        next_hop_mtu: 0,
        header: Ipv4Repr {
            src: SERVER,
            dst: CLIENT,
            protocol: IpProtocol::Udp,
            payload_len: 40,
            ttl: 63,
            dont_frag: false,
            ident: 1,
            dscp_ecn: 0,
        },
        data: &[0x14, 0xe9, 0x00, 0x35, 0x00, 0x28, 0x00, 0x00],
    };
    let mut arp = vec![0u8; 60];
    ethernet(EtherType::Arp, &mut arp);
    ArpRepr {
        operation: ArpOperation::Request,
        source_hw: EthernetAddress([2, 0, 0, 0, 0, 1]),
        source_ip: CLIENT,
        target_hw: EthernetAddress([0; 6]),
        target_ip: SERVER,
    }
    .emit(&mut arp[ETHERNET_HEADER_LEN..]);
    vec![
        tcp_template(syn_options, TcpFlags::SYN, b""),
        tcp_template(sack_options, TcpFlags::ACK | TcpFlags::PSH, b"GET / HTTP/1.1\r\n\r\n"),
        tcp_template(TcpOptions::default(), TcpFlags::ACK, b""),
        udp,
        ipv4_frame(IpProtocol::Icmp, echo.buffer_len(), |message| echo.emit(message)),
        ipv4_frame(IpProtocol::Icmp, unreachable.buffer_len(), |message| unreachable.emit(message)),
        Template { bytes: arp, l4: 0, transport: Transport::None },
    ]
}

/// Runs the whole chain over `frame`; a parsed TCP segment is also emitted
/// again and parsed back, which must give the same repr.
fn parse_frame(frame: &[u8]) -> Result<(), WireError> {
    let ethernet = EthernetFrame::new_checked(frame)?;
    match EthernetRepr::parse(&ethernet)?.ethertype {
        EtherType::Arp => {
            ArpRepr::parse(&ArpPacket::new_checked(ethernet.payload())?)?;
        }
        EtherType::Ipv4 => {
            let packet = Ipv4Packet::new_checked(ethernet.payload())?;
            let ip = Ipv4Repr::parse(&packet, true)?;
            match ip.protocol {
                IpProtocol::Tcp => {
                    let segment = TcpPacket::new_checked(packet.payload())?;
                    let tcp = TcpRepr::parse(&segment, ip.src, ip.dst, true)?;
                    assert_tcp_round_trips(&tcp);
                }
                IpProtocol::Udp => {
                    UdpRepr::parse(&UdpPacket::new_checked(packet.payload())?, ip.src, ip.dst, true)?;
                }
                IpProtocol::Icmp => {
                    Icmpv4Repr::parse(&Icmpv4Packet::new_checked(packet.payload())?, true)?;
                }
                IpProtocol::Unknown(_) => {}
            }
        }
        EtherType::Unknown(_) => {}
    }
    Ok(())
}

fn assert_tcp_round_trips(tcp: &TcpRepr) {
    let mut bytes = [0u8; 60];
    tcp.emit(&mut bytes);
    let emitted = TcpPacket::new_checked(&bytes[..tcp.header_len()]).expect("emitted header");
    let again = TcpRepr::parse(&emitted, CLIENT, SERVER, false).expect("emitted header parses");
    assert_eq!(TcpRepr { payload_offset: again.payload_offset, ..*tcp }, again);
}

/// The ways a template is damaged; each is counted separately.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Mutation {
    Unmodified,
    BitFlips,
    Truncation,
    Ipv4TotalLengthLie,
    Ipv4IhlLie,
    TransportLengthLie,
    TransportChecksumCorruption,
    Ipv4HeaderBitFlip,
    TransportBitFlip,
    TcpOptionsJunk,
    RandomBytes,
}

const MUTATIONS: [Mutation; 11] = [
    Mutation::Unmodified,
    Mutation::BitFlips,
    Mutation::Truncation,
    Mutation::Ipv4TotalLengthLie,
    Mutation::Ipv4IhlLie,
    Mutation::TransportLengthLie,
    Mutation::TransportChecksumCorruption,
    Mutation::Ipv4HeaderBitFlip,
    Mutation::TransportBitFlip,
    Mutation::TcpOptionsJunk,
    Mutation::RandomBytes,
];

fn flip_bit(rng: &mut SplitMix64, bytes: &mut [u8], range: core::ops::Range<usize>) {
    let at = range.start + rng.below(range.len());
    bytes[at] ^= 1 << rng.below(8);
}

/// What a mutation must lead to.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Expected {
    /// Exactly this outcome.
    Exactly(Outcome),
    /// Some rejection, whichever layer sees it first.
    AnyRejection,
    /// Anything but a panic.
    NoPanic,
}

/// Applies `mutation` to a copy of `template` in `frame`, and returns what
/// the parse chain must make of it.
fn mutate(rng: &mut SplitMix64, template: &Template, mutation: Mutation, frame: &mut Vec<u8>) -> Expected {
    frame.clear();
    frame.extend_from_slice(&template.bytes);
    let ip = ETHERNET_HEADER_LEN;
    let l4 = template.l4;
    let bad_length = Expected::Exactly(Outcome::Rejected(WireError::BadLength));
    match mutation {
        Mutation::Unmodified => Expected::Exactly(Outcome::Parsed),
        Mutation::BitFlips => {
            for _ in 0..1 + rng.below(4) {
                let len = frame.len();
                flip_bit(rng, frame, 0..len);
            }
            Expected::NoPanic
        }
        Mutation::Truncation => {
            let len = rng.below(frame.len());
            frame.truncate(len);
            Expected::NoPanic
        }
        Mutation::Ipv4TotalLengthLie if template.transport != Transport::None => {
            // Longer than what follows the Ethernet header, padding included.
            let available = frame.len() - ip;
            let lie = available + 1 + rng.below(0x1_0000 - available - 1);
            frame[ip + 2..ip + 4].copy_from_slice(&(lie as u16).to_be_bytes());
            refill_ipv4_checksum(frame);
            bad_length
        }
        Mutation::Ipv4IhlLie if template.transport != Transport::None => {
            frame[ip] = 0x40 | rng.below(5) as u8;
            bad_length
        }
        Mutation::TransportLengthLie if template.transport == Transport::Tcp => {
            // A data offset below 5 words, or past the end of the segment.
            let past_end_min = ip_payload_len(frame) / 4 + 1;
            let words = if past_end_min <= 15 && rng.below(2) == 0 {
                past_end_min + rng.below(16 - past_end_min)
            } else {
                rng.below(5)
            };
            frame[l4 + 12] = (words as u8) << 4;
            bad_length
        }
        Mutation::TransportLengthLie if template.transport == Transport::Udp => {
            let mut lie = rng.next() as u16;
            if usize::from(lie) == ip_payload_len(frame) {
                lie ^= 1;
            }
            frame[l4 + 4..l4 + 6].copy_from_slice(&lie.to_be_bytes());
            bad_length
        }
        Mutation::TransportChecksumCorruption if template.transport != Transport::None => {
            let at = l4 + checksum_offset(template.transport);
            let old = u16::from_be_bytes([frame[at], frame[at + 1]]);
            let new = old ^ (1 + rng.below(0xffff) as u16);
            frame[at..at + 2].copy_from_slice(&new.to_be_bytes());
            // 0x0000 and 0xffff are one number in one's complement; and a
            // zero UDP checksum means "none".
            let same_number = (old == 0 && new == 0xffff) || (old == 0xffff && new == 0);
            let udp_disabled = template.transport == Transport::Udp && new == 0;
            if same_number || udp_disabled {
                Expected::NoPanic
            } else {
                Expected::Exactly(Outcome::Rejected(WireError::BadChecksum))
            }
        }
        Mutation::Ipv4HeaderBitFlip if template.transport != Transport::None => {
            flip_bit(rng, frame, ip..ip + IPV4_HEADER_LEN);
            Expected::AnyRejection
        }
        Mutation::TransportBitFlip if template.transport != Transport::None => {
            let end = ip + IPV4_HEADER_LEN + ip_payload_len(frame);
            flip_bit(rng, frame, l4..end);
            // A single-bit error is caught by the checksum if not sooner,
            // unless it zeroes a UDP checksum, which then means "none".
            let at = l4 + checksum_offset(template.transport);
            let udp_checksum_zeroed = template.transport == Transport::Udp && frame[at..at + 2] == [0, 0];
            if udp_checksum_zeroed { Expected::NoPanic } else { Expected::AnyRejection }
        }
        Mutation::TcpOptionsJunk if template.transport == Transport::Tcp => {
            let header_len = usize::from(frame[l4 + 12] >> 4) * 4;
            for byte in &mut frame[l4 + 20..l4 + header_len] {
                *byte = rng.byte();
            }
            let end = ip + IPV4_HEADER_LEN + ip_payload_len(frame);
            fill_tcp_checksum(&mut frame[l4..end], CLIENT, SERVER);
            Expected::NoPanic
        }
        Mutation::RandomBytes => {
            let len = rng.below(128);
            frame.clear();
            frame.extend((0..len).map(|_| rng.byte()));
            if len > ip && rng.below(2) == 0 {
                frame[12..14].copy_from_slice(&[0x08, 0x00]);
                frame[ip] = 0x45;
            }
            Expected::NoPanic
        }
        // The mutation does not apply to this template: left unmodified.
        _ => Expected::Exactly(Outcome::Parsed),
    }
}

fn ip_payload_len(frame: &[u8]) -> usize {
    let ip = ETHERNET_HEADER_LEN;
    usize::from(u16::from_be_bytes([frame[ip + 2], frame[ip + 3]])) - IPV4_HEADER_LEN
}

fn checksum_offset(transport: Transport) -> usize {
    match transport {
        Transport::Tcp => 16,
        Transport::Udp => 6,
        Transport::Icmp => 2,
        Transport::None => unreachable!("no transport checksum"),
    }
}

fn refill_ipv4_checksum(frame: &mut [u8]) {
    Ipv4Packet::new_unchecked(&mut frame[ETHERNET_HEADER_LEN..]).fill_checksum();
}

fn outcome_of(frame: &[u8]) -> Outcome {
    match parse_frame(frame) {
        Ok(()) => Outcome::Parsed,
        Err(error) => Outcome::Rejected(error),
    }
}

#[test]
fn million_hostile_frames_never_panic_and_each_lie_is_caught() {
    let templates = templates();
    for template in &templates {
        assert_eq!(outcome_of(&template.bytes), Outcome::Parsed, "templates are valid");
    }
    let mut rng = SplitMix64(SEED);
    let mut counts = [[0u64; OUTCOME_NAMES.len()]; MUTATIONS.len()];
    let mut frame = Vec::with_capacity(2048);
    let started = std::time::Instant::now();
    for _ in 0..FRAMES {
        let template = &templates[rng.below(templates.len())];
        let mutation_index = rng.below(MUTATIONS.len());
        let mutation = MUTATIONS[mutation_index];
        let expected = mutate(&mut rng, template, mutation, &mut frame);
        let outcome = outcome_of(&frame);
        match expected {
            Expected::Exactly(expected) => {
                assert_eq!(outcome, expected, "{mutation:?} gave {frame:02x?}");
            }
            Expected::AnyRejection => {
                assert_ne!(outcome, Outcome::Parsed, "{mutation:?} gave {frame:02x?}");
            }
            Expected::NoPanic => {}
        }
        if mutation == Mutation::Truncation {
            assert!(
                matches!(outcome, Outcome::Parsed | Outcome::Rejected(WireError::Truncated | WireError::BadLength)),
                "truncation gave {outcome:?}"
            );
        }
        if mutation == Mutation::TcpOptionsJunk {
            assert!(
                matches!(outcome, Outcome::Parsed | Outcome::Rejected(WireError::BadOption)),
                "options junk gave {outcome:?}"
            );
        }
        counts[mutation_index][outcome.index()] += 1;
    }
    let elapsed = started.elapsed();
    report(&counts, elapsed);
    assert_counts_are_sane(&counts);
}

fn report(counts: &[[u64; OUTCOME_NAMES.len()]; MUTATIONS.len()], elapsed: std::time::Duration) {
    eprintln!("{FRAMES} frames in {elapsed:.2?}");
    eprint!("{:<28}", "mutation");
    for name in OUTCOME_NAMES {
        eprint!("{name:>12}");
    }
    eprintln!();
    for (mutation, row) in MUTATIONS.iter().zip(counts) {
        eprint!("{:<28}", format!("{mutation:?}"));
        for count in row {
            eprint!("{count:>12}");
        }
        eprintln!();
    }
}

fn assert_counts_are_sane(counts: &[[u64; OUTCOME_NAMES.len()]; MUTATIONS.len()]) {
    let row = |mutation: Mutation| counts[MUTATIONS.iter().position(|m| *m == mutation).unwrap()];
    let column = |error: WireError| Outcome::Rejected(error).index();
    let total: u64 = counts.iter().flatten().sum();
    assert_eq!(total, FRAMES);
    // Each mutation ran a fair share of the time.
    for mutation in MUTATIONS {
        assert!(row(mutation).iter().sum::<u64>() > FRAMES / 20, "{mutation:?} too rare");
    }
    // Random damage reaches every layer's checks.
    let bit_flips = row(Mutation::BitFlips);
    for error in [WireError::BadChecksum, WireError::BadVersion, WireError::BadLength] {
        assert!(bit_flips[column(error)] > 0, "bit flips never gave {error:?}");
    }
    assert!(row(Mutation::Truncation)[column(WireError::Truncated)] > 0);
    assert!(row(Mutation::TcpOptionsJunk)[column(WireError::BadOption)] > 0);
    assert!(row(Mutation::RandomBytes)[column(WireError::Truncated)] > 0);
    // Checksum corruption is nearly always the checksum's failure.
    let corruption = row(Mutation::TransportChecksumCorruption);
    assert!(corruption[column(WireError::BadChecksum)] > corruption[0]);
}
