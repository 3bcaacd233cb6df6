//! A SYN flood (hping3, random source addresses) against `ix-http` on `xdp` while a legitimate client connects,
//! requests and closes in a loop: its connections succeed, SYN cookies answer and are counted in the metrics, and
//! memory stays bounded. The longer, unbounded-rate run with tokio beside it is `scripts/syn-flood.sh`.

mod support;

use std::io::{Read, Write};
use std::net::{SocketAddr, SocketAddrV4, TcpStream};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use ix_driver::netns::{TestNetwork, spawn_in};
use ix_driver::privilege;
use support::HttpServer;

const SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../scripts/testnet.sh");
const PORT: u16 = 8080;
/// How long hping3 floods.
const FLOOD: Duration = Duration::from_secs(8);
/// hping3's gap between two SYNs: `-i u10` asks for 100,000 per second; hping3
/// sleeps between sends and reaches 1,500-10,000 per second on the shared CI
/// machine, whose other tests keep running meanwhile.
const FLOOD_GAP: &str = "u10";
/// Enough SYNs to fill the half-open queue (the default backlog, 1,024) and
/// have cookies answer at least as many again.
const FLOOD_SYNS_MIN: u64 = 2 * 1024;
/// The legitimate client starts a connection this often.
const LEGIT_EVERY: Duration = Duration::from_millis(20);
/// Long enough for one retransmission of a lost SYN (Linux resends after 1 s).
const LEGIT_TIMEOUT: Duration = Duration::from_secs(3);
/// Growth of the server's resident memory allowed over the flood: the pool's
/// 32 MiB (8,192 frames of 4 KiB) is mapped at start and becomes resident as
/// frames are first used, and the half-open connections are bounded by the
/// backlog (1,024 of about 3.5 KiB). A leak of 600 bytes per SYN would exceed it.
const RSS_GROWTH_MAX_KIB: u64 = 48 * 1024;

/// What the legitimate client saw.
#[derive(Debug, Default)]
struct LegitRun {
    attempts: usize,
    succeeded: usize,
    connect_times: Vec<Duration>,
    failures: Vec<String>,
}

impl LegitRun {
    fn connect_percentile(&mut self, q: f64) -> Duration {
        self.connect_times.sort();
        let index = ((self.connect_times.len() as f64 * q).ceil() as usize).saturating_sub(1);
        self.connect_times.get(index).copied().unwrap_or_default()
    }
}

/// One request on a fresh connection; the connect time on success.
fn one_request(target: SocketAddrV4) -> Result<Duration, String> {
    let started = Instant::now();
    let mut stream =
        TcpStream::connect_timeout(&SocketAddr::V4(target), LEGIT_TIMEOUT).map_err(|e| format!("connect: {e}"))?;
    let connect_time = started.elapsed();
    stream.set_read_timeout(Some(LEGIT_TIMEOUT)).map_err(|e| e.to_string())?;
    stream
        .write_all(b"GET / HTTP/1.1\r\nHost: flood\r\nConnection: close\r\n\r\n")
        .map_err(|e| format!("write: {e}"))?;
    let mut response = Vec::new();
    stream.read_to_end(&mut response).map_err(|e| format!("read: {e}"))?;
    let text = String::from_utf8_lossy(&response);
    if text.starts_with("HTTP/1.1 200") && text.ends_with("Hello, world!") {
        Ok(connect_time)
    } else {
        Err(format!("response: {text:?}"))
    }
}

/// Connect, request, close, every [`LEGIT_EVERY`] (or as soon as the last
/// one ended, when it took longer), for `length`.
fn legitimate_client(target: SocketAddrV4, length: Duration) -> LegitRun {
    let mut run = LegitRun::default();
    let end = Instant::now() + length;
    let mut next = Instant::now();
    while Instant::now() < end {
        std::thread::sleep(next.saturating_duration_since(Instant::now()));
        next += LEGIT_EVERY;
        run.attempts += 1;
        match one_request(target) {
            Ok(connect_time) => {
                run.succeeded += 1;
                run.connect_times.push(connect_time);
            }
            Err(e) => run.failures.push(e),
        }
    }
    run
}

/// The sum of `ix_stack_events_total{..., counter="NAME"}` over cores.
fn stack_counter(metrics: &str, name: &str) -> u64 {
    let label = format!("counter=\"{name}\"}}");
    metrics
        .lines()
        .filter(|l| l.starts_with("ix_stack_events_total{") && l.contains(&label))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .sum()
}

#[test]
fn ix_http_on_xdp_serves_a_legitimate_client_through_a_syn_flood() {
    if !privilege::require("XDP on veth in network namespaces", privilege::netns_available())
        || !privilege::require_command("hping3", "hping3")
    {
        return;
    }
    let net = TestNetwork::up(SCRIPT, "syn", 1).expect("test network");
    let (srv, cli) = (net.server_ns(), net.client_ns());
    // The flood's random sources are off the subnet: their SYN-ACKs go to the
    // client side, whose kernel drops them (they are for no address of its).
    let client = TestNetwork::CLIENT_ADDR.to_string();
    let server_addr = format!("{}/24", TestNetwork::SERVER_ADDR);
    let metrics_addr = "127.0.0.1:9464";
    let mut command = Command::new("ip");
    command.args(["netns", "exec", &srv, env!("CARGO_BIN_EXE_ix-http")]).args([
        &format!("--backend=xdp:{}", net.server_if()),
        &format!("--addr={server_addr}"),
        &format!("--gateway={client}"),
        &format!("--port={PORT}"),
        &format!("--metrics={metrics_addr}"),
    ]);
    let server = HttpServer::spawn(command, TestNetwork::SERVER_ADDR, PORT, None);
    let target = SocketAddrV4::new(TestNetwork::SERVER_ADDR, PORT);

    let warm = spawn_in(&cli, move || legitimate_client(target, Duration::from_secs(1))).join().unwrap();
    assert_eq!(warm.succeeded, warm.attempts, "before the flood: {:?}", warm.failures);
    let rss_before = server.rss_kib();

    let flood = Command::new("ip")
        .args(["netns", "exec", &cli, "timeout", "-s", "INT", &FLOOD.as_secs().to_string()])
        .args(["hping3", "-S", "--rand-source", "-i", FLOOD_GAP, "-p", &PORT.to_string()])
        .arg(TestNetwork::SERVER_ADDR.to_string())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start hping3");
    let legit = spawn_in(&cli, move || legitimate_client(target, FLOOD));
    let mut rss_peak = rss_before;
    while !legit.is_finished() {
        std::thread::sleep(Duration::from_millis(250));
        rss_peak = rss_peak.max(server.rss_kib());
    }
    let mut legit = legit.join().unwrap();
    let flood = flood.wait_with_output().expect("hping3 ends");
    let hping = String::from_utf8_lossy(&flood.stdout).into_owned() + &String::from_utf8_lossy(&flood.stderr);
    let sent: u64 = hping
        .lines()
        .find_map(|l| {
            l.split(" packets transmitted").next().filter(|_| l.contains("packets transmitted"))?.parse().ok()
        })
        .unwrap_or_else(|| panic!("hping3 reported no count:\n{hping}"));

    let scrape = net.exec(&srv, &["curl", "-s", "-m", "5", &format!("http://{metrics_addr}/metrics")]).unwrap();
    let metrics = String::from_utf8_lossy(&scrape.stdout);
    let (cookies_sent, cookies_recv, cookies_failed) = (
        stack_counter(&metrics, "syncookies_sent"),
        stack_counter(&metrics, "syncookies_recv"),
        stack_counter(&metrics, "syncookies_failed"),
    );
    let share = legit.succeeded as f64 / legit.attempts as f64;
    let (p50, p99) = (legit.connect_percentile(0.5), legit.connect_percentile(0.99));
    eprintln!(
        "flood: {sent} SYNs in {} s ({:.0}/s); legitimate: {} of {} succeeded ({:.2}%), connect p50 {p50:?} p99 \
         {p99:?}; cookies sent {cookies_sent}, recv {cookies_recv}, failed {cookies_failed}; RSS {rss_before} -> \
         peak {rss_peak} KiB",
        FLOOD.as_secs(),
        sent as f64 / FLOOD.as_secs_f64(),
        legit.succeeded,
        legit.attempts,
        share * 100.0
    );
    assert!(sent >= FLOOD_SYNS_MIN, "hping3 sent only {sent} SYNs");
    assert!(legit.attempts >= 100, "the legitimate client made only {} attempts", legit.attempts);
    assert!(
        share >= 0.99,
        "{} of {} legitimate requests failed: {:?}",
        legit.attempts - legit.succeeded,
        legit.attempts,
        legit.failures
    );
    assert!(cookies_sent > 0, "no SYN cookie counted in the metrics:\n{metrics}");
    assert!(cookies_recv > 0, "no connection was made from a cookie (the legitimate client's came through them)");
    assert!(rss_peak < rss_before + RSS_GROWTH_MAX_KIB, "memory grew from {rss_before} to {rss_peak} KiB");
    drop(server);
}
