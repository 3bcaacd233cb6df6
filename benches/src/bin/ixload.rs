//! `ixload`: the load generator's command line (open or closed loop, HTTP/1.1
//! or memcached, on kernel sockets or on IX), printing a summary and JSON.
#![forbid(unsafe_code)]

use std::net::{Ipv4Addr, SocketAddrV4};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::{Parser, ValueEnum};
use ix_benches::harness::machine::process_cpu_secs;
use ix_benches::harness::stalls::{self, StallSampler};
use ix_benches::loadgen::{
    self, ConnectionUse, KernelNet, KvPreset, LoadConfig, MemcacheWorkload, Mode, Report, TlsNet, Workload,
};

/// Load generator in the style of mutilate: many connections from one thread,
/// open loop (Poisson arrivals) or closed loop, latency from the intended send
/// time (coordinated omission corrected), recorded in an HDR histogram.
#[derive(Debug, Parser)]
#[command(name = "ixload", version)]
struct Args {
    /// Server address, IP:PORT.
    #[arg(long)]
    target: SocketAddrV4,
    /// Kernel sockets: the local address to connect from (default: the
    /// kernel's choice). Each address has about 64k ports.
    #[arg(long)]
    source: Option<Ipv4Addr>,
    /// Protocol to speak.
    #[arg(long, value_enum, default_value_t = Protocol::Http)]
    protocol: Protocol,
    /// Connections, each with at most one request in flight.
    #[arg(long, short = 'c', default_value_t = 32)]
    connections: usize,
    /// Open loop: Poisson arrivals at this many requests per second.
    #[arg(long, conflicts_with = "closed", required_unless_present = "closed")]
    rate: Option<f64>,
    /// Closed loop: each connection sends when its last request is answered.
    #[arg(long)]
    closed: bool,
    /// Measured window (e.g. `10s`, `500ms`, `2.5`).
    #[arg(long, short = 'd', value_parser = parse_duration, default_value = "10s")]
    duration: Duration,
    /// Load before the measured window, not counted.
    #[arg(long, value_parser = parse_duration, default_value = "1s")]
    warmup: Duration,
    /// Wait for requests in flight after the window.
    #[arg(long, value_parser = parse_duration, default_value = "1s")]
    drain: Duration,
    /// Bound on one connection attempt.
    #[arg(long, value_parser = parse_duration, default_value = "2s")]
    connect_timeout: Duration,
    /// Open the connections at this many per second (one attempt every
    /// 1/RATE s) instead of all at once, as a population of clients would.
    #[arg(long, value_name = "RATE")]
    connect_rate: Option<f64>,
    /// A new connection for every request, closed once it is answered
    /// (`-c` bounds how many are in progress); the report adds the connect
    /// time's percentiles.
    #[arg(long)]
    connection_per_request: bool,
    /// Seed of the arrival schedule and the request mix.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// HTTP: the path to GET.
    #[arg(long, default_value = "/")]
    path: String,
    /// HTTP: the Host header (default: the target).
    #[arg(long)]
    host: Option<String>,
    /// memcached: a named workload, `etc` or `usr` (Facebook's pools as
    /// mutilate models them), which sets the get share and the key and value
    /// sizes (`--get-ratio`, `--key-size`, `--value-size` are then ignored).
    #[arg(long, value_enum)]
    workload: Option<KvPreset>,
    /// memcached: share of requests that are `get` (the rest are `set`).
    #[arg(long, default_value_t = 0.9)]
    get_ratio: f64,
    /// memcached: number of distinct keys, drawn uniformly.
    #[arg(long, default_value_t = 10_000)]
    keys: u64,
    /// memcached: key length in bytes.
    #[arg(long, default_value_t = 16)]
    key_size: usize,
    /// memcached: value length in bytes.
    #[arg(long, default_value_t = 32)]
    value_size: usize,
    /// memcached: store every key once before the run, so gets hit.
    #[arg(long)]
    prefill: bool,
    /// Which sockets the generator uses: kernel sockets (tokio) or IX's stack.
    #[arg(long, value_enum, default_value_t = RuntimeKind::Tokio)]
    runtime: RuntimeKind,
    /// IX: backend spec (`kernel`, `tap:NAME`).
    #[arg(long)]
    backend: Option<String>,
    /// IX: the dataplane's address, IP/LEN (not for `kernel`).
    #[arg(long)]
    addr: Option<String>,
    /// HTTPS: speak TLS, trusting only the certificates in this PEM file (the
    /// server's self-signed certificate or its CA). The handshake counts in
    /// connect time. Kernel sockets only (`--runtime tokio`).
    #[arg(long, value_name = "PEM", conflicts_with = "backend")]
    tls_trust: Option<std::path::PathBuf>,
    /// HTTPS: the name the server's certificate must carry (default: the
    /// target's IP address).
    #[arg(long, requires = "tls_trust")]
    tls_name: Option<String>,
    /// Put every request of the window (intended send time and latency) in
    /// the JSON report's `timeline`, to line latency up with other events.
    #[arg(long, requires = "json")]
    timeline: bool,
    /// Sample every CPU's steal counter each 5 ms during the run and report,
    /// beside the latency of all requests, the latency of the requests whose
    /// life overlapped no host stall and the share that did (`stalls` in JSON),
    /// and each CPU's time over the measured window (`window_cpu`).
    #[arg(long)]
    stalls: bool,
    /// With `--stalls`: also count as stalls the run-queue waits of 1 ms or
    /// more of these processes' threads (with their descendants) and of
    /// ixload's own (time another process took their CPU), and the absences
    /// of 250 us or more of ixload's own threads while they stayed runnable
    /// (time the host took their CPU, to the microsecond). Comma-separated
    /// PIDs. How long their threads ran over the window is in `window_cpu`.
    #[arg(long, value_delimiter = ',', requires = "stalls")]
    stall_pids: Option<Vec<u32>>,
    /// With `--stalls`: how long after a stall requests still count as
    /// touched by it, in multiples of the stall's length (the backlog it left).
    #[arg(long, default_value_t = stalls::STALL_RECOVERY, requires = "stalls")]
    stall_recovery: f64,
    /// Write the report as JSON to this file (`-` for stdout).
    #[arg(long)]
    json: Option<String>,
    /// Print no summary.
    #[arg(long, short = 'q')]
    quiet: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Protocol {
    Http,
    Memcache,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum RuntimeKind {
    Tokio,
    Ix,
}

/// `10s`, `250ms`, `40us` or plain seconds (`2.5`).
fn parse_duration(text: &str) -> Result<Duration, String> {
    let (number, scale) = if let Some(n) = text.strip_suffix("ms") {
        (n, 1e-3)
    } else if let Some(n) = text.strip_suffix("us") {
        (n, 1e-6)
    } else if let Some(n) = text.strip_suffix('s') {
        (n, 1.0)
    } else {
        (text, 1.0)
    };
    let value: f64 = number.trim().parse().map_err(|_| format!("`{text}` is not a duration like 10s or 500ms"))?;
    Duration::try_from_secs_f64(value * scale).map_err(|_| format!("`{text}` is not a duration like 10s or 500ms"))
}

fn config(args: &Args) -> LoadConfig {
    let workload = match args.protocol {
        Protocol::Http => Workload::Http {
            host: args.host.clone().unwrap_or_else(|| args.target.to_string()),
            path: args.path.clone(),
        },
        Protocol::Memcache => Workload::Memcache {
            workload: match args.workload {
                None => MemcacheWorkload::fixed(args.get_ratio, args.keys, args.key_size, args.value_size),
                Some(preset) => MemcacheWorkload::preset(preset, args.keys),
            },
            prefill: args.prefill,
        },
    };
    LoadConfig {
        target: args.target,
        connections: args.connections,
        mode: args.rate.map_or(Mode::Closed, |rate| Mode::Open { rate }),
        workload,
        warmup: args.warmup,
        duration: args.duration,
        drain: args.drain,
        connect_timeout: args.connect_timeout,
        connect_rate: args.connect_rate,
        seed: args.seed,
        timeline: args.timeline,
        connection_use: if args.connection_per_request {
            ConnectionUse::OnePerRequest
        } else {
            ConnectionUse::KeepAlive
        },
    }
}

fn run_on_kernel(args: &Args, cfg: &LoadConfig) -> anyhow::Result<Report> {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().context("starting tokio")?;
    let kernel = args.source.map_or_else(KernelNet::default, KernelNet::from_source);
    let Some(trusted) = &args.tls_trust else {
        return Ok(rt.block_on(loadgen::run(&kernel, cfg))?);
    };
    anyhow::ensure!(args.protocol == Protocol::Http, "--tls-trust: HTTPS only (--protocol http)");
    let name = args.tls_name.clone().unwrap_or_else(|| args.target.ip().to_string());
    let net = TlsNet::new(kernel, trusted, &name).context("--tls-trust")?;
    Ok(rt.block_on(loadgen::run(&net, cfg))?)
}

/// `IP/LEN`.
fn parse_addr(text: &str) -> anyhow::Result<(Ipv4Addr, u8)> {
    let (ip, len) = text.split_once('/').context("--addr wants IP/LEN, e.g. 10.77.0.2/24")?;
    let ip = ip.parse().with_context(|| format!("--addr: `{ip}` is not an IPv4 address"))?;
    let len: u8 =
        len.parse().ok().filter(|l| *l <= 32).with_context(|| format!("--addr: bad prefix length `{len}`"))?;
    Ok((ip, len))
}

fn run_on_ix(args: &Args, cfg: &LoadConfig) -> anyhow::Result<Report> {
    let spec = args.backend.as_deref().context("--runtime ix needs --backend (kernel, tap:NAME, ...)")?;
    let backend: ix_runtime::Backend = spec.parse()?;
    let addr = args.addr.as_deref().map(parse_addr).transpose()?;
    Ok(loadgen::run_on_ix(backend, addr, cfg)?)
}

fn main() -> ExitCode {
    ix_benches::init_logging();
    let args = Args::parse();
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("ixload: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: &Args) -> anyhow::Result<()> {
    let mut cfg = config(args);
    cfg.timeline |= args.stalls;
    let sampler = args
        .stalls
        .then(|| StallSampler::start(args.stall_pids.as_deref()))
        .transpose()
        .context("starting the stall sampler")?;
    let mut report = match args.runtime {
        RuntimeKind::Tokio => run_on_kernel(args, &cfg)?,
        RuntimeKind::Ix => {
            anyhow::ensure!(args.tls_trust.is_none(), "--tls-trust: kernel sockets only (--runtime tokio)");
            run_on_ix(args, &cfg)?
        }
    };
    if let Some(sampler) = sampler {
        let window = report.timeline.as_ref().map(|t| {
            (t.window_start_unix_us, t.window_start_unix_us.saturating_add((report.window_secs * 1e6) as u64))
        });
        let (events, window_cpu) = sampler.stop_with_window(window);
        let stalls: Vec<_> = events.iter().map(|event| event.stall(args.stall_recovery)).collect();
        report.stalls = report.timeline.as_ref().map(|t| stalls::split(t, &stalls));
        report.stall_intervals = Some(stalls::merged(&stalls));
        report.window_cpu = window_cpu;
        if !args.timeline {
            report.timeline = None;
        }
    }
    report.process_cpu_secs = process_cpu_secs(std::process::id());
    if !args.quiet {
        eprintln!("{}", report.summary());
    }
    if let Some(path) = &args.json {
        let json = serde_json::to_string_pretty(&report)?;
        if path == "-" {
            println!("{json}");
        } else {
            std::fs::write(path, json).with_context(|| format!("writing {path}"))?;
        }
    }
    Ok(())
}
