//! `scripts/testnet.sh steer` on a test network of its own: without it veth
//! runs each side's receive on the sender's CPU; with it, the server side's
//! receive (through the backlog, and through the NAPI thread an XDP program
//! brings) runs on the server's CPU and the client side's on the client's,
//! as the kernel's own receive tracepoints show; `unsteer` undoes it.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::mpsc;

use ix_benches::harness::network::{NETNS_SERVER_IP, Network};
use ix_benches::harness::receive_trace::{ReceiveCpus, ReceiveTrace};
use ix_driver::{XdpConfig, XdpDevice, netns, privilege};

const SERVER_CPU: usize = 0;
const CLIENT_CPU: usize = 1;

fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/testnet.sh")
}

/// Pings the server from the client namespace, pinned to the client's CPU,
/// while tracing where each side's receive ran.
fn ping_traced(net: &Network, prefix: &str) -> ReceiveCpus {
    let trace = ReceiveTrace::start(&format!("{prefix}-")).expect("tracefs instance");
    let mut ping = net.client_command(CLIENT_CPU, Path::new("ping"));
    ping.args(["-q", "-c", "20", "-i", "0.005", "-W", "1", &NETNS_SERVER_IP.to_string()]);
    let done = ping.stdin(Stdio::null()).stdout(Stdio::null()).status().expect("ping runs");
    assert!(done.success(), "ping from the client namespace failed: {done}");
    trace.finish().expect("reading the trace")
}

#[test]
fn steer_moves_each_sides_receive_to_its_own_cpu_and_unsteer_undoes_it() {
    if !privilege::require("network namespaces and tracefs", privilege::netns_available())
        || !privilege::require_command("ping", "iputils-ping")
        || !privilege::require("a second CPU", std::thread::available_parallelism().is_ok_and(|n| n.get() >= 2))
    {
        return;
    }
    let prefix = format!("ixst{}", std::process::id() % 100_000);
    let net = Network::namespaces(&script(), &prefix).expect("test network");
    let (server, client) = (net.server_iface().unwrap(), net.client_iface().unwrap());

    // Unsteered, veth receives in the sender's context: the ping's echo
    // request and its reply are both received on the client's CPU (nearly
    // all: the kernels' own IPv6 timers may send a frame from another CPU).
    let before = ping_traced(&net, &prefix);
    assert!(
        before.share_on(&server, CLIENT_CPU) > 0.9,
        "unsteered, the server side's receive: {:?}",
        before.of(&server)
    );

    let account = net.steer(SERVER_CPU, CLIENT_CPU).expect("steer");
    assert!(account.contains(&format!("{server}: rps_cpus 1,")), "{account}");
    let steered = ping_traced(&net, &prefix);
    assert!(steered.only_on(&server, SERVER_CPU), "steered, the server side's receive: {:?}", steered.of(&server));
    assert!(steered.only_on(&client, CLIENT_CPU), "steered, the client side's receive: {:?}", steered.of(&client));

    // An XDP program (a dataplane at another address, so that the ping stays
    // the kernel's) gives the server's veth a NAPI instance: its poll ran on
    // the sender's CPU until `steer` pins the thread it gets.
    let (attached_tx, attached) = mpsc::channel();
    let (release, released) = mpsc::channel::<()>();
    let xdp_iface = server.clone();
    let holder = netns::spawn_in(&format!("{prefix}-srv"), move || {
        let config: XdpConfig = xdp_iface.parse().expect("xdp config");
        let device = XdpDevice::open(&config, 1, std::net::Ipv4Addr::new(10, 77, 0, 3)).expect("attaching XDP");
        attached_tx.send(()).unwrap();
        let _ = released.recv();
        drop(device);
    });
    attached.recv().expect("the XDP program attached");
    let account = net.steer(SERVER_CPU, CLIENT_CPU).expect("steer after the XDP attach");
    assert!(account.contains(&format!("napi/{server}-")), "no NAPI thread pinned: {account}");
    let with_xdp = ping_traced(&net, &prefix);
    assert!(with_xdp.only_on(&server, SERVER_CPU), "steered, XDP's NAPI poll: {:?}", with_xdp.of(&server));
    assert!(with_xdp.only_on(&client, CLIENT_CPU), "steered, the client side's receive: {:?}", with_xdp.of(&client));

    net.unsteer().expect("unsteer");
    let after = ping_traced(&net, &prefix);
    assert!(
        after.share_on(&server, CLIENT_CPU) > 0.9,
        "unsteered again, the server side's receive: {:?}",
        after.of(&server)
    );
    release.send(()).unwrap();
    holder.join().expect("the XDP holder thread");
}
