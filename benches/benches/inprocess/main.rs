//! HTTP/1.1 and memcached end to end in one process, with no kernel in the
//! path: the real `ix-http` service and `ix-kv` server on one IX core, an IX
//! closed-loop client (`ixload`'s generator) on another, joined by the `mem` wire.

#![forbid(unsafe_code)]

mod client;
mod servers;

use std::process::ExitCode;
use std::time::{Duration, Instant};

use ix_benches::harness::machine::{CpuSnapshot, Disturbance, Machine, load_average, process_cpu_secs};
use ix_benches::harness::stats::Spread;
use ix_benches::loadgen::{ConnectionUse, KvPreset, LoadConfig, MemcacheWorkload, Mode, Report, Workload};
use ix_driver::mem::{MemWire, MemWireConfig};
use ix_runtime::IdlePolicy;

use client::{SharedWindow, run_client, sample_thread_cpu, target};
use servers::RunningServer;

/// The protocols served.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    /// `ix-http`'s `GET /` (13 bytes of body), HTTP/1.1 keep-alive.
    Http,
    /// `ix-kv`, memcached text protocol: 90% `get`, 10% `set`, as `ixload`'s
    /// defaults (10,000 keys of 16 bytes, 32-byte values, stored before the run).
    Kv,
    /// `ix-kv` on Facebook's ETC mix as `ixload --workload etc` draws it (75%
    /// `get`, key and value sizes from mutilate's distributions, values up to
    /// 500,000 bytes) over the same 10,000 keys: only with `--only etc`.
    KvEtc,
}

impl Protocol {
    /// What runs when `--only` does not choose.
    const DEFAULT: [Protocol; 2] = [Protocol::Http, Protocol::Kv];
    const ALL: [Protocol; 3] = [Protocol::Http, Protocol::Kv, Protocol::KvEtc];

    fn name(self) -> &'static str {
        match self {
            Protocol::Http => "http",
            Protocol::Kv => "kv",
            Protocol::KvEtc => "etc",
        }
    }

    fn workload(self) -> Workload {
        match self {
            Protocol::Http => Workload::Http { host: target(self.port()).to_string(), path: "/".into() },
            Protocol::Kv => Workload::Memcache {
                workload: MemcacheWorkload::fixed(KV_GET_RATIO, KV_KEYS, KV_KEY_BYTES, KV_VALUE_BYTES),
                prefill: true,
            },
            Protocol::KvEtc => {
                Workload::Memcache { workload: MemcacheWorkload::preset(KvPreset::Etc, KV_KEYS), prefill: true }
            }
        }
    }
}

/// The memcached workload: `ixload`'s defaults.
const KV_GET_RATIO: f64 = 0.9;
const KV_KEYS: u64 = 10_000;
const KV_KEY_BYTES: usize = 16;
const KV_VALUE_BYTES: usize = 32;
/// How long requests still in flight at the window's end may take.
const DRAIN: Duration = Duration::from_secs(2);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// The time bound of a counted run (it ends when its requests are answered).
const COUNTED_RUN_LIMIT: Duration = Duration::from_secs(240);

const USAGE: &str = "\
usage: cargo bench -p ix-benches --bench inprocess -- [--quick] [--reps N] [--duration-ms MS]
           [--warmup-ms MS] [--connections N,N,..] [--only http|kv|etc] [--idle POLICY] [--count N]
  --quick           one repetition of 300 ms per case after 100 ms of warm-up
  --reps N          repetitions, visiting every case in turn each time (default 5)
  --duration-ms MS  measured window per case and repetition (default 2000)
  --warmup-ms MS    closed-loop load before each window, not measured (default 300)
  --connections     connections per case, each with one request in flight (default 1,32,256)
  --only PROTOCOL   http, kv (90% get of 32-byte values) or etc (the ETC mix); default http and kv
  --idle POLICY     both cores' idle policy: busy, block, adaptive[:US] (default busy; with
                    --count, block: a spinning core's empty rounds would count as work)
  --count N         instead of timing: each case sends exactly N requests (after the
                    connections are open and the keys stored) and prints a `counted` line;
                    run it under valgrind --tool=callgrind for instructions per request
                    (scripts/instr-count-e2e.sh)";

/// The command line.
#[derive(Debug)]
struct Options {
    reps: usize,
    warmup: Duration,
    duration: Duration,
    connections: Vec<usize>,
    protocols: Vec<Protocol>,
    idle: Option<IdlePolicy>,
    count: Option<u64>,
}

impl Options {
    fn parse(mut args: impl Iterator<Item = String>) -> Result<Options, String> {
        let mut options = Options {
            reps: 5,
            warmup: Duration::from_millis(300),
            duration: Duration::from_millis(2000),
            connections: vec![1, 32, 256],
            protocols: Protocol::DEFAULT.to_vec(),
            idle: None,
            count: None,
        };
        while let Some(arg) = args.next() {
            let mut value = |name: &str| args.next().ok_or_else(|| format!("{name} needs a value"));
            match arg.as_str() {
                // cargo bench passes --bench to every bench binary.
                "--bench" => {}
                "--quick" => {
                    options.reps = 1;
                    options.warmup = Duration::from_millis(100);
                    options.duration = Duration::from_millis(300);
                }
                "--reps" => options.reps = number(&value(&arg)?, &arg)?.max(1) as usize,
                "--duration-ms" => options.duration = Duration::from_millis(number(&value(&arg)?, &arg)?),
                "--warmup-ms" => options.warmup = Duration::from_millis(number(&value(&arg)?, &arg)?),
                "--connections" => {
                    options.connections = value(&arg)?
                        .split(',')
                        .map(|n| number(n, &arg).map(|n| n as usize))
                        .collect::<Result<_, _>>()?;
                    if options.connections.contains(&0) {
                        return Err("--connections: at least one connection per case".into());
                    }
                }
                "--only" => {
                    let name = value(&arg)?;
                    let protocol = Protocol::ALL.into_iter().find(|p| p.name() == name);
                    options.protocols = vec![protocol.ok_or_else(|| format!("--only {name}: http, kv or etc"))?];
                }
                "--idle" => {
                    let text = value(&arg)?;
                    options.idle = Some(text.parse().map_err(|e| format!("--idle: {e}"))?);
                }
                "--count" => options.count = Some(number(&value(&arg)?, &arg)?.max(1)),
                "--help" | "-h" => return Err(String::new()),
                other => return Err(format!("unknown argument `{other}`")),
            }
        }
        if options.duration.is_zero() {
            return Err("--duration-ms: the measurement needs some time".into());
        }
        Ok(options)
    }

    fn idle(&self) -> IdlePolicy {
        self.idle.unwrap_or(if self.count.is_some() { IdlePolicy::Block } else { IdlePolicy::BusyPoll })
    }

    fn load(&self, protocol: Protocol, connections: usize) -> LoadConfig {
        // A counted run may crawl (under valgrind, on a busy machine): only
        // its whole-run bound limits it, connecting included.
        let (mode, warmup, duration, connect_timeout) = match self.count {
            Some(requests) => (Mode::Counted { requests }, Duration::ZERO, COUNTED_RUN_LIMIT, COUNTED_RUN_LIMIT),
            None => (Mode::Closed, self.warmup, self.duration, CONNECT_TIMEOUT),
        };
        LoadConfig {
            target: target(protocol.port()),
            connections,
            mode,
            workload: protocol.workload(),
            warmup,
            duration,
            drain: DRAIN,
            connect_timeout,
            connect_rate: None,
            seed: 1,
            timeline: false,
            connection_use: ConnectionUse::KeepAlive,
        }
    }
}

fn number(text: &str, flag: &str) -> Result<u64, String> {
    text.trim().parse().map_err(|_| format!("{flag}: `{text}` is not a whole number"))
}

/// What one repetition of one case measured.
#[derive(Debug)]
struct Sample {
    report: Report,
    /// CPU seconds the server's core thread used over the window.
    server_cpu_secs: Option<f64>,
    disturbance: Disturbance,
}

/// One run: a fresh wire, the server, the client to its end, the server
/// stopped. Timed runs pin the two cores to their CPUs; counted runs leave
/// them to the scheduler (what they count does not depend on where they run,
/// and a CPU hogged by another process would only slow them down).
fn run_once(protocol: Protocol, cfg: &LoadConfig, idle: IdlePolicy) -> Result<Sample, String> {
    let pin = !matches!(cfg.mode, Mode::Counted { .. });
    let wire = MemWire::new(MemWireConfig::default()).map_err(|e| format!("mem wire: {e}"))?;
    let server = RunningServer::start(protocol, wire.clone(), idle, pin)?;
    let window = SharedWindow::default();
    let (run_ended, run_ended_rx) = std::sync::mpsc::channel();
    let sampler = sample_thread_cpu(server.tid, window.clone(), run_ended_rx);
    let (machine_before, own_before, started) =
        (CpuSnapshot::take(), process_cpu_secs(std::process::id()), Instant::now());
    let report = run_client(wire, idle, pin, cfg, window);
    drop(run_ended);
    let (machine_after, own_after) = (CpuSnapshot::take(), process_cpu_secs(std::process::id()));
    let stopped = server.finish();
    let report = report?;
    stopped?;
    check(protocol, &report)?;
    let own = own_after.zip(own_before).map_or(0.0, |(after, before)| after - before);
    let disturbance =
        Disturbance::between(&machine_before, &machine_after, started.elapsed().as_secs_f64(), own.max(0.0));
    Ok(Sample { report, server_cpu_secs: sampler.join().ok().flatten(), disturbance })
}

/// Every response was a success: none failed, none was an error reply or a
/// miss (every key was stored first), none was left unanswered.
fn check(protocol: Protocol, report: &Report) -> Result<(), String> {
    let fine = report.errors.total() == 0 && report.misses == 0 && report.unanswered == 0 && report.completed > 0;
    if fine {
        Ok(())
    } else {
        Err(format!("{}: not every response was a success:\n{}", protocol.name(), report.summary()))
    }
}

/// Everything measured for one (protocol, connections) case.
#[derive(Debug)]
struct CaseResult {
    protocol: Protocol,
    connections: usize,
    samples: Vec<Sample>,
}

impl CaseResult {
    fn spread(&self, figure: impl Fn(&Sample) -> Option<f64>) -> Option<Spread> {
        Spread::of(self.samples.iter().filter_map(figure))
    }
}

fn run_timed(options: &Options) -> Result<Vec<CaseResult>, String> {
    let mut cases: Vec<CaseResult> = options
        .protocols
        .iter()
        .flat_map(|&protocol| {
            options.connections.iter().map(move |&connections| CaseResult { protocol, connections, samples: vec![] })
        })
        .collect();
    // Repetitions on the outside: a burst of load from elsewhere touches
    // every case, not one case's every repetition.
    for rep in 1..=options.reps {
        eprintln!("repetition {rep} of {} (load {})", options.reps, load_average());
        for case in &mut cases {
            let cfg = options.load(case.protocol, case.connections);
            let sample = run_once(case.protocol, &cfg, options.idle())
                .map_err(|e| format!("{} with {} connection(s): {e}", case.protocol.name(), case.connections))?;
            case.samples.push(sample);
        }
    }
    Ok(cases)
}

fn print_table(cases: &[CaseResult]) {
    println!(
        "{:<5} {:>5}  {:>26}  {:>8}  {:>8}  {:>5}  {:>26}  {:>6}  {:>5}",
        "proto", "conns", "req/s median [min-max]", "p50 us", "p99 us", "srv", "req per srv CPU-s", "others", "steal"
    );
    for case in cases {
        let show = |s: Option<Spread>, number: fn(f64) -> String| s.map_or("-".into(), |s| s.show(number));
        let rate = case.spread(|s| Some(s.report.throughput));
        let per_cpu_second = case.spread(|s| Some(s.report.completed as f64 / s.server_cpu_secs?));
        let server_share = case.spread(|s| Some(s.server_cpu_secs? / s.report.window_secs));
        let p50 = case.spread(|s| Some(s.report.latency_us.p50));
        let p99 = case.spread(|s| Some(s.report.latency_us.p99));
        let others = case.samples.iter().map(|s| s.disturbance.others_cpus).fold(0.0, f64::max);
        let steal = case.samples.iter().map(|s| s.disturbance.steal_pct).fold(0.0, f64::max);
        println!(
            "{:<5} {:>5}  {:>26}  {:>8}  {:>8}  {:>5}  {:>26}  {:>6.2}  {:>4.1}%",
            case.protocol.name(),
            case.connections,
            show(rate, |v| format!("{v:.0}")),
            p50.map_or("-".into(), |s| format!("{:.1}", s.median)),
            p99.map_or("-".into(), |s| format!("{:.1}", s.median)),
            server_share.map_or("-".into(), |s| format!("{:.2}", s.median)),
            show(per_cpu_second, |v| format!("{v:.0}")),
            others,
            steal,
        );
    }
}

fn run_counted(options: &Options, requests: u64) -> Result<(), String> {
    for &protocol in &options.protocols {
        for &connections in &options.connections {
            let cfg = options.load(protocol, connections);
            let sample = run_once(protocol, &cfg, options.idle())?;
            let report = &sample.report;
            if report.completed != requests {
                return Err(format!("{}: {} of {requests} requests answered", protocol.name(), report.completed));
            }
            println!(
                "counted {} {connections}: {} requests answered, every one a success, errors {}",
                protocol.name(),
                report.completed,
                report.errors.total()
            );
        }
    }
    Ok(())
}

fn main() -> ExitCode {
    ix_benches::init_logging();
    let outcome = Options::parse(std::env::args().skip(1)).map(|options| match options.count {
        Some(requests) => run_counted(&options, requests),
        None => run_timed(&options).map(|cases| report(&options, &cases)),
    });
    match outcome {
        Ok(Ok(())) => ExitCode::SUCCESS,
        Ok(Err(failure)) => {
            eprintln!("inprocess bench: {failure}");
            ExitCode::FAILURE
        }
        Err(help) if help.is_empty() => {
            println!("{USAGE}");
            ExitCode::SUCCESS
        }
        Err(mistake) => {
            eprintln!("inprocess bench: {mistake}\n{USAGE}");
            ExitCode::from(2)
        }
    }
}

/// Prints the table of the timed cases, with the machine and how loaded it was.
fn report(options: &Options, cases: &[CaseResult]) {
    let machine = Machine::describe(std::path::Path::new(env!("CARGO_MANIFEST_DIR")));
    println!(
        "in-process end to end over the mem wire: server (ix-http GET / | ix-kv 90% get) on CPU {}, \
         IX closed-loop client on CPU {}; idle policy {}; {} x {} ms per case after {} ms of warm-up",
        servers::SERVER_CPU,
        servers::SERVER_CPU + 1,
        options.idle(),
        options.reps,
        options.duration.as_millis(),
        options.warmup.as_millis()
    );
    print_table(cases);
    println!(
        "req/s: responses per second in the window, median [min-max] over repetitions; p50/p99: median over \
         repetitions of each one's percentile; srv: CPUs' worth of time the server's core thread ran \
         (/proc/self/task/TID/schedstat); req per srv CPU-s: requests per second of the server thread's own CPU \
         time; others: CPUs' worth of process time other processes took (the most of any repetition); steal: \
         the host's share (the most)"
    );
    println!(
        "commit {}, {}, {} CPUs; load average now {}",
        machine.commit,
        machine.cpu_model,
        machine.cpus,
        load_average()
    );
}
