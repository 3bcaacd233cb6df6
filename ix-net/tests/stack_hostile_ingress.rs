//! Hostile input for a live `Stack`: a million random and mutated frames through
//! `ingress` of a stack with a listener, a UDP socket and established connections,
//! interleaved with timers and egress. Nothing may panic, leak a frame or grow unbounded.

mod support;

use std::net::{Ipv4Addr, SocketAddrV4};

use bytes::Bytes;
use ix_driver::NetQueue;
use ix_driver::mem::FaultConfig;
use ix_net::wire::checksum::{checksum, transport_checksum};
use ix_net::wire::{
    ARP_PACKET_LEN, ArpOperation, ArpRepr, ETHERNET_HEADER_LEN, EtherType, EthernetAddress, EthernetRepr,
    IPV4_HEADER_LEN, Icmpv4Repr, IpProtocol, Ipv4Repr,
};
use ix_net::{SocketHandle, Stack};
use support::{Sim, addr};

const FRAMES: u64 = 1_000_000;
const SEED: u64 = 0x5eed_0f1c_2014;
const VICTIM: usize = 0;
const PEER: usize = 1;
const TCP_PORT: u16 = 5000;
const UDP_PORT: u16 = 6000;
const PEER_UDP_PORT: u16 = 6001;
/// Connections whose segments never enter the corpus: checked intact afterwards.
const QUIET_CONNECTIONS: usize = 3;
/// Connections whose segments seed the corpus (one is closed, one reset, one kept).
const CORPUS_CONNECTIONS: usize = 3;
const BACKLOG: usize = 16;
/// Most frames between two rounds of timers and egress.
const ROUND_FRAMES_MAX: usize = 64;
/// Most virtual time a round moves the clock.
const ROUND_MICROS_MAX: u64 = 2_000;
/// Bytes sent each way through each quiet connection after the storm.
const CHECK_BYTES: usize = 100_000;
/// Virtual time the closing phase may take (past TIME-WAIT and ARP expiry).
const DRAIN_LIMIT_MICROS: u64 = 600_000_000;
/// Frames the victim may send while closing everything (a few per connection
/// and retransmission are expected).
const DRAIN_FRAMES_MAX: u64 = 100_000;
/// Steps with no victim timer and no victim output after which closing counts as stuck.
const DRAIN_IDLE_STEPS_MAX: usize = 1_000;
/// A pool frame holds this much at most; longer random frames are cut.
const FRAME_MAX_BYTES: usize = 2048;

/// xorshift64: small, seeded, deterministic.
struct XorShift64(u64);

impl XorShift64 {
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }

    /// A value in `0..bound`; `bound` must not be 0.
    fn below(&mut self, bound: usize) -> usize {
        (self.next() % bound as u64) as usize
    }

    /// An address in the subnet that is neither stack (10.0.0.100 to .250).
    fn stranger(&mut self) -> Ipv4Addr {
        Ipv4Addr::new(10, 0, 0, 100 + self.below(151) as u8)
    }
}

/// The victim's application: its sockets and what it accepted.
struct Victim {
    listener: SocketHandle,
    udp: SocketHandle,
    /// Accepted connections whose traffic stays out of the corpus.
    quiet: Vec<SocketHandle>,
    /// Every other accepted connection; drained each round.
    others: Vec<SocketHandle>,
    datagrams: u64,
}

impl Victim {
    /// Accepts what is waiting and reads everything but the quiet connections.
    fn serve(&mut self, stack: &mut Stack) {
        while let Ok(Some(conn)) = stack.tcp_accept(self.listener) {
            if self.quiet.len() < QUIET_CONNECTIONS {
                self.quiet.push(conn);
            } else {
                self.others.push(conn);
            }
        }
        for &conn in &self.others {
            while let Ok(Some(_)) = stack.tcp_recv(conn) {}
        }
        while let Ok(Some(_)) = stack.udp_recv_from(self.udp) {
            self.datagrams += 1;
        }
    }
}

/// One round on the wire: the peer polls as usual; the victim receives (copying
/// each frame into `record` when given), serves, runs timers, sends.
fn round(sim: &mut Sim, victim: &mut Victim, record: Option<&mut Vec<Vec<u8>>>) {
    let now = sim.now();
    sim.nodes[PEER].poll(now);
    let node = &mut sim.nodes[VICTIM];
    let mut frames = Vec::new();
    node.queue.rx_burst(&mut frames, 64);
    if let Some(record) = record {
        record.extend(frames.iter().map(|f| f.to_vec()));
    }
    for frame in frames {
        node.stack.ingress(frame, now);
    }
    victim.serve(&mut node.stack);
    node.stack.on_timers(now);
    let mut out = Vec::new();
    node.stack.egress(now, &mut out);
    while !out.is_empty() && node.queue.tx_burst(&mut out) > 0 {}
    sim.clock.advance(support::STEP_MICROS);
}

fn pattern(len: usize, salt: u8) -> Bytes {
    (0..len).map(|i| (i as u8).wrapping_mul(31).wrapping_add(salt)).collect::<Vec<_>>().into()
}

/// Builds the stacks, the connections and the corpus of frames the peer sent
/// the victim (handshakes, data, ACKs, FIN, RST, UDP) plus hand-made ARP and ICMP.
/// Returns the victim's application, the peer's quiet connections, every peer
/// socket, and the corpus.
fn set_up() -> (Sim, Victim, Vec<SocketHandle>, Vec<SocketHandle>, Vec<Vec<u8>>) {
    let mut sim = Sim::new(2, FaultConfig::NONE, SEED, |cfg| cfg.max_connections = 256);
    let listener = sim.nodes[VICTIM].stack.tcp_listen(TCP_PORT, BACKLOG).unwrap();
    let udp = sim.nodes[VICTIM].stack.udp_bind(UDP_PORT).unwrap();
    let mut victim = Victim { listener, udp, quiet: Vec::new(), others: Vec::new(), datagrams: 0 };
    let server = SocketAddrV4::new(addr(VICTIM), TCP_PORT);
    let connect = |sim: &mut Sim| {
        let now = sim.now();
        sim.nodes[PEER].stack.tcp_connect(server, now, &|_| true).unwrap()
    };
    let quiet: Vec<SocketHandle> = (0..QUIET_CONNECTIONS).map(|_| connect(&mut sim)).collect();
    wait_accepted(&mut sim, &mut victim, None, QUIET_CONNECTIONS);

    let mut corpus = Vec::new();
    let traced: Vec<SocketHandle> = (0..CORPUS_CONNECTIONS).map(|_| connect(&mut sim)).collect();
    wait_accepted(&mut sim, &mut victim, Some(&mut corpus), QUIET_CONNECTIONS + CORPUS_CONNECTIONS);
    let peer_udp = sim.nodes[PEER].stack.udp_bind(PEER_UDP_PORT).unwrap();
    for (i, &conn) in traced.iter().enumerate() {
        let sent = sim.nodes[PEER].stack.tcp_send(conn, pattern(4000, i as u8)).unwrap();
        assert_eq!(sent, 4000);
        let to = SocketAddrV4::new(addr(VICTIM), if i == 0 { UDP_PORT + 2 } else { UDP_PORT });
        sim.nodes[PEER].stack.udp_send_to(peer_udp, to, &pattern(100 + i, 7)).unwrap();
    }
    for &conn in &victim.others {
        sim.nodes[VICTIM].stack.tcp_send(conn, pattern(200, 3)).unwrap();
    }
    for _ in 0..2_000 {
        round(&mut sim, &mut victim, Some(&mut corpus));
        for &conn in &traced {
            while let Ok(Some(_)) = sim.nodes[PEER].stack.tcp_recv(conn) {}
        }
    }
    // A FIN, and a RST, for flows that then cease to exist.
    sim.nodes[PEER].stack.close(traced[0]);
    sim.nodes[PEER].stack.tcp_abort(traced[1]).unwrap();
    for _ in 0..2_000 {
        round(&mut sim, &mut victim, Some(&mut corpus));
    }
    let victim_first = victim.others[0];
    sim.nodes[VICTIM].stack.close(victim_first);
    for _ in 0..2_000 {
        round(&mut sim, &mut victim, Some(&mut corpus));
    }
    // ARP stays out of the recording: a mutated copy of the peer's own ARP
    // would poison the victim's entry for it (RFC 826 merge is policy, not a bug).
    corpus.retain(|f| f.get(12..14) != Some(&[0x08, 0x06]));
    corpus.extend(hand_made(&sim));
    let peer_sockets = quiet.iter().chain(&traced).copied().chain([peer_udp]).collect();
    (sim, victim, quiet, peer_sockets, corpus)
}

fn wait_accepted(sim: &mut Sim, victim: &mut Victim, mut record: Option<&mut Vec<Vec<u8>>>, total: usize) {
    for _ in 0..100_000 {
        if victim.quiet.len() + victim.others.len() >= total {
            return;
        }
        round(sim, victim, record.as_deref_mut());
    }
    panic!("connections were not accepted");
}

/// Frames no stack here sends: ARP from strangers, and an ICMP echo request.
fn hand_made(sim: &Sim) -> Vec<Vec<u8>> {
    let victim_mac = EthernetAddress(sim.nodes[VICTIM].queue.mac());
    let peer_mac = EthernetAddress(sim.nodes[PEER].queue.mac());
    let stranger_mac = EthernetAddress([2, 0, 0, 0, 0, 0x77]);
    let stranger = Ipv4Addr::new(10, 0, 0, 77);
    let arp = |operation, dst: EthernetAddress, target_hw| {
        let mut frame = vec![0u8; ETHERNET_HEADER_LEN + ARP_PACKET_LEN];
        EthernetRepr { src: stranger_mac, dst, ethertype: EtherType::Arp }.emit(&mut frame);
        ArpRepr { operation, source_hw: stranger_mac, source_ip: stranger, target_hw, target_ip: addr(VICTIM) }
            .emit(&mut frame[ETHERNET_HEADER_LEN..]);
        frame
    };
    let echo = Icmpv4Repr::EchoRequest { ident: 0x1234, seq_no: 1, data: b"hostile ingress ping" };
    let ip = Ipv4Repr {
        src: addr(PEER),
        dst: addr(VICTIM),
        protocol: IpProtocol::Icmp,
        payload_len: echo.buffer_len(),
        ttl: 64,
        dont_frag: false,
        ident: 1,
        dscp_ecn: 0,
    };
    let mut ping = vec![0u8; ETHERNET_HEADER_LEN + IPV4_HEADER_LEN + echo.buffer_len()];
    EthernetRepr { src: peer_mac, dst: victim_mac, ethertype: EtherType::Ipv4 }.emit(&mut ping);
    ip.emit(&mut ping[ETHERNET_HEADER_LEN..]);
    echo.emit(&mut ping[ETHERNET_HEADER_LEN + IPV4_HEADER_LEN..]);
    refill_checksums(&mut ping);
    vec![
        arp(ArpOperation::Request, EthernetAddress::BROADCAST, EthernetAddress([0; 6])),
        arp(ArpOperation::Reply, victim_mac, victim_mac),
        ping,
    ]
}

// ----- frame surgery ----------------------------------------------------------

const IP: usize = ETHERNET_HEADER_LEN;

fn is_ipv4(frame: &[u8]) -> bool {
    frame.len() >= IP + IPV4_HEADER_LEN && frame[12..14] == [0x08, 0x00]
}

/// The transport header's offset and the IP payload's end, as the (possibly
/// lying) header says, clamped to the frame; `None` when the header is unusable.
fn transport_span(frame: &[u8]) -> Option<(usize, usize)> {
    if !is_ipv4(frame) {
        return None;
    }
    let l4 = IP + usize::from(frame[IP] & 0x0f) * 4;
    let end = (IP + usize::from(u16::from_be_bytes([frame[IP + 2], frame[IP + 3]]))).min(frame.len());
    (l4 >= IP + IPV4_HEADER_LEN && l4 <= end).then_some((l4, end))
}

/// Where the transport checksum sits, by protocol.
fn checksum_at(protocol: u8) -> Option<usize> {
    match protocol {
        1 => Some(2),
        6 => Some(16),
        17 => Some(6),
        _ => None,
    }
}

/// Makes the IPv4 header checksum and the transport checksum right again for
/// what the header now says, so a lie gets past the checksums to the parser
/// and the state machine behind it.
fn refill_checksums(frame: &mut [u8]) {
    let Some((l4, end)) = transport_span(frame) else { return };
    let protocol = frame[IP + 9];
    if let Some(at) = checksum_at(protocol).filter(|at| l4 + at + 2 <= end) {
        frame[l4 + at..l4 + at + 2].fill(0);
        let src = Ipv4Addr::from(<[u8; 4]>::try_from(&frame[IP + 12..IP + 16]).unwrap());
        let dst = Ipv4Addr::from(<[u8; 4]>::try_from(&frame[IP + 16..IP + 20]).unwrap());
        let sum = match protocol {
            1 => checksum(&frame[l4..end]),
            _ => transport_checksum(src, dst, protocol, &frame[l4..end]),
        };
        frame[l4 + at..l4 + at + 2].copy_from_slice(&sum.to_be_bytes());
    }
    frame[IP + 10..IP + 12].fill(0);
    let sum = checksum(&frame[IP..l4]);
    frame[IP + 10..IP + 12].copy_from_slice(&sum.to_be_bytes());
}

fn put_u16(frame: &mut [u8], at: usize, value: u16) {
    if at + 2 <= frame.len() {
        frame[at..at + 2].copy_from_slice(&value.to_be_bytes());
    }
}

fn put_u32(frame: &mut [u8], at: usize, value: u32) {
    if at + 4 <= frame.len() {
        frame[at..at + 4].copy_from_slice(&value.to_be_bytes());
    }
}

/// Rewrites some TCP header fields at random: ports, sequence and
/// acknowledgment numbers (near the original or anywhere), flags, window, data
/// offset, and sometimes the source address to a stranger's.
fn scramble_tcp(rng: &mut XorShift64, frame: &mut [u8], l4: usize) {
    for _ in 0..1 + rng.below(3) {
        match rng.below(8) {
            0 => put_u16(frame, l4, rng.next() as u16),
            1 => put_u16(frame, l4 + 2, if rng.below(2) == 0 { TCP_PORT } else { rng.next() as u16 }),
            2 | 3 => {
                let at = l4 + 4 * (1 + rng.below(2));
                let old = frame.get(at..at + 4).map_or(0, |b| u32::from_be_bytes(b.try_into().unwrap()));
                let near = old.wrapping_add((rng.next() % 140_000) as u32).wrapping_sub(70_000);
                put_u32(frame, at, if rng.below(2) == 0 { near } else { rng.next() as u32 });
            }
            4 | 5 => {
                if let Some(flags) = frame.get_mut(l4 + 13) {
                    *flags = rng.next() as u8;
                }
            }
            6 => put_u16(frame, l4 + 14, rng.next() as u16),
            _ => {
                if let Some(offset) = frame.get_mut(l4 + 12) {
                    *offset = (rng.next() as u8) & 0xf0 | *offset & 0x0f;
                }
            }
        }
    }
    if rng.below(8) == 0 {
        frame[IP + 12..IP + 16].copy_from_slice(&rng.stranger().octets());
    }
}

/// One hostile frame: a mutation of `template`, or noise.
fn mutate(rng: &mut XorShift64, template: &[u8], victim_mac: [u8; 6], frame: &mut Vec<u8>) {
    frame.clear();
    frame.extend_from_slice(template);
    let span = transport_span(frame);
    let protocol = frame.get(IP + 9).copied().unwrap_or(0);
    match rng.below(12) {
        // A replay, as sent.
        0 => {}
        1 => {
            for _ in 0..1 + rng.below(4) {
                let bit = rng.below(frame.len() * 8);
                frame[bit / 8] ^= 1 << (bit % 8);
            }
            if rng.below(2) == 0 {
                refill_checksums(frame);
            }
        }
        2 => {
            let len = rng.below(frame.len());
            frame.truncate(len);
            if rng.below(2) == 0 && len > IP + IPV4_HEADER_LEN {
                refill_checksums(frame);
            }
        }
        3 => frame.extend((0..1 + rng.below(64)).map(|_| rng.next() as u8)),
        4 if span.is_some() => {
            put_u16(frame, IP + 2, rng.next() as u16);
            refill_checksums(frame);
        }
        5 if span.is_some() => {
            frame[IP] = 0x40 | (rng.next() as u8 & 0x0f);
            refill_checksums(frame);
        }
        6 | 7 if protocol == 6 => {
            let (l4, _) = span.unwrap_or((IP + IPV4_HEADER_LEN, 0));
            scramble_tcp(rng, frame, l4);
            refill_checksums(frame);
        }
        8 if protocol == 6 => {
            // Junk where the TCP options are.
            let (l4, end) = span.unwrap_or((IP + IPV4_HEADER_LEN, frame.len()));
            let options_end = (l4 + usize::from(frame.get(l4 + 12).copied().unwrap_or(0) >> 4) * 4).min(end);
            for byte in frame.iter_mut().take(options_end).skip(l4 + 20) {
                *byte = rng.next() as u8;
            }
            refill_checksums(frame);
        }
        8 if protocol == 17 => {
            let (l4, _) = span.unwrap_or((IP + IPV4_HEADER_LEN, 0));
            put_u16(frame, l4 + 4, rng.next() as u16);
            put_u16(frame, l4 + 2, if rng.below(2) == 0 { UDP_PORT } else { rng.next() as u16 });
            refill_checksums(frame);
        }
        8 if protocol == 1 => {
            let (l4, _) = span.unwrap_or((IP + IPV4_HEADER_LEN, 0));
            put_u16(frame, l4, rng.next() as u16);
            refill_checksums(frame);
        }
        9 if frame.get(12..14) == Some(&[0x08, 0x06]) => {
            // ARP with random operation, hardware and protocol fields, and
            // addresses of strangers only.
            let at = IP + rng.below(8);
            frame[at] = rng.next() as u8;
            frame[IP + 14..IP + 18].copy_from_slice(&rng.stranger().octets());
        }
        _ => {
            // Noise: random bytes, often addressed to the victim as IPv4 or ARP.
            frame.clear();
            frame.extend((0..rng.below(1600)).map(|_| rng.next() as u8));
            if frame.len() >= 14 && rng.below(4) != 0 {
                frame[..6].copy_from_slice(&victim_mac);
                frame[12..14].copy_from_slice(if rng.below(2) == 0 { &[0x08, 0x00] } else { &[0x08, 0x06] });
                if rng.below(2) == 0 && frame.len() > IP + IPV4_HEADER_LEN {
                    frame[IP] = 0x45;
                    refill_checksums(frame);
                }
            }
        }
    }
    frame.truncate(FRAME_MAX_BYTES);
}

// ----- the test ---------------------------------------------------------------

/// Sends `CHECK_BYTES` each way through every quiet connection and checks each
/// byte arrives in order.
fn check_quiet_connections(sim: &mut Sim, victim: &mut Victim, quiet: &[SocketHandle]) {
    let pairs: Vec<(SocketHandle, SocketHandle)> = quiet.iter().copied().zip(victim.quiet.iter().copied()).collect();
    for (i, (peer, local)) in pairs.into_iter().enumerate() {
        let up = pattern(CHECK_BYTES, 100 + i as u8);
        let down = pattern(CHECK_BYTES, 200 + i as u8);
        let (mut sent_up, mut sent_down, mut got_up, mut got_down) = (0, 0, 0, 0);
        for _ in 0..200_000 {
            if got_up == CHECK_BYTES && got_down == CHECK_BYTES {
                break;
            }
            if sent_up < CHECK_BYTES {
                sent_up += sim.nodes[PEER].stack.tcp_send(peer, up.slice(sent_up..)).expect("peer send");
            }
            if sent_down < CHECK_BYTES {
                sent_down += sim.nodes[VICTIM].stack.tcp_send(local, down.slice(sent_down..)).expect("victim send");
            }
            round(sim, victim, None);
            while let Some(chunk) = sim.nodes[VICTIM].stack.tcp_recv(local).expect("victim recv") {
                assert_eq!(&chunk[..], &up[got_up..got_up + chunk.len()], "quiet connection {i}: data to the victim");
                got_up += chunk.len();
            }
            while let Some(chunk) = sim.nodes[PEER].stack.tcp_recv(peer).expect("peer recv") {
                assert_eq!(&chunk[..], &down[got_down..got_down + chunk.len()], "quiet connection {i}: data back");
                got_down += chunk.len();
            }
        }
        assert_eq!((got_up, got_down), (CHECK_BYTES, CHECK_BYTES), "quiet connection {i} stalled");
    }
}

/// Closes every socket on both stacks and runs the wire and the timers until
/// the victim has no connection and no timer left.
fn close_and_drain(sim: &mut Sim, victim: &mut Victim, peer_sockets: &[SocketHandle]) {
    let stack = &mut sim.nodes[VICTIM].stack;
    for &conn in victim.quiet.iter().chain(&victim.others) {
        stack.close(conn);
    }
    stack.close(victim.listener);
    stack.close(victim.udp);
    victim.quiet.clear();
    victim.others.clear();
    for &socket in peer_sockets {
        sim.nodes[PEER].stack.close(socket);
    }
    let limit = sim.now().as_micros() + DRAIN_LIMIT_MICROS;
    let frames_before = sim.nodes[VICTIM].stack.stats().link.frames_out;
    let mut idle_steps = 0;
    while sim.nodes[VICTIM].stack.tcp_connection_count() > 0 || sim.nodes[VICTIM].stack.poll_timeout().is_some() {
        let sent = sim.nodes[VICTIM].stack.stats().link.frames_out - frames_before;
        assert!(sent <= DRAIN_FRAMES_MAX, "closing took {sent} frames and goes on (a loop with the peer?)");
        let stuck = idle_steps > DRAIN_IDLE_STEPS_MAX;
        if sim.now().as_micros() >= limit || stuck {
            panic!(
                "victim still has {} connections at {:?} ({}), next timer {:?}",
                sim.nodes[VICTIM].stack.tcp_connection_count(),
                sim.now(),
                if stuck { "nothing moves" } else { "time limit" },
                sim.nodes[VICTIM].stack.poll_timeout()
            );
        }
        let busy = sim.nodes[VICTIM].stack.has_pending_output() || sim.nodes[VICTIM].stack.poll_timeout().is_some();
        idle_steps = if busy { 0 } else { idle_steps + 1 };
        sim.step();
    }
}

#[test]
fn a_million_hostile_frames_neither_panic_nor_leak_nor_disturb_quiet_connections() {
    let (mut sim, mut victim, quiet, peer_sockets, corpus) = set_up();
    assert!(corpus.len() > 20, "corpus of {} frames", corpus.len());
    let victim_mac = sim.nodes[VICTIM].queue.mac();
    let capacity = sim.nodes[VICTIM].stack.pool().capacity();
    let bound = QUIET_CONNECTIONS + CORPUS_CONNECTIONS + 2 * BACKLOG;
    let mut rng = XorShift64(SEED);
    let mut frame = Vec::with_capacity(FRAME_MAX_BYTES);
    let mut out = Vec::new();
    let (mut sent, mut peak, mut pool_dry) = (0u64, 0usize, 0u64);
    while sent < FRAMES {
        let now = sim.now();
        let stack = &mut sim.nodes[VICTIM].stack;
        for _ in 0..1 + rng.below(ROUND_FRAMES_MAX) {
            let template = &corpus[rng.below(corpus.len())];
            mutate(&mut rng, template, victim_mac, &mut frame);
            let Ok(mut buf) = stack.pool().alloc() else {
                pool_dry += 1;
                break;
            };
            buf.extend_from_slice(&frame).expect("a hostile frame fits a pool frame");
            stack.ingress(buf.freeze(), now);
            sent += 1;
        }
        victim.serve(stack);
        stack.on_timers(now);
        // The victim's answers go nowhere: the peer stays unaware of the storm.
        stack.egress(now, &mut out);
        out.clear();
        peak = peak.max(stack.tcp_connection_count());
        assert!(peak <= bound, "{peak} connections after {sent} frames (bound {bound})");
        sim.clock.advance(rng.next() % ROUND_MICROS_MAX);
    }
    assert_eq!(pool_dry, 0, "the pool ran dry during the storm: frames are retained");

    let stats = *sim.nodes[VICTIM].stack.stats();
    let dropped = [
        ("link malformed", stats.link.malformed),
        ("ARP malformed", stats.link.arp_malformed),
        ("IPv4 header errors", stats.ip.in_hdr_errors),
        ("IPv4 checksum errors", stats.ip.in_csum_errors),
        ("ICMP errors", stats.ip.icmp_in_errors),
        ("UDP errors", stats.udp.in_errors),
        ("TCP checksum errors", stats.tcp.in_csum_errors),
        ("TCP malformed", stats.tcp.in_errs),
    ];
    for (what, count) in dropped {
        assert!(count > 0, "no {what} counted");
    }
    // Lies with good checksums got past the parsers into the protocols.
    let reached = [
        ("ICMP echo requests", stats.ip.icmp_in_echos),
        ("TCP segments out of window", stats.tcp.out_of_window),
        ("TCP segments for no socket", stats.tcp.no_socket),
        ("TCP challenge ACKs", stats.tcp.challenge_acks),
        ("SYN cookies", stats.tcp.syncookies_sent),
        ("UDP datagrams for no port", stats.udp.no_ports),
    ];
    for (what, count) in reached {
        assert!(count > 0, "no {what}: the mutations do not reach the protocols");
    }
    assert!(victim.datagrams > 0, "no datagram reached the UDP socket");
    // Every frame is accounted for, layer by layer, by counted causes.
    assert_eq!(stats.unaccounted(), vec![], "frames that no counter accounts for (in, sum of where they went)");
    assert!(stats.link.frames_in >= sent, "{} frames counted in, {sent} hostile ones sent", stats.link.frames_in);

    check_quiet_connections(&mut sim, &mut victim, &quiet);
    close_and_drain(&mut sim, &mut victim, &peer_sockets);
    assert_eq!(sim.nodes[VICTIM].stack.pool().available(), capacity, "frames leaked");
}
