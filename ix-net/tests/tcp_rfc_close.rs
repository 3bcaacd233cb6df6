//! Closing connections (RFC 9293 §3.6): active, passive, simultaneous and half
//! close, a FIN ahead of data, and TIME-WAIT.

mod segment_support;

use std::time::Duration;

use bytes::Bytes;
use ix_net::tcp::State;
use ix_net::wire::TcpFlags;
use segment_support::{Harness, pattern};

/// RFC 9293 §3.6 figure 12: FIN-WAIT-1, FIN-WAIT-2, TIME-WAIT, and closed
/// after 2·MSL.
#[test]
fn active_close_goes_through_fin_wait_and_time_wait() {
    let mut h = Harness::new();
    let link = h.plain_passive_open();
    h.stack.tcp_shutdown(link.handle).unwrap();
    let fin = h.out_one();
    assert!(fin.has(TcpFlags::FIN | TcpFlags::ACK));
    assert_eq!(fin.repr.seq, link.our_seq);
    assert_eq!(h.stack.tcp_state(link.handle).unwrap(), State::FinWait1);
    h.send(h.ack(link.peer_seq, link.our_seq + 1));
    assert_eq!(h.stack.tcp_state(link.handle).unwrap(), State::FinWait2);
    assert!(h.out().is_empty(), "nothing to send in FIN-WAIT-2");
    h.send(h.seg(link.peer_seq, link.our_seq + 1, TcpFlags::FIN | TcpFlags::ACK));
    let ack = h.out_one();
    assert_eq!((ack.repr.flags, ack.repr.seq, ack.repr.ack), (TcpFlags::ACK, link.our_seq + 1, link.peer_seq + 1));
    assert_eq!(h.stack.tcp_state(link.handle).unwrap(), State::TimeWait);
    h.advance(Duration::from_secs(59));
    assert_eq!(h.stack.tcp_state(link.handle).unwrap(), State::TimeWait);
    h.advance(Duration::from_secs(2));
    assert_eq!(h.stack.tcp_state(link.handle).unwrap(), State::Closed);
    assert_eq!(h.stack.tcp_error(link.handle).unwrap(), None);
}

/// RFC 9293 §3.6: the peer's FIN takes us to CLOSE-WAIT, our FIN to LAST-ACK,
/// and its ACK closes the connection.
#[test]
fn passive_close_goes_through_close_wait_and_last_ack() {
    let mut h = Harness::new();
    let link = h.plain_passive_open();
    h.send(h.seg(link.peer_seq, link.our_seq, TcpFlags::FIN | TcpFlags::ACK));
    assert_eq!(h.out_one().repr.ack, link.peer_seq + 1);
    assert_eq!(h.stack.tcp_state(link.handle).unwrap(), State::CloseWait);
    assert!(h.stack.tcp_at_eof(link.handle).unwrap());
    h.stack.tcp_shutdown(link.handle).unwrap();
    assert!(h.out_one().has(TcpFlags::FIN));
    assert_eq!(h.stack.tcp_state(link.handle).unwrap(), State::LastAck);
    h.send(h.ack(link.peer_seq + 1, link.our_seq + 1));
    assert_eq!(h.stack.tcp_state(link.handle).unwrap(), State::Closed);
    assert_eq!(h.stack.tcp_error(link.handle).unwrap(), None);
}

/// RFC 9293 §3.6 figure 13: FINs that cross lead through CLOSING to TIME-WAIT.
#[test]
fn simultaneous_close_goes_through_closing() {
    let mut h = Harness::new();
    let link = h.plain_passive_open();
    h.stack.tcp_shutdown(link.handle).unwrap();
    h.out_one();
    h.send(h.seg(link.peer_seq, link.our_seq, TcpFlags::FIN | TcpFlags::ACK));
    assert_eq!(h.stack.tcp_state(link.handle).unwrap(), State::Closing);
    let ack = h.out_one();
    assert_eq!((ack.repr.flags, ack.repr.seq, ack.repr.ack), (TcpFlags::ACK, link.our_seq + 1, link.peer_seq + 1));
    h.send(h.ack(link.peer_seq + 1, link.our_seq + 1));
    assert_eq!(h.stack.tcp_state(link.handle).unwrap(), State::TimeWait);
    assert!(h.out().is_empty());
}

/// RFC 9293 §3.6: after the peer's FIN we may still send (half close).
#[test]
fn half_close_still_sends_after_the_peers_fin() {
    let mut h = Harness::new();
    let link = h.plain_passive_open();
    h.send(h.seg(link.peer_seq, link.our_seq, TcpFlags::FIN | TcpFlags::ACK));
    h.out();
    assert_eq!(h.stack.tcp_send(link.handle, Bytes::from(pattern(0, 500))).unwrap(), 500);
    let data = h.out_one();
    assert_eq!(
        (data.repr.seq, data.repr.ack, data.payload.clone()),
        (link.our_seq, link.peer_seq + 1, pattern(0, 500))
    );
}

/// RFC 9293 §3.10.7.4 (eighth step): a FIN is processed only once the data
/// before it has arrived.
#[test]
fn fin_ahead_of_missing_data_waits_for_it() {
    let mut h = Harness::new();
    let link = h.plain_passive_open();
    let fin_seg = h.seg(link.peer_seq + 100, link.our_seq, TcpFlags::FIN | TcpFlags::ACK);
    h.send_with(fin_seg, &pattern(100, 100));
    assert_eq!(h.out_one().repr.ack, link.peer_seq, "nothing in order yet");
    assert_eq!(h.stack.tcp_state(link.handle).unwrap(), State::Established);
    assert!(!h.stack.tcp_at_eof(link.handle).unwrap());
    h.data(link.peer_seq, link.our_seq, &pattern(0, 100));
    assert_eq!(h.out_one().repr.ack, link.peer_seq + 201, "data and FIN acknowledged");
    assert_eq!(h.stack.tcp_state(link.handle).unwrap(), State::CloseWait);
    assert_eq!(h.read_all(link.handle), pattern(0, 200));
    assert!(h.stack.tcp_at_eof(link.handle).unwrap());
}

/// RFC 9293 §3.10.7.4: in TIME-WAIT a retransmitted FIN is acknowledged again
/// and the 2·MSL timer restarts.
#[test]
fn time_wait_acknowledges_a_retransmitted_fin() {
    let mut h = Harness::new();
    let link = h.plain_passive_open();
    h.stack.tcp_shutdown(link.handle).unwrap();
    h.out();
    h.send(h.seg(link.peer_seq, link.our_seq + 1, TcpFlags::FIN | TcpFlags::ACK));
    let ack = h.out_one();
    assert_eq!(
        (ack.repr.flags, ack.repr.seq),
        (TcpFlags::ACK, link.our_seq + 1),
        "a bare ACK: our FIN was acknowledged"
    );
    assert_eq!(h.stack.tcp_state(link.handle).unwrap(), State::TimeWait);
    h.advance(Duration::from_secs(30));
    h.send(h.seg(link.peer_seq, link.our_seq + 1, TcpFlags::FIN | TcpFlags::ACK));
    let ack = h.out_one();
    assert_eq!((ack.repr.flags, ack.repr.seq, ack.repr.ack), (TcpFlags::ACK, link.our_seq + 1, link.peer_seq + 1));
    h.advance(Duration::from_secs(45));
    assert_eq!(h.stack.tcp_state(link.handle).unwrap(), State::TimeWait, "2·MSL restarted");
    h.advance(Duration::from_secs(20));
    assert_eq!(h.stack.tcp_state(link.handle).unwrap(), State::Closed);
}

/// RFC 9293 §3.10.4: CLOSE in SYN-SENT deletes the connection: nothing more is
/// sent (no FIN, no SYN retransmission), it no longer counts, and the late
/// SYN-ACK finds no connection and is answered with a RST.
#[test]
fn close_in_syn_sent_deletes_the_connection() {
    let mut h = Harness::new();
    let (handle, syn) = h.connect();
    h.stack.close(handle);
    assert_eq!(h.stack.tcp_connection_count(), 0);
    assert!(h.out().is_empty(), "a closed SYN-SENT connection sent something");
    assert!(h.advance(Duration::from_secs(10)).is_empty(), "the SYN was retransmitted after the close");
    h.send(h.seg(7000, syn.repr.seq.wrapping_add(1), TcpFlags::SYN | TcpFlags::ACK));
    let rst = h.out_one();
    assert!(rst.has(TcpFlags::RST), "{rst:?}");
    assert_eq!(rst.repr.seq, syn.repr.seq.wrapping_add(1));
}

/// RFC 1122 §4.2.2.13: data that arrives after the application closed its
/// handle can never be read, so the stack resets the connection (as Linux
/// does: TCPAbortOnData) and frees the data at once. Holding it until TIME-WAIT
/// ended pinned one pool frame per such connection for a minute: thousands of
/// keep-alive connections closed by the server while their clients sent one
/// more request emptied the pool, and the core stopped receiving (#20).
#[test]
fn data_after_close_resets_the_connection_and_frees_its_frames() {
    for peer_acks_our_fin_first in [false, true] {
        let mut h = Harness::new();
        let link = h.plain_passive_open();
        let free = h.pool.available();
        h.stack.close(link.handle);
        assert!(h.out_one().has(TcpFlags::FIN));
        let ack = if peer_acks_our_fin_first {
            h.send(h.ack(link.peer_seq, link.our_seq + 1));
            assert_eq!(h.stack.tcp_state(link.handle).unwrap(), State::FinWait2);
            link.our_seq + 1
        } else {
            link.our_seq
        };
        h.data(link.peer_seq, ack, &pattern(0, 300));
        let rst = h.out_one();
        assert!(rst.has(TcpFlags::RST), "data after close is answered with a RST, got {rst:?}");
        assert_eq!(h.stack.tcp_connection_count(), 0, "the connection is gone");
        assert_eq!(h.pool.available(), free, "no frame is left pinned");
        assert_eq!(h.stack.stats().tcp.abort_on_data, 1);
    }
}

/// A stream shut down for writing but still held by the application keeps
/// receiving (half close): only a released handle makes data unreadable.
#[test]
fn data_after_shutdown_is_still_received() {
    let mut h = Harness::new();
    let link = h.plain_passive_open();
    h.stack.tcp_shutdown(link.handle).unwrap();
    h.out_one();
    h.data(link.peer_seq, link.our_seq + 1, &pattern(0, 300));
    assert_eq!(h.read_all(link.handle), pattern(0, 300));
    assert_eq!(h.stack.stats().tcp.abort_on_data, 0);
}

/// A connection the application closed waits in FIN-WAIT-2 for the peer's FIN
/// only so long: RFC 9293 sets no limit, and a peer that acknowledged our FIN
/// and then went silent (or never meant to close) held the connection for
/// ever, with no timer left to end it (found by the `tcp_session` fuzz target,
/// fuzz/regressions/tcp_session/orphan-outlives-fin-wait-2-1). As Linux does
/// (`tcp_fin_timeout`, 60 s), the orphaned connection ends silently after the
/// FIN-WAIT-2 timeout, counted, and a late segment of the peer's finds no
/// connection (`no_socket`, the path that answers with a RST). FIN-WAIT-2 is
/// reached both ways: closed before the peer acknowledged the FIN, and after
/// (half closed, held for an hour, then closed).
#[test]
fn an_orphaned_connection_in_fin_wait_2_times_out() {
    for close_before_the_ack in [true, false] {
        // The scripted peer does not answer ARP: its entry must outlive the
        // hour, or the RST at the end would wait for an answer.
        let mut h = Harness::with(|c| c.arp.entry_ttl = Duration::from_secs(24 * 3600));
        let link = h.plain_passive_open();
        if close_before_the_ack {
            h.stack.close(link.handle);
        } else {
            h.stack.tcp_shutdown(link.handle).unwrap();
        }
        assert!(h.out_one().has(TcpFlags::FIN));
        h.send(h.ack(link.peer_seq, link.our_seq + 1));
        assert_eq!(h.stack.tcp_state(link.handle).unwrap(), State::FinWait2);
        if !close_before_the_ack {
            // Half closed and still held: the peer may send for as long as it likes.
            assert!(h.advance(Duration::from_secs(3600)).is_empty());
            assert_eq!(h.stack.tcp_state(link.handle).unwrap(), State::FinWait2);
            h.stack.close(link.handle);
        }
        assert!(h.advance(Duration::from_secs(59)).is_empty(), "FIN-WAIT-2 sends nothing");
        assert_eq!(h.stack.tcp_connection_count(), 1, "closed {close_before_the_ack}: gone too early");
        assert!(h.advance(Duration::from_secs(2)).is_empty(), "the timeout ends the connection silently");
        assert_eq!(h.stack.tcp_connection_count(), 0, "closed {close_before_the_ack}: FIN-WAIT-2 outlives its timeout");
        assert_eq!(h.stack.stats().tcp.fin_wait_2_timeouts, 1);
        let no_socket = h.stack.stats().tcp.no_socket;
        h.send(h.ack(link.peer_seq, link.our_seq + 1));
        assert_eq!(h.stack.stats().tcp.no_socket, no_socket + 1, "a late segment finds no connection");
        let reply = h.out_one();
        assert!(
            reply.has(TcpFlags::RST) && reply.repr.seq == link.our_seq + 1,
            "and is answered with a RST: {reply:?}"
        );
    }
}
