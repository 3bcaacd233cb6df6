//! Loss detection and its undo, segment by segment, in virtual time: RTT
//! samples (RFC 6298 §3, RFC 7323 §4), RACK-TLP (RFC 8985), limited transmit
//! (RFC 3042), PRR (RFC 6937), Eifel (RFC 3522), D-SACK undo (RFC 3708), and
//! the receiver's D-SACKs (RFC 2883).

mod segment_support;

use std::time::Duration;

use bytes::Bytes;
use ix_net::Instant;
use ix_net::tcp::LossDetection;
use ix_net::wire::TcpOptions;
use segment_support::{Harness, Link, Seg, data_segments, full_options, mss_only, pattern};

/// Payload of a full segment with timestamps.
const MSS: usize = 1448;

fn ms(millis: u64) -> Duration {
    Duration::from_millis(millis)
}

fn micros(m: u64) -> Duration {
    Duration::from_micros(m)
}

/// A passive open with Linux's options (SACK, timestamps), the handshake's
/// round trip taking `rtt`: the stack's SRTT starts there.
fn open_with_rtt(h: &mut Harness, rtt: Duration) -> Link {
    let listener = h.listen(16);
    let options = full_options(7, 1);
    h.peer_ts = Some(1);
    let peer_isn = h.peer_isn;
    h.send(h.syn(peer_isn, options));
    let our_seq = h.out_one().repr.seq.wrapping_add(1);
    h.advance(rtt);
    h.send(h.ack(peer_isn + 1, our_seq));
    let handle = h.stack.tcp_accept(listener).unwrap().unwrap();
    assert_eq!(h.stack.tcp_info(handle).unwrap().srtt, Some(rtt));
    Link { handle, peer_seq: peer_isn + 1, our_seq }
}

/// Queues `n` full segments and returns the data segments sent now.
fn send_segments(h: &mut Harness, link: &Link, n: usize) -> Vec<Seg> {
    h.stack.tcp_send(link.handle, Bytes::from(pattern(0, n * MSS))).unwrap();
    data_segments(&h.out()).into_iter().cloned().collect()
}

/// An ACK of everything below `ack` with SACK blocks, echoing `ts_ecr`.
fn sack_echoing(h: &Harness, link: &Link, ack: u32, blocks: &[(u32, u32)], ts_ecr: u32) -> ix_net::wire::TcpRepr {
    let mut repr = h.sack(link.peer_seq, ack, blocks);
    repr.options.timestamps = Some((h.peer_ts.unwrap(), ts_ecr));
    repr
}

fn tsval(seg: &Seg) -> u32 {
    seg.repr.options.timestamps.expect("timestamps").0
}

fn srtt(h: &Harness, link: &Link) -> Duration {
    h.stack.tcp_info(link.handle).unwrap().srtt.unwrap()
}

/// The bug of issue #13: after timeouts, the D-SACK answering the
/// retransmission echoes the original's timestamp; the stack took
/// now − TSecr, seconds, as an RTT sample. Karn's rule and the D-SACK both
/// forbid a sample.
#[test]
fn a_dsack_echoing_the_first_copy_after_timeouts_gives_no_rtt_sample() {
    let mut h = Harness::new();
    let link = open_with_rtt(&mut h, ms(1));
    let first = send_segments(&mut h, &link, 1).remove(0);
    // The peer got it; its ACKs are lost: a tail loss probe, then timeouts
    // 200, 400, 800 and 1600 ms apart.
    let rtx = h.advance(ms(3100));
    assert!(data_segments(&rtx).len() >= 4, "{rtx:#?}");
    let end = link.our_seq + MSS as u32;
    h.send(sack_echoing(&h, &link, end, &[(link.our_seq, end)], tsval(&first)));
    assert!(srtt(&h, &link) < ms(2), "SRTT {:?} from a 3 s echo", srtt(&h, &link));
}

/// RFC 7323 §4 and the connection's own send times: an ACK of a segment never
/// retransmitted that echoes a timestamp older than that segment is not a
/// sample (it would measure the idle time before the segment was sent).
#[test]
fn an_echo_older_than_the_segment_acknowledged_gives_no_rtt_sample() {
    let mut h = Harness::new();
    let link = open_with_rtt(&mut h, ms(1));
    let first = send_segments(&mut h, &link, 1).remove(0);
    h.advance(ms(1));
    h.send(h.ack(link.peer_seq, link.our_seq + MSS as u32));
    h.advance(ms(2000));
    let second = send_segments(&mut h, &link, 1).remove(0);
    h.advance(ms(1));
    let end = second.repr.seq + MSS as u32;
    h.send(sack_echoing(&h, &link, end, &[], tsval(&first)));
    assert!(srtt(&h, &link) < ms(2), "SRTT {:?} from a stale echo", srtt(&h, &link));
    assert_eq!(h.stack.stats().tcp.rtt_samples_rejected, 1);
}

/// Without timestamps the samples come from the connection's send times, to
/// the microsecond (the timestamp clock ticks in milliseconds).
#[test]
fn rtt_samples_have_microsecond_resolution() {
    let mut h = Harness::new();
    let link = open_with_rtt(&mut h, micros(100));
    send_segments(&mut h, &link, 2);
    h.advance(micros(120));
    h.send(h.ack(link.peer_seq, link.our_seq + 2 * MSS as u32));
    let srtt = srtt(&h, &link);
    assert!(srtt > micros(100) && srtt < micros(120), "{srtt:?}");
}

/// Loses the second of three segments: the peer ACKs the first and SACKs the
/// third 1 ms later; returns what the stack sent in the `next`
/// after that, and the hole's sequence number.
fn lose_middle_of_three(h: &mut Harness, link: &Link, next: Duration) -> (Vec<Seg>, u32) {
    let flight = send_segments(h, link, 3);
    let seq = |i: usize| flight[i].repr.seq;
    h.advance(ms(1));
    h.send(h.sack(link.peer_seq, seq(1), &[(seq(2), seq(2) + MSS as u32)]));
    (h.advance(next), seq(1))
}

/// RFC 8985 §6.2: one segment SACKed past a hole is enough; the hole is
/// retransmitted once the reordering window (min RTT / 4) has passed, not
/// after three duplicate ACKs or a timeout (the case of issue #13).
#[test]
fn rack_retransmits_a_hole_with_one_segment_sacked_after_the_reordering_window() {
    let mut h = Harness::new();
    let link = open_with_rtt(&mut h, ms(1));
    let sent_at = h.now;
    // Until well before the timeout (which would resend the retransmission
    // if it were lost: nothing sent after it could show that).
    let (segs, hole) = lose_middle_of_three(&mut h, &link, ms(50));
    let rtx: Vec<&Seg> = data_segments(&segs).into_iter().filter(|s| s.repr.seq == hole).collect();
    assert_eq!(rtx.len(), 1, "{segs:#?}");
    // Sent at 1 ms, RACK.rtt = 1 ms, window 250 us: due at 2.25 ms (+ a timer tick).
    let after = rtx[0].at - sent_at;
    assert!(after >= micros(1250) && after <= micros(1300), "retransmitted {after:?} after sending");
    let stats = h.stack.stats().tcp;
    assert_eq!((stats.rack_lost_marks, stats.fast_retransmits, stats.retransmit_timeouts), (1, 1, 0));
}

/// DupThresh detection stays selectable: the same loss then waits for the
/// timeout, as RFC 6675 prescribes with fewer than three segments SACKed.
#[test]
fn dupthresh_detection_waits_for_three_segments_sacked() {
    let mut h = Harness::with(|c| c.tcp.loss.detection = LossDetection::DupThresh);
    let link = open_with_rtt(&mut h, ms(1));
    let sent_at = h.now;
    let (segs, hole) = lose_middle_of_three(&mut h, &link, ms(300));
    let rtx = data_segments(&segs).into_iter().find(|s| s.repr.seq == hole).expect("a retransmission");
    assert!(rtx.at - sent_at >= ms(200), "retransmitted after {:?}", rtx.at - sent_at);
    assert_eq!(h.stack.stats().tcp.retransmit_timeouts, 1);
}

/// RFC 8985 §7.2–7.3: a lone segment whose ACK does not come is probed at
/// 2·SRTT plus the single-segment allowance, long before the 200 ms RTO; the
/// probe's ACK without a D-SACK shows it repaired a loss (§7.4).
#[test]
fn a_lost_tail_segment_is_probed_after_two_srtt() {
    let mut h = Harness::new();
    let link = open_with_rtt(&mut h, ms(1));
    let sent_at = h.now;
    send_segments(&mut h, &link, 1);
    let probes = h.advance(ms(10));
    let probe = data_segments(&probes).into_iter().next().cloned().expect("a probe");
    assert_eq!(probe.repr.seq, link.our_seq);
    let after = probe.at - sent_at;
    assert!(after >= micros(2500) && after <= micros(2550), "probe after {after:?}");
    h.send(h.ack(link.peer_seq, link.our_seq + MSS as u32));
    let stats = h.stack.stats().tcp;
    assert_eq!((stats.tlp_probes, stats.tlp_recoveries, stats.retransmit_timeouts), (1, 1, 0));
}

/// Issue #13's captures at 10% loss: in recovery, the one ACK the receiver
/// sent for the sender's last transmissions was lost, and nothing clocked the
/// sender until the 200 ms timeout (RFC 8985 §7.2 arms no probe in recovery,
/// nor does Linux). A probe 2·SRTT after the retransmission restarts the ACK
/// clock instead.
#[test]
fn a_recovery_whose_acks_are_lost_is_probed_not_timed_out() {
    let mut h = Harness::new();
    let link = open_with_rtt(&mut h, ms(1));
    let (segs, hole) = lose_middle_of_three(&mut h, &link, ms(20));
    let data = data_segments(&segs);
    assert_eq!(data.first().map(|s| s.repr.seq), Some(hole), "{segs:#?}");
    let probe = data.get(1).expect("a probe after the retransmission");
    // SRTT 1 ms; two segments in flight: 2·SRTT plus two timer ticks.
    let after = probe.at - data[0].at;
    assert!(after >= ms(2) && after <= micros(2100), "probe {after:?} after the retransmission");
    let stats = h.stack.stats().tcp;
    assert_eq!((stats.tlp_probes, stats.retransmit_timeouts), (1, 0));
}

/// RFC 8985 §7: the probe of a tail of two lost segments is SACKed, and RACK
/// then marks the other one lost: both repaired in about three round trips.
#[test]
fn a_probe_lets_rack_repair_the_rest_of_a_lost_tail() {
    let mut h = Harness::new();
    let link = open_with_rtt(&mut h, ms(1));
    let flight = send_segments(&mut h, &link, 4);
    let seq = |i: usize| flight[i].repr.seq;
    let end = seq(3) + MSS as u32;
    h.advance(ms(1));
    h.send(h.ack(link.peer_seq, seq(2)));
    let probe = data_segments(&h.advance(ms(3))).into_iter().next().cloned().expect("a probe");
    assert_eq!(probe.repr.seq, seq(3), "the probe resends the highest segment");
    assert!(probe.at <= Instant::from_micros(4100), "probe at {:?}", probe.at);
    h.advance(ms(1));
    h.send(h.sack(link.peer_seq, seq(2), &[(seq(3), end)]));
    let rtx = data_segments(&h.advance(ms(1))).into_iter().next().cloned().expect("a retransmission");
    assert_eq!(rtx.repr.seq, seq(2));
    assert!(rtx.at <= Instant::from_millis(7), "repaired at {:?}", rtx.at);
    assert_eq!(h.stack.stats().tcp.retransmit_timeouts, 0);
}

/// RFC 8985 §6 (a lost retransmission): when a segment sent after the
/// retransmission is delivered first, the retransmission is marked lost and
/// sent again, without waiting for a timeout.
#[test]
fn a_lost_retransmission_is_sent_again_without_a_timeout() {
    let mut h = Harness::new();
    let link = open_with_rtt(&mut h, ms(1));
    h.stack.tcp_send(link.handle, Bytes::from(pattern(0, 30 * MSS))).unwrap();
    let flight: Vec<Seg> = data_segments(&h.out()).into_iter().cloned().collect();
    let seq = |i: usize| flight[0].repr.seq + (i * MSS) as u32;
    let hole = seq(1);
    let mut sent = Vec::new();
    // Segment 1 is lost; the peer SACKs 2..=9, one ACK each, 1 ms later.
    h.advance(ms(1));
    for i in 2..10 {
        h.send(h.sack(link.peer_seq, hole, &[(seq(2), seq(i + 1))]));
        sent.extend(h.out());
    }
    sent.extend(h.advance(micros(300)));
    let copies = |segs: &[Seg]| data_segments(segs).iter().filter(|s| s.repr.seq == hole).count();
    assert_eq!(copies(&sent), 1, "first retransmission: {sent:#?}");
    let high = data_segments(&sent).iter().map(|s| s.repr.seq).max().unwrap();
    // The retransmission is lost too. The data sent before it is SACKed, and
    // PRR sends more; then that is SACKed, which shows the retransmission lost.
    h.advance(ms(1));
    h.send(h.sack(link.peer_seq, hole, &[(seq(2), high + MSS as u32)]));
    let after = h.out();
    assert_eq!(copies(&after), 0);
    let high = data_segments(&after).iter().map(|s| s.repr.seq).max().expect("new data after the retransmission");
    h.advance(ms(1));
    h.send(h.sack(link.peer_seq, hole, &[(seq(2), high + MSS as u32)]));
    let again = h.advance(ms(2));
    assert_eq!(copies(&again), 1, "second retransmission: {again:#?}");
    assert_eq!(h.stack.stats().tcp.retransmit_timeouts, 0);
}

/// RFC 3042 (a peer without SACK): the first two duplicate ACKs each let one
/// new segment out past a full window; the third starts fast retransmit.
#[test]
fn limited_transmit_sends_one_new_segment_per_first_two_duplicate_acks() {
    let mut h = Harness::new();
    let link = h.plain_passive_open();
    h.stack.tcp_send(link.handle, Bytes::from(pattern(0, 20 * 1460))).unwrap();
    let flight = data_segments(&h.out()).len();
    assert_eq!(flight, 10, "the initial window");
    let mut answers = Vec::new();
    for _ in 0..3 {
        h.send(h.ack(link.peer_seq, link.our_seq));
        answers.push(data_segments(&h.out()).iter().map(|s| s.repr.seq).collect::<Vec<_>>());
    }
    let at = |i: u32| link.our_seq + i * 1460;
    assert_eq!(answers[0], [at(10)]);
    assert_eq!(answers[1], [at(11)]);
    assert_eq!(answers[2][0], at(0), "fast retransmit");
}

/// RFC 6937: in recovery the window falls towards ssthresh in proportion to
/// what is delivered, instead of stopping sending and then bursting.
#[test]
fn prr_spreads_sending_over_the_recovery() {
    let mut h = Harness::new();
    let link = open_with_rtt(&mut h, ms(1));
    h.stack.tcp_send(link.handle, Bytes::from(pattern(0, 40 * MSS))).unwrap();
    let flight = data_segments(&h.out()).len();
    let seq = |i: usize| link.our_seq + (i * MSS) as u32;
    // Segment 0 is lost and segment 1 SACKed; RACK marks the loss a
    // reordering window later and the recovery starts with the retransmission.
    h.advance(ms(1));
    h.send(h.sack(link.peer_seq, seq(0), &[(seq(1), seq(2))]));
    h.out();
    let first = data_segments(&h.advance(micros(300))).len();
    assert_eq!(first, 1, "the fast retransmit");
    // Every later segment is SACKed, one per ACK.
    let mut per_ack = Vec::new();
    for i in 2..flight {
        h.send(h.sack(link.peer_seq, seq(0), &[(seq(1), seq(i + 1))]));
        per_ack.push(data_segments(&h.out()).len());
    }
    let total = first + per_ack.iter().sum::<usize>();
    // CUBIC: ssthresh = 0.7 x the flight; PRR sends about 0.7 segment per
    // segment delivered in recovery, rounded up, the retransmission included.
    let delivered = flight - 2;
    assert!(total >= delivered * 7 / 10 && total <= delivered * 7 / 10 + 2, "{per_ack:?}");
    assert!(per_ack.iter().all(|&n| n <= 2), "no burst: {per_ack:?}");
}

/// RFC 3522 (Eifel) with the RFC 4015 response: the first ACK after a
/// timeout echoes the original's timestamp, so the timeout was spurious and
/// the window from before it comes back.
#[test]
fn a_spurious_timeout_is_detected_by_timestamps_and_undone() {
    let mut h = Harness::new();
    let link = open_with_rtt(&mut h, ms(1));
    let flight = send_segments(&mut h, &link, 10);
    let before = h.stack.tcp_info(link.handle).unwrap().cwnd;
    h.advance(ms(210));
    assert_eq!(h.stack.stats().tcp.retransmit_timeouts, 1);
    assert!(h.stack.tcp_info(link.handle).unwrap().cwnd < before);
    let end = flight[9].repr.seq + MSS as u32;
    h.send(sack_echoing(&h, &link, end, &[], tsval(&flight[9])));
    assert_eq!(h.stack.stats().tcp.spurious_timeouts_undone, 1);
    assert!(h.stack.tcp_info(link.handle).unwrap().cwnd >= before);
}

/// RFC 3708: when D-SACKs report every retransmission of a recovery
/// needless (the "lost" segment was only reordered), the reduction is undone.
#[test]
fn dsacks_for_every_retransmission_undo_the_reduction() {
    let mut h = Harness::new();
    let link = open_with_rtt(&mut h, ms(1));
    let flight = send_segments(&mut h, &link, 10);
    let before = h.stack.tcp_info(link.handle).unwrap().cwnd;
    let seq = |i: usize| flight[i].repr.seq;
    let end = seq(9) + MSS as u32;
    h.advance(ms(1));
    h.send(h.sack(link.peer_seq, seq(1), &[(seq(2), end)]));
    let rtx = data_segments(&h.advance(ms(1))).into_iter().filter(|s| s.repr.seq == seq(1)).count();
    assert_eq!(rtx, 1);
    assert!(h.stack.tcp_info(link.handle).unwrap().cwnd < before);
    // The original arrives late; the retransmission is reported twice received.
    h.send(h.sack(link.peer_seq, end, &[(seq(1), seq(2))]));
    let stats = h.stack.stats().tcp;
    assert_eq!((stats.dsacks_received, stats.dsack_undos), (1, 1));
    assert!(h.stack.tcp_info(link.handle).unwrap().cwnd >= before);
}

/// RFC 2883 §4.1.1: a segment received again below the cumulative ACK is
/// reported in a D-SACK block, first, on the ACK it draws; and only there.
#[test]
fn a_duplicate_below_the_cumulative_ack_is_reported_in_a_dsack() {
    let mut h = Harness::new();
    let (link, _) = h.passive_open(full_options(7, 1));
    let seq = link.peer_seq;
    h.data(seq, link.our_seq, &pattern(0, 1000));
    assert!(h.out_one().sack_blocks().is_empty());
    h.data(seq, link.our_seq, &pattern(0, 1000));
    let ack = h.out_one();
    assert_eq!((ack.repr.ack, ack.sack_blocks()), (seq + 1000, vec![(seq, seq + 1000)]));
    assert_eq!(h.stack.stats().tcp.dsacks_sent, 1);
    h.data(seq + 1000, link.our_seq, &pattern(1000, 500));
    assert!(h.out_one().sack_blocks().is_empty(), "the D-SACK is not repeated");
}

/// RFC 2883 §4.1.2: a duplicate of data held out of order is reported first,
/// and the block holding it follows (which tells the sender it is a D-SACK).
#[test]
fn a_duplicate_of_data_held_out_of_order_is_reported_before_its_block() {
    let mut h = Harness::new();
    let (link, _) = h.passive_open(full_options(7, 1));
    let seq = link.peer_seq;
    h.data(seq + 1000, link.our_seq, &pattern(1000, 500));
    h.data(seq + 1500, link.our_seq, &pattern(1500, 500));
    h.data(seq + 3000, link.our_seq, &pattern(3000, 500));
    h.out();
    h.data(seq + 1000, link.our_seq, &pattern(1000, 500));
    let ack = h.out_one();
    assert_eq!(ack.repr.ack, seq);
    assert_eq!(ack.sack_blocks(), [(seq + 1000, seq + 1500), (seq + 1000, seq + 2000), (seq + 3000, seq + 3500)]);
}

/// RFC 2883 §4.1.3 (and Linux): a segment partly below the cumulative ACK
/// has its old part reported in a D-SACK; the new part is taken.
#[test]
fn the_old_part_of_a_partly_duplicate_segment_is_reported_in_a_dsack() {
    let mut h = Harness::new();
    let (link, _) = h.passive_open(full_options(7, 1));
    let seq = link.peer_seq;
    h.data(seq, link.our_seq, &pattern(0, 1000));
    h.out();
    h.data(seq + 500, link.our_seq, &pattern(500, 1000));
    let ack = h.out_one();
    assert_eq!((ack.repr.ack, ack.sack_blocks()), (seq + 1500, vec![(seq + 500, seq + 1000)]));
    assert_eq!(h.read_all(link.handle), pattern(0, 1500));
}

/// RFC 2883 is for SACK peers only: without SACK-permitted a duplicate draws
/// a plain ACK.
#[test]
fn no_dsack_without_sack_permitted() {
    let mut h = Harness::new();
    let (link, _) = h.passive_open(mss_only(1460));
    h.data(link.peer_seq, link.our_seq, &pattern(0, 1000));
    h.out();
    h.data(link.peer_seq, link.our_seq, &pattern(0, 1000));
    assert!(h.out_one().sack_blocks().is_empty());
    assert_eq!(h.stack.stats().tcp.dsacks_sent, 0);
}

/// The minimum RTO is a setting (RFC 6298 §2.4 leaves it to the stack).
#[test]
fn the_minimum_rto_is_configurable() {
    let mut h = Harness::with(|c| c.tcp.rtt.rto_min = ms(5));
    let link = h.passive_open(TcpOptions { sack_permitted: false, ..mss_only(1460) }).0;
    h.stack.tcp_send(link.handle, Bytes::from(pattern(0, 100))).unwrap();
    h.out();
    let rtx = h.advance(ms(20));
    let at = rtx.first().expect("a retransmission").at;
    // Deadlines round up to the timer wheel's 16 us tick.
    assert!(at >= Instant::from_millis(5) && at < Instant::from_micros(5020), "{rtx:#?}");
}
