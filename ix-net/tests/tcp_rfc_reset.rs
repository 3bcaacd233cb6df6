//! Resets: validating received RSTs (RFC 5961 §3), refusals in SYN-SENT, RSTs
//! for segments that belong to nothing (RFC 9293 §3.10.7.1), and our aborts.

mod segment_support;

use ix_net::TcpError;
use ix_net::tcp::State;
use ix_net::wire::TcpFlags;
use segment_support::{Harness, LOCAL_PORT, PEER_ISN, mss_only, pattern};

/// RFC 5961 §3.2: a RST inside the window but not at RCV.NXT gets a challenge
/// ACK and leaves the connection open.
#[test]
fn in_window_inexact_rst_gets_a_challenge_ack() {
    let mut h = Harness::new();
    let link = h.plain_passive_open();
    h.send(h.seg(link.peer_seq + 1000, 0, TcpFlags::RST));
    let challenge = h.out_one();
    assert_eq!(
        (challenge.repr.flags, challenge.repr.seq, challenge.repr.ack),
        (TcpFlags::ACK, link.our_seq, link.peer_seq)
    );
    assert_eq!(h.stack.tcp_state(link.handle).unwrap(), State::Established);
    assert_eq!(h.stack.stats().tcp.challenge_acks, 1);
}

/// RFC 5961 §3.2, RFC 9293 §3.10.7.4: a RST exactly at RCV.NXT closes the
/// connection with "connection reset".
#[test]
fn exact_rst_resets_the_connection() {
    let mut h = Harness::new();
    let link = h.plain_passive_open();
    h.send(h.seg(link.peer_seq, 0, TcpFlags::RST));
    assert!(h.out().is_empty(), "a RST is never answered");
    assert_eq!(h.stack.tcp_state(link.handle).unwrap(), State::Closed);
    assert_eq!(h.stack.tcp_recv(link.handle).err(), Some(TcpError::ConnectionReset.into()));
}

/// RFC 9293 §3.10.7.3: a RST acknowledging our SYN refuses the connection.
#[test]
fn rst_in_syn_sent_with_acceptable_ack_refuses_the_connection() {
    let mut h = Harness::new();
    let (handle, syn) = h.connect();
    h.send(h.seg(0, syn.repr.seq.wrapping_add(1), TcpFlags::RST | TcpFlags::ACK));
    assert_eq!(h.stack.tcp_state(handle).unwrap(), State::Closed);
    assert_eq!(h.stack.tcp_error(handle).unwrap(), Some(TcpError::ConnectionRefused));
}

/// RFC 9293 §3.10.7.3: a RST whose ACK does not acknowledge our SYN is ignored.
#[test]
fn rst_in_syn_sent_with_unacceptable_ack_is_ignored() {
    let mut h = Harness::new();
    let (handle, syn) = h.connect();
    h.send(h.seg(0, syn.repr.seq.wrapping_add(100), TcpFlags::RST | TcpFlags::ACK));
    assert_eq!(h.stack.tcp_state(handle).unwrap(), State::SynSent);
    assert!(h.out().is_empty());
}

/// RFC 9293 §3.10.7.1: a segment with an ACK to a closed port gets
/// `<SEQ=SEG.ACK><CTL=RST>`.
#[test]
fn ack_to_a_closed_port_gets_rst_from_its_ack_number() {
    let mut h = Harness::new();
    h.send(h.ack(5555, 7777));
    let rst = h.out_one();
    assert_eq!((rst.repr.flags, rst.repr.seq), (TcpFlags::RST, 7777));
}

/// RFC 9293 §3.10.7.1: a segment without an ACK to a closed port gets
/// `<SEQ=0><ACK=SEG.SEQ+SEG.LEN><CTL=RST,ACK>`.
#[test]
fn syn_to_a_closed_port_gets_rst_ack_covering_the_segment() {
    let mut h = Harness::new();
    h.send_with(h.syn(PEER_ISN, mss_only(1460)), &[1, 2, 3]);
    let rst = h.out_one();
    assert_eq!((rst.repr.flags, rst.repr.seq, rst.repr.ack), (TcpFlags::RST | TcpFlags::ACK, 0, PEER_ISN + 4));
    assert_eq!(rst.repr.dst_port, segment_support::PEER_PORT);
    assert_eq!(rst.repr.src_port, LOCAL_PORT);
}

/// RFC 5961 §4.2: a SYN in a synchronized state gets a challenge ACK and
/// leaves the connection as it was.
#[test]
fn syn_in_established_gets_a_challenge_ack() {
    let mut h = Harness::new();
    let link = h.plain_passive_open();
    h.send(h.syn(link.peer_seq + 10, mss_only(1460)));
    let challenge = h.out_one();
    assert_eq!((challenge.repr.flags, challenge.repr.ack), (TcpFlags::ACK, link.peer_seq));
    assert_eq!(h.stack.tcp_state(link.handle).unwrap(), State::Established);
}

/// RFC 5961 §5.2: a segment whose ACK lies further behind SND.UNA than the
/// largest window the peer advertised (MAX.SND.WND) is discarded, data and
/// all, and answered with an ACK: a blind attacker who guessed a sequence
/// number inside the window must guess the acknowledgment number as well
/// (without the check, half of all ACK values pass as "old"). An ACK less
/// far behind is a duplicate as before and its data is taken.
#[test]
fn data_whose_ack_is_older_than_the_peers_window_is_discarded_with_a_challenge_ack() {
    let mut h = Harness::new();
    let link = h.plain_passive_open();
    let window = u32::from(h.peer_window);
    h.data(link.peer_seq, link.our_seq.wrapping_sub(window + 1), &pattern(0, 100));
    let challenge = h.out_one();
    assert_eq!(
        (challenge.repr.flags, challenge.repr.seq, challenge.repr.ack),
        (TcpFlags::ACK, link.our_seq, link.peer_seq)
    );
    assert_eq!(h.stack.stats().tcp.too_old_acks, 1);
    assert!(h.stack.tcp_recv(link.handle).unwrap().is_none(), "the injected bytes were not taken");

    // At the limit: an old ACK, its data taken.
    h.data(link.peer_seq, link.our_seq.wrapping_sub(window), &pattern(0, 100));
    assert_eq!(h.out_one().repr.ack, link.peer_seq + 100);
    assert_eq!(h.read_all(link.handle), pattern(0, 100));
    assert_eq!(h.stack.stats().tcp.too_old_acks, 1);
    assert_eq!(h.stack.tcp_state(link.handle).unwrap(), State::Established);
}

/// RFC 9293 §3.10.5: ABORT sends a RST and closes at once.
#[test]
fn abort_sends_rst() {
    let mut h = Harness::new();
    let link = h.plain_passive_open();
    h.stack.tcp_abort(link.handle).unwrap();
    let rst = h.out_one();
    assert!(rst.has(TcpFlags::RST));
    assert_eq!(rst.repr.seq, link.our_seq);
    assert_eq!(h.stack.tcp_state(link.handle).unwrap(), State::Closed);
}

/// RFC 2525 §2.17, RFC 9293 §3.10.4: closing with received data unread sends
/// a RST instead of a FIN.
#[test]
fn close_with_unread_data_sends_rst() {
    let mut h = Harness::new();
    let link = h.plain_passive_open();
    h.data(link.peer_seq, link.our_seq, &pattern(0, 100));
    h.out();
    h.stack.close(link.handle);
    let rst = h.out_one();
    assert!(rst.has(TcpFlags::RST) && !rst.has(TcpFlags::FIN), "{rst:?}");
    assert_eq!((rst.repr.seq, rst.repr.ack), (link.our_seq, link.peer_seq + 100));
}
