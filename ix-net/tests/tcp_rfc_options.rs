//! TCP options at work after the handshake: MSS, window scaling and timestamps
//! (RFC 7323) with PAWS, and SACK blocks (RFC 2018).

mod segment_support;

use bytes::Bytes;
use ix_net::wire::TcpOptions;
use segment_support::{Harness, data_segments, full_options, mss_only, pattern};

/// RFC 9293 §3.7.1, RFC 6691: segments carry at most the peer's MSS less the
/// TCP options they carry (12 bytes of timestamps here).
#[test]
fn peer_mss_of_536_bounds_our_segments_less_their_options() {
    let mut h = Harness::new();
    let (link, _) = h.passive_open(TcpOptions { mss: Some(536), ..full_options(7, 1) });
    h.stack.tcp_send(link.handle, Bytes::from(pattern(0, 3000))).unwrap();
    let segs = h.out();
    let sizes: Vec<usize> = data_segments(&segs).iter().map(|s| s.payload.len()).collect();
    assert!(sizes.iter().all(|&n| n <= 536 - 12), "{sizes:?}");
    assert_eq!(sizes[0], 524);
    assert_eq!(sizes.iter().sum::<usize>(), 3000);
}

/// RFC 7323 §2.3: the peer's window field is shifted by the scale it announced,
/// and ours by the scale we announced (3 for 256 KiB).
#[test]
fn window_scale_applies_both_ways() {
    let mut h = Harness::new();
    // An MSS of 1036 leaves 1024 payload bytes beside the timestamps.
    let (link, _) = h.passive_open(TcpOptions { mss: Some(1036), ..full_options(7, 1) });
    // 16 << 7 = 2048 bytes of window from the peer: two full segments.
    h.peer_window = 16;
    h.send(h.ack(link.peer_seq, link.our_seq));
    h.stack.tcp_send(link.handle, Bytes::from(pattern(0, 10_000))).unwrap();
    let segs = h.out();
    assert_eq!(data_segments(&segs).iter().map(|s| s.payload.len()).sum::<usize>(), 2048);
    h.data(link.peer_seq, link.our_seq, &pattern(0, 1000));
    let ack = h.out_one();
    assert_eq!(ack.repr.ack, link.peer_seq + 1000);
    assert_eq!(u32::from(ack.repr.window) << 3, 256 * 1024 - 1000);
}

/// RFC 7323 §2.2: without the peer's window scale option neither side scales.
#[test]
fn no_window_scaling_when_the_peer_does_not_offer_it() {
    let mut h = Harness::new();
    let (link, syn_ack) = h.passive_open(mss_only(1460));
    assert_eq!(syn_ack.repr.options.window_scale, None);
    h.peer_window = 1000;
    h.send(h.ack(link.peer_seq, link.our_seq));
    h.stack.tcp_send(link.handle, Bytes::from(pattern(0, 5000))).unwrap();
    let segs = h.out();
    assert_eq!(data_segments(&segs).iter().map(|s| s.payload.len()).sum::<usize>(), 1000);
    h.data(link.peer_seq, link.our_seq, &pattern(0, 100));
    let ack = h.out().pop().unwrap();
    // 256 KiB of space, unscaled, is capped at 65535; the right edge stays put
    // until it can move by an MSS (RFC 9293 §3.8.6.2.2).
    assert_eq!(ack.repr.window, 65_535 - 100);
}

/// RFC 7323 §4.3: TSecr echoes TS.Recent, which only a segment covering
/// Last.ACK.sent updates: an out-of-order segment's newer TSval is not echoed;
/// the segment that fills the hole is.
#[test]
fn timestamps_echo_the_tsval_of_the_last_in_sequence_segment() {
    let mut h = Harness::new();
    let (link, _) = h.passive_open(full_options(7, 50));
    let seq = link.peer_seq;
    h.peer_ts = Some(100);
    h.data(seq, link.our_seq, &pattern(0, 100));
    assert_eq!(h.out_one().repr.options.timestamps.unwrap().1, 100);
    h.peer_ts = Some(200);
    h.data(seq + 200, link.our_seq, &pattern(200, 100));
    let dup = h.out_one();
    assert_eq!(dup.repr.ack, seq + 100);
    assert_eq!(dup.repr.options.timestamps.unwrap().1, 100, "the out-of-order TSval is not echoed");
    h.peer_ts = Some(150);
    h.data(seq + 100, link.our_seq, &pattern(100, 100));
    let ack = h.out_one();
    assert_eq!(ack.repr.ack, seq + 300);
    assert_eq!(ack.repr.options.timestamps.unwrap().1, 150, "the hole filler's TSval is echoed");
}

/// RFC 7323 §5.3: a segment whose TSval is older than TS.Recent is dropped
/// (PAWS) and acknowledged.
#[test]
fn paws_drops_a_segment_with_an_old_tsval_and_acknowledges() {
    let mut h = Harness::new();
    let (link, _) = h.passive_open(full_options(7, 1000));
    h.data(link.peer_seq, link.our_seq, &pattern(0, 100));
    h.out_one();
    h.peer_ts = Some(900);
    h.data(link.peer_seq + 100, link.our_seq, &pattern(100, 100));
    let ack = h.out_one();
    assert_eq!(ack.repr.ack, link.peer_seq + 100, "the old segment is not acknowledged as received");
    assert_eq!(h.stack.stats().tcp.paws_rejected, 1);
    assert_eq!(h.read_all(link.handle), pattern(0, 100));
}

/// RFC 2018 §4: out-of-order data is reported in SACK blocks, the block of the
/// most recently received segment first.
#[test]
fn sack_blocks_report_out_of_order_data_most_recent_first() {
    let mut h = Harness::new();
    let (link, _) = h.passive_open(full_options(7, 1));
    let seq = link.peer_seq;
    h.data(seq + 1000, link.our_seq, &pattern(1000, 500));
    let first = h.out_one();
    assert_eq!(first.repr.ack, seq);
    assert_eq!(first.sack_blocks(), [(seq + 1000, seq + 1500)]);
    h.data(seq + 3000, link.our_seq, &pattern(3000, 500));
    assert_eq!(h.out_one().sack_blocks(), [(seq + 3000, seq + 3500), (seq + 1000, seq + 1500)]);
    h.data(seq + 1500, link.our_seq, &pattern(1500, 500));
    assert_eq!(h.out_one().sack_blocks(), [(seq + 1000, seq + 2000), (seq + 3000, seq + 3500)]);
    h.data(seq, link.our_seq, &pattern(0, 1000));
    let ack = h.out_one();
    assert_eq!((ack.repr.ack, ack.sack_blocks()), (seq + 2000, vec![(seq + 3000, seq + 3500)]));
}

/// RFC 2018 §2: without SACK-permitted in the peer's SYN, no SACK blocks are
/// sent, and SACK blocks from the peer are not acted on.
#[test]
fn no_sack_without_sack_permitted() {
    let mut h = Harness::new();
    let (link, _) = h.passive_open(mss_only(1460));
    h.data(link.peer_seq + 1000, link.our_seq, &pattern(1000, 500));
    let dup = h.out_one();
    assert_eq!(dup.repr.ack, link.peer_seq);
    assert!(dup.sack_blocks().is_empty());
    h.stack.tcp_send(link.handle, Bytes::from(pattern(0, 4 * 1460))).unwrap();
    let sent = h.out();
    assert_eq!(sent.len(), 4);
    // SACK blocks claiming segments 1 to 3: acted on, the first would already
    // mark segment 0 lost (RFC 6675 IsLost); ignored, only the third
    // duplicate ACK triggers the fast retransmit.
    let held = (sent[1].repr.seq, sent[1].repr.seq + 3 * 1460);
    let mut answers = Vec::new();
    for _ in 0..3 {
        h.send(h.sack(link.peer_seq, link.our_seq, &[held]));
        answers.push(h.out());
    }
    assert!(answers[0].is_empty() && answers[1].is_empty(), "{answers:#?}");
    assert_eq!(answers[2].len(), 1);
    assert_eq!(answers[2][0].repr.seq, link.our_seq);
}
