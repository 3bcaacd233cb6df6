//! The three-way handshake, segment by segment (RFC 9293 §3.5, options of RFC
//! 7323 and RFC 2018): passive, active and simultaneous opens, and retries.

mod segment_support;

use std::time::Duration;

use bytes::Bytes;
use ix_net::TcpError;
use ix_net::tcp::State;
use ix_net::wire::{TcpFlags, TcpRepr};
use segment_support::{Harness, PEER_ISN, PEER_PORT, full_options, mss_only};

/// RFC 9293 §3.5, RFC 7323 §2.2/§3.2, RFC 2018 §2: a SYN-ACK answers a SYN and
/// mirrors the options the SYN offered, with an unscaled window.
#[test]
fn passive_open_mirrors_every_offered_option_in_the_syn_ack() {
    let mut h = Harness::new();
    h.listen(16);
    h.send(h.syn(PEER_ISN, full_options(7, 4242)));
    let syn_ack = h.out_one();
    assert!(syn_ack.has(TcpFlags::SYN | TcpFlags::ACK));
    assert_eq!(syn_ack.repr.ack, PEER_ISN + 1);
    let opts = syn_ack.repr.options;
    assert_eq!(opts.mss, Some(1460));
    // 256 KiB of receive buffer needs a shift of 3 to be advertised.
    assert_eq!(opts.window_scale, Some(3));
    assert!(opts.sack_permitted);
    assert_eq!(opts.timestamps.map(|(_, ecr)| ecr), Some(4242), "TSecr echoes the SYN's TSval");
    assert_eq!(syn_ack.repr.window, 65_535, "a SYN-ACK's window is not scaled");
}

/// RFC 7323 §1.3/§2.2, RFC 2018 §2: options the SYN did not offer are not sent
/// in the SYN-ACK (only the MSS, which every SYN may carry).
#[test]
fn passive_open_sends_no_option_the_syn_did_not_offer() {
    let mut h = Harness::new();
    h.listen(16);
    h.send(h.syn(PEER_ISN, mss_only(1460)));
    let syn_ack = h.out_one();
    let opts = syn_ack.repr.options;
    assert_eq!(opts.mss, Some(1460));
    assert_eq!(opts.window_scale, None);
    assert!(!opts.sack_permitted);
    assert_eq!(opts.timestamps, None);
}

/// RFC 9293 §3.5: the connection is established, and only then acceptable,
/// when the ACK of our SYN arrives.
#[test]
fn passive_open_is_accepted_only_after_the_final_ack() {
    let mut h = Harness::new();
    let listener = h.listen(16);
    h.send(h.syn(PEER_ISN, full_options(7, 1)));
    let syn_ack = h.out_one();
    assert_eq!(h.stack.tcp_accept(listener).unwrap(), None, "SYN-RECEIVED is not acceptable");
    h.peer_ts = Some(2);
    h.send(h.ack(PEER_ISN + 1, syn_ack.repr.seq.wrapping_add(1)));
    let conn = h.stack.tcp_accept(listener).unwrap().expect("established connection");
    assert_eq!(h.stack.tcp_state(conn).unwrap(), State::Established);
    assert_eq!(h.stack.tcp_info(conn).unwrap().options, (true, true, true));
    assert!(h.out().is_empty(), "the final ACK needs no answer");
}

/// RFC 9293 §3.5, RFC 7323 §2.2/§3.2, RFC 2018 §2: our SYN offers MSS, window
/// scale, SACK and timestamps; the SYN-ACK is acknowledged and the connection
/// is established.
#[test]
fn active_open_offers_our_options_and_acknowledges_the_syn_ack() {
    let mut h = Harness::new();
    let (link, syn) = h.active_open(full_options(2, 777));
    let opts = syn.repr.options;
    assert_eq!(opts.mss, Some(1460));
    assert_eq!(opts.window_scale, Some(3));
    assert!(opts.sack_permitted);
    assert!(matches!(opts.timestamps, Some((_, 0))), "a SYN's TSecr is zero: {opts:?}");
    assert_eq!(h.stack.tcp_state(link.handle).unwrap(), State::Established);
    assert_eq!(h.stack.tcp_info(link.handle).unwrap().options, (true, true, true));
}

/// RFC 9293 §3.5 figure 7: SYNs that cross each go SYN-RECEIVED, and the other
/// side's SYN-ACK establishes the connection.
#[test]
fn simultaneous_open_with_crossing_syns_establishes() {
    let mut h = Harness::new();
    let (handle, syn) = h.connect();
    let iss = syn.repr.seq;
    // The peer's own SYN crosses ours.
    h.send(h.syn(PEER_ISN, mss_only(1460)));
    assert_eq!(h.stack.tcp_state(handle).unwrap(), State::SynReceived);
    let syn_ack = h.out_one();
    assert!(syn_ack.has(TcpFlags::SYN | TcpFlags::ACK));
    assert_eq!((syn_ack.repr.seq, syn_ack.repr.ack), (iss, PEER_ISN + 1));
    // The peer, also in SYN-RECEIVED, sends its SYN-ACK.
    h.send(TcpRepr { options: mss_only(1460), ..h.seg(PEER_ISN, iss.wrapping_add(1), TcpFlags::SYN | TcpFlags::ACK) });
    assert_eq!(h.stack.tcp_state(handle).unwrap(), State::Established);
    assert_eq!(h.stack.tcp_send(handle, Bytes::from_static(b"hi")).unwrap(), 2);
    let data = h.out();
    assert_eq!((data[0].repr.seq, data[0].payload.as_slice()), (iss.wrapping_add(1), &b"hi"[..]));
}

/// RFC 9293 §3.8.1, RFC 6298 §5.5: an unanswered SYN-ACK is retransmitted after
/// the initial RTO of 1 s, each timeout doubling the next.
#[test]
fn syn_ack_is_retransmitted_with_exponential_backoff() {
    let mut h = Harness::new();
    h.listen(16);
    h.send(h.syn(PEER_ISN, mss_only(1460)));
    let first = h.out_one();
    let retries = h.advance(Duration::from_secs(10));
    let times: Vec<u64> = retries.iter().map(|s| s.at.as_millis()).collect();
    assert_eq!(times, [1000, 3000, 7000], "{retries:#?}");
    for s in &retries {
        assert!(s.has(TcpFlags::SYN | TcpFlags::ACK));
        assert_eq!((s.repr.seq, s.repr.ack), (first.repr.seq, PEER_ISN + 1));
    }
    let tcp = h.stack.stats().tcp;
    assert_eq!((tcp.syn_retransmits, tcp.retransmitted_segments), (3, 3), "{tcp:?}");
}

/// RFC 9293 §3.8.1 and §3.10.7.4: a retransmitted SYN (our SYN-ACK was lost)
/// is answered with the SYN-ACK again, at once.
#[test]
fn retransmitted_syn_gets_the_syn_ack_again() {
    let mut h = Harness::new();
    h.listen(16);
    h.send(h.syn(PEER_ISN, mss_only(1460)));
    let first = h.out_one();
    h.advance(Duration::from_millis(300));
    h.send(h.syn(PEER_ISN, mss_only(1460)));
    let again = h.out_one();
    assert!(again.has(TcpFlags::SYN | TcpFlags::ACK), "{again:?}");
    assert_eq!((again.repr.seq, again.repr.ack), (first.repr.seq, PEER_ISN + 1));
}

/// RFC 7323 §4.3: a retransmitted SYN carries a newer TSval and lies at or
/// before Last.ACK.sent, so it updates TS.Recent, and the SYN-ACK sent again
/// echoes it. Echoing the first SYN's TSval instead hands the peer an RTT
/// sample as long as its own SYN timeout (1 s), and Linux then starts the
/// connection with an RTO near 3 s: a lost request segment later stalled 1-5 s
/// in the soak test's captures.
#[test]
fn a_retransmitted_syn_s_timestamp_is_echoed_in_the_syn_ack_sent_again() {
    let mut h = Harness::new();
    h.listen(16);
    h.send(h.syn(PEER_ISN, full_options(7, 1_000)));
    assert_eq!(h.out_one().repr.options.timestamps.map(|(_, ecr)| ecr), Some(1_000));
    h.advance(Duration::from_millis(900));
    h.send(h.syn(PEER_ISN, full_options(7, 2_000)));
    let again = h.out_one();
    assert!(again.has(TcpFlags::SYN | TcpFlags::ACK), "{again:?}");
    assert_eq!(again.repr.options.timestamps.map(|(_, ecr)| ecr), Some(2_000), "{again:?}");
    // An older TSval (a duplicate of the first SYN, delayed) does not move it back.
    h.send(h.syn(PEER_ISN, full_options(7, 1_000)));
    let third = h.out_one();
    assert_eq!(third.repr.options.timestamps.map(|(_, ecr)| ecr), Some(2_000), "{third:?}");
}

/// RFC 9293 §3.8.3 (R2 for SYNs): after `syn_retries` retransmissions the
/// connection attempt fails with a timeout, without a RST.
#[test]
fn active_open_gives_up_after_syn_retries_with_timed_out() {
    let mut h = Harness::with(|c| c.tcp.syn_retries = 2);
    let (handle, syn) = h.connect();
    let mut segs = vec![syn];
    segs.extend(h.advance(Duration::from_secs(20)));
    let times: Vec<u64> = segs.iter().map(|s| s.at.as_millis()).collect();
    assert_eq!(times, [0, 1000, 3000], "{segs:#?}");
    assert!(segs.iter().all(|s| s.has(TcpFlags::SYN) && !s.has(TcpFlags::RST)));
    assert_eq!(h.stack.tcp_state(handle).unwrap(), State::Closed);
    assert_eq!(h.stack.tcp_error(handle).unwrap(), Some(TcpError::TimedOut));
}

/// A full accept queue drops the handshake's last ACK instead of resetting
/// the connection (Linux with `tcp_abort_on_overflow` off): the peer, which
/// believes it is connected, sends again, and the connection is accepted once
/// the application made room. Resetting lost hundreds of connections of a
/// burst of ten thousand that the application was accepting as fast as it
/// could (#20).
#[test]
fn a_full_accept_queue_drops_the_last_ack_instead_of_resetting() {
    let mut h = Harness::new();
    let listener = h.listen(2);
    let from = |port: u16, repr: TcpRepr| TcpRepr { src_port: port, ..repr };
    let mut syn_acks = Vec::new();
    let mut handshake_ack = |h: &mut Harness, port: u16| {
        h.send(from(port, h.syn(PEER_ISN, mss_only(1460))));
        let syn_ack = h.out_one();
        assert!(syn_ack.has(TcpFlags::SYN | TcpFlags::ACK));
        syn_acks.push(syn_ack.repr.seq);
        from(port, h.ack(PEER_ISN + 1, syn_ack.repr.seq.wrapping_add(1)))
    };
    let ack_a = handshake_ack(&mut h, PEER_PORT);
    let ack_b = handshake_ack(&mut h, PEER_PORT + 1);
    h.send(ack_a);
    let ack_c = handshake_ack(&mut h, PEER_PORT + 2);
    h.send(ack_b);
    h.send(ack_c);
    assert!(h.out().is_empty(), "no RST for a connection the queue had no room for");
    assert_eq!(h.stack.stats().tcp.listen_overflows, 1);
    assert_eq!(h.stack.tcp_connection_count(), 3, "the third stays half-open");
    let first = h.stack.tcp_accept(listener).unwrap().expect("the first connection");
    h.send(ack_c);
    let second = h.stack.tcp_accept(listener).unwrap().expect("the second connection");
    let third = h.stack.tcp_accept(listener).unwrap().expect("the third, accepted after the queue had room");
    for handle in [first, second, third] {
        assert_eq!(h.stack.tcp_state(handle).unwrap(), State::Established);
    }
    assert_eq!(h.stack.stats().tcp.resets_sent, 0);
}

/// RFC 9293 §3.8.3 (R2 for SYNs), on the passive side: a half-open connection
/// whose SYN-ACK cannot even leave (no route to the SYN's source, as for a
/// flood with spoofed sources and no gateway) is given up like one whose
/// SYN-ACK was lost, and frees its backlog slot: one flood must not leave the
/// listener answering every later SYN with a cookie.
#[test]
fn a_syn_ack_that_cannot_be_sent_still_times_out_and_frees_the_backlog() {
    // A /32 address with no gateway: the peer has no route.
    let mut h = Harness::with(|c| {
        c.prefix_len = 32;
        c.tcp.syn_retries = 2;
    });
    h.listen(1);
    h.send(h.syn(PEER_ISN, mss_only(1460)));
    assert!(h.out().is_empty(), "nothing can be sent without a route");
    assert_eq!(h.stack.tcp_connection_count(), 1);
    h.advance(Duration::from_secs(20));
    assert_eq!(h.stack.tcp_connection_count(), 0, "the half-open connection gave up");
    assert_eq!(h.stack.stats().tcp.timeouts, 1);
    // Its backlog slot is free: the next SYN makes a half-open connection
    // again rather than a cookie.
    h.send(TcpRepr { src_port: PEER_PORT + 1, ..h.syn(PEER_ISN, mss_only(1460)) });
    assert_eq!(h.stack.tcp_connection_count(), 1);
    assert_eq!(h.stack.stats().tcp.passive_opens, 2);
}
