//! Memory per connection: heap bytes an established, idle connection costs
//! the server's stack, counted by a global allocator, so that 100k+
//! connections per core stay affordable.

mod support;

use std::alloc::System;
use std::net::SocketAddrV4;

use bytes::Bytes;
use ix_driver::mem::FaultConfig;
use ix_net::SocketHandle;
use stats_alloc::{INSTRUMENTED_SYSTEM, Region, StatsAlloc};
use support::{Sim, addr};

/// Counts the heap of the whole test process.
#[global_allocator]
static ALLOCATOR: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

const PORT: u16 = 80;
/// Enough connections that per-connection costs dominate the stack's fixed
/// ones (tables grow by doubling: the figure includes their share).
const CONNECTIONS: usize = 2000;
/// What an established connection that exchanged one request may cost a
/// stack on the heap: measured 3,508 bytes (the `Conn` itself is 1,472, the
/// rest its queues and its share of the tables). Out-of-order storage
/// reserved up front (256 chunk slots, 8 KiB) made it 12,084.
const MAX_HEAP_BYTES_PER_CONNECTION: isize = 4096;
/// Bound on simulation steps for each phase.
const MAX_STEPS: usize = 200_000;

#[test]
fn an_established_idle_connection_costs_the_server_little_heap() {
    let mut sim = Sim::new(2, FaultConfig::default(), 11, |_| {});
    let listener = sim.nodes[0].stack.tcp_listen(PORT, CONNECTIONS).expect("listen");
    // Warm up the server's tables with one connection, so that the baseline
    // excludes one-time costs (ARP entry, listener, first slab growth).
    let mut clients: Vec<SocketHandle> = Vec::new();
    let mut accepted: Vec<SocketHandle> = Vec::new();
    open_and_exchange(&mut sim, listener, 1, &mut clients, &mut accepted);

    let region = Region::new(ALLOCATOR);
    open_and_exchange(&mut sim, listener, CONNECTIONS, &mut clients, &mut accepted);
    let change = region.change();
    let live = change.bytes_allocated as isize - change.bytes_deallocated as isize + change.bytes_reallocated;
    // Both stacks live in this process: the client's connections cost what
    // the server's do, so half the growth is the server's. The handles kept
    // by the test (two `Vec`s) are a few bytes per connection.
    let per_connection = live / 2 / CONNECTIONS as isize;
    println!("heap per established connection: {per_connection} bytes (server side)");
    assert!(
        per_connection <= MAX_HEAP_BYTES_PER_CONNECTION,
        "{per_connection} heap bytes per connection, more than {MAX_HEAP_BYTES_PER_CONNECTION}"
    );
    assert_eq!(sim.nodes[0].stack.tcp_connection_count(), CONNECTIONS + 1);
}

/// Opens `count` more connections; each sends a request and reads its answer.
fn open_and_exchange(
    sim: &mut Sim,
    listener: SocketHandle,
    count: usize,
    clients: &mut Vec<SocketHandle>,
    accepted: &mut Vec<SocketHandle>,
) {
    let (first_client, first_server) = (clients.len(), accepted.len());
    let target = SocketAddrV4::new(addr(0), PORT);
    for _ in 0..count {
        let now = sim.now();
        clients.push(sim.nodes[1].stack.tcp_connect(target, now, &|_| true).expect("connect"));
    }
    run_until(sim, |sim| {
        while let Some(h) = sim.nodes[0].stack.tcp_accept(listener).expect("accept") {
            accepted.push(h);
        }
        accepted.len() - first_server == count
    });
    for &h in &clients[first_client..] {
        assert_eq!(sim.nodes[1].stack.tcp_send(h, Bytes::from_static(b"GET / HTTP/1.1\r\n\r\n")).expect("send"), 18);
    }
    let mut answered = vec![false; count];
    run_until(sim, |sim| {
        for &h in &accepted[first_server..] {
            while let Some(chunk) = sim.nodes[0].stack.tcp_recv(h).expect("server recv") {
                assert_eq!(&chunk[..], b"GET / HTTP/1.1\r\n\r\n");
                sim.nodes[0].stack.tcp_send(h, Bytes::from_static(b"HTTP/1.1 200 OK\r\n\r\n")).expect("reply");
            }
        }
        for (i, &h) in clients[first_client..].iter().enumerate() {
            while let Some(chunk) = sim.nodes[1].stack.tcp_recv(h).expect("client recv") {
                assert_eq!(&chunk[..], b"HTTP/1.1 200 OK\r\n\r\n");
                answered[i] = true;
            }
        }
        answered.iter().all(|a| *a)
    });
    // Let delayed ACKs go out, so nothing is left queued.
    let until = sim.now() + std::time::Duration::from_millis(500);
    while sim.now() < until {
        sim.step();
    }
}

fn run_until(sim: &mut Sim, mut done: impl FnMut(&mut Sim) -> bool) {
    for _ in 0..MAX_STEPS {
        if done(sim) {
            return;
        }
        sim.step();
    }
    panic!("not done after {MAX_STEPS} steps");
}
