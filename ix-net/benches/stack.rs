//! Whole-stack throughput on one core: two `Stack`s driven from one thread over
//! the in-process `mem` wire, measuring 64-byte request/response round trips and
//! bulk TCP throughput against real monotonic time. Run: `cargo bench -p ix-net --bench stack`.
//! `--count rr|bulk N` runs a fixed amount of work on a virtual clock instead, for instruction counts.

use std::net::{Ipv4Addr, SocketAddrV4};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant as WallInstant};

use bytes::Bytes;
use ix_driver::MemQueue;
use ix_driver::mem::{ManualClock, MemWire, MemWireConfig, MonotonicClock, WireClock};
use ix_driver::{HugePages, NetQueue, PacketBuf, PacketPool, PoolConfig};
use ix_net::wire::EthernetAddress;
use ix_net::{Instant, Readiness, SocketHandle, Stack, StackConfig};

/// Frames per receive burst, as the runtime's default batch.
const BATCH_PACKETS: usize = 64;
/// Frames in each stack's pool.
const POOL_FRAMES: u32 = 8192;
/// Port the server listens on.
const SERVER_PORT: u16 = 7000;
/// Message size of the request/response test.
const MESSAGE_BYTES: usize = 64;
/// Concurrent connections of the request/response test.
const RR_CONNECTIONS: usize = 64;
/// Bytes handed to one `tcp_send` in the bulk test.
const BULK_WRITE_BYTES: usize = 64 * 1024;
/// The preallocated buffer the bulk sender slices.
const BULK_BUFFER_BYTES: usize = 4 << 20;
/// Round-trip target from the issue, per second.
const TARGET_ROUND_TRIPS_PER_SEC: f64 = 1_000_000.0;
/// Bulk target in Gbit/s.
const TARGET_BULK_GBIT_PER_SEC: f64 = 20.0;
/// Virtual time one loop round takes in `--count` mode: about what a round of
/// 64 round trips takes on a core, so no retransmission or delayed-ACK timer
/// fires that would not fire in a timed run.
const COUNT_ROUND_MICROS: u64 = 20;
/// Round trips, or bulk KiB, completed before a `--count` run starts counting.
const COUNT_WARMUP: u64 = 1000;

/// How long and how often to measure.
#[derive(Debug, Clone)]
struct Plan {
    runs: usize,
    warmup: Duration,
    measure: Duration,
    /// Run only this test ("rr" or "bulk"), for profiling one at a time.
    only: Option<String>,
    /// Instead of timed runs, one run of this many round trips ("rr") or bulk
    /// KiB ("bulk") on a virtual clock: the same work every time, to be counted
    /// in instructions (`scripts/instr-count.sh`).
    count: Option<(String, u64)>,
}

impl Plan {
    fn from_args() -> Result<Self, String> {
        let mut plan = Plan {
            runs: 5,
            warmup: Duration::from_millis(500),
            measure: Duration::from_secs(2),
            only: None,
            count: None,
        };
        let mut args = std::env::args().skip(1);
        while let Some(arg) = args.next() {
            match arg.as_str() {
                "--quick" => {
                    plan.runs = 3;
                    plan.warmup = Duration::from_millis(100);
                    plan.measure = Duration::from_millis(300);
                }
                "--only" => plan.only = Some(args.next().filter(|v| v == "rr" || v == "bulk").ok_or("--only rr|bulk")?),
                "--count" => {
                    let test = args.next().filter(|v| v == "rr" || v == "bulk").ok_or("--count rr|bulk N")?;
                    plan.count = Some((test, parse_next(&mut args, "--count rr|bulk")?));
                }
                "--runs" => plan.runs = parse_next(&mut args, "--runs")?,
                "--secs" => plan.measure = Duration::from_secs_f64(parse_next(&mut args, "--secs")?),
                // Passed by `cargo bench`.
                "--bench" => {}
                other => {
                    return Err(format!(
                        "unknown argument {other:?} (use --quick, --runs N, --secs S, --only rr|bulk, --count rr|bulk N)"
                    ));
                }
            }
        }
        if plan.runs == 0 {
            return Err("--runs must be at least 1".into());
        }
        Ok(plan)
    }
}

fn parse_next<T: std::str::FromStr>(args: &mut impl Iterator<Item = String>, flag: &str) -> Result<T, String> {
    args.next().and_then(|v| v.parse().ok()).ok_or_else(|| format!("{flag} needs a number"))
}

/// One host: a stack, its queue and its bursts.
struct Node {
    stack: Stack,
    queue: MemQueue,
    rx: Vec<PacketBuf>,
    tx: Vec<PacketBuf>,
}

impl Node {
    /// One round of the runtime's loop: receive, ingress, the application's
    /// turn, timers, egress, transmit.
    fn poll(&mut self, now: Instant, mut app: impl FnMut(&mut Stack)) {
        self.queue.rx_burst(&mut self.rx, BATCH_PACKETS);
        for frame in self.rx.drain(..) {
            self.stack.ingress(frame, now);
        }
        app(&mut self.stack);
        self.stack.on_timers(now);
        self.stack.egress(now, &mut self.tx);
        while !self.tx.is_empty() && self.queue.tx_burst(&mut self.tx) > 0 {}
    }
}

/// Where a pair's time comes from.
enum Timebase {
    /// Real monotonic time since the pair was made.
    Wall(WallInstant),
    /// A clock shared with the wire that moves `COUNT_ROUND_MICROS` per loop
    /// round and never by itself, so a run does the same work every time.
    Virtual(Arc<ManualClock>),
}

/// A server (node 0) and a client (node 1) on one wire.
struct Pair {
    server: Node,
    client: Node,
    timebase: Timebase,
}

impl Pair {
    fn new(virtual_time: bool) -> Self {
        let (clock, timebase): (Arc<dyn WireClock>, _) = if virtual_time {
            let clock = Arc::new(ManualClock::new(0));
            (clock.clone(), Timebase::Virtual(clock))
        } else {
            (Arc::new(MonotonicClock::new()), Timebase::Wall(WallInstant::now()))
        };
        let wire = MemWire::new(MemWireConfig { clock, ..MemWireConfig::default() }).expect("mem wire");
        let node = |i: u16| {
            let pool = PacketPool::new(PoolConfig { frames: POOL_FRAMES, huge_pages: HugePages::Never }).expect("pool");
            let queue = wire.queue(i, 0, pool.clone()).expect("queue");
            let cfg = StackConfig::new(EthernetAddress(queue.mac()), host(i), 24, [i as u8; 16]);
            let stack = Stack::new(cfg, pool, Instant::ZERO).expect("stack");
            Node { stack, queue, rx: Vec::with_capacity(BATCH_PACKETS), tx: Vec::with_capacity(512) }
        };
        Self { server: node(0), client: node(1), timebase }
    }

    /// One loop round of each node, the server first; `now` is read once and
    /// handed to both applications.
    fn round(
        &mut self,
        tally: &mut Tally,
        server_app: &mut impl FnMut(&mut Stack, &mut Tally, Instant),
        client_app: &mut impl FnMut(&mut Stack, &mut Tally, Instant),
    ) {
        let now = self.now();
        self.server.poll(now, |stack| server_app(stack, tally, now));
        self.client.poll(now, |stack| client_app(stack, tally, now));
        if let Timebase::Virtual(clock) = &self.timebase {
            clock.advance(COUNT_ROUND_MICROS);
        }
    }

    fn retransmits(&self) -> u64 {
        [&self.server, &self.client].iter().map(|n| n.stack.stats().tcp.retransmitted_segments).sum()
    }

    /// Resolves each side's neighbour with one UDP datagram each way, so no
    /// SYN waits for ARP (a stack queues only a few frames per unresolved
    /// neighbour; the rest would be dropped and retransmitted a second later).
    fn resolve_neighbours(&mut self) {
        const DISCARD_PORT: u16 = 9;
        for (node, peer) in [(&mut self.server, host(1)), (&mut self.client, host(0))] {
            let udp = node.stack.udp_bind(DISCARD_PORT).expect("udp bind");
            node.stack.udp_send_to(udp, SocketAddrV4::new(peer, DISCARD_PORT), b"hello").expect("udp send");
        }
        for _ in 0..16 {
            self.round(&mut Tally::default(), &mut |_, _, _| {}, &mut |_, _, _| {});
        }
    }

    fn now(&self) -> Instant {
        match &self.timebase {
            Timebase::Wall(origin) => Instant::from_micros(origin.elapsed().as_micros() as u64),
            Timebase::Virtual(clock) => Instant::from_micros(clock.now_micros()),
        }
    }
}

fn host(i: u16) -> Ipv4Addr {
    Ipv4Addr::new(10, 0, 0, i as u8 + 1)
}

/// Per-connection state of the request/response client, by socket slot.
#[derive(Clone, Copy, Default)]
struct Caller {
    /// Round-loop time the outstanding request went out.
    sent_at: Instant,
    /// Reply bytes received so far for the outstanding request.
    got: usize,
    /// Offset in the message pool of the outstanding request.
    offset: usize,
    live: bool,
}

/// Counts of one measurement window.
#[derive(Debug, Default, Clone, Copy)]
struct Tally {
    round_trips: u64,
    latency_micros: u64,
    bytes: u64,
}

/// One measured run: the rate, and the share of wall time the thread was on a CPU.
#[derive(Debug, Clone, Copy)]
struct Sample {
    rate: f64,
    mean_latency_us: f64,
    cpu_share: f64,
    /// Segments either stack retransmitted during the run (0 on a clean wire).
    retransmits: u64,
}

/// Nanoseconds this thread has run on a CPU (from the scheduler's statistics).
fn thread_cpu_nanos() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
    text.split_whitespace().next()?.parse().ok()
}

/// Drives `pair` until `warmup` passed, then measures for `measure`; the
/// callbacks run as the server's and the client's application.
fn measure(
    pair: &mut Pair,
    plan: &Plan,
    tally: &mut Tally,
    server_app: &mut impl FnMut(&mut Stack, &mut Tally, Instant),
    client_app: &mut impl FnMut(&mut Stack, &mut Tally, Instant),
) -> (Duration, Option<u64>) {
    let start = WallInstant::now();
    let mut measuring_since: Option<(WallInstant, Option<u64>)> = None;
    loop {
        pair.round(tally, server_app, client_app);
        match measuring_since {
            None if start.elapsed() >= plan.warmup => {
                *tally = Tally::default();
                measuring_since = Some((WallInstant::now(), thread_cpu_nanos()));
            }
            Some((since, cpu)) if since.elapsed() >= plan.measure => {
                let wall = since.elapsed();
                let cpu = cpu.zip(thread_cpu_nanos()).map(|(a, b)| b - a);
                return (wall, cpu);
            }
            _ => {}
        }
    }
}

/// How a test is driven.
#[derive(Debug, Clone, Copy)]
enum Drive<'a> {
    /// Warm-up and measurement windows of wall-clock time.
    Timed(&'a Plan),
    /// `COUNT_WARMUP` units of work, then this many more: round trips, or bulk
    /// KiB the server read. Needs a pair on virtual time.
    Counted(u64),
}

/// What a driven test did.
#[derive(Debug, Clone, Copy)]
enum Driven {
    Timed { wall: Duration, cpu: Option<u64> },
    Counted { rounds: u64 },
}

/// Runs `pair` as `how` says; `work` reads the tally's unit of work.
fn drive(
    pair: &mut Pair,
    how: Drive,
    tally: &mut Tally,
    work: impl Fn(&Tally) -> u64,
    server_app: &mut impl FnMut(&mut Stack, &mut Tally, Instant),
    client_app: &mut impl FnMut(&mut Stack, &mut Tally, Instant),
) -> Driven {
    match how {
        Drive::Timed(plan) => {
            let (wall, cpu) = measure(pair, plan, tally, server_app, client_app);
            Driven::Timed { wall, cpu }
        }
        Drive::Counted(units) => {
            while work(tally) < COUNT_WARMUP {
                pair.round(tally, server_app, client_app);
            }
            *tally = Tally::default();
            let mut rounds = 0;
            while work(tally) < units {
                pair.round(tally, server_app, client_app);
                rounds += 1;
            }
            Driven::Counted { rounds }
        }
    }
}

/// A test's result: its tally, how it was driven and the segments retransmitted.
struct Outcome {
    tally: Tally,
    driven: Driven,
    retransmits: u64,
}

impl Outcome {
    /// The timed sample, with `rate_count` units over the window.
    fn sample(&self, rate_count: impl Fn(&Tally) -> u64) -> Result<Sample, String> {
        match self.driven {
            Driven::Timed { wall, cpu } => {
                Ok(Sample { retransmits: self.retransmits, ..sample(rate_count(&self.tally), &self.tally, wall, cpu) })
            }
            Driven::Counted { .. } => Err("a counted run has no rate".into()),
        }
    }
}

fn sample(rate_count: u64, tally: &Tally, wall: Duration, cpu: Option<u64>) -> Sample {
    let secs = wall.as_secs_f64();
    Sample {
        rate: rate_count as f64 / secs,
        mean_latency_us: if tally.round_trips > 0 {
            tally.latency_micros as f64 / tally.round_trips as f64
        } else {
            f64::NAN
        },
        cpu_share: cpu.map_or(f64::NAN, |c| c as f64 / wall.as_nanos() as f64),
        retransmits: 0,
    }
}

/// Server side of both tests: accepts, and hands each readable connection's
/// data to `on_data`.
fn serve(stack: &mut Stack, listener: SocketHandle, on_data: &mut impl FnMut(&mut Stack, SocketHandle)) {
    while let Some((handle, bits)) = stack.poll_event() {
        if handle == listener {
            while let Ok(Some(conn)) = stack.tcp_accept(listener) {
                on_data(stack, conn);
            }
        } else if bits.contains(Readiness::READABLE) {
            on_data(stack, handle);
        }
    }
}

/// Echoes everything readable on `conn`, copying into frames of the pool
/// (`alloc_tx`, the zero-copy send path).
fn echo(stack: &mut Stack, conn: SocketHandle) {
    while let Ok(Some(chunk)) = stack.tcp_recv(conn) {
        let mut frame = stack.alloc_tx().expect("a free frame for the echo");
        frame.extend_from_slice(&chunk).expect("a message fits a frame");
        drop(chunk);
        let n = stack.tcp_send_frame(conn, frame.freeze()).expect("echo send");
        assert!(n > 0, "echo did not fit the send queue");
    }
}

/// 64-byte request/response over 64 connections: one outstanding message each.
fn round_trips(how: Drive) -> Result<Outcome, String> {
    let mut pair = Pair::new(matches!(how, Drive::Counted(_)));
    pair.resolve_neighbours();
    let listener = pair.server.stack.tcp_listen(SERVER_PORT, 1024).map_err(|e| e.to_string())?;
    let now = pair.now();
    let server_addr = SocketAddrV4::new(host(0), SERVER_PORT);
    let mut callers = Vec::new();
    for _ in 0..RR_CONNECTIONS {
        let h = pair.client.stack.tcp_connect(server_addr, now, &|_| true).map_err(|e| e.to_string())?;
        if callers.len() <= h.index() {
            callers.resize(h.index() + 1, (h, Caller::default()));
        }
        callers[h.index()] = (h, Caller::default());
    }
    // Distinct message contents, so a misrouted reply is caught.
    let messages: Bytes =
        (0..MESSAGE_BYTES * 251).map(|i| (i * 7 + i / MESSAGE_BYTES) as u8).collect::<Vec<_>>().into();
    let mut next_offset = 0usize;
    let mut failure: Option<String> = None;
    let mut send = |stack: &mut Stack, h: SocketHandle, caller: &mut Caller, now: Instant| {
        caller.offset = next_offset;
        next_offset = (next_offset + MESSAGE_BYTES) % messages.len();
        caller.got = 0;
        caller.sent_at = now;
        let n = stack.tcp_send(h, messages.slice(caller.offset..caller.offset + MESSAGE_BYTES)).expect("send");
        assert_eq!(n, MESSAGE_BYTES, "request did not fit the send queue");
    };
    let mut client_app = |stack: &mut Stack, tally: &mut Tally, now: Instant| {
        while let Some((h, bits)) = stack.poll_event() {
            let Some((_, caller)) = callers.get_mut(h.index()).filter(|(k, _)| *k == h) else { continue };
            if !caller.live && bits.intersects(Readiness::ESTABLISHED | Readiness::WRITABLE) {
                caller.live = true;
                send(stack, h, caller, now);
            }
            if !bits.contains(Readiness::READABLE) {
                continue;
            }
            while let Ok(Some(chunk)) = stack.tcp_recv(h) {
                let at = caller.offset + caller.got;
                let expect = messages.get(at..at + chunk.len());
                if caller.got + chunk.len() > MESSAGE_BYTES || expect != Some(&chunk[..]) {
                    failure.get_or_insert_with(|| format!("reply on {h:?} does not match its request"));
                }
                caller.got += chunk.len();
            }
            if caller.got >= MESSAGE_BYTES {
                tally.round_trips += 1;
                tally.latency_micros += now.as_micros() - caller.sent_at.as_micros();
                send(stack, h, caller, now);
            }
        }
    };
    let mut server_app = |stack: &mut Stack, _: &mut Tally, _: Instant| serve(stack, listener, &mut echo);
    let mut tally = Tally::default();
    let driven = drive(&mut pair, how, &mut tally, |t| t.round_trips, &mut server_app, &mut client_app);
    if let Some(f) = failure {
        return Err(f);
    }
    let live = callers.iter().filter(|(_, c)| c.live).count();
    if live != RR_CONNECTIONS {
        return Err(format!("only {live} of {RR_CONNECTIONS} connections were established"));
    }
    Ok(Outcome { tally, driven, retransmits: pair.retransmits() })
}

/// Bulk transfer on one connection: the client sends slices of one buffer
/// without pause, the server reads and drops; counts payload delivered.
fn bulk(how: Drive) -> Result<Outcome, String> {
    let mut pair = Pair::new(matches!(how, Drive::Counted(_)));
    pair.resolve_neighbours();
    let listener = pair.server.stack.tcp_listen(SERVER_PORT, 16).map_err(|e| e.to_string())?;
    let now = pair.now();
    let client = pair
        .client
        .stack
        .tcp_connect(SocketAddrV4::new(host(0), SERVER_PORT), now, &|_| true)
        .map_err(|e| e.to_string())?;
    let buffer: Bytes = (0..BULK_BUFFER_BYTES).map(|i| (i % 253) as u8).collect::<Vec<_>>().into();
    let mut offset = 0usize;
    let mut server_app = |stack: &mut Stack, tally: &mut Tally, _: Instant| {
        serve(stack, listener, &mut |stack, conn| {
            while let Ok(Some(chunk)) = stack.tcp_recv(conn) {
                tally.bytes += chunk.len() as u64;
            }
        })
    };
    let mut client_app = |stack: &mut Stack, _: &mut Tally, _: Instant| {
        while stack.poll_event().is_some() {}
        loop {
            let end = (offset + BULK_WRITE_BYTES).min(buffer.len());
            match stack.tcp_send(client, buffer.slice(offset..end)) {
                Ok(0) | Err(_) => break,
                Ok(n) => offset = (offset + n) % buffer.len(),
            }
        }
    };
    let mut tally = Tally::default();
    let driven = drive(&mut pair, how, &mut tally, |t| t.bytes / 1024, &mut server_app, &mut client_app);
    Ok(Outcome { tally, driven, retransmits: pair.retransmits() })
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    let n = values.len();
    if n % 2 == 1 { values[n / 2] } else { (values[n / 2 - 1] + values[n / 2]) / 2.0 }
}

/// Medians of the runs, and the spread.
struct Summary {
    rate: f64,
    min: f64,
    max: f64,
    latency_us: f64,
    cpu_share: f64,
    /// Median of rate / CPU share: the rate per second the thread actually ran.
    per_cpu_second: f64,
    retransmits: u64,
}

fn summarize(samples: &[Sample]) -> Summary {
    let mut rates: Vec<f64> = samples.iter().map(|s| s.rate).collect();
    let mut lat: Vec<f64> = samples.iter().map(|s| s.mean_latency_us).collect();
    let mut cpu: Vec<f64> = samples.iter().map(|s| s.cpu_share).collect();
    let mut per_cpu: Vec<f64> = samples.iter().map(|s| s.rate / s.cpu_share).collect();
    let rate = median(&mut rates);
    Summary {
        rate,
        min: rates[0],
        max: rates[rates.len() - 1],
        latency_us: median(&mut lat),
        cpu_share: median(&mut cpu),
        per_cpu_second: median(&mut per_cpu),
        retransmits: samples.iter().map(|s| s.retransmits).sum(),
    }
}

fn run(name: &str, plan: &Plan, f: impl Fn(&Plan) -> Result<Sample, String>) -> Result<Vec<Sample>, String> {
    (0..plan.runs)
        .map(|i| {
            let s = f(plan).map_err(|e| format!("{name}, run {}: {e}", i + 1))?;
            eprintln!(
                "  {name} run {}: {:.4e}/s, cpu share {:.2}, retransmitted segments {}",
                i + 1,
                s.rate,
                s.cpu_share,
                s.retransmits
            );
            Ok(s)
        })
        .collect()
}

fn verdict(value: f64, target: f64) -> &'static str {
    if value >= target { "yes" } else { "no" }
}

/// Column layout shared by the header and the rows.
macro_rules! row {
    ($($arg:expr),* $(,)?) => {
        println!("{:<36} {:>9} {:>9} .. {:<9} {:<6} {:>5} {:>11} {:>7} {:>4}", $($arg),*)
    };
}

/// One table row per test, in the unit of its target; the verdict is on the
/// wall-clock median.
fn print_row(label: &str, unit: &str, scale: f64, summary: &Summary, target: f64) {
    let f = |v: f64| format!("{:.3}", v / scale);
    row!(
        label,
        f(summary.rate),
        f(summary.min),
        f(summary.max),
        unit,
        format!("{:.2}", summary.cpu_share),
        f(summary.per_cpu_second),
        format!(">= {target}"),
        verdict(summary.rate / scale, target)
    );
}

/// `--count`: one run of `units` round trips or bulk KiB on virtual time,
/// reported in one line that `scripts/instr-count.sh` reads.
fn counted(test: &str, units: u64) -> ExitCode {
    let (outcome, unit) = match test {
        "rr" => (round_trips(Drive::Counted(units)), "round trips"),
        _ => (bulk(Drive::Counted(units)), "KiB"),
    };
    match outcome.map(|o| (o.driven, o.retransmits)) {
        Ok((Driven::Counted { rounds }, retransmits)) => {
            println!(
                "counted {test}: {units} {unit} after {COUNT_WARMUP} of warm-up, {rounds} loop rounds, \
                 retransmitted segments {retransmits}"
            );
            ExitCode::SUCCESS
        }
        Ok((timed, _)) => {
            eprintln!("stack bench: a counted run came back as {timed:?}");
            ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("stack bench failed: {e}");
            ExitCode::FAILURE
        }
    }
}

fn main() -> ExitCode {
    let plan = match Plan::from_args() {
        Ok(p) => p,
        Err(e) => {
            eprintln!("stack bench: {e}");
            return ExitCode::from(2);
        }
    };
    if let Some((test, units)) = &plan.count {
        return counted(test, *units);
    }
    let wants = |name: &str| plan.only.as_deref().is_none_or(|o| o == name);
    let rr_sample = |plan: &Plan| round_trips(Drive::Timed(plan))?.sample(|t| t.round_trips);
    let bulk_sample = |plan: &Plan| bulk(Drive::Timed(plan))?.sample(|t| t.bytes * 8);
    let rr = if wants("rr") { run("request/response", &plan, rr_sample).map(Some) } else { Ok(None) };
    let bulk = if wants("bulk") { run("bulk", &plan, bulk_sample).map(Some) } else { Ok(None) };
    let (rr, bulk) = match rr.and_then(|rr| Ok((rr, bulk?))) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("stack bench failed: {e}");
            return ExitCode::FAILURE;
        }
    };
    let args: Vec<String> = std::env::args().skip(1).filter(|a| a != "--bench").collect();
    let args = if args.is_empty() { String::new() } else { format!(" -- {}", args.join(" ")) };
    println!();
    println!("ix-net stack benchmark: two stacks on one thread over the mem wire, real monotonic clock");
    println!("command: cargo bench -p ix-net --bench stack{args}");
    println!(
        "runs: {} x {:.1} s after {:.1} s warm-up each; median (min .. max); cpu = share of wall time on a CPU",
        plan.runs,
        plan.measure.as_secs_f64(),
        plan.warmup.as_secs_f64()
    );
    println!("per CPU-s = rate / cpu, the rate per second the thread actually ran (robust to a busy box)");
    println!();
    row!("benchmark", "median", "min", "max", "unit", "cpu", "per CPU-s", "target", "met");
    if let Some(rr) = rr.as_deref().map(summarize) {
        let label = format!("{MESSAGE_BYTES} B request/response, {RR_CONNECTIONS} conns");
        print_row(&label, "MRT/s", 1e6, &rr, TARGET_ROUND_TRIPS_PER_SEC / 1e6);
        println!("{:<36} {:>9.2} us", "  mean latency per round trip", rr.latency_us);
        println!("{:<36} {:>9}", "  retransmitted segments, all runs", rr.retransmits);
    }
    if let Some(bulk) = bulk.as_deref().map(summarize) {
        print_row("bulk TCP, 1500 B MTU, 1 conn", "Gbit/s", 1e9, &bulk, TARGET_BULK_GBIT_PER_SEC);
        println!("{:<36} {:>9}", "  retransmitted segments, all runs", bulk.retransmits);
    }
    ExitCode::SUCCESS
}
