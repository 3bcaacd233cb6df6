//! Learning an on-link neighbour's MAC from the IPv4 frames it sends
//! (`StackConfig::learn_neighbors_from_ipv4`), as a dataplane that shares its
//! address with the kernel needs: ARP replies go to the kernel there.

mod segment_support;

use ix_net::Instant;
use segment_support::{Harness, PEER_ISN, mss_only};

#[test]
fn a_syn_from_an_unknown_on_link_peer_is_answered_at_once_when_learning() {
    let mut h = Harness::unresolved(Instant::ZERO, |cfg| cfg.learn_neighbors_from_ipv4 = true);
    h.listen(16);
    h.send(h.syn(PEER_ISN, mss_only(1460)));
    let syn_ack = h.out_one();
    assert_eq!(syn_ack.repr.ack, PEER_ISN + 1);
    assert_eq!(h.stack.stats().link.arp_requests_out, 0, "no ARP request was needed");
}

#[test]
fn without_learning_the_syn_ack_waits_for_arp() {
    let mut h = Harness::unresolved(Instant::ZERO, |_| {});
    h.listen(16);
    h.send(h.syn(PEER_ISN, mss_only(1460)));
    assert!(h.out().is_empty(), "the SYN-ACK waits for the peer's MAC");
    assert_eq!(h.stack.stats().link.arp_requests_out, 1);
}
