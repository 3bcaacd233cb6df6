//! The load generator on kernel sockets against loopback servers of known
//! behaviour: latency matches the service time at low load, the open-loop rate
//! is held within 2%, queueing is charged from the intended send time, and bad
//! servers yield counted errors, never a hang.

mod support;

use std::net::SocketAddrV4;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use ix_benches::loadgen::{self, ConnectionUse, KernelNet, LoadConfig, MemcacheWorkload, Mode, Report, Workload};
use support::{Behaviour, TestServer};

/// The tests spin a client core each: run them one at a time on this 2-core box.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

fn http(target: SocketAddrV4, connections: usize, mode: Mode, secs: f64) -> LoadConfig {
    LoadConfig {
        target,
        connections,
        mode,
        workload: Workload::Http { host: target.to_string(), path: "/".into() },
        warmup: Duration::from_millis(300),
        duration: Duration::from_secs_f64(secs),
        drain: Duration::from_millis(500),
        connect_timeout: Duration::from_secs(2),
        connect_rate: None,
        seed: 42,
        timeline: false,
        connection_use: ConnectionUse::KeepAlive,
    }
}

fn run(cfg: &LoadConfig) -> Report {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let report = rt.block_on(loadgen::run(&KernelNet::default(), cfg)).expect("the run starts");
    eprintln!("{}", report.summary());
    report
}

fn ms(us: f64) -> f64 {
    us / 1000.0
}

#[test]
fn low_load_latency_matches_the_service_time() {
    let _serial = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let service = Duration::from_millis(2);
    let server = TestServer::start(Behaviour::HttpServiceTime(service));
    // 200 req/s over 16 connections: no request waits for a connection.
    let report = run(&http(server.addr, 16, Mode::Open { rate: 200.0 }, 3.0));
    assert_eq!(report.errors.total(), 0, "{:?}", report.errors);
    assert_eq!((report.unsent, report.unanswered), (0, 0));
    assert!(report.completed > 450, "completed {}", report.completed);
    // Thread sleep plus loopback: at least the service time, and not much more.
    let p50 = ms(report.latency_us.p50);
    assert!((2.0..2.0 + 0.6).contains(&p50), "p50 {p50} ms for a 2 ms service");
    assert!(report.latency_us.p99 >= 2000.0, "p99 below the service time: {:?}", report.latency_us);
    let total: u64 = report.histogram.iter().map(|b| b.count).sum();
    assert_eq!(total, report.scheduled, "every request of the window is in the histogram");
}

#[test]
fn memcache_latency_matches_the_service_time_and_prefilled_gets_hit() {
    let _serial = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let server = TestServer::start(Behaviour::Memcache(Duration::from_millis(1)));
    let mut cfg = http(server.addr, 8, Mode::Open { rate: 200.0 }, 2.0);
    let workload = MemcacheWorkload::fixed(0.8, 500, 20, 100);
    cfg.workload = Workload::Memcache { workload, prefill: true };
    let report = run(&cfg);
    assert_eq!(report.protocol, "memcache");
    assert_eq!(report.errors.total(), 0, "{:?}", report.errors);
    assert_eq!(report.misses, 0, "every key was stored before the run");
    let p50 = ms(report.latency_us.p50);
    assert!((1.0..1.6).contains(&p50), "p50 {p50} ms for a 1 ms service");
}

#[test]
fn a_counted_run_sends_exactly_its_requests_and_window_is_told() {
    let _serial = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let server = TestServer::start(Behaviour::HttpServiceTime(Duration::ZERO));
    // 7 connections share 250 requests: the budget is global, not per connection.
    let mut cfg = http(server.addr, 7, Mode::Counted { requests: 250 }, 60.0);
    cfg.warmup = Duration::ZERO;
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let mut told = None;
    let started = Instant::now();
    let report = rt
        .block_on(loadgen::run_with_window(&KernelNet::default(), &cfg, |start, end| told = Some((start, end))))
        .expect("the run starts");
    assert_eq!(report.errors.total(), 0, "{:?}", report.errors);
    assert_eq!((report.sent, report.completed), (250, 250));
    assert!(started.elapsed() < Duration::from_secs(30), "the run ended with its budget, not its window");
    let (start, end) = told.expect("the window was told");
    assert_eq!(end - start, Duration::from_secs(60));
}

#[test]
fn open_loop_holds_the_rate_within_two_percent() {
    let _serial = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let server = TestServer::start(Behaviour::HttpServiceTime(Duration::ZERO));
    let rate = 10_000.0;
    let report = run(&http(server.addr, 16, Mode::Open { rate }, 3.0));
    assert_eq!(report.errors.total(), 0, "{:?}", report.errors);
    for (what, value) in [("send rate", report.send_rate), ("throughput", report.throughput)] {
        let off = (value - rate).abs() / rate;
        assert!(off < 0.02, "{what} {value:.0}/s is {:.2}% off {rate}/s", off * 100.0);
    }
    assert!(report.send_lag_us.p50 < 1000.0, "requests go out late: {:?}", report.send_lag_us);
}

#[test]
fn open_loop_charges_queueing_from_the_intended_time() {
    let _serial = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    // One request at a time, 10 ms each, offered at 150/s: 1.5x overloaded.
    let server = TestServer::start(Behaviour::HttpSerialized(Duration::from_millis(10)));
    let report = run(&http(server.addr, 4, Mode::Open { rate: 150.0 }, 2.0));
    // A closed-loop tool would report ~10-40 ms; the queue grows by ~0.5 s per
    // second, so the tail must show it.
    assert!(report.latency_us.p99 > 300_000.0, "queueing hidden: {:?}", report.latency_us);
    assert!(report.throughput < 110.0, "throughput {} above the server's 100/s", report.throughput);
    assert!(report.unsent + report.unanswered > 0, "an overloaded run leaves requests behind");
    // The closed loop on the same server: latency is the service time times the
    // connections queued in front, never more.
    let closed = run(&http(server.addr, 1, Mode::Closed, 1.0));
    let p50 = ms(closed.latency_us.p50);
    assert!((10.0..11.5).contains(&p50), "closed-loop p50 {p50} ms");
    assert!((85.0..101.0).contains(&closed.throughput), "closed-loop throughput {}", closed.throughput);
}

#[test]
fn bad_servers_give_counted_errors_not_a_hang() {
    let _serial = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let cases: [(&[u8], &str); 3] = [
        (b"HTTP/1.1 200 OK\r\nContent-Length: zz\r\n\r\n", "bad length"),
        (b"SSH-2.0-OpenSSH\r\n\r\n", "not HTTP"),
        (b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nokEXTRA", "unsolicited bytes"),
    ];
    for (reply, what) in cases {
        let server = TestServer::start(Behaviour::Fixed(reply));
        let started = Instant::now();
        let report = run(&http(server.addr, 4, Mode::Open { rate: 200.0 }, 1.0));
        assert!(started.elapsed() < Duration::from_secs(5), "{what}: the run overstayed");
        assert!(report.errors.protocol > 50, "{what}: {:?}", report.errors);
        assert_eq!(report.completed, 0, "{what}: nothing valid came back");
    }
    let server = TestServer::start(Behaviour::Fixed(b"HTTP/1.1 503 Busy\r\nContent-Length: 0\r\n\r\n"));
    let report = run(&http(server.addr, 4, Mode::Open { rate: 200.0 }, 1.0));
    assert!(report.errors.error_replies > 150 && report.errors.protocol == 0, "{:?}", report.errors);
    // A server that never answers: the run ends after its drain, and every
    // request is accounted for as unanswered or unsent.
    let server = TestServer::start(Behaviour::Silent);
    let started = Instant::now();
    let report = run(&http(server.addr, 4, Mode::Open { rate: 200.0 }, 1.0));
    assert!(started.elapsed() < Duration::from_secs(5), "silent server: the run overstayed");
    assert_eq!(report.completed, 0);
    assert_eq!(report.unanswered + report.unsent, report.scheduled, "{report:?}");
}

#[test]
fn one_connection_per_request_opens_and_times_a_connection_for_each() {
    let _serial = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let server = TestServer::start(Behaviour::HttpServiceTime(Duration::from_millis(1)));
    let cfg = LoadConfig {
        connection_use: ConnectionUse::OnePerRequest,
        ..http(server.addr, 4, Mode::Open { rate: 100.0 }, 2.0)
    };
    let report = run(&cfg);
    assert_eq!(report.errors.total(), 0, "{:?}", report.errors);
    assert!(report.scheduled > 150, "scheduled {}", report.scheduled);
    assert_eq!(report.succeeded, report.scheduled, "every request of the window answered");
    assert_eq!(report.connects, report.scheduled, "one connection per request of the window");
    let accepted = server.accepted.load(std::sync::atomic::Ordering::Relaxed) as u64;
    assert!(accepted >= report.scheduled, "the server accepted {accepted} connections");
    assert!(report.connect_us.p50 > 0.0 && report.connect_us.p99 < 100_000.0, "{:?}", report.connect_us);
}

#[test]
fn no_server_is_a_connect_error() {
    let _serial = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    // Bind then drop a listener: nothing listens on that port now.
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let cfg = http(SocketAddrV4::new(std::net::Ipv4Addr::LOCALHOST, port), 2, Mode::Closed, 0.5);
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let err = rt.block_on(loadgen::run(&KernelNet::default(), &cfg)).unwrap_err();
    assert!(err.to_string().contains("could not connect"), "{err}");
}

#[test]
fn a_connect_rate_spreads_the_opening_over_time() {
    let _serial = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let server = TestServer::start(Behaviour::HttpServiceTime(Duration::ZERO));
    // 41 connections at 200 per second: the last attempt starts 200 ms after the first.
    let cfg = LoadConfig { connect_rate: Some(200.0), ..http(server.addr, 41, Mode::Open { rate: 100.0 }, 0.5) };
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let started = Instant::now();
    let mut opened_after = None;
    let report = rt
        .block_on(loadgen::run_with_window(&KernelNet::default(), &cfg, |_, _| opened_after = Some(started.elapsed())))
        .expect("the run starts");
    let opened_after = opened_after.expect("the window was told");
    assert!(opened_after >= Duration::from_millis(200), "41 connects at 200/s took only {opened_after:?}");
    assert_eq!(report.errors.total(), 0, "{:?}", report.errors);
    assert_eq!(server.accepted.load(std::sync::atomic::Ordering::Relaxed), 41, "every connection opened once");
    let bad = LoadConfig { connect_rate: Some(0.0), ..cfg };
    assert!(bad.validate().unwrap_err().to_string().contains("connect rate"));
}
