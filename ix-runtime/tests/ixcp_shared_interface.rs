//! The `ixcp` backend: a root `ixcp` daemon owns the interface; two dataplanes
//! running as `nobody` with no capabilities (an echo server and an HTTP
//! server) and a kernel TCP server share its one address; the daemon refuses
//! what is not granted and survives malformed messages; SIGKILL of a dataplane
//! releases its port within a second while the other serves on; a loaded core
//! gets a polling CPU and gives it back when the load stops or its share goes
//! to zero; SIGKILL of the daemon leaves no XDP program on the interface.

mod xdp_support;

use std::net::{Ipv4Addr, SocketAddrV4, TcpStream};
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use ix_driver::DriverError;
use ix_driver::ixcp::{
    AdmitRequest, CoreEntry, CoreMode, Daemon, DaemonConfig, Message, PROTOCOL_VERSION, RefusalCode, request_admission,
    request_listing, request_share, transport,
};
use ix_driver::netns::{TestNetwork, spawn_in};
use ix_runtime::net::TcpListener;
use ix_runtime::{Backend, Runtime, spawn_local};
use xdp_support::{
    ChildProcess, ECHO_PORT, HTTP_PORT, SHARED, announce_when_listening, echo_round_trip, echo_stream, http_get,
    kernel_server, network, privileged, respond_http,
};

const KERNEL_PORT: u16 = 7001;
/// A port granted to root (the test process) but to no dataplane.
const ROOT_PORT: u16 = 9000;
const NOBODY: u32 = 65534;
const POOL_FRAMES: u32 = 2048;
const ROLE_ENV: &str = "IX_IXCP_TEST_ROLE";
const TEST_NAME: &str = "two_unprivileged_dataplanes_share_an_interface_with_the_kernel";
/// How soon a dead dataplane's port must be back with the kernel.
const RELEASE_DEADLINE: Duration = Duration::from_secs(1);
/// The CPU ixcp may give a polling core.
const POLLING_CPU: u16 = 1;
/// The scheduler slice ixcp gives the dataplanes' core threads.
const CORE_SLICE_US: u64 = 300;
/// How soon a core's mode must follow its load or its share (the test's
/// policy decides every 50 ms and blocks after 4 calm periods).
const MODE_DEADLINE: Duration = Duration::from_secs(5);

fn config_text(socket: &Path, iface: &str) -> String {
    format!(
        r#"
socket = "{socket}"

[[interface]]
name = "{iface}"

[[grant]]
uid = {NOBODY}
interface = "{iface}"
addresses = ["{SHARED}"]
ports = [{ECHO_PORT}, {HTTP_PORT}]
max_frames_per_queue = {POOL_FRAMES}
max_connections = 65536

[[grant]]
uid = 0
interface = "{iface}"
addresses = ["{SHARED}"]
ports = [{ROOT_PORT}, {ECHO_PORT}]
max_frames_per_queue = {POOL_FRAMES}
max_connections = 100

[cpus]
polling = [{POLLING_CPU}]

[policy]
period_ms = 50
poll_above = 0.2
block_below = 0.05
block_after_periods = 4
slice_us = {CORE_SLICE_US}
"#,
        socket = socket.display()
    )
}

/// The daemon's role: `ixcp` in the server namespace until killed.
fn run_daemon(config: &str) {
    let config = DaemonConfig::load(Path::new(config)).expect("config");
    let mut daemon = Daemon::start(config).expect("ixcp starts");
    println!("ixcp-ready");
    let stop = ix_driver::ixcp::stop_on_signals().unwrap();
    daemon.serve(stop).unwrap();
}

/// A dataplane's role: as `nobody`, one core on `ixcp:SOCKET` serving echo or
/// HTTP on one port; prints its capabilities, then its stack counters when
/// SIGTERM stops it.
fn run_dataplane(socket: &str, port: u16) {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let caps = status.lines().find_map(|l| l.strip_prefix("CapEff:")).unwrap().trim().to_owned();
    let uid = std::os::unix::fs::MetadataExt::uid(&std::fs::metadata("/proc/self").unwrap());
    println!("identity: uid={uid} CapEff={caps}");
    let backend: Backend = format!("ixcp:{socket},ports={port}").parse().unwrap();
    let rt = Runtime::builder().cores(1).backend(backend).ipv4(SHARED, 24).pool_frames(POOL_FRAMES).build().unwrap();
    let listening = announce_when_listening("dataplane-ready");
    let stats = rt
        .run(move |_| {
            let listening = listening.clone();
            async move {
                let listener = TcpListener::bind(port).unwrap();
                listening.fetch_add(1, Ordering::SeqCst);
                while let Ok((stream, _)) = listener.accept().await {
                    if port == ECHO_PORT {
                        drop(spawn_local(echo_stream(stream)));
                    } else {
                        drop(spawn_local(respond_http(stream)));
                    }
                }
            }
        })
        .expect("the dataplane runs");
    let stack = &stats[0].stack;
    println!("stats: no_socket={} icmp_in={}", stack.tcp.no_socket, stack.ip.icmp_in_msgs);
}

fn role_command(role: String) -> Command {
    let mut command = Command::new(std::env::current_exe().unwrap());
    command.args(["--exact", TEST_NAME, "--nocapture", "--test-threads=1"]).env(ROLE_ENV, role);
    command
}

fn start_dataplane(socket: &Path, port: u16) -> ChildProcess {
    let mut command = role_command(format!("dataplane {} {port}", socket.display()));
    std::os::unix::process::CommandExt::uid(&mut command, NOBODY);
    std::os::unix::process::CommandExt::gid(&mut command, NOBODY);
    let child = ChildProcess::spawn(command);
    let identity = child.text_after("identity: ", Duration::from_secs(30));
    println!("dataplane on port {port}: {identity}");
    assert_eq!(identity, format!("uid={NOBODY} CapEff=0000000000000000"), "the dataplane has no privilege");
    child.text_after("dataplane-ready", Duration::from_secs(60));
    child
}

fn xdp_attached(net: &TestNetwork) -> bool {
    let out = net.exec(&net.server_ns(), &["ip", "link", "show", "dev", &net.server_if()]).unwrap();
    String::from_utf8_lossy(&out.stdout).contains("xdp")
}

fn request(addr: Ipv4Addr, ports: &[u16], frames: u32) -> AdmitRequest {
    AdmitRequest { addr, ports: ports.to_vec(), queues: 1, frames_per_queue: frames, max_connections: 10 }
}

fn refusal_code(socket: &Path, request: &AdmitRequest) -> RefusalCode {
    match request_admission(socket, request) {
        Err(DriverError::Refused(refusal)) => {
            assert!(!refusal.message.is_empty());
            refusal.code
        }
        other => panic!("{request:?}: expected a refusal, got {other:?}"),
    }
}

/// Sends raw bytes on a fresh connection and returns the refusal's code.
fn answer_to_raw(socket: &Path, bytes: &[u8]) -> RefusalCode {
    let control = transport::connect(socket).unwrap();
    transport::send(control.as_fd(), bytes, &[]).unwrap();
    let received = transport::recv(control.as_fd()).unwrap().expect("an answer");
    match Message::decode(&received.bytes) {
        Ok(Message::Refusal(refusal)) => refusal.code,
        other => panic!("expected a refusal, got {other:?}"),
    }
}

/// Whether a connection to `port` is refused (RST: no dataplane, no kernel
/// listener), from the current thread's namespace.
fn refused(port: u16) -> bool {
    let target = SocketAddrV4::new(SHARED, port);
    matches!(
        TcpStream::connect_timeout(&target.into(), Duration::from_millis(300)),
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused
    )
}

/// The echo dataplane's core as `ixcp` lists it.
fn echo_core(socket: &Path) -> (String, CoreEntry) {
    let listing = request_listing(socket).expect("root may list");
    let echo = listing.dataplanes.iter().find(|d| d.ports == [ECHO_PORT]).expect("the echo dataplane is listed");
    (echo.port_name.clone(), echo.cores[0])
}

/// Waits until the echo core is in `mode`; returns its entry.
fn wait_for_mode(socket: &Path, mode: CoreMode, why: &str) -> CoreEntry {
    let started = Instant::now();
    loop {
        let (_, core) = echo_core(socket);
        if core.mode == mode && core.sample.mode_in_effect == mode {
            println!("echo core {mode:?} {:?} after {why}: {core:?}", started.elapsed());
            return core;
        }
        assert!(started.elapsed() < MODE_DEADLINE, "the echo core is not {mode:?} after {why}: {core:?}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// The CPUs the echo core's thread may run on, as the kernel says.
fn allowed_cpus(pid: u32, core: &CoreEntry) -> String {
    let status = std::fs::read_to_string(format!("/proc/{pid}/task/{}/status", core.sample.thread_id)).unwrap();
    status.lines().find_map(|l| l.strip_prefix("Cpus_allowed_list:")).unwrap().trim().to_owned()
}

/// The scheduler slice of the echo core's thread, in nanoseconds, as the
/// kernel says (`se.slice` of its `sched` file).
fn slice_ns(pid: u32, core: &CoreEntry) -> u64 {
    let sched = std::fs::read_to_string(format!("/proc/{pid}/task/{}/sched", core.sample.thread_id)).unwrap();
    let line = sched.lines().find(|l| l.starts_with("se.slice")).expect("a kernel with EEVDF slices");
    line.rsplit(':').next().unwrap().trim().parse().unwrap()
}

/// Echo traffic starts: the echo core gets the polling CPU (its thread moved
/// there); its share set to 0 takes the CPU back under load, 1 gives it back;
/// the traffic stops: the core blocks again on every CPU. Shares beyond the
/// grant and unknown dataplanes are refused.
fn cpus_follow_load(socket: &Path, cli: &str, echo_pid: u32) {
    let every_cpu = format!("0-{}", std::thread::available_parallelism().unwrap().get() - 1);
    let (port_name, idle) = echo_core(socket);
    assert_eq!(idle.mode, CoreMode::Block, "an idle core blocks");
    assert_ne!(idle.sample.thread_id, 0, "the core published its thread");
    let loading = Arc::new(AtomicBool::new(true));
    let load = {
        let loading = loading.clone();
        spawn_in(cli, move || {
            let mut round = 0;
            while loading.load(Ordering::Relaxed) {
                echo_round_trip(SHARED, 200_000, round).unwrap();
                round += 1;
            }
        })
    };
    let polling = wait_for_mode(socket, CoreMode::BusyPoll, "load started");
    assert_eq!(polling.cpu, Some(POLLING_CPU));
    assert_eq!(allowed_cpus(echo_pid, &polling), POLLING_CPU.to_string(), "the polling thread is on its CPU");
    assert_eq!(slice_ns(echo_pid, &polling), CORE_SLICE_US * 1000, "ixcp set the core's slice (policy.slice_us)");

    let refused = |share, name: &str| match request_share(socket, name, share) {
        Err(DriverError::Refused(refusal)) => refusal.code,
        other => panic!("share {share} of {name}: expected a refusal, got {other:?}"),
    };
    assert_eq!(refused(2, &port_name), RefusalCode::OverLimit, "max_cpus is 1");
    assert_eq!(refused(0, "ixdp-none"), RefusalCode::NoSuchDataplane);
    assert_eq!(request_share(socket, &port_name, 0).unwrap().share, 0);
    let blocked = wait_for_mode(socket, CoreMode::Block, "share 0 under load");
    assert_eq!((blocked.cpu, allowed_cpus(echo_pid, &blocked)), (None, every_cpu.clone()));
    assert_eq!(request_share(socket, &port_name, 1).unwrap().share, 1);
    wait_for_mode(socket, CoreMode::BusyPoll, "share 1 under load");

    loading.store(false, Ordering::Relaxed);
    load.join().unwrap();
    let calm = wait_for_mode(socket, CoreMode::Block, "load stopped");
    assert_eq!(allowed_cpus(echo_pid, &calm), every_cpu, "a blocking core may run anywhere");
    assert!(calm.to_polling >= 2 && calm.to_blocking >= 2, "decisions counted: {calm:?}");
    let stats = request_listing(socket).unwrap().stats;
    assert!(stats.to_polling >= 2 && stats.to_blocking >= 2 && stats.threads_refused == 0, "{stats:?}");
}

fn test_dir() -> PathBuf {
    let dir = std::env::temp_dir().join(format!("ixcp-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::set_permissions(&dir, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    dir
}

#[test]
fn two_unprivileged_dataplanes_share_an_interface_with_the_kernel() {
    if let Ok(role) = std::env::var(ROLE_ENV) {
        let words: Vec<&str> = role.split(' ').collect();
        match words.as_slice() {
            ["daemon", config] => run_daemon(config),
            ["dataplane", socket, port] => run_dataplane(socket, port.parse().unwrap()),
            _ => panic!("unknown role {role:?}"),
        }
        return;
    }
    if !privileged() {
        return;
    }
    let net = network("ixcp", 1);
    // Frames ixcp redirects out of the interface reach the far end's NAPI,
    // which veth runs only with GRO or an XDP program there.
    let gro = net.exec(&net.client_ns(), &["ethtool", "-K", &net.client_if(), "gro", "on"]).unwrap();
    assert!(gro.status.success(), "ethtool gro on: {}", String::from_utf8_lossy(&gro.stderr));
    let dir = test_dir();
    let socket = dir.join("ixcp.sock");
    let config = dir.join("ixcp.toml");
    std::fs::write(&config, config_text(&socket, &net.server_if())).unwrap();
    let mut daemon = ChildProcess::spawn({
        let mut command = Command::new("ip");
        command.args(["netns", "exec", &net.server_ns()]).arg(std::env::current_exe().unwrap()).args([
            "--exact",
            TEST_NAME,
            "--nocapture",
            "--test-threads=1",
        ]);
        command.env(ROLE_ENV, format!("daemon {}", config.display()));
        command
    });
    daemon.text_after("ixcp-ready", Duration::from_secs(30));
    assert!(xdp_attached(&net), "ixcp attached its program");
    kernel_server(&net.server_ns(), KERNEL_PORT);

    let mut echo = start_dataplane(&socket, ECHO_PORT);
    let http = start_dataplane(&socket, HTTP_PORT);

    // Both dataplanes and the kernel serve on the one address; pings are the kernel's.
    let cli = net.client_ns();
    let seen = spawn_in(&cli, || {
        let mut seen = Vec::new();
        for round in 0..3 {
            echo_round_trip(SHARED, 500_000, round).unwrap();
            seen.push(http_get(SHARED, HTTP_PORT, "/"));
            seen.push(http_get(SHARED, KERNEL_PORT, "/"));
        }
        seen
    })
    .join()
    .unwrap();
    for pair in seen.chunks(2) {
        assert_eq!(pair, ["Hello, world!", "kernel"], "each port reaches its own server");
    }
    let ping = net.exec(&cli, &["ping", "-c", "3", "-i", "0.2", "-W", "2", &SHARED.to_string()]).unwrap();
    assert!(ping.status.success(), "the kernel answers pings to the shared address");

    // The operator's listing (root) shows both, with their grants.
    let listing = ix_driver::ixcp::request_listing(&socket).expect("root may list");
    let mut listed: Vec<(u32, Vec<u16>)> = listing.dataplanes.iter().map(|d| (d.uid, d.ports.clone())).collect();
    listed.sort();
    assert_eq!(listed, vec![(NOBODY, vec![ECHO_PORT]), (NOBODY, vec![HTTP_PORT])]);
    assert_eq!(listing.stats.admitted, 2);

    // What is not granted is refused, and malformed messages get an error.
    assert_eq!(refusal_code(&socket, &request(SHARED, &[ROOT_PORT + 1], 1024)), RefusalCode::PortNotGranted);
    assert_eq!(
        refusal_code(&socket, &request(Ipv4Addr::new(10, 77, 0, 9), &[ROOT_PORT], 1024)),
        RefusalCode::AddressNotGranted
    );
    assert_eq!(refusal_code(&socket, &request(SHARED, &[ROOT_PORT], POOL_FRAMES * 2)), RefusalCode::OverLimit);
    assert_eq!(refusal_code(&socket, &request(SHARED, &[ECHO_PORT], 1024)), RefusalCode::PortInUse);
    assert_eq!(answer_to_raw(&socket, b"not a message"), RefusalCode::Malformed);
    let whole = Message::Admit(request(SHARED, &[ROOT_PORT], 1024)).encode();
    assert_eq!(answer_to_raw(&socket, &whole[..whole.len() - 1]), RefusalCode::Malformed, "truncated");
    let mut future = whole.clone();
    future[4] = PROTOCOL_VERSION as u8 + 1;
    assert_eq!(answer_to_raw(&socket, &future), RefusalCode::UnsupportedVersion);
    let granted = request_admission(&socket, &request(SHARED, &[ROOT_PORT], 1024)).expect("ixcp serves on");
    assert_eq!(granted.grant.queues, 1);
    drop(granted);

    cpus_follow_load(&socket, &cli, echo.child.id());

    // SIGKILL of one dataplane: its port goes back to the kernel (no
    // listener there: refused) within a second; the other serves on.
    echo.child.kill().unwrap();
    echo.child.wait().unwrap();
    let killed = Instant::now();
    let released = spawn_in(&cli, move || {
        while !refused(ECHO_PORT) {
            assert!(killed.elapsed() < Duration::from_secs(10), "the dead dataplane's port stays steered");
            std::thread::sleep(Duration::from_millis(10));
        }
        killed.elapsed()
    })
    .join()
    .unwrap();
    println!("the killed dataplane's port was refused by the kernel {released:?} after SIGKILL");
    assert!(released < RELEASE_DEADLINE, "port released after {released:?}");
    let after = spawn_in(&cli, || http_get(SHARED, HTTP_PORT, "/")).join().unwrap();
    assert_eq!(after, "Hello, world!", "the other dataplane serves on");

    // SIGKILL of ixcp: the interface goes back to the kernel.
    daemon.child.kill().unwrap();
    daemon.child.wait().unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while xdp_attached(&net) {
        assert!(Instant::now() < deadline, "an XDP program outlived ixcp");
        std::thread::sleep(Duration::from_millis(20));
    }
    let kernel_again = spawn_in(&cli, || refused(HTTP_PORT)).join().unwrap();
    assert!(kernel_again, "the HTTP port is the kernel's again (no listener: refused)");

    // The HTTP dataplane saw nothing for other ports (no segment without a socket, no ICMP).
    let (sender, stopped) = mpsc::channel();
    let pid = http.child.id().to_string();
    assert!(Command::new("kill").args(["-TERM", &pid]).status().unwrap().success());
    std::thread::spawn(move || sender.send(http.text_after("stats: ", Duration::from_secs(30))));
    let stats = stopped.recv_timeout(Duration::from_secs(40)).unwrap();
    println!("the HTTP dataplane's counters: {stats}");
    assert_eq!(stats, "no_socket=0 icmp_in=0", "the HTTP dataplane's counters: {stats}");
    let _ = std::fs::remove_dir_all(&dir);
}
