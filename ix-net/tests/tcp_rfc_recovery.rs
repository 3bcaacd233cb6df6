//! Loss recovery, segment by segment: the retransmission timer (RFC 6298), fast
//! retransmit (RFC 5681), NewReno (RFC 6582), SACK recovery (RFC 6675), CUBIC.

mod segment_support;

use std::time::Duration;

use bytes::Bytes;
use ix_net::tcp::CongestionAlgorithm;
use ix_net::wire::TcpOptions;
use segment_support::{Harness, Link, PEER_ISN, Seg, data_segments, full_options, mss_only, pattern};

/// Queues `n` full segments of data and returns the data segments sent now.
fn send_flight(h: &mut Harness, link: &Link, n: usize, mss: usize) -> Vec<Seg> {
    h.stack.tcp_send(link.handle, Bytes::from(pattern(0, n * mss))).unwrap();
    let segs = h.out();
    let data: Vec<Seg> = data_segments(&segs).into_iter().cloned().collect();
    assert_eq!(data.len(), n, "the initial window holds {n} segments");
    data
}

/// RFC 6298 §5.4–5.6: on timeout the first unacknowledged segment is
/// retransmitted and the timer doubles each time.
#[test]
fn rto_retransmits_the_first_unacknowledged_segment_with_backoff() {
    let mut h = Harness::new();
    let link = h.plain_passive_open();
    send_flight(&mut h, &link, 3, 1460);
    let rtx = h.advance(Duration::from_millis(3100));
    let times: Vec<u64> = rtx.iter().map(|s| s.at.as_millis()).collect();
    // RTO 200 ms (the minimum: the handshake took no time), then 400, 800, 1600.
    assert_eq!(times, [200, 600, 1400, 3000], "{rtx:#?}");
    assert!(rtx.iter().all(|s| s.repr.seq == link.our_seq && s.payload == pattern(0, 1460)));
}

/// RFC 6298 §3 (Karn): without timestamps, the ACK of a retransmitted segment
/// gives no RTT sample.
#[test]
fn karn_rule_takes_no_rtt_sample_from_a_retransmission() {
    let mut h = Harness::new();
    let listener = h.listen(16);
    h.send(h.syn(PEER_ISN, mss_only(1460)));
    let our_seq = h.out_one().repr.seq + 1;
    h.advance(Duration::from_millis(10));
    h.send(h.ack(PEER_ISN + 1, our_seq));
    let handle = h.stack.tcp_accept(listener).unwrap().unwrap();
    let link = Link { handle, peer_seq: PEER_ISN + 1, our_seq };
    assert_eq!(h.stack.tcp_info(handle).unwrap().srtt, Some(Duration::from_millis(10)));
    send_flight(&mut h, &link, 1, 1460);
    let rtx = h.advance(Duration::from_millis(250));
    assert_eq!(rtx.len(), 1, "one retransmission after 200 ms");
    h.advance(Duration::from_millis(1));
    h.send(h.ack(link.peer_seq, link.our_seq + 1460));
    assert_eq!(h.stack.tcp_info(handle).unwrap().srtt, Some(Duration::from_millis(10)), "no sample taken");
}

/// Loses the second of ten segments and sends the first ACK and three
/// duplicates; returns what the stack sent in answer to each.
fn lose_second_segment(h: &mut Harness, link: &Link, mss: u32) -> Vec<Vec<Seg>> {
    let ack = link.our_seq + mss;
    let mut answers = vec![];
    h.send(h.ack(link.peer_seq, ack));
    answers.push(h.out());
    for _ in 0..3 {
        h.send(h.ack(link.peer_seq, ack));
        answers.push(h.out());
    }
    answers
}

/// RFC 5681 §3.2: the third duplicate ACK triggers a retransmission of the
/// missing segment at once, long before the RTO.
#[test]
fn three_duplicate_acks_trigger_fast_retransmit() {
    let mut h = Harness::new();
    let link = h.plain_passive_open();
    send_flight(&mut h, &link, 10, 1460);
    let answers = lose_second_segment(&mut h, &link, 1460);
    assert!(answers[1..3].iter().all(|a| data_segments(a).iter().all(|s| s.repr.seq != link.our_seq + 1460)));
    let rtx = &answers[3];
    assert_eq!(rtx[0].repr.seq, link.our_seq + 1460, "{rtx:#?}");
    assert_eq!(rtx[0].at.as_millis(), 0, "before any RTO");
    assert_eq!(h.stack.stats().tcp.fast_retransmits, 1);
}

/// RFC 6582 §3.2 step 4: without SACK, a partial ACK during recovery
/// retransmits the next hole at once.
#[test]
fn newreno_partial_ack_retransmits_the_next_hole() {
    let mut h = Harness::new();
    let link = h.plain_passive_open();
    let flight = send_flight(&mut h, &link, 10, 1460);
    lose_second_segment(&mut h, &link, 1460);
    // Segments 1..4 arrive with the retransmission; segment 4 was lost too.
    h.send(h.ack(link.peer_seq, flight[4].repr.seq));
    let rtx = h.out();
    assert_eq!(rtx[0].repr.seq, flight[4].repr.seq, "{rtx:#?}");
    assert_eq!(h.stack.stats().tcp.partial_acks, 1);
}

/// RFC 6675 §5: with SACK, recovery retransmits the holes and nothing the
/// peer reported holding.
#[test]
fn sack_recovery_retransmits_only_the_holes() {
    let mut h = Harness::new();
    let (link, _) = h.passive_open(full_options(7, 1));
    let mss = 1448;
    let flight = send_flight(&mut h, &link, 10, mss as usize);
    let seq = |i: usize| flight[i].repr.seq;
    let end = flight[9].repr.seq + mss;
    // Segments 1 and 4 are lost; the peer SACKs what follows each.
    h.send(h.ack(link.peer_seq, seq(1)));
    let mut sent = h.out();
    for blocks in [vec![(seq(2), seq(3))], vec![(seq(2), seq(4))], vec![(seq(5), seq(7)), (seq(2), seq(4))]] {
        h.send(h.sack(link.peer_seq, seq(1), &blocks));
        sent.extend(h.out());
    }
    h.send(h.sack(link.peer_seq, seq(1), &[(seq(5), end), (seq(2), seq(4))]));
    sent.extend(h.out());
    let rtx: Vec<u32> = data_segments(&sent).iter().map(|s| s.repr.seq).filter(|&s| s < end).collect();
    assert_eq!(rtx, [seq(1), seq(4)]);
}

/// Runs a fast retransmit on a flight of ten segments; returns (cwnd before,
/// cwnd after).
fn cwnd_across_fast_retransmit(congestion: CongestionAlgorithm) -> (usize, usize) {
    let mut h = Harness::with(|c| c.tcp.congestion = congestion);
    let (link, _) = h.passive_open(TcpOptions { timestamps: None, ..full_options(0, 0) });
    send_flight(&mut h, &link, 10, 1460);
    let before = h.stack.tcp_info(link.handle).unwrap().cwnd;
    lose_second_segment(&mut h, &link, 1460);
    (before, h.stack.tcp_info(link.handle).unwrap().cwnd)
}

/// RFC 9438 §4.6: CUBIC reduces cwnd to β = 0.7 of the flight on loss.
#[test]
fn cubic_reduces_cwnd_by_beta_0_7_on_loss() {
    let (before, after) = cwnd_across_fast_retransmit(CongestionAlgorithm::Cubic);
    assert_eq!(before, 14_600);
    // Flight at the third duplicate: 9 segments after the first was acknowledged.
    assert_eq!(after, 9 * 1460 * 7 / 10);
}

/// RFC 5681 §3.2, RFC 6582: NewReno halves the flight on loss.
#[test]
fn newreno_halves_cwnd_on_loss() {
    let (before, after) = cwnd_across_fast_retransmit(CongestionAlgorithm::NewReno);
    assert_eq!(before, 14_600);
    assert_eq!(after, 9 * 1460 / 2);
}
