//! Protection on the `xdp` backend: on an address shared with the kernel the
//! dataplane takes only its ports (a kernel TCP server on another port keeps
//! answering, pings stay the kernel's), and when the dataplane process is
//! killed with SIGKILL the XDP program goes with it and the kernel gets the
//! interface's traffic back.

mod xdp_support;

use std::io::{Read, Write};
use std::net::{Ipv4Addr, TcpListener};
use std::process::Command;
use std::sync::Arc;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use ix_driver::netns::{TestNetwork, spawn_in};
use ix_runtime::{Backend, Runtime};
use xdp_support::{
    ChildProcess, ECHO_PORT, HTTP_PORT, SHARED, Server, announce_when_listening, echo_round_trip, http_get,
    kernel_server, network, privileged, serve,
};

const KERNEL_PORT: u16 = 7001;
const CHILD_ENV: &str = "IX_XDP_TEST_CHILD";
const CHILD_READY: &str = "ix-xdp-child: listening";

#[test]
fn legacy_kernel_traffic_is_untouched_on_a_shared_address() {
    if !privileged() {
        return;
    }
    let net = network("ixls", 1);
    kernel_server(&net.server_ns(), KERNEL_PORT);
    let spec = format!("{},ports={ECHO_PORT}+{HTTP_PORT}", net.server_if());
    let server = Server::start(&net, &spec, 1, SHARED);
    let cli = net.client_ns();
    let results = spawn_in(&cli, move || {
        let mut seen = Vec::new();
        for round in 0..5 {
            seen.push(http_get(SHARED, HTTP_PORT, "/"));
            seen.push(http_get(SHARED, KERNEL_PORT, "/"));
            echo_round_trip(SHARED, 1_000_000, round).unwrap();
        }
        seen
    })
    .join()
    .unwrap();
    let ping = net.exec(&cli, &["ping", "-c", "3", "-i", "0.2", "-W", "2", &SHARED.to_string()]).unwrap();
    let stats = server.stop();

    for pair in results.chunks(2) {
        assert_eq!(pair[0], "Hello, world!", "the dataplane's port");
        assert_eq!(pair[1], "kernel", "the kernel's port on the same address");
    }
    assert!(ping.status.success(), "the kernel answers pings to the shared address");
    let stack = &stats[0].stack;
    assert_eq!(stack.ip.icmp_in_msgs, 0, "ICMP stays with the kernel");
    assert_eq!(stack.tcp.no_socket, 0, "no segment for the kernel's port reached the dataplane");
    assert!(stack.link.arp_replies_in > 0, "the dataplane resolved the client through its own ARP request");
}

/// The child process of the SIGKILL test: a dataplane in namespace `ns` on
/// `iface`, sharing the address and taking the HTTP port, until killed.
fn run_child(spec: &str) {
    let (ns, iface) = spec.split_once(' ').expect("NS IFACE");
    ix_driver::netns::enter(ns).expect("enter the server namespace");
    let config = format!("{iface},ports={HTTP_PORT}").parse().unwrap();
    let rt = Runtime::builder().cores(1).backend(Backend::Xdp(config)).ipv4(SHARED, 24).build().unwrap();
    let listening = announce_when_listening(CHILD_READY);
    rt.run(move |_| serve(listening.clone())).unwrap();
}

fn xdp_attached(net: &TestNetwork) -> bool {
    let out = net.exec(&net.server_ns(), &["ip", "link", "show", "dev", &net.server_if()]).unwrap();
    String::from_utf8_lossy(&out.stdout).contains("prog/xdp")
}

#[test]
fn sigkill_of_the_dataplane_detaches_the_program() {
    if let Ok(spec) = std::env::var(CHILD_ENV) {
        run_child(&spec);
        return;
    }
    if !privileged() {
        return;
    }
    let net = network("ixpk", 1);
    kernel_server(&net.server_ns(), HTTP_PORT);
    let mut command = Command::new(std::env::current_exe().unwrap());
    command
        .args(["--exact", "sigkill_of_the_dataplane_detaches_the_program", "--nocapture", "--test-threads=1"])
        .env(CHILD_ENV, format!("{} {}", net.server_ns(), net.server_if()));
    let mut child = ChildProcess::spawn(command);
    child.text_after(CHILD_READY, Duration::from_secs(60));
    assert!(xdp_attached(&net), "the program is attached while the dataplane runs");
    let cli = net.client_ns();
    let before = spawn_in(&cli, || http_get(SHARED, HTTP_PORT, "/")).join().unwrap();
    assert_eq!(before, "Hello, world!", "the dataplane has the port");

    child.child.kill().unwrap(); // SIGKILL
    child.child.wait().unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while xdp_attached(&net) {
        assert!(Instant::now() < deadline, "the program outlived its process");
        std::thread::sleep(Duration::from_millis(20));
    }
    let after = spawn_in(&cli, || http_get(SHARED, HTTP_PORT, "/")).join().unwrap();
    assert_eq!(after, "kernel", "the kernel has its traffic back");
}

/// A kernel echo server in `ns` at `addr:port`, one thread per connection.
/// Returns once it listens.
fn kernel_echo_server(ns: &str, addr: Ipv4Addr, port: u16) {
    let (ready, listening) = mpsc::channel();
    // Detached: it lives as long as the test process.
    drop(spawn_in(ns, move || {
        let listener = TcpListener::bind((addr, port)).expect("kernel echo listener");
        ready.send(()).unwrap();
        for mut stream in listener.incoming().flatten() {
            std::thread::spawn(move || {
                let mut buf = [0u8; 4096];
                while let Ok(n @ 1..) = stream.read(&mut buf) {
                    if stream.write_all(&buf[..n]).is_err() {
                        break;
                    }
                }
            });
        }
    }));
    listening.recv_timeout(Duration::from_secs(10)).expect("kernel echo server listening");
}

/// Connects from the dataplane to `server`, sends `len` patterned bytes,
/// reads the echo back; returns the local port used.
async fn echo_from_dataplane(server: std::net::SocketAddrV4, len: usize) -> Result<u16, String> {
    use ix_runtime::time::timeout;
    let limit = Duration::from_secs(20);
    let stream = timeout(limit, ix_runtime::net::TcpStream::connect(server))
        .await
        .map_err(|_| "connect timed out".to_string())?
        .map_err(|e| format!("connect: {e}"))?;
    let data = xdp_support::pattern(len, 11);
    stream.send(bytes::Bytes::from(data.clone())).await.map_err(|e| format!("send: {e}"))?;
    let mut got = Vec::with_capacity(len);
    while got.len() < len {
        match timeout(limit, stream.recv()).await {
            Ok(Ok(Some(chunk))) => got.extend_from_slice(&chunk),
            Ok(Ok(None)) => break,
            Ok(Err(e)) => return Err(format!("recv after {} bytes: {e}", got.len())),
            Err(_) => return Err(format!("recv timed out after {} bytes", got.len())),
        }
    }
    if got != data {
        return Err(format!("echo differs ({} of {len} bytes back)", got.len()));
    }
    Ok(stream.local_addr().port())
}

#[test]
fn the_dataplane_connects_out_from_a_shared_address() {
    if !privileged() {
        return;
    }
    const PEER_PORT: u16 = 7002;
    let net = network("ixlo", 1);
    kernel_echo_server(&net.client_ns(), TestNetwork::CLIENT_ADDR, PEER_PORT);
    let spec = format!("{},ports={ECHO_PORT}", net.server_if());
    let rt = Runtime::builder()
        .backend(Backend::Xdp(spec.parse().unwrap()))
        .ipv4(SHARED, 24)
        .handle_signals(false)
        .build()
        .unwrap();
    let outcome = Arc::new(std::sync::Mutex::new(None));
    let out = outcome.clone();
    let peer = std::net::SocketAddrV4::new(TestNetwork::CLIENT_ADDR, PEER_PORT);
    spawn_in(&net.server_ns(), move || {
        rt.run(move |_| {
            let out = out.clone();
            async move {
                let first = echo_from_dataplane(peer, 200_000).await;
                let second = echo_from_dataplane(peer, 200_000).await;
                *out.lock().unwrap() = Some((first, second));
            }
        })
    })
    .join()
    .unwrap()
    .unwrap();
    let (first, second) = outcome.lock().unwrap().take().expect("the task ran");
    for port in [first.unwrap(), second.unwrap()] {
        assert!(
            ix_driver::xdp::SHARED_EPHEMERAL_PORTS.contains(&port),
            "local port {port} outside the range the XDP program steers to the dataplane"
        );
    }
}
