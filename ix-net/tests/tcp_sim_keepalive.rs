//! Keepalive (RFC 9293 §3.8.4), simulated: probes keep an idle connection alive
//! while the peer answers, and declare it dead when the peer is gone.

mod support;

use std::net::SocketAddrV4;
use std::time::Duration;

use ix_driver::mem::FaultConfig;
use ix_net::tcp::{KeepaliveConfig, State};
use ix_net::{Instant, SocketHandle, TcpError};
use support::{Sim, addr};

const KEEPALIVE: KeepaliveConfig =
    KeepaliveConfig { idle: Duration::from_secs(10), interval: Duration::from_secs(1), probes: 3 };

/// Two stacks with keepalive on and one established connection between them.
fn connected() -> (Sim, SocketHandle, SocketHandle) {
    let mut sim = Sim::new(2, FaultConfig::NONE, 5, |cfg| cfg.tcp.keepalive = Some(KEEPALIVE));
    let listener = sim.nodes[0].stack.tcp_listen(9, 4).unwrap();
    let now = sim.now();
    let client = sim.nodes[1].stack.tcp_connect(SocketAddrV4::new(addr(0), 9), now, &|_| true).unwrap();
    for _ in 0..1000 {
        sim.step();
        if let Some(server) = sim.nodes[0].stack.tcp_accept(listener).unwrap() {
            return (sim, server, client);
        }
    }
    panic!("no connection");
}

fn run_until(sim: &mut Sim, until: Instant, only_node: Option<usize>) {
    while sim.now() < until {
        match only_node {
            None => sim.step(),
            Some(i) => {
                let now = sim.now();
                sim.nodes[i].poll(now);
                let next = sim.nodes[i].stack.poll_timeout().unwrap_or(until).min(until);
                sim.clock.set(next.as_micros().max(now.as_micros() + support::STEP_MICROS));
            }
        }
    }
}

#[test]
fn an_idle_connection_whose_peer_answers_probes_stays_up() {
    let (mut sim, server, client) = connected();
    let until = sim.now() + Duration::from_secs(120);
    run_until(&mut sim, until, None);
    assert!(sim.nodes[0].stack.stats().tcp.keepalive_probes >= 10, "probes were sent while idle");
    assert_eq!(sim.nodes[0].stack.tcp_state(server).unwrap(), State::Established);
    assert_eq!(sim.nodes[1].stack.tcp_state(client).unwrap(), State::Established);
}

#[test]
fn a_connection_whose_peer_is_gone_times_out_after_the_probes() {
    let (mut sim, server, _client) = connected();
    // From now on only the server runs: the client host has vanished.
    let dead_by = sim.now() + KEEPALIVE.idle + KEEPALIVE.interval * (KEEPALIVE.probes + 1) + Duration::from_secs(1);
    run_until(&mut sim, dead_by, Some(0));
    let stack = &sim.nodes[0].stack;
    assert_eq!(stack.tcp_state(server).unwrap(), State::Closed);
    assert_eq!(stack.tcp_error(server).unwrap(), Some(TcpError::TimedOut));
    assert_eq!(stack.stats().tcp.keepalive_probes, u64::from(KEEPALIVE.probes));
}
