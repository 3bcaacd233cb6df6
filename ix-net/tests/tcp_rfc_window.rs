//! Receiving and sending data against windows (RFC 9293 §3.8.6, §3.10.7.4; RFC
//! 5681 §4.2 for ACKs; RFC 1982-style sequence arithmetic across 2^32).

mod segment_support;

use std::time::Duration;

use bytes::Bytes;
use ix_driver::TxBuf;
use ix_net::Instant;
use ix_net::wire::TcpFlags;
use segment_support::{Harness, Link, Seg, data_segments, full_options, mss_only, pattern};

/// RFC 9293 §3.10.7.4: in-order data is delivered and acknowledged.
#[test]
fn in_order_data_is_delivered_and_acknowledged() {
    let mut h = Harness::new();
    let link = h.plain_passive_open();
    h.data(link.peer_seq, link.our_seq, &pattern(0, 100));
    h.data(link.peer_seq + 100, link.our_seq, &pattern(100, 200));
    let acks: Vec<u32> = h.out().iter().map(|s| s.repr.ack).collect();
    assert_eq!(acks.last(), Some(&(link.peer_seq + 300)));
    assert_eq!(h.read_all(link.handle), pattern(0, 300));
}

/// RFC 9293 §3.10.7.4, RFC 5681 §4.2: out-of-order data is held (in the frame
/// it arrived in, not copied), acknowledged at once with a duplicate ACK, and
/// delivered when the hole fills.
#[test]
fn out_of_order_data_is_held_in_its_frame_until_the_hole_fills() {
    let mut h = Harness::new();
    let link = h.plain_passive_open();
    let later = h.data(link.peer_seq + 100, link.our_seq, &pattern(100, 100));
    assert_eq!(h.out_one().repr.ack, link.peer_seq, "a duplicate ACK goes out at once");
    assert!(h.stack.tcp_recv(link.handle).unwrap().is_none());
    let first = h.data(link.peer_seq, link.our_seq, &pattern(0, 100));
    assert_eq!(h.out_one().repr.ack, link.peer_seq + 200);
    let a = h.stack.tcp_recv(link.handle).unwrap().unwrap();
    let b = h.stack.tcp_recv(link.handle).unwrap().unwrap();
    assert_eq!((&a[..], &b[..]), (&pattern(0, 100)[..], &pattern(100, 100)[..]));
    assert_eq!((a.as_packet().frame_index(), b.as_packet().frame_index()), (first, later));
}

/// RFC 9293 §3.10.7.4: data already received is trimmed from a segment; a
/// segment that is all duplicate is acknowledged and dropped.
#[test]
fn duplicate_data_is_trimmed() {
    let mut h = Harness::new();
    let link = h.plain_passive_open();
    h.data(link.peer_seq, link.our_seq, &pattern(0, 100));
    h.data(link.peer_seq + 50, link.our_seq, &pattern(50, 100));
    h.data(link.peer_seq, link.our_seq, &pattern(0, 100));
    let acks: Vec<u32> = h.out().iter().map(|s| s.repr.ack).collect();
    assert_eq!(acks.last(), Some(&(link.peer_seq + 150)));
    assert_eq!(h.read_all(link.handle), pattern(0, 150));
}

/// RFC 9293 §3.10.7.4: data beyond the advertised window is trimmed.
#[test]
fn data_beyond_the_window_is_trimmed() {
    let mut h = Harness::with(|c| c.tcp.recv_buffer_bytes = 2048);
    let link = h.plain_passive_open();
    h.data(link.peer_seq, link.our_seq, &pattern(0, 1460));
    h.data(link.peer_seq + 1460, link.our_seq, &pattern(1460, 1460));
    let last = h.out().pop().unwrap();
    assert_eq!((last.repr.ack, last.repr.window), (link.peer_seq + 2048, 0));
    assert_eq!(h.read_all(link.handle), pattern(0, 2048));
    assert_eq!(h.stack.stats().tcp.beyond_window_bytes, 2 * 1460 - 2048);
}

/// RFC 9293 §3.8.6.1, RFC 6298 §5.5: against a zero window the sender probes,
/// each unanswered probe doubling the interval, and resumes when it opens.
#[test]
fn zero_window_is_probed_with_backoff() {
    let mut h = Harness::new();
    h.peer_window = 0;
    let link = h.plain_passive_open();
    h.stack.tcp_send(link.handle, Bytes::from(pattern(0, 3000))).unwrap();
    assert!(h.out().is_empty(), "nothing may go out into a zero window");
    let mut probes = Vec::new();
    while probes.len() < 5 {
        for probe in h.advance(Duration::from_millis(100)) {
            assert_eq!((probe.repr.seq, probe.payload.len()), (link.our_seq, 1), "{probe:?}");
            probes.push(probe.at);
            // The peer answers each probe: still no room.
            h.send(h.ack(link.peer_seq, link.our_seq));
            assert!(h.out().is_empty(), "an answered probe is no duplicate ACK");
        }
    }
    // The first probe after one RTO (200 ms after a zero-time handshake), then
    // doubling intervals.
    let gaps: Vec<u64> = probes.windows(2).map(|w| (w[1] - w[0]).as_millis() as u64).collect();
    assert_eq!(gaps, [400, 800, 1600, 3200], "probes at {probes:?}");
    h.peer_window = 65_535;
    h.send(h.ack(link.peer_seq, link.our_seq));
    let segs = h.out();
    let sent: Vec<u8> = data_segments(&segs).iter().flat_map(|s| s.payload.clone()).collect();
    assert_eq!(sent, pattern(0, 3000), "the data goes out as soon as the window opens");
    assert_eq!(h.stack.stats().tcp.retransmit_timeouts, 0);
}

/// RFC 9293 §3.8.1 and §3.8.6.1: data the output path refused (the packet pool
/// empty; the neighbour's ARP queue full, as fuzz input
/// `fuzz/regressions/tcp_session/honest-byte-stalls-1` found) never left, and
/// with nothing in flight no ACK or RTO calls it out again: the persist timer
/// must, or the connection stalls for good with the data queued.
#[test]
fn data_the_output_path_refused_goes_out_on_a_timer() {
    let mut h = Harness::new();
    let (link, held) = refused_send(&mut h);
    assert_eq!(h.stack.stats().tcp.output_stalled, 1);
    assert!(h.stack.poll_timeout().is_some(), "refused data leaves a timer armed");
    drop(held);
    let sent = h.advance(Duration::from_secs(1));
    let first = data_segments(&sent).first().map(|s| (s.repr.seq, s.payload.clone()));
    assert_eq!(first, Some((link.our_seq, pattern(0, 100))), "{sent:#?}");
}

/// A harness whose ARP entries outlive the test and whose connections give up
/// after four unanswered retransmissions or probes.
fn silent_peer_harness() -> Harness {
    Harness::with(|c| {
        c.arp.entry_ttl = Duration::from_secs(24 * 3600);
        c.tcp.max_retransmits = 4;
    })
}

/// An hour with the peer silent: exactly four segments that `is_probe` picks
/// leave, then the connection ends timed out.
fn times_out_after_four_probes(h: &mut Harness, link: &Link, is_probe: fn(&Seg) -> bool, what: &str) {
    let mut probes = 0;
    for _ in 0..3600 {
        probes += h.advance(Duration::from_secs(1)).iter().filter(|s| is_probe(s)).count();
    }
    assert_eq!(probes, 4, "{what}");
    assert_eq!(h.stack.tcp_state(link.handle).unwrap(), ix_net::tcp::State::Closed);
    assert_eq!(h.stack.tcp_error(link.handle).unwrap(), Some(ix_net::tcp::TcpError::TimedOut));
    assert_eq!(h.stack.stats().tcp.timeouts, 1);
}

/// RFC 9293 §3.8.6.1 and RFC 1122 §4.2.3.5: a connection may probe a closed
/// window for as long as the peer answers, and no longer. A peer that goes
/// silent behind a zero window is given up after `max_retransmits` unanswered
/// probes, as after as many unanswered retransmissions (Linux: `tcp_retries2`
/// probes), or the connection and its queued data outlive the peer for good.
#[test]
fn a_zero_window_whose_peer_goes_silent_times_out() {
    let mut h = silent_peer_harness();
    h.peer_window = 0;
    let link = h.plain_passive_open();
    h.stack.tcp_send(link.handle, Bytes::from(pattern(0, 3000))).unwrap();
    times_out_after_four_probes(&mut h, &link, |s| s.payload.len() == 1, "four unanswered probes, then no more");
}

/// The same bound when the window closes on data already sent (the peer
/// acknowledges nothing and advertises a zero window, then goes silent): the
/// persist timer takes over from the RTO (that data was refused, not lost),
/// and with no new data left to probe with, each firing probes with the first
/// unacknowledged byte again. Found by fuzz input
/// `fuzz/regressions/tcp_session/zero-window-on-data-in-flight-outlives-close-1`:
/// the firing sent a bare ACK and armed nothing, so the connection lived on
/// with no timer at all.
#[test]
fn a_window_closed_on_data_in_flight_whose_peer_goes_silent_times_out() {
    let mut h = silent_peer_harness();
    let link = h.plain_passive_open();
    h.stack.tcp_send(link.handle, Bytes::from(pattern(0, 1000))).unwrap();
    let sent = h.out();
    assert_eq!(sent.iter().map(|s| s.payload.len()).sum::<usize>(), 1000, "all of it goes out at once");
    h.peer_window = 0;
    h.send(h.ack(link.peer_seq, link.our_seq));
    times_out_after_four_probes(
        &mut h,
        &link,
        |s| s.payload.len() == 1,
        "four unanswered probes of the first unacknowledged byte, then no more",
    );
}

/// And when the window closes on a FIN alone (no data left unacknowledged):
/// each persist firing sends the FIN again as the probe. Found by fuzz input
/// `fuzz/regressions/tcp_session/zero-window-on-fin-outlives-close-1`: the
/// firing, with no data byte to probe with, sent a bare ACK and armed nothing.
#[test]
fn a_window_closed_on_a_fin_whose_peer_goes_silent_times_out() {
    let mut h = silent_peer_harness();
    let link = h.plain_passive_open();
    h.stack.tcp_shutdown(link.handle).unwrap();
    assert!(h.out().iter().any(|s| s.has(TcpFlags::FIN)), "the FIN goes out at once");
    h.peer_window = 0;
    h.send(h.ack(link.peer_seq, link.our_seq));
    times_out_after_four_probes(
        &mut h,
        &link,
        |s| s.has(TcpFlags::FIN),
        "four unanswered probes carrying the FIN, then no more",
    );
}

/// The same bound for data the output path refuses for good (a neighbour that
/// never answers ARP, as fuzz inputs `fuzz/regressions/tcp_session/
/// unreachable-peer-outlives-close-*` found: a closed connection whose FIN
/// could never leave lived on, its persist timer backing off to a minute and
/// firing for ever): after `max_retransmits` refused attempts it times out.
#[test]
fn output_refused_for_good_times_out() {
    let mut h = Harness::with(|c| c.tcp.max_retransmits = 4);
    let (link, _held) = refused_send(&mut h);
    assert!(h.advance(Duration::from_secs(3600)).is_empty(), "the pool stays empty");
    assert_eq!(h.stack.tcp_state(link.handle).unwrap(), ix_net::tcp::State::Closed);
    assert_eq!(h.stack.tcp_error(link.handle).unwrap(), Some(ix_net::tcp::TcpError::TimedOut));
    assert_eq!(h.stack.stats().tcp.timeouts, 1);
}

/// A connection left idle past its handshake's timers, then 100 bytes the
/// application sends while every frame of the pool is held: the frames come
/// back with the link, for the test to drop when the pool may refill.
fn refused_send(h: &mut Harness) -> (Link, Vec<TxBuf>) {
    let link = h.plain_passive_open();
    assert!(h.advance(Duration::from_secs(10)).is_empty(), "an idle connection: no timer left from the handshake");
    let held: Vec<_> = std::iter::from_fn(|| h.pool.alloc().ok()).collect();
    h.stack.tcp_send(link.handle, Bytes::from(pattern(0, 100))).unwrap();
    assert!(h.out().is_empty(), "no frame to send it in");
    (link, held)
}

/// RFC 9293 §3.8.6.1, RFC 6298 §5.1: once data the output path refused leaves
/// by an ordinary output pass (the application's next send, or an ACK from the
/// peer), the retransmission timer covers it; the persist timer the refusal
/// armed has no job left and must not fire a probe of its own.
#[test]
fn a_refused_send_leaves_no_persist_timer_once_the_data_is_out() {
    // What makes an output pass run once the pool has frames again.
    type PushOut = fn(&mut Harness, &Link);
    let triggers: [(&str, PushOut); 2] = [
        ("the application's next send", |h, link| {
            h.stack.tcp_send(link.handle, Bytes::from(pattern(100, 100))).unwrap();
        }),
        ("an ACK from the peer", |h, link| {
            h.send(h.ack(link.peer_seq, link.our_seq));
        }),
    ];
    for (trigger, push_out) in triggers {
        let mut h = Harness::new();
        let (link, held) = refused_send(&mut h);
        let persist_at = h.stack.poll_timeout().expect("refused data leaves a timer armed");
        assert!(h.advance(Duration::from_millis(50)).is_empty(), "{trigger}: the persist timer is not due");
        drop(held);
        push_out(&mut h, &link);
        let sent = h.out();
        let first = data_segments(&sent).first().map(|s| (s.repr.seq, s.payload.len()));
        assert_eq!(first.map(|(seq, _)| seq), Some(link.our_seq), "{trigger}: {sent:#?}");
        let rto_at = h.now + Duration::from_millis(200);
        assert!(persist_at < rto_at);
        let before = h.stack.stats().tcp;
        let quiet = h.advance_to(rto_at - Duration::from_millis(1));
        assert!(quiet.is_empty(), "{trigger}: nothing to send before the RTO, got {quiet:#?}");
        assert_eq!(h.stack.stats().tcp.window_probes, before.window_probes, "{trigger}");
        assert_eq!(h.stack.poll_timeout(), Some(rto_at), "{trigger}: the RTO is the next timer");
        // The RTO calls the unacknowledged data out again, as it should.
        let resent = h.advance_to(rto_at);
        let again = data_segments(&resent).first().map(|s| (s.repr.seq, s.payload.len()));
        assert_eq!(again, first, "{trigger}: {resent:#?}");
        assert_eq!(h.stack.stats().tcp.retransmit_timeouts, before.retransmit_timeouts + 1, "{trigger}");
    }
}

/// RFC 9293 §3.8.6.1: a peer that closes its window while data is in flight
/// refused that data, it did not lose it: the connection probes for as long as
/// the peer answers (no timeout), and sends the data again once it reopens.
#[test]
fn window_closed_with_data_in_flight_is_probed_not_timed_out() {
    // The scripted peer does not answer ARP: keep its entry for the whole test.
    let mut h = Harness::with(|c| c.arp.entry_ttl = Duration::from_secs(3600));
    let link = h.plain_passive_open();
    h.stack.tcp_send(link.handle, Bytes::from(pattern(0, 3000))).unwrap();
    let first = data_segments(&h.out()).len();
    assert_eq!(first, 3, "the data goes out in three segments");
    // The peer takes the first segment and closes its window.
    h.peer_window = 0;
    h.send(h.ack(link.peer_seq, link.our_seq + 1460));
    let _ = h.out();
    // Ten minutes of answered probes: long past the 15 backed-off RTOs that
    // would end a connection whose peer went silent.
    let mut probes = 0;
    for _ in 0..600 {
        for _probe in h.advance(Duration::from_secs(1)) {
            probes += 1;
            h.send(h.ack(link.peer_seq, link.our_seq + 1460));
        }
    }
    assert!(probes >= 10, "only {probes} probes in ten minutes");
    assert_eq!(h.stack.tcp_state(link.handle).unwrap(), ix_net::tcp::State::Established);
    assert_eq!(h.stack.tcp_error(link.handle).unwrap(), None);
    // The window opens: the refused bytes go out again, all of them.
    h.peer_window = 65_535;
    h.send(h.ack(link.peer_seq, link.our_seq + 1460));
    let sent: Vec<u8> = data_segments(&h.out()).iter().flat_map(|s| s.payload.clone()).collect();
    assert_eq!(sent, pattern(1460, 1540));
}

/// A window that closes on data in flight and reopens with nothing
/// acknowledged: the refused data is sent again, under a timer. Here the
/// window closes and reopens twice after a timeout with SACK, so the second
/// time it closes only retransmissions are out (SND.NXT is back at SND.UNA,
/// SND.MAX beyond it). Found by fuzz input `fuzz/regressions/tcp_session/
/// window-reopened-on-retransmissions-outlives-close-1`: the reopening took
/// SND.NXT > SND.UNA as the sign of refused data, found none, and cleared the
/// persist timer; the congestion window counted the two refused segments as
/// still in the network, so nothing was sent and no timer was left.
#[test]
fn a_window_reopened_on_retransmissions_sends_them_again_under_a_timer() {
    let mut h = silent_peer_harness();
    let link = sack_flight_after_a_timeout(&mut h);
    for round in 0..2 {
        h.peer_window = 0;
        h.send(h.ack(link.peer_seq, link.our_seq));
        assert!(data_segments(&h.out()).is_empty(), "round {round}: the window is closed");
        h.peer_window = 65_535;
        h.send(h.ack(link.peer_seq, link.our_seq));
        let again = data_segments(&h.out()).iter().map(|s| s.repr.seq).collect::<Vec<_>>();
        assert_eq!(again.first(), Some(&link.our_seq), "round {round}: the refused data goes out again");
    }
    retransmits_then_times_out(&mut h, &link);
}

/// The same when the output path refuses those retransmissions as the window
/// reopens (the pool is empty): a timer still calls them out. Before the fix,
/// a refused retransmission armed nothing (only refused new data did).
#[test]
fn retransmissions_refused_as_the_window_reopens_go_out_on_a_timer() {
    let mut h = silent_peer_harness();
    let link = sack_flight_after_a_timeout(&mut h);
    h.peer_window = 0;
    h.send(h.ack(link.peer_seq, link.our_seq));
    assert!(data_segments(&h.out()).is_empty(), "the window is closed");
    // Every frame but the one the window update arrives in, and that one too
    // once the stack has taken it in (egress runs in `out`).
    let mut held: Vec<_> = std::iter::from_fn(|| h.pool.alloc().ok()).collect();
    held.pop();
    h.peer_window = 65_535;
    h.send(h.ack(link.peer_seq, link.our_seq));
    held.extend(h.pool.alloc().ok());
    assert!(h.out().is_empty(), "no frame to send them in");
    assert!(h.stack.stats().tcp.output_stalled > 0, "the retransmission was refused");
    // A second without frames: whatever timer fires meanwhile is refused too.
    assert!(h.advance(Duration::from_secs(1)).is_empty());
    drop(held);
    retransmits_then_times_out(&mut h, &link);
}

/// The same in a fast recovery with SACK: the window closes and reopens on
/// the recovery's flight. Found by fuzz input `fuzz/regressions/tcp_session/
/// window-reopened-in-fast-recovery-outlives-close-1`: the refused data was
/// marked lost, but proportional rate reduction, which lets data out only as
/// ACKs report deliveries, allowed nothing on the ACK that reopened the window
/// (it delivered nothing), and no timer was left.
#[test]
fn a_window_reopened_in_fast_recovery_sends_the_refused_data_again() {
    let mut h = silent_peer_harness();
    let (link, _) = h.passive_open(full_options(0, 1));
    let mss = 1448;
    // More than the initial window: the recovery's rate reduction spends its
    // allowance on the fast retransmit, and more would wait for deliveries.
    h.stack.tcp_send(link.handle, Bytes::from(pattern(0, 16 * mss as usize))).unwrap();
    let flight: Vec<u32> = data_segments(&h.out()).iter().map(|s| s.repr.seq).collect();
    assert_eq!(flight.len(), 10, "the initial window");
    let end = flight[9] + mss;
    // Segment 0 is lost; the peer SACKs three segments after it: a fast retransmit.
    for last in 2..5 {
        h.send(h.sack(link.peer_seq, flight[0], &[(flight[1], flight[last])]));
    }
    let rtx = data_segments(&h.out()).iter().map(|s| s.repr.seq).collect::<Vec<_>>();
    assert_eq!(rtx, [flight[0]], "the fast retransmit, and nothing more before deliveries");
    assert_eq!(h.stack.stats().tcp.fast_retransmits, 1);
    h.peer_window = 0;
    h.send(h.sack(link.peer_seq, flight[0], &[(flight[1], flight[4])]));
    assert!(data_segments(&h.out()).is_empty(), "the window is closed");
    h.peer_window = 65_535;
    h.send(h.sack(link.peer_seq, flight[0], &[(flight[1], flight[4])]));
    let again = data_segments(&h.out()).iter().map(|s| s.repr.seq).collect::<Vec<_>>();
    assert_eq!(again.first(), Some(&flight[0]), "the refused data goes out again");
    assert!(again.iter().all(|&seq| seq < flight[1] || seq >= flight[4]), "not what the peer SACKed: {again:?}");
    assert!(again.iter().all(|&seq| seq < end), "the flight first: {again:?}");
    retransmits_then_times_out(&mut h, &link);
}

/// A SACK connection with eight segments sent and unacknowledged, past its
/// first retransmission timeout (recovery after a timeout is under way).
fn sack_flight_after_a_timeout(h: &mut Harness) -> Link {
    let (link, _) = h.passive_open(full_options(0, 1));
    h.stack.tcp_send(link.handle, Bytes::from(pattern(0, 8 * 1448))).unwrap();
    assert_eq!(data_segments(&h.out()).len(), 8, "the data goes out at once");
    // Silence until the first timeout (a tail loss probe may come before it).
    while h.stack.stats().tcp.retransmit_timeouts == 0 {
        let next = h.stack.poll_timeout().expect("a timer covers the data in flight");
        h.advance_to(next);
    }
    link
}

/// The peer is silent for an hour: the first unacknowledged segment is sent
/// again, and the connection ends timed out at `max_retransmits`.
fn retransmits_then_times_out(h: &mut Harness, link: &Link) {
    let later = h.advance(Duration::from_secs(3600));
    assert!(data_segments(&later).iter().any(|s| s.repr.seq == link.our_seq), "{later:#?}");
    assert_eq!(h.stack.tcp_state(link.handle).unwrap(), ix_net::tcp::State::Closed);
    assert_eq!(h.stack.tcp_error(link.handle).unwrap(), Some(ix_net::tcp::TcpError::TimedOut));
}

/// RFC 9293 §3.8.6.2.2 and IX's `recv_done`: chunks the application holds keep
/// the window shut; dropping them reopens it with a window update.
#[test]
fn window_reopens_when_the_application_drops_held_chunks() {
    let mut h = Harness::with(|c| c.tcp.recv_buffer_bytes = 4096);
    let link = h.plain_passive_open();
    h.data(link.peer_seq, link.our_seq, &pattern(0, 1460));
    h.data(link.peer_seq + 1460, link.our_seq, &pattern(1460, 1460));
    assert_eq!(h.out().pop().unwrap().repr.window, 4096 - 2920);
    let a = h.stack.tcp_recv(link.handle).unwrap().unwrap();
    let b = h.stack.tcp_recv(link.handle).unwrap().unwrap();
    assert!(h.out().is_empty(), "reading without dropping opens nothing");
    h.data(link.peer_seq + 2920, link.our_seq, &pattern(2920, 100));
    assert_eq!(h.out_one().repr.window, 4096 - 3020, "held chunks still count against the window");
    drop((a, b));
    let update = h.out_one();
    assert_eq!((update.repr.ack, update.repr.window), (link.peer_seq + 3020, 4096 - 100));
}

/// Data dropped because the packet pool is critically low is answered at once
/// with a zero window (the window shrinks, as Linux's `tcp_shrink_window`
/// lets it), so that the sender probes for as long as it likes instead of
/// retransmitting into an open window until it gives up. Once the pool
/// recovers, the next probe's ACK opens the window and the data is taken.
/// Found by fuzz input `fuzz/regressions/tcp_session/
/// pool-critical-drops-outlive-the-sender-1`: an application that did not read
/// for minutes held the pool critical; the data of a connection it had not yet
/// accepted was dropped silently within the window advertised before, the
/// sender's fifteen retransmissions all went unanswered, and it gave up.
#[test]
fn data_dropped_for_a_critical_pool_is_answered_with_a_zero_window() {
    let mut h = Harness::new();
    let link = h.plain_passive_open();
    let mut held = Vec::new();
    while h.pool.pressure() != ix_driver::PoolPressure::Critical {
        held.push(h.pool.alloc().expect("a frame"));
    }
    h.data(link.peer_seq, link.our_seq, &pattern(0, 1000));
    assert_eq!(h.stack.stats().tcp.rx_pool_pressure_drops, 1, "no frame to keep the data in");
    let ack = h.out_one();
    assert_eq!((ack.repr.ack, ack.repr.window), (link.peer_seq, 0), "the drop is answered with a zero window");
    // A probe while the pool is still short: the window stays shut.
    h.data(link.peer_seq, link.our_seq, &pattern(0, 1));
    let ack = h.out_one();
    assert_eq!((ack.repr.ack, ack.repr.window), (link.peer_seq, 0));
    drop(held);
    h.data(link.peer_seq, link.our_seq, &pattern(0, 1));
    let ack = h.out_one();
    assert!(ack.repr.window > 0, "the pool recovered: the probe's ACK opens the window: {ack:?}");
    // The probe found the window shut: its byte was not taken; all of it comes again.
    h.data(link.peer_seq, link.our_seq, &pattern(0, 1000));
    assert_eq!(h.out_one().repr.ack, link.peer_seq + 1000);
    assert_eq!(h.read_all(link.handle), pattern(0, 1000), "every byte arrives");
}

/// RFC 9293 §3.10.7.4: with our receive window at zero no segment carrying
/// data is acceptable, "but special allowance should be made to accept valid
/// ACKs". The peer's zero-window probes (data at RCV.NXT, which is also the
/// window's right edge) carry its acknowledgements and window updates: those
/// are taken, as Linux takes them (`tcp_sequence` lets a segment that starts
/// at the right edge through; `tcp_data_queue` drops its data), while the
/// byte itself is refused. Without this, data the peer acknowledged only on
/// its probes would be retransmitted, and a window it reopened on them would
/// stay shut until our own persist timer asked.
#[test]
fn probes_into_our_zero_window_still_acknowledge_and_update_the_window() {
    let mut h = Harness::with(|c| c.tcp.recv_buffer_bytes = 2048);
    let link = h.plain_passive_open();
    h.data(link.peer_seq, link.our_seq, &pattern(0, 2048));
    assert_eq!(h.out().pop().map(|s| s.repr.window), Some(0), "our window is shut");
    h.stack.tcp_send(link.handle, Bytes::from(pattern(0, 100))).unwrap();
    assert_eq!(data_segments(&h.out()).len(), 1);
    let probe_seq = link.peer_seq + 2048;

    // The peer's probe acknowledges our 100 bytes and shuts its own window.
    h.peer_window = 0;
    h.data(probe_seq, link.our_seq + 100, &pattern(2048, 1));
    let ack = h.out_one();
    assert_eq!((ack.repr.ack, ack.repr.window), (probe_seq, 0), "the probe's byte is refused");
    h.stack.tcp_send(link.handle, Bytes::from(pattern(100, 200))).unwrap();
    assert!(h.out().is_empty(), "the probe shut the peer's window");

    // The next probe reopens it: our data goes out at once, after the 100 acknowledged bytes.
    h.peer_window = 65_535;
    h.data(probe_seq, link.our_seq + 100, &pattern(2048, 1));
    let segs = h.out();
    let sent: Vec<(u32, usize)> = data_segments(&segs).iter().map(|s| (s.repr.seq, s.payload.len())).collect();
    assert_eq!(sent, [(link.our_seq + 100, 200)], "{segs:#?}");
    h.send(h.ack(probe_seq, link.our_seq + 300));
    let later = h.advance(Duration::from_secs(10));
    assert!(data_segments(&later).is_empty(), "everything sent was acknowledged: {later:#?}");
    assert_eq!(h.stack.stats().tcp.retransmit_timeouts, 0);
    assert_eq!(h.read_all(link.handle), pattern(0, 2048), "no probe byte was taken");
}

/// Sends `n` full in-order segments from `from`, each followed by an egress;
/// returns the next sequence number and the ACKs that went out.
fn send_segments(h: &mut Harness, link: &Link, from: u32, n: u32) -> (u32, Vec<Seg>) {
    let mut seq = from;
    let mut acks = Vec::new();
    for _ in 0..n {
        h.data(seq, link.our_seq, &pattern(0, 1460));
        seq += 1460;
        acks.extend(h.out());
    }
    (seq, acks)
}

/// RFC 5681 §4.2, RFC 9293 §3.8.6.3: past the initial quick ACKs, an ACK goes
/// out for every second segment, else after the 40 ms delayed-ACK timer.
#[test]
fn delayed_ack_every_second_segment_or_after_40_ms() {
    let mut h = Harness::new();
    let link = h.plain_passive_open();
    // The first 16 segments are acknowledged one by one (quick ACKs, as Linux).
    let (seq, acks) = send_segments(&mut h, &link, link.peer_seq, 16);
    assert_eq!(acks.len(), 16);
    let (seq, acks) = send_segments(&mut h, &link, seq, 1);
    assert!(acks.is_empty(), "one segment waits");
    let (seq, acks) = send_segments(&mut h, &link, seq, 1);
    assert_eq!(acks.len(), 1);
    assert_eq!(acks[0].repr.ack, seq, "the second segment is acknowledged at once");
    let (seq, acks) = send_segments(&mut h, &link, seq, 1);
    assert!(acks.is_empty());
    let sent_at = h.now;
    let acks = h.advance(Duration::from_millis(100));
    assert_eq!(acks.len(), 1);
    assert_eq!((acks[0].repr.ack, acks[0].at - sent_at), (seq, Duration::from_millis(40)));
}

/// RFC 5681 §4.2: out-of-order data is acknowledged at once, even when ACKs
/// are being delayed.
#[test]
fn out_of_order_data_is_acknowledged_at_once() {
    let mut h = Harness::new();
    let link = h.plain_passive_open();
    let (seq, _) = send_segments(&mut h, &link, link.peer_seq, 16);
    h.data(seq + 1460, link.our_seq, &pattern(0, 1460));
    assert_eq!(h.out_one().repr.ack, seq);
}

/// RFC 9293 §3.4: sequence numbers wrap modulo 2^32; data from a peer whose ISN
/// is just below 2^32 arrives whole, in and out of order across the wrap.
#[test]
fn peer_sequence_numbers_wrap_past_2_pow_32() {
    let mut h = Harness::new();
    h.peer_isn = u32::MAX - 2000;
    let link = h.plain_passive_open();
    let seg = |i: u32| link.peer_seq.wrapping_add(i * 1000);
    for i in 0..5 {
        h.data(seg(i), link.our_seq, &pattern(i as usize * 1000, 1000));
    }
    // Across the wrap, out of order: 6 before 5.
    h.data(seg(6), link.our_seq, &pattern(6000, 1000));
    h.data(seg(5), link.our_seq, &pattern(5000, 1000));
    let last = h.out().pop().unwrap();
    assert_eq!(last.repr.ack, seg(7));
    assert_eq!(h.read_all(link.handle), pattern(0, 7000));
}

/// RFC 9293 §3.4: our sequence numbers wrap too: with our ISN just below 2^32
/// (a start time chosen so the clock-driven ISN lands there) 100 kB go out
/// contiguously across the wrap.
#[test]
fn our_sequence_numbers_wrap_past_2_pow_32() {
    // The ISN at time zero for this 4-tuple, then a start time that moves it
    // (4 µs per step, RFC 6528) to 20 kB below the wrap.
    let isn_at_zero = Harness::new().passive_open(mss_only(1460)).1.repr.seq;
    let steps = (u32::MAX - 20_000).wrapping_sub(isn_at_zero);
    let mut h = Harness::starting_at(Instant::from_micros(u64::from(steps) * 4), |_| {});
    let (link, syn_ack) = h.passive_open(full_options(7, 1));
    assert_eq!(syn_ack.repr.seq, u32::MAX - 20_000);
    let total = 100_000;
    h.stack.tcp_send(link.handle, Bytes::from(pattern(0, total))).unwrap();
    let mut received = Vec::new();
    while received.len() < total {
        let segs = h.advance(Duration::from_millis(1));
        for s in data_segments(&segs) {
            assert_eq!(s.repr.seq, link.our_seq.wrapping_add(received.len() as u32), "contiguous");
            received.extend_from_slice(&s.payload);
            h.send(h.ack(link.peer_seq, s.repr.seq.wrapping_add(s.payload.len() as u32)));
        }
    }
    assert_eq!(received, pattern(0, total));
    assert_eq!(h.stack.stats().tcp.retransmitted_segments, 0);
}
