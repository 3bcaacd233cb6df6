//! `ix-bench`: the side-by-side benchmark. Sets up the test network, starts
//! each server pinned to its CPU, sweeps offered load with `ixload`, prints the
//! table and writes it with a p99-vs-load plot per workload and the raw JSON.
#![forbid(unsafe_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Parser;
use ix_benches::harness::machine::Machine;
use ix_benches::harness::network::{NETNS_CLIENT_IP, NETNS_PREFIX_LEN, Network};
use ix_benches::harness::servers::{self, Programs, ServerKind, WorkloadKind};
use ix_benches::harness::sweep::{self, Client, Plan, Point};
use ix_benches::harness::{plot, table};
use serde::Serialize;

/// Compares IX with tokio (the same hyper and KV services), nginx and
/// memcached under the same open-loop load, and draws p99 against load.
#[derive(Debug, Parser)]
#[command(name = "ix-bench", version)]
struct Args {
    /// A short sweep (3 rates, 1 s each): under 2 minutes.
    #[arg(long)]
    quick: bool,
    /// Where the table, the plots and the JSON go.
    #[arg(long, default_value = "results")]
    out: PathBuf,
    /// Seconds measured per point (default: 1 quick, 5 full).
    #[arg(long)]
    duration: Option<f64>,
    /// Offered rates for the HTTP servers, comma-separated req/s.
    #[arg(long, value_delimiter = ',')]
    http_rates: Option<Vec<f64>>,
    /// Offered rates for the KV servers, comma-separated req/s.
    #[arg(long, value_delimiter = ',')]
    kv_rates: Option<Vec<f64>>,
    /// Connections the load generator opens.
    #[arg(long, default_value_t = 32)]
    connections: usize,
    /// Only these servers (comma-separated names: ix-http, tokio-http, nginx, ix-kv, tokio-kv, memcached).
    #[arg(long, value_delimiter = ',')]
    servers: Option<Vec<String>>,
    /// The IX servers' backend (default: `xdp:PREFIX-s` on the test network,
    /// falling back to `kernel` if it does not start; `kernel` on loopback).
    #[arg(long)]
    ix_backend: Option<String>,
    /// Run the load generator on IX with this backend (e.g. `xdp:PREFIX-c`)
    /// instead of kernel sockets.
    #[arg(long)]
    client_backend: Option<String>,
    /// Namespace prefix for the test network.
    #[arg(long, default_value = "ixb")]
    prefix: String,
    /// The script that makes the test network.
    #[arg(long, default_value = "scripts/testnet.sh")]
    testnet: PathBuf,
    /// Use loopback even where namespaces are available.
    #[arg(long)]
    loopback: bool,
}

/// Everything a run produced, as written to `results.json`.
#[derive(Debug, Serialize)]
struct Results {
    command: String,
    machine: Machine,
    network: String,
    namespaces: bool,
    fallback_reason: Option<String>,
    plan: Plan,
    client: Client,
    server_cpu: usize,
    preflight: Vec<Check>,
    skipped: Vec<Skipped>,
    notes: Vec<String>,
    points: Vec<Point>,
    table: Vec<table::Row>,
    elapsed_secs: f64,
}

#[derive(Debug, Clone, Serialize)]
struct Check {
    what: String,
    ok: bool,
    detail: String,
}

#[derive(Debug, Clone, Serialize)]
struct Skipped {
    server: ServerKind,
    reason: String,
}

fn main() -> ExitCode {
    ix_benches::init_logging();
    let args = Args::parse();
    match run(&args) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => {
            eprintln!("ix-bench: no server could be measured (see the reasons above)");
            ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("ix-bench: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn plan(args: &Args) -> Plan {
    let (rates, secs, warmup, keys) = if args.quick {
        (vec![5_000.0, 20_000.0, 40_000.0], 1.0, 0.5, 1_000)
    } else {
        let r = [5, 10, 20, 40, 60, 80, 100, 120, 140, 160, 200].map(|k| f64::from(k) * 1000.0);
        (r.to_vec(), 5.0, 1.0, 10_000)
    };
    Plan {
        http_rates: args.http_rates.clone().unwrap_or_else(|| rates.clone()),
        kv_rates: args.kv_rates.clone().unwrap_or(rates),
        connections: args.connections,
        warmup: Duration::from_secs_f64(warmup),
        duration: Duration::from_secs_f64(args.duration.unwrap_or(secs)),
        kv_keys: keys,
    }
}

fn command_exists(name: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {name}")])
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

fn preflight(args: &Args, programs: &Programs) -> Vec<Check> {
    let check = |what: &str, ok: bool, detail: String| Check { what: what.into(), ok, detail };
    let file =
        |p: &Path| check(&p.file_name().unwrap_or_default().to_string_lossy(), p.is_file(), p.display().to_string());
    vec![
        check("root", servers::is_root(), "namespaces and AF_XDP need root".into()),
        check("ip netns", ix_driver::privilege::netns_available(), "iproute2 and CAP_SYS_ADMIN".into()),
        check("testnet script", args.testnet.is_file(), args.testnet.display().to_string()),
        check("taskset", command_exists("taskset"), "util-linux".into()),
        file(&programs.ixload),
        file(&programs.ix_http),
        file(&programs.ix_kv),
        check("nginx", command_exists("nginx"), "Debian nginx-light".into()),
        check("memcached", command_exists("memcached"), "Debian memcached".into()),
    ]
}

fn run(args: &Args) -> anyhow::Result<bool> {
    let started = Instant::now();
    let workspace = std::env::current_dir().context("current directory")?;
    let programs = Programs::beside_current_exe();
    let checks = preflight(args, &programs);
    eprintln!("preflight:");
    for c in &checks {
        eprintln!("  {} {:<16} {}", if c.ok { "ok  " } else { "MISS" }, c.what, c.detail);
    }
    let ok = |what: &str| checks.iter().any(|c| c.what == what && c.ok);
    if !ok("ixload") {
        anyhow::bail!("{} is missing: cargo build --release -p ix-benches", programs.ixload.display());
    }
    let fallback_reason = if args.loopback {
        Some("--loopback asked for".to_string())
    } else if !ok("root") {
        Some("not root: network namespaces need root".to_string())
    } else if !ok("ip netns") {
        Some("`ip netns` does not work here".to_string())
    } else if !ok("testnet script") {
        Some(format!("{} not found (run from the workspace root)", args.testnet.display()))
    } else {
        None
    };
    let net = match &fallback_reason {
        None => Network::namespaces(&args.testnet, &args.prefix).map_err(anyhow::Error::msg)?,
        Some(reason) => {
            eprintln!(
                "\nfalling back to the in-process comparison on loopback ({reason}); IX runs on its kernel backend, so \
                 this compares executors, not the dataplane. For the TCP/IP stack alone: cargo bench -p ix-net --bench \
                 stack -- --quick\n"
            );
            Network::Loopback
        }
    };
    eprintln!("network: {}", net.describe());
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    let (server_cpu, client_cpu) = (0, 1 % cpus);
    let client_ix = args.client_backend.as_ref().map(|b| (b.clone(), format!("{NETNS_CLIENT_IP}/{NETNS_PREFIX_LEN}")));
    let client = Client { cpu: client_cpu, ix: client_ix };
    let plan = plan(args);
    std::fs::create_dir_all(args.out.join("runs")).with_context(|| format!("creating {}", args.out.display()))?;
    let wanted = |s: ServerKind| args.servers.as_ref().is_none_or(|names| names.iter().any(|n| n == s.name()));
    let (mut points, mut skipped, mut notes) = (Vec::new(), Vec::new(), Vec::new());
    for server in ServerKind::ALL.into_iter().filter(|s| wanted(*s)) {
        let prerequisite = match server {
            ServerKind::Nginx => {
                ok("nginx").then_some(()).ok_or("nginx is not installed (apt-get install nginx-light)")
            }
            ServerKind::Memcached => {
                ok("memcached").then_some(()).ok_or("memcached is not installed (apt-get install memcached)")
            }
            ServerKind::IxHttp | ServerKind::TokioHttp => ok("ix-http").then_some(()).ok_or("ix-http is not built"),
            ServerKind::IxKv | ServerKind::TokioKv => ok("ix-kv").then_some(()).ok_or("ix-kv is not built"),
        };
        if let Err(reason) = prerequisite {
            eprintln!("skipping {}: {reason}", server.name());
            skipped.push(Skipped { server, reason: reason.to_string() });
            continue;
        }
        match start_server(server, &net, server_cpu, &programs, args, &mut notes) {
            Ok(running) => {
                sweep_server(&net, &programs, &plan, &client, server, running, &args.out, &mut points);
            }
            Err(reason) => {
                eprintln!("skipping {}: {reason}", server.name());
                skipped.push(Skipped { server, reason });
            }
        }
    }
    let mut rows = table::rows(WorkloadKind::Http, &points);
    rows.extend(table::rows(WorkloadKind::Kv, &points));
    let markdown = table::markdown(&rows);
    println!("\n{markdown}");
    std::fs::write(args.out.join("table.md"), &markdown)?;
    let machine = Machine::describe(&workspace);
    for workload in [WorkloadKind::Http, WorkloadKind::Kv] {
        if !points.iter().any(|p| p.server.workload() == workload && p.report.is_some()) {
            continue;
        }
        let title =
            format!("{}: p99 latency vs offered load ({}, {})", workload.name(), machine.commit, net_label(&net));
        let path = args.out.join(format!("{}.svg", workload.name()));
        match plot::p99_vs_load(workload, &points, &title, &path) {
            Ok(()) => eprintln!("plot: {}", path.display()),
            Err(e) => notes.push(e),
        }
    }
    let measured = !points.is_empty();
    let results = Results {
        command: std::env::args().collect::<Vec<_>>().join(" "),
        machine,
        network: net.describe(),
        namespaces: matches!(net, Network::Namespaces { .. }),
        fallback_reason,
        plan,
        client,
        server_cpu,
        preflight: checks,
        skipped,
        notes,
        points,
        table: rows,
        elapsed_secs: started.elapsed().as_secs_f64(),
    };
    let json = args.out.join("results.json");
    std::fs::write(&json, serde_json::to_string_pretty(&results)?)
        .with_context(|| format!("writing {}", json.display()))?;
    eprintln!("results: {} ({:.0} s)", args.out.display(), results.elapsed_secs);
    drop(net);
    Ok(measured)
}

fn net_label(net: &Network) -> &'static str {
    match net {
        Network::Namespaces { .. } => "veth between namespaces",
        Network::Loopback => "loopback",
    }
}

/// Starts `server`; an IX server whose default backend (XDP on the test
/// network) does not start is retried on the kernel backend, with a note.
fn start_server(
    server: ServerKind,
    net: &Network,
    cpu: usize,
    programs: &Programs,
    args: &Args,
    notes: &mut Vec<String>,
) -> Result<servers::RunningServer, String> {
    if !server.is_ix() {
        return servers::start(server, net, cpu, programs, None);
    }
    let default_xdp = net.server_iface().map(|iface| format!("xdp:{iface}"));
    let backend = args.ix_backend.clone().or(default_xdp).unwrap_or_else(|| "kernel".into());
    match servers::start(server, net, cpu, programs, Some(&backend)) {
        Ok(s) => Ok(s),
        Err(e) if args.ix_backend.is_none() && backend != "kernel" => {
            let note =
                format!("{} did not start on {backend} ({e}); measured on the kernel backend instead", server.name());
            eprintln!("{note}");
            notes.push(note);
            servers::start(server, net, cpu, programs, Some("kernel"))
        }
        Err(e) => Err(e),
    }
}

/// Sweeps the offered rates against a running server, up to the first rate it
/// cannot keep up with.
#[allow(clippy::too_many_arguments)]
fn sweep_server(
    net: &Network,
    programs: &Programs,
    plan: &Plan,
    client: &Client,
    server: ServerKind,
    running: servers::RunningServer,
    out: &Path,
    points: &mut Vec<Point>,
) {
    let backend = running.backend.clone();
    for &rate in plan.rates(server.workload()) {
        let json = out.join("runs").join(format!("{}-{rate:.0}.json", server.name()));
        let point = sweep::run_point(net, programs, plan, client, (server, backend.as_deref()), rate, &json);
        let cpu: Vec<String> = point.cpu.iter().map(|c| format!("cpu{} {:.0}%", c.cpu, c.busy_pct)).collect();
        match (&point.report, &point.error) {
            (Some(r), _) => eprintln!(
                "{:<10} {:>7.0}/s: {:>7.0}/s  p50 {:>8.1} us  p99 {:>9.1} us  errors {}  ({})",
                server.name(),
                rate,
                r.throughput,
                r.latency_us.p50,
                r.latency_us.p99,
                r.errors.total(),
                cpu.join(", ")
            ),
            (None, Some(e)) => eprintln!("{:<10} {:>7.0}/s: failed: {e}", server.name(), rate),
            (None, None) => {}
        }
        let saturated = !point.kept_up();
        points.push(point);
        if saturated {
            break;
        }
    }
    drop(running);
}
