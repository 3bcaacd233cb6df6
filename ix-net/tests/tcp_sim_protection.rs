//! Resource protection under hostile peers, simulated: tiny segments cannot pin
//! one frame each, and a connection cannot exhaust its core's packet pool.

mod support;

use std::net::SocketAddrV4;

use bytes::Bytes;
use ix_driver::mem::FaultConfig;
use support::{Sim, addr};

#[test]
fn tiny_segments_are_coalesced_instead_of_pinning_a_frame_each() {
    const SEGMENTS: usize = 10_000;
    let mut sim = Sim::new(2, FaultConfig::NONE, 9, |_| {});
    let listener = sim.nodes[0].stack.tcp_listen(7, 4).unwrap();
    let now = sim.now();
    let client = sim.nodes[1].stack.tcp_connect(SocketAddrV4::new(addr(0), 7), now, &|_| true).unwrap();
    let mut server = None;
    let mut written = 0;
    let mut steps = 0;
    // One byte per step: each goes out as its own segment (Nagle is off).
    while written < SEGMENTS {
        sim.step();
        steps += 1;
        assert!(steps < 50 * SEGMENTS, "the transfer stalled after {written} bytes");
        if server.is_none() {
            server = sim.nodes[0].stack.tcp_accept(listener).unwrap();
        }
        if server.is_some()
            && sim.nodes[1].stack.tcp_send(client, Bytes::from(vec![(written % 251) as u8])).unwrap() == 1
        {
            written += 1;
        }
    }
    for _ in 0..1000 {
        sim.step();
    }
    let server = server.expect("accepted");
    let stats = sim.nodes[0].stack.stats().tcp;
    let pool = sim.nodes[0].stack.pool();
    let pinned = pool.capacity() - pool.available();
    assert!(stats.rx_coalesced > (SEGMENTS as u64) * 9 / 10, "only {} segments coalesced", stats.rx_coalesced);
    assert!(pinned < 64, "{pinned} frames pinned by {SEGMENTS} unread one-byte segments");
    // Nothing was lost or reordered by coalescing.
    let mut got = Vec::new();
    while let Some(chunk) = sim.nodes[0].stack.tcp_recv(server).unwrap() {
        got.extend_from_slice(&chunk);
    }
    let want: Vec<u8> = (0..SEGMENTS).map(|i| (i % 251) as u8).collect();
    assert_eq!(got, want);
}
