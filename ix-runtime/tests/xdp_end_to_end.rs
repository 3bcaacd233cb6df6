//! The runtime on the `xdp` backend over veth, in native and in generic mode:
//! the kernel in the peer namespace pings the dataplane, `curl` fetches from
//! an IX HTTP responder, and 100 MB go each way through an echo, every byte
//! checked.

mod xdp_support;

use ix_driver::netns::spawn_in;
use xdp_support::{DATAPLANE_ONLY, HTTP_PORT, Server, echo_round_trip, network, privileged};

const BULK_BYTES: usize = 100_000_000;

fn ping_curl_and_bulk(mode: &str, tag: &str) {
    if !privileged() {
        return;
    }
    let net = network(tag, 1);
    let server = Server::start(&net, &format!("{},mode={mode}", net.server_if()), 1, DATAPLANE_ONLY);
    let cli = net.client_ns();
    let addr = DATAPLANE_ONLY.to_string();

    let ping = net.exec(&cli, &["ping", "-c", "3", "-i", "0.2", "-W", "2", &addr]).unwrap();
    let curl = net.exec(&cli, &["curl", "-sS", "--max-time", "10", &format!("http://{addr}:{HTTP_PORT}/")]).unwrap();
    let bulk = spawn_in(&cli, || echo_round_trip(DATAPLANE_ONLY, BULK_BYTES, 1)).join().unwrap();
    let stats = server.stop();

    assert!(ping.status.success(), "ping: {}", String::from_utf8_lossy(&ping.stdout));
    assert!(curl.status.success(), "curl: {}", String::from_utf8_lossy(&curl.stderr));
    assert_eq!(String::from_utf8_lossy(&curl.stdout), "Hello, world!");
    bulk.unwrap();
    let core = &stats[0];
    assert_eq!(core.stack.tcp.in_csum_errors, 0, "every segment's checksum was finished and right");
    assert_eq!(core.queue.rx_drops, 0);
    assert!(core.stack.tcp.bytes_sent >= BULK_BYTES as u64);
    eprintln!(
        "{mode}: {} frames in, {} out, {} retransmitted segments, mean batch {:.1}",
        core.queue.rx_packets,
        core.queue.tx_packets,
        core.stack.tcp.retransmitted_segments,
        core.r#loop.mean_batch()
    );
}

#[test]
fn native_mode_ping_curl_and_100_mb_each_way() {
    ping_curl_and_bulk("native", "ixen");
}

#[test]
fn generic_mode_ping_curl_and_100_mb_each_way() {
    ping_curl_and_bulk("generic", "ixeg");
}

#[test]
fn xdp_backends_parse_from_their_spelling() {
    use ix_driver::xdp::{BindMode, XdpMode};
    use ix_runtime::Backend;
    let Ok(Backend::Xdp(config)) = "xdp:ixt-s,queues=2,mode=generic,bind=copy,ports=8080+11211".parse::<Backend>()
    else {
        panic!("an xdp spelling parses to Backend::Xdp");
    };
    assert_eq!(config.iface, "ixt-s");
    assert_eq!((config.queues, config.mode, config.bind), (Some(2), XdpMode::Generic, BindMode::Copy));
    assert_eq!(config.ports, vec![8080, 11211]);
    for bad in ["xdp:", "xdp:eth0,mode=fast", "xdp:eth0,ports=0"] {
        let err = bad.parse::<Backend>().unwrap_err();
        assert!(err.to_string().contains(bad), "`{bad}` error does not name it: {err}");
    }
}
