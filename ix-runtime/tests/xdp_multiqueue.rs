//! Two queues in native mode on a 2-queue veth: the kernel client's flows
//! spread over both queues, each connection lands on one core and is served
//! there from its first segment to its last.

mod xdp_support;

use ix_driver::netns::spawn_in;
use xdp_support::{DATAPLANE_ONLY, Server, echo_round_trip, network, privileged};

const CONNECTIONS: usize = 40;
const BYTES_EACH: usize = 200_000;

#[test]
fn connections_land_on_both_cores_and_each_core_serves_its_own() {
    if !privileged() {
        return;
    }
    let net = network("ixmq", 2);
    let server = Server::start(&net, &format!("{},queues=2,mode=native", net.server_if()), 2, DATAPLANE_ONLY);
    let clients: Vec<_> = (0..CONNECTIONS)
        .map(|i| spawn_in(&net.client_ns(), move || echo_round_trip(DATAPLANE_ONLY, BYTES_EACH, i)))
        .collect();
    let results: Vec<_> = clients.into_iter().map(|c| c.join().unwrap()).collect();
    let stats = server.stop();

    let failures: Vec<_> = results.into_iter().filter_map(Result::err).collect();
    assert!(failures.is_empty(), "{} failures: {failures:?}", failures.len());
    let accepted: Vec<u64> = stats.iter().map(|s| s.stack.tcp.passive_opens).collect();
    eprintln!("connections accepted per core: {accepted:?}");
    assert_eq!(accepted.iter().sum::<u64>(), CONNECTIONS as u64);
    assert!(accepted.iter().all(|&n| n > 0), "both cores accepted connections: {accepted:?}");
    for core in &stats {
        let tcp = &core.stack.tcp;
        eprintln!(
            "core {}: no_socket {} retransmitted {} handed_over {} resets_sent {}",
            core.core, tcp.no_socket, tcp.retransmitted_segments, tcp.handed_over, tcp.resets_sent
        );
        assert!(core.queue.rx_packets > 0 && core.queue.tx_packets > 0, "core {} moved frames", core.core);
    }
    // A segment that finds no connection on a core is either another core's
    // (the failure this test is for) or a late duplicate of a connection
    // already closed: the peer's second ACK of a FIN we sent twice (after a
    // retransmission timeout or a tail loss probe, which a loaded machine
    // makes), possibly steered to the other queue, since Linux re-picks a
    // flow's queue after a timeout. Only our retransmissions make the latter,
    // so more of them than retransmissions means a misrouted segment.
    let no_socket: u64 = stats.iter().map(|s| s.stack.tcp.no_socket).sum();
    let retransmitted: u64 = stats.iter().map(|s| s.stack.tcp.retransmitted_segments).sum();
    assert!(
        no_socket <= retransmitted,
        "{no_socket} segment(s) found no connection but only {retransmitted} were retransmitted: \
         a segment of another core's connection"
    );
}
