//! SYN cookies once the listen backlog is full: cookie SYN-ACKs, connections
//! rebuilt from a valid final ACK, forged ACKs refused, options in TSval bits.

mod segment_support;

use bytes::Bytes;
use ix_net::SocketHandle;
use ix_net::tcp::State;
use ix_net::wire::{TcpFlags, TcpOptions, TcpRepr};
use segment_support::{Harness, PEER_ISN, Seg, full_options, mss_only, pattern};

/// A listener with backlog 1 whose one half-open slot is taken by a SYN from
/// port 39999, so that further SYNs are answered with cookies.
fn full_listener(h: &mut Harness) -> SocketHandle {
    let listener = h.listen(1);
    h.send(TcpRepr { src_port: 39_999, ..h.syn(PEER_ISN, mss_only(1460)) });
    assert!(h.out_one().has(TcpFlags::SYN | TcpFlags::ACK));
    assert_eq!(h.stack.stats().tcp.syncookies_sent, 0, "the first SYN fits the backlog");
    listener
}

/// Sends a SYN from `port` with `options`; returns the cookie SYN-ACK.
fn cookie_syn_ack(h: &mut Harness, port: u16, options: TcpOptions) -> Seg {
    h.send(TcpRepr { src_port: port, ..h.syn(PEER_ISN, options) });
    let syn_ack = h.out_one();
    assert!(syn_ack.has(TcpFlags::SYN | TcpFlags::ACK));
    assert_eq!((syn_ack.repr.dst_port, syn_ack.repr.ack), (port, PEER_ISN + 1));
    syn_ack
}

/// The peer's final ACK from `port` for `syn_ack`.
fn final_ack(h: &Harness, port: u16, syn_ack: &Seg) -> TcpRepr {
    TcpRepr { src_port: port, ..h.ack(PEER_ISN + 1, syn_ack.repr.seq.wrapping_add(1)) }
}

/// RFC 4987 §3.6: with the half-open queue full, SYNs are answered statelessly
/// with cookie SYN-ACKs.
#[test]
fn syns_beyond_the_backlog_get_cookie_syn_acks() {
    let mut h = Harness::new();
    full_listener(&mut h);
    let a = cookie_syn_ack(&mut h, 40_001, mss_only(1460));
    let b = cookie_syn_ack(&mut h, 40_002, mss_only(1460));
    assert_ne!(a.repr.seq, b.repr.seq, "each cookie depends on its 4-tuple");
    assert_eq!(h.stack.stats().tcp.syncookies_sent, 2);
    assert_eq!(h.stack.tcp_connection_count(), 1, "cookies hold no state");
}

/// RFC 4987 §3.6: a final ACK carrying a valid cookie creates an established
/// connection that `accept` returns.
#[test]
fn valid_cookie_ack_creates_an_accepted_connection() {
    let mut h = Harness::new();
    let listener = full_listener(&mut h);
    let syn_ack = cookie_syn_ack(&mut h, 40_001, mss_only(1460));
    h.send(final_ack(&h, 40_001, &syn_ack));
    assert_eq!(h.stack.stats().tcp.syncookies_recv, 1);
    let conn = h.stack.tcp_accept(listener).unwrap().expect("the cookie connection");
    assert_eq!(h.stack.tcp_state(conn).unwrap(), State::Established);
    assert_eq!(h.stack.tcp_info(conn).unwrap().tuple.remote.port(), 40_001);
    h.stack.tcp_send(conn, Bytes::from(pattern(0, 100))).unwrap();
    let data = h.out_one();
    assert_eq!((data.repr.seq, data.payload.len()), (syn_ack.repr.seq.wrapping_add(1), 100));
}

/// RFC 4987 §3.6, RFC 9293 §3.10.7.1: an ACK with a forged cookie creates
/// nothing and is answered with a RST.
#[test]
fn forged_cookie_ack_gets_rst() {
    let mut h = Harness::new();
    let listener = full_listener(&mut h);
    let forged = TcpRepr { src_port: 40_003, ..h.ack(PEER_ISN + 1, 0x1234_5678) };
    h.send(forged);
    let rst = h.out_one();
    assert_eq!((rst.repr.flags, rst.repr.seq, rst.repr.dst_port), (TcpFlags::RST, 0x1234_5678, 40_003));
    assert_eq!(h.stack.stats().tcp.syncookies_failed, 1);
    assert_eq!(h.stack.tcp_accept(listener).unwrap(), None);
}

/// RFC 7323 and RFC 2018 options survive a cookie: window scale and
/// SACK-permitted ride in the low bits of our TSval and come back in TSecr.
#[test]
fn cookie_keeps_window_scale_and_sack_in_the_timestamp() {
    let mut h = Harness::new();
    let listener = full_listener(&mut h);
    let syn_ack = cookie_syn_ack(&mut h, 40_001, full_options(7, 500));
    let opts = syn_ack.repr.options;
    assert_eq!((opts.window_scale, opts.sack_permitted), (Some(3), true));
    assert_eq!(opts.timestamps.map(|(_, ecr)| ecr), Some(500));
    // A window field of 1 is 128 bytes with the peer's scale of 7.
    h.peer_ts = Some(501);
    h.peer_window = 1;
    h.send(final_ack(&h, 40_001, &syn_ack));
    let conn = h.stack.tcp_accept(listener).unwrap().expect("the cookie connection");
    assert_eq!(h.stack.tcp_info(conn).unwrap().options, (true, true, true));
    h.stack.tcp_send(conn, Bytes::from(pattern(0, 1000))).unwrap();
    assert_eq!(h.out_one().payload.len(), 128, "the peer's window is scaled");
    // Out-of-order data is reported with SACK, and our window is scaled by 3.
    let peer_seq = PEER_ISN + 1;
    let ooo = TcpRepr { src_port: 40_001, ..h.seg(peer_seq + 100, syn_ack.repr.seq.wrapping_add(1), TcpFlags::ACK) };
    h.send_with(ooo, &pattern(100, 100));
    let ack = h.out_one();
    assert_eq!(ack.sack_blocks(), [(peer_seq + 100, peer_seq + 200)]);
    assert_eq!(u32::from(ack.repr.window) << 3, 256 * 1024);
}

/// A SYN answered with a cookie and retransmitted once the backlog had room
/// gets a half-open connection with another ISN; the peer may then answer
/// the cookie SYN-ACK. That ACK is valid: the connection is rebuilt from the
/// cookie in place of the half-open one, not reset as a bad ACK (which lost
/// a thousand connections of a burst of ten thousand, #20).
#[test]
fn a_cookie_ack_for_a_tuple_that_became_half_open_completes_the_connection() {
    let mut h = Harness::new();
    let listener = full_listener(&mut h);
    let port = segment_support::PEER_PORT;
    let cookie = cookie_syn_ack(&mut h, port, mss_only(1460));
    // The half-open slot frees (its peer resets), and the peer's SYN comes again.
    h.send(TcpRepr { src_port: 39_999, ..h.seg(PEER_ISN + 1, 0, TcpFlags::RST) });
    h.send(TcpRepr { src_port: port, ..h.syn(PEER_ISN, mss_only(1460)) });
    let stateful = h.out_one();
    assert!(stateful.has(TcpFlags::SYN | TcpFlags::ACK));
    assert_ne!(stateful.repr.seq, cookie.repr.seq, "a half-open connection with its own ISN");
    // The peer answers the cookie SYN-ACK, which arrived first.
    h.data(PEER_ISN + 1, cookie.repr.seq.wrapping_add(1), b"hello");
    let sent = h.out();
    assert!(sent.iter().all(|s| !s.has(TcpFlags::RST)), "the cookie's ACK was reset: {sent:?}");
    let accepted = h.stack.tcp_accept(listener).unwrap().expect("the connection rebuilt from the cookie");
    assert_eq!(h.stack.tcp_state(accepted).unwrap(), State::Established);
    assert_eq!(h.read_all(accepted), b"hello");
    assert_eq!(h.stack.tcp_connection_count(), 1, "the half-open one was replaced");
}
