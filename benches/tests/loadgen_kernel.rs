//! The load generator on kernel sockets against loopback servers of known
//! behaviour: every request of the seeded schedule is sent and accounted for,
//! latency is never below the service time and near it at low load, the
//! open-loop rate is held, queueing is charged from the intended send time, and
//! bad servers yield counted errors, never a hang. The machine may be busy with
//! other work: counts are checked exactly, times only against generous bounds.

mod support;

use std::net::SocketAddrV4;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use ix_benches::loadgen::{
    self, ConnectionUse, KernelNet, LoadConfig, MemcacheWorkload, Mode, PoissonSchedule, Report, Workload,
};
use support::{Behaviour, TestServer};

/// The tests spin a client core each: run them one at a time on this 2-core box.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

/// How far above what the server takes a median latency (or the client's send
/// lag) may be. What is above the service time at low load is wake-ups: the
/// client's timer, the server thread's, the client's on the reply. On a 2-CPU
/// machine busy with builds and other tests each can wait behind a few
/// scheduler slices of 3 ms (EEVDF's default), so a median 25 ms above the
/// service time says the generator adds the delay, not the machine.
const LOADED_MACHINE_SLACK: Duration = Duration::from_millis(25);

/// A drain for servers that answer every request: the run waits only while
/// requests are out, so a long drain costs nothing once they are answered,
/// and a loaded machine cannot leave one unanswered.
const DRAIN_UNTIL_ANSWERED: Duration = Duration::from_secs(10);

/// Most time a run may take beyond its warm-up, window and drain (opening the
/// connections, storing the keys, a loaded machine); a run that hangs takes
/// forever.
const RUN_OVERHEAD_MAX: Duration = Duration::from_secs(3);

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
        seed: 42,
        timeline: false,
        connection_use: ConnectionUse::KeepAlive,
    }
}

/// Runs `cfg` on kernel sockets; checks that the run ended in time (no hang).
fn run(cfg: &LoadConfig) -> Report {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let started = Instant::now();
    let report = rt.block_on(loadgen::run(&KernelNet::default(), cfg)).expect("the run starts");
    eprintln!("{}", report.summary());
    let most = cfg.warmup + cfg.duration + cfg.drain + RUN_OVERHEAD_MAX;
    assert!(started.elapsed() < most, "the run took {:?}, over its time and drain", started.elapsed());
    report
}

fn ms(us: f64) -> f64 {
    us / 1000.0
}

/// How many intended send times of `cfg`'s open-loop schedule fall in
/// `[from, to)` after the run's start: the generator draws them from its seed,
/// so they are known before the run.
fn arrivals_between(cfg: &LoadConfig, from: Duration, to: Duration) -> u64 {
    let Mode::Open { rate } = cfg.mode else { panic!("only an open loop has a schedule") };
    let start = Instant::now();
    let mut schedule = PoissonSchedule::new(rate, cfg.seed, start);
    let arrivals = std::iter::repeat_with(|| schedule.next_arrival() - start).take_while(|&at| at < to);
    arrivals.filter(|&at| at >= from).count() as u64
}

/// The requests of `cfg`'s measured window.
fn arrivals_in_window(cfg: &LoadConfig) -> u64 {
    arrivals_between(cfg, cfg.warmup, cfg.warmup + cfg.duration)
}

/// The requests of `cfg`'s whole run, warm-up included.
fn arrivals_in_run(cfg: &LoadConfig) -> u64 {
    arrivals_between(cfg, Duration::ZERO, cfg.warmup + cfg.duration)
}

/// The fastest latency in the report's histogram (its lowest bucket's top).
fn fastest(report: &Report) -> Duration {
    Duration::from_nanos(report.histogram.first().expect("a request was recorded").value_ns)
}

/// Requests of the window in the histogram: one each, answered or not.
fn recorded(report: &Report) -> u64 {
    report.histogram.iter().map(|b| b.count).sum()
}

/// Every request of the seeded window was scheduled, answered with success
/// and recorded once.
fn assert_every_request_succeeded(cfg: &LoadConfig, report: &Report) {
    assert_eq!(report.errors.total(), 0, "{:?}", report.errors);
    assert_eq!(report.scheduled, arrivals_in_window(cfg), "the seeded schedule, request for request");
    assert_eq!((report.succeeded, report.unsent, report.unanswered), (report.scheduled, 0, 0));
    assert_eq!(recorded(report), report.scheduled, "every request of the window is in the histogram");
}

/// No request was faster than `service` (latency runs from the intended send
/// time, the server sleeps `service`), and the median is near it.
fn assert_latency_near(report: &Report, service: Duration) {
    assert!(fastest(report) >= service, "a request took {:?}, below the {service:?} service", fastest(report));
    let p50 = Duration::from_secs_f64(report.latency_us.p50 / 1e6);
    assert!(p50 < service + LOADED_MACHINE_SLACK, "p50 {p50:?} for a {service:?} service");
}

#[test]
fn low_load_latency_matches_the_service_time() {
    let _serial = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let service = Duration::from_millis(2);
    let server = TestServer::start(Behaviour::HttpServiceTime(service));
    // 200 req/s over 16 connections: no request waits for a connection.
    let cfg = LoadConfig { drain: DRAIN_UNTIL_ANSWERED, ..http(server.addr, 16, Mode::Open { rate: 200.0 }, 3.0) };
    let report = run(&cfg);
    assert_every_request_succeeded(&cfg, &report);
    // Thread sleep plus loopback: at least the service time, and not much more.
    assert_latency_near(&report, service);
}

#[test]
fn memcache_latency_matches_the_service_time_and_prefilled_gets_hit() {
    let _serial = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let service = Duration::from_millis(1);
    let server = TestServer::start(Behaviour::Memcache(service));
    let mut cfg = LoadConfig { drain: DRAIN_UNTIL_ANSWERED, ..http(server.addr, 8, Mode::Open { rate: 200.0 }, 2.0) };
    let workload = MemcacheWorkload::fixed(0.8, 500, 20, 100);
    cfg.workload = Workload::Memcache { workload, prefill: true };
    let report = run(&cfg);
    assert_eq!(report.protocol, "memcache");
    assert_eq!(report.misses, 0, "every key was stored before the run");
    assert_every_request_succeeded(&cfg, &report);
    assert_latency_near(&report, service);
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
    // Waiting for the window would take 60 s; the budget takes well under one.
    assert!(started.elapsed() < Duration::from_secs(30), "the run ended with its budget, not its window");
    let (start, end) = told.expect("the window was told");
    assert_eq!(end - start, Duration::from_secs(60));
}

#[test]
fn open_loop_holds_the_rate() {
    let _serial = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let server = TestServer::start(Behaviour::HttpServiceTime(Duration::ZERO));
    // 2,000 req/s costs the client and server a few percent of a CPU: a
    // loaded machine slows each request, never the rate they can hold.
    let rate = 2_000.0;
    let cfg = LoadConfig { drain: DRAIN_UNTIL_ANSWERED, ..http(server.addr, 16, Mode::Open { rate }, 3.0) };
    let report = run(&cfg);
    assert_every_request_succeeded(&cfg, &report);
    // The schedule offers the rate: 6,000 Poisson arrivals expected, whose
    // count's standard deviation is 1.3%, so 5% is four of them.
    let offered = report.scheduled as f64 / report.window_secs;
    assert!((offered - rate).abs() / rate < 0.05, "the schedule offered {offered:.0}/s for {rate}/s");
    // What the window saw written and answered is its schedule, but for the
    // requests a lag moved across its ends: a lag that differs by 300 ms
    // between the two ends (10% of the window) means the client fell behind.
    for (what, count) in [("sent", report.sent), ("completed", report.completed)] {
        let off = count.abs_diff(report.scheduled) as f64 / report.scheduled as f64;
        assert!(off < 0.1, "{what} {count} in the window for {} scheduled", report.scheduled);
    }
    let lag = Duration::from_secs_f64(report.send_lag_us.p50 / 1e6);
    assert!(lag < LOADED_MACHINE_SLACK, "requests go out late: {:?}", report.send_lag_us);
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
    // The closed loop on the same server, one connection: nothing queues, so
    // latency is the service time, and the connection is never idle, so its
    // requests' latencies fill the window (but for the two that cross its
    // ends), whatever the machine's load makes of each.
    let closed = run(&http(server.addr, 1, Mode::Closed, 1.0));
    assert_latency_near(&closed, Duration::from_millis(10));
    assert!(closed.throughput <= 101.0, "closed-loop throughput {} above the server's 100/s", closed.throughput);
    let busy_ms = ms(closed.latency_us.mean) * recorded(&closed) as f64;
    let crossing_ms = 2.0 * ms(closed.latency_us.max) + LOADED_MACHINE_SLACK.as_secs_f64() * 1e3;
    assert!((busy_ms - 1000.0).abs() <= crossing_ms, "latencies add up to {busy_ms:.0} ms of a 1,000 ms window");
}

#[test]
fn bad_servers_give_counted_errors_not_a_hang() {
    let _serial = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let cases: [(&[u8], &str); 3] = [
        (b"HTTP/1.1 200 OK\r\nContent-Length: zz\r\n\r\n", "bad length"),
        (b"SSH-2.0-OpenSSH\r\n\r\n", "not HTTP"),
        (b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nokEXTRA", "unsolicited bytes"),
    ];
    let answered_cfg = |server: &TestServer| LoadConfig {
        drain: DRAIN_UNTIL_ANSWERED,
        ..http(server.addr, 4, Mode::Open { rate: 200.0 }, 1.0)
    };
    for (reply, what) in cases {
        let server = TestServer::start(Behaviour::Fixed(reply));
        let cfg = answered_cfg(&server);
        let report = run(&cfg);
        // Each request, warm-up included, ends in one counted failure.
        let e = report.errors;
        assert_eq!(e.protocol + e.io + e.connect, arrivals_in_run(&cfg), "{what}: {e:?}");
        assert!(e.protocol > 0 && e.error_replies == 0, "{what}: {e:?}");
        assert_eq!(report.completed, 0, "{what}: nothing valid came back");
    }
    let server = TestServer::start(Behaviour::Fixed(b"HTTP/1.1 503 Busy\r\nContent-Length: 0\r\n\r\n"));
    let cfg = answered_cfg(&server);
    let report = run(&cfg);
    let e = report.errors;
    assert_eq!((e.error_replies, e.protocol, e.io), (arrivals_in_window(&cfg), 0, 0), "{e:?}");
    // A server that never answers: the run ends after its drain, and every
    // request is accounted for as unanswered or unsent.
    let server = TestServer::start(Behaviour::Silent);
    let report = run(&http(server.addr, 4, Mode::Open { rate: 200.0 }, 1.0));
    assert_eq!(report.completed, 0);
    assert_eq!(report.unanswered + report.unsent, report.scheduled, "{report:?}");
}

#[test]
fn one_connection_per_request_opens_and_times_a_connection_for_each() {
    let _serial = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let server = TestServer::start(Behaviour::HttpServiceTime(Duration::from_millis(1)));
    let cfg = LoadConfig {
        connection_use: ConnectionUse::OnePerRequest,
        drain: DRAIN_UNTIL_ANSWERED,
        ..http(server.addr, 4, Mode::Open { rate: 100.0 }, 2.0)
    };
    let report = run(&cfg);
    assert_every_request_succeeded(&cfg, &report);
    assert_eq!(report.connects, report.scheduled, "one connection per request of the window");
    let accepted = server.accepted.load(std::sync::atomic::Ordering::Relaxed) as u64;
    assert_eq!(accepted, arrivals_in_run(&cfg), "one connection per request, warm-up included");
    // A request's connect is part of its latency, so each of its percentiles
    // is at most the latency's.
    let (c, l) = (&report.connect_us, &report.latency_us);
    assert!(c.p50 > 0.0 && c.p50 <= l.p50 && c.p99 <= l.p99 && c.max <= l.max, "connect {c:?}, latency {l:?}");
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
