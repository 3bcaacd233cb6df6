//! `ix-bench`: the side-by-side benchmark. Sets up the test network, starts
//! each server pinned to its CPU, sweeps offered load with `ixload`, prints the
//! table and writes it with a p99-vs-load plot per workload and the raw JSON.
#![forbid(unsafe_code)]

use std::cell::RefCell;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::{Parser, ValueEnum};
use ix_benches::harness::interrupt::Interrupt;
use ix_benches::harness::machine::Disturbance;
use ix_benches::harness::machine::Machine;
use ix_benches::harness::network::{NETNS_CLIENT_IP, NETNS_PREFIX_LEN, Network};
use ix_benches::harness::search::{self, SearchPlan};
use ix_benches::harness::servers::{self, IxSetup, Programs, ServerKind, WorkloadKind};
use ix_benches::harness::sweep::{self, Client, Plan, Point, Purpose, Searched, Target};
use ix_benches::harness::{plot, table};
use ix_benches::loadgen::KvPreset;
use ix_runtime::IdlePolicy;
use serde::Serialize;

/// Compares IX with tokio (the same hyper and KV services), nginx and
/// memcached under the same open-loop load, and draws p99 against load.
///
/// SIGINT or SIGTERM stops it after the point under way: the servers are
/// stopped, the test network removed and what was measured written out.
#[derive(Debug, Parser)]
#[command(name = "ix-bench", version)]
struct Args {
    /// A short run (one repetition, 3 rates and one bisection step, 1 s
    /// each): under 2 minutes.
    #[arg(long)]
    quick: bool,
    /// Rounds over all servers (default: 1 quick, 3 full).
    #[arg(long)]
    repetitions: Option<usize>,
    /// Where the table, the plots and the JSON go.
    #[arg(long, default_value = "results")]
    out: PathBuf,
    /// Seconds measured per point (default: 1 quick, 3 full).
    #[arg(long)]
    duration: Option<f64>,
    /// The HTTP servers' search grid: offered rates tried in ascending order
    /// until one is not kept up, comma-separated req/s.
    #[arg(long, value_delimiter = ',')]
    http_rates: Option<Vec<f64>>,
    /// The KV servers' search grid.
    #[arg(long, value_delimiter = ',')]
    kv_rates: Option<Vec<f64>>,
    /// The KV servers' mix: `etc` or `usr` (Facebook's pools as mutilate
    /// models them); default 90% get of 16-byte keys and 32-byte values.
    #[arg(long, value_enum)]
    kv_workload: Option<KvPreset>,
    /// Bisection steps per p99 objective after the grid (default: 1 quick, 3 full).
    #[arg(long)]
    bisect_steps: Option<u32>,
    /// The offered rate at which each server's CPU per request is measured,
    /// below every server's saturation (default: 10000 quick, 20000 full).
    #[arg(long)]
    cost_rate: Option<f64>,
    /// Instead of the search: only the CPU-per-request point of each server
    /// (one per `--cost-steering`), a minute or two for a rerun.
    #[arg(long, conflicts_with_all = ["unloaded", "scaling"])]
    cost_only: bool,
    /// The network of the CPU-per-request point, one point per entry in this
    /// order: `steered` (`testnet.sh steer`: each side's receive work on its
    /// own CPU, so the server's CPU holds the server's work alone) or
    /// `unsteered` (veth's default: a receiver's work runs on the sender's
    /// CPU). Default `steered`; `unsteered` with `--client-backend` (its XDP
    /// program attaches after steering could pin its NAPI thread) or on
    /// loopback.
    #[arg(long, value_enum, value_delimiter = ',')]
    cost_steering: Option<Vec<Steering>>,
    /// Run the search steered too (default: unsteered, veth's default).
    #[arg(long)]
    steer_search: bool,
    /// The IX servers' idle policy in the search (`busy`, `adaptive[:US]`,
    /// `block`); the CPU-per-request point always runs them with `block`.
    #[arg(long, default_value_t = IdlePolicy::default())]
    ix_idle: IdlePolicy,
    /// Instead of the search: the unloaded latency of one closed-loop
    /// connection (one small request at a time) against every server, the IX
    /// servers once per policy of `--unloaded-idle`, with each one's CPU use.
    #[arg(long)]
    unloaded: bool,
    /// The IX idle policies of `--unloaded`.
    #[arg(long, value_delimiter = ',', default_value = "busy,adaptive:25,adaptive:50,adaptive:100,adaptive:200,block")]
    unloaded_idle: Vec<IdlePolicy>,
    /// Instead of the search: closed-loop throughput and p99 at each of these
    /// connection counts (connection scalability), comma-separated.
    #[arg(long, value_delimiter = ',')]
    scaling: Option<Vec<usize>>,
    /// Run a point again when stalls (the host's steal, other processes'
    /// time slices on the measured threads' CPUs) touched more than this share
    /// of its requests, percent: too few left for the p99 without stalls.
    #[arg(long, default_value_t = 20.0)]
    max_stalled_pct: f64,
    /// ... or other processes took more than this many CPUs during it
    /// (default: off, as what they took from the measured threads is in the
    /// stalls; `0.25` for the rule before stalls were sampled).
    #[arg(long, default_value_t = f64::INFINITY)]
    max_others_cpus: f64,
    /// ... or the host stole more than this share of the CPUs' time, percent
    /// (default: off, as the steal is in the stalls; `5` for the earlier rule).
    #[arg(long, default_value_t = f64::INFINITY)]
    max_steal_pct: f64,
    /// Times a disturbed point is run again (default: 0 quick, to stay under two
    /// minutes, where disturbed points are only counted; 2 full).
    #[arg(long)]
    max_reruns: Option<u32>,
    /// Connections the load generator opens.
    #[arg(long, default_value_t = 32)]
    connections: usize,
    /// Only these servers (comma-separated names, as in the table).
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

/// Where each side's receive work runs on the test network.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
enum Steering {
    /// On its own side's CPU (`testnet.sh steer`).
    Steered,
    /// On the sender's CPU (veth's default).
    Unsteered,
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
    searches: Vec<Searched>,
    table: Vec<table::Row>,
    cost: Vec<table::CostRow>,
    closed: Vec<table::ClosedRow>,
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

/// The p99 objectives searched: the IX paper's 500 us, and 1 ms.
const SLAS_US: [f64; 2] = [500.0, 1000.0];

fn plan(args: &Args) -> Plan {
    let (rates, secs, warmup, keys) = if args.quick {
        (vec![5_000.0, 20_000.0, 40_000.0], 1.0, 0.5, 1_000)
    } else {
        let r = [10, 20, 40, 60, 80, 100, 120, 140, 160, 200].map(|k| f64::from(k) * 1000.0);
        (r.to_vec(), 3.0, 1.0, 10_000)
    };
    let search = |grid: Option<&Vec<f64>>| SearchPlan {
        grid: grid.cloned().unwrap_or_else(|| rates.clone()),
        bisect_steps: args.bisect_steps.unwrap_or(if args.quick { 1 } else { 3 }),
        slas_us: SLAS_US.to_vec(),
    };
    Plan {
        http: search(args.http_rates.as_ref()),
        kv: search(args.kv_rates.as_ref()),
        repetitions: args.repetitions.unwrap_or(if args.quick { 1 } else { 3 }).max(1),
        connections: args.connections,
        closed_loop: false,
        warmup: Duration::from_secs_f64(warmup),
        duration: Duration::from_secs_f64(args.duration.unwrap_or(secs)),
        kv_keys: keys,
        kv_workload: args.kv_workload,
        cost_rate: args.cost_rate.unwrap_or(if args.quick { 10_000.0 } else { 20_000.0 }),
        disturbance_limits: Disturbance {
            steal_pct: args.max_steal_pct,
            others_cpus: args.max_others_cpus,
            stalled_pct: args.max_stalled_pct,
        },
        max_reruns: args.max_reruns.unwrap_or(if args.quick { 0 } else { 2 }),
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
    let interrupt = Interrupt::install().context("installing the SIGINT and SIGTERM handler")?;
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
    let namespaces = matches!(net, Network::Namespaces { .. });
    let cost_steering = args.cost_steering.clone().unwrap_or_else(|| {
        vec![if namespaces && client.ix.is_none() { Steering::Steered } else { Steering::Unsteered }]
    });
    let steers = args.steer_search || cost_steering.contains(&Steering::Steered);
    if steers && client.ix.is_some() {
        anyhow::bail!(
            "steering pins the NAPI threads XDP brings before the load generator starts, and an IX load generator \
             attaches its XDP program after: drop --client-backend, or use --cost-steering unsteered without \
             --steer-search"
        );
    }
    if steers && !namespaces {
        anyhow::bail!("steering needs the namespace network (loopback has no veth): use --cost-steering unsteered");
    }
    std::fs::create_dir_all(args.out.join("runs")).with_context(|| format!("creating {}", args.out.display()))?;
    let wanted = |s: ServerKind| args.servers.as_ref().is_none_or(|names| names.iter().any(|n| n == s.name()));
    let (mut points, mut searches, mut skipped, mut notes) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let mut servers: Vec<ServerKind> = Vec::new();
    for server in ServerKind::ALL.into_iter().filter(|s| wanted(*s)) {
        let (check, reason) = server.prerequisite();
        if server.workload() == WorkloadKind::Https && client.ix.is_some() {
            // ixload's TLS client runs on kernel sockets only.
            let reason = "HTTPS load runs on kernel sockets: drop --client-backend to measure it";
            eprintln!("skipping {}: {reason}", server.name());
            skipped.push(Skipped { server, reason: reason.to_string() });
        } else if ok(check) {
            servers.push(server);
        } else {
            eprintln!("skipping {}: {reason}", server.name());
            skipped.push(Skipped { server, reason: reason.to_string() });
        }
    }
    let setup = Setup {
        net: &net,
        programs: &programs,
        client: &client,
        plan: &plan,
        args,
        cpu: server_cpu,
        cost_steering: &cost_steering,
        steering: RefCell::new(None),
        interrupt: &interrupt,
    };
    let mut closed_rows = Vec::new();
    // Interleaved: each repetition visits every server once (A B C, A B C, ...).
    for repetition in 0..plan.repetitions {
        if interrupt.is_raised() {
            break;
        }
        eprintln!("repetition {} of {}", repetition + 1, plan.repetitions);
        servers.retain(|&server| {
            if interrupt.is_raised() {
                return true;
            }
            let measured = if args.cost_only {
                setup.cost_points(server, repetition, &mut points, &mut notes)
            } else if args.unloaded {
                setup.unloaded(server, repetition, &mut points, &mut notes)
            } else if let Some(counts) = &args.scaling {
                setup.scaling(server, counts, repetition, &mut points, &mut notes)
            } else {
                setup.measure(server, repetition, &mut points, &mut searches, &mut notes)
            };
            match measured {
                Ok(()) => true,
                Err(reason) => {
                    eprintln!("skipping {}: {reason}", server.name());
                    skipped.push(Skipped { server, reason });
                    false
                }
            }
        });
    }
    if args.unloaded || args.scaling.is_some() {
        closed_rows = table::closed_rows(&points);
        let markdown = table::closed_markdown(&closed_rows);
        println!("\n{markdown}");
        std::fs::write(args.out.join("closed.md"), &markdown)?;
    }
    let mut rows = Vec::new();
    if closed_rows.is_empty() && !args.cost_only {
        rows = WorkloadKind::ALL.iter().flat_map(|&w| table::rows(w, &points, &searches)).collect();
        let markdown = table::markdown(&rows);
        println!("\n{markdown}");
        println!("{}", table::procedure(&plan));
        std::fs::write(args.out.join("table.md"), format!("{markdown}\n{}\n", table::procedure(&plan)))?;
    }
    let cost_rows = table::cost_rows(&points);
    if !cost_rows.is_empty() {
        let markdown = table::cost_markdown(&cost_rows);
        let procedure = table::cost_procedure(&plan);
        println!("\n{markdown}\n{procedure}");
        std::fs::write(args.out.join("cost.md"), format!("{markdown}\n{procedure}\n"))?;
    }
    let machine = Machine::describe(&workspace);
    for workload in WorkloadKind::ALL {
        if args.cost_only || !points.iter().any(|p| p.server.workload() == workload && p.report.is_some()) {
            continue;
        }
        let title =
            format!("{}: p99 latency vs offered load ({}, {})", workload.name(), machine.commit, net_label(&net));
        let path = args.out.join(format!("{}.svg", workload.name()));
        match plot::p99_vs_load(workload, &points, &SLAS_US, &title, &path) {
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
        searches,
        table: rows,
        cost: cost_rows,
        closed: closed_rows,
        elapsed_secs: started.elapsed().as_secs_f64(),
    };
    let json = args.out.join("results.json");
    std::fs::write(&json, serde_json::to_string_pretty(&results)?)
        .with_context(|| format!("writing {}", json.display()))?;
    eprintln!("results: {} ({:.0} s)", args.out.display(), results.elapsed_secs);
    drop(net);
    if interrupt.is_raised() {
        anyhow::bail!("interrupted: servers stopped and test network removed; what was measured is in the results");
    }
    Ok(measured)
}

fn net_label(net: &Network) -> &'static str {
    match net {
        Network::Namespaces { .. } => "veth between namespaces",
        Network::Loopback => "loopback",
    }
}

/// What every server's measurement shares.
struct Setup<'a> {
    net: &'a Network,
    programs: &'a Programs,
    client: &'a Client,
    plan: &'a Plan,
    args: &'a Args,
    cpu: usize,
    /// The networks of the cost point, in order.
    cost_steering: &'a [Steering],
    /// `testnet.sh steer`'s latest account while the network is steered.
    steering: RefCell<Option<String>>,
    /// Set by SIGINT or SIGTERM: measure nothing more.
    interrupt: &'a Interrupt,
}

impl Setup<'_> {
    /// Steers the network, or undoes it.
    ///
    /// # Errors
    /// The script's message.
    fn set_steering(&self, steering: Steering) -> Result<(), String> {
        let mut current = self.steering.borrow_mut();
        match steering {
            Steering::Steered => *current = Some(self.net.steer(self.cpu, self.client.cpu)?),
            Steering::Unsteered if current.is_some() => {
                self.net.unsteer()?;
                *current = None;
            }
            Steering::Unsteered => {}
        }
        Ok(())
    }

    fn target<'b>(
        &'b self,
        server: ServerKind,
        running: &'b servers::RunningServer,
        label: Option<String>,
    ) -> Target<'b> {
        Target {
            net: self.net,
            programs: self.programs,
            client: self.client,
            server,
            running,
            label,
            server_cpu: self.cpu,
            steering: self.steering.borrow().clone(),
        }
    }

    /// The CPU-per-request points of `server` in one repetition, one per
    /// network of `--cost-steering`, each on a freshly started server (IX
    /// with `--idle block`, so that spinning is not counted).
    ///
    /// # Errors
    /// Why the server could not be started or the network steered.
    fn cost_points(
        &self,
        server: ServerKind,
        repetition: usize,
        points: &mut Vec<Point>,
        notes: &mut Vec<String>,
    ) -> Result<(), String> {
        let idle = if server.is_ix() { IdlePolicy::Block } else { IdlePolicy::default() };
        for &steering in self.cost_steering {
            if self.interrupt.is_raised() {
                break;
            }
            self.set_steering(steering)?;
            let (running, label) = self.start(server, idle, notes)?;
            let target = self.target(server, &running, label);
            let what = match steering {
                Steering::Steered => "cost-steered",
                Steering::Unsteered => "cost",
            };
            let json = self.json(server, repetition, what);
            let point = sweep::run_point(&target, self.plan, (repetition, Purpose::Cost), self.plan.cost_rate, &json);
            show(&point);
            points.push(point);
        }
        Ok(())
    }

    /// One repetition of `server`: the search for its rate within each p99
    /// objective (steered with `--steer-search`), then its CPU per request at
    /// the plan's cost rate ([`Setup::cost_points`]).
    ///
    /// # Errors
    /// Why the server could not be started.
    fn measure(
        &self,
        server: ServerKind,
        repetition: usize,
        points: &mut Vec<Point>,
        searches: &mut Vec<Searched>,
        notes: &mut Vec<String>,
    ) -> Result<(), String> {
        self.set_steering(if self.args.steer_search { Steering::Steered } else { Steering::Unsteered })?;
        let (running, label) = self.start(server, self.args.ix_idle, notes)?;
        let plan = self.plan;
        let target = self.target(server, &running, label);
        let (rates, _) = search::search(plan.search(server.workload()), |rate| {
            if self.interrupt.is_raised() {
                return None;
            }
            let json = self.json(server, repetition, &format!("{rate:.0}"));
            let point = sweep::run_point(&target, plan, (repetition, Purpose::Search), rate, &json);
            show(&point);
            let probe = point.report.is_some().then(|| point.probe());
            points.push(point);
            probe
        });
        if self.interrupt.is_raised() {
            // Cut short: its rates are not a search result.
            return Ok(());
        }
        searches.push(Searched { server, repetition, rates });
        drop(running);
        self.cost_points(server, repetition, points, notes)
    }

    /// One repetition of the unloaded latency: one closed-loop connection,
    /// once per idle policy of `--unloaded-idle` for IX servers.
    ///
    /// # Errors
    /// Why the server could not be started.
    fn unloaded(
        &self,
        server: ServerKind,
        repetition: usize,
        points: &mut Vec<Point>,
        notes: &mut Vec<String>,
    ) -> Result<(), String> {
        let plan = Plan { connections: 1, closed_loop: true, ..self.plan.clone() };
        let policies = if server.is_ix() { self.args.unloaded_idle.clone() } else { vec![IdlePolicy::default()] };
        for idle in policies.into_iter().take_while(|_| !self.interrupt.is_raised()) {
            self.closed_point(server, idle, &plan, repetition, points, notes)?;
        }
        Ok(())
    }

    /// One repetition of connection scalability: closed loop at each count.
    ///
    /// # Errors
    /// Why the server could not be started.
    fn scaling(
        &self,
        server: ServerKind,
        counts: &[usize],
        repetition: usize,
        points: &mut Vec<Point>,
        notes: &mut Vec<String>,
    ) -> Result<(), String> {
        for &connections in counts.iter().take_while(|_| !self.interrupt.is_raised()) {
            let plan = Plan { connections, closed_loop: true, ..self.plan.clone() };
            self.closed_point(server, self.args.ix_idle, &plan, repetition, points, notes)?;
        }
        Ok(())
    }

    fn closed_point(
        &self,
        server: ServerKind,
        idle: IdlePolicy,
        plan: &Plan,
        repetition: usize,
        points: &mut Vec<Point>,
        notes: &mut Vec<String>,
    ) -> Result<(), String> {
        let (running, label) = self.start(server, idle, notes)?;
        let target = self.target(server, &running, label);
        let what = format!("closed-{}-{}", plan.connections, idle);
        let point =
            sweep::run_point(&target, plan, (repetition, Purpose::Closed), 0.0, &self.json(server, repetition, &what));
        show(&point);
        points.push(point);
        Ok(())
    }

    fn json(&self, server: ServerKind, repetition: usize, what: &str) -> PathBuf {
        self.args.out.join("runs").join(format!("{}-r{repetition}-{what}.json", server.name()))
    }

    /// Starts `server`; an IX server whose default backend (XDP on the test
    /// network) does not start is retried on the kernel backend, with a note.
    /// Returns it with its label (backend and idle policy) for IX servers.
    /// On a steered network it steers again once the server listens: an XDP
    /// program brings a NAPI thread to pin.
    fn start(
        &self,
        server: ServerKind,
        idle: IdlePolicy,
        notes: &mut Vec<String>,
    ) -> Result<(servers::RunningServer, Option<String>), String> {
        let started = self.start_unsteered(server, idle, notes)?;
        if self.steering.borrow().is_some() {
            self.set_steering(Steering::Steered)?;
        }
        Ok(started)
    }

    fn start_unsteered(
        &self,
        server: ServerKind,
        idle: IdlePolicy,
        notes: &mut Vec<String>,
    ) -> Result<(servers::RunningServer, Option<String>), String> {
        if !server.is_ix() {
            return servers::start(server, self.net, self.cpu, self.programs, None).map(|s| (s, None));
        }
        let default_xdp = self.net.server_iface().map(|iface| format!("xdp:{iface}"));
        let backend = self.args.ix_backend.clone().or(default_xdp).unwrap_or_else(|| "kernel".into());
        let label = |backend: &str| Some(format!("{backend}, idle {idle}"));
        let ix = |backend| Some(IxSetup { backend, idle });
        match servers::start(server, self.net, self.cpu, self.programs, ix(&backend)) {
            Ok(s) => Ok((s, label(&backend))),
            Err(e) if self.args.ix_backend.is_none() && backend != "kernel" => {
                let note = format!(
                    "{} did not start on {backend} ({e}); measured on the kernel backend instead",
                    server.name()
                );
                eprintln!("{note}");
                notes.push(note);
                servers::start(server, self.net, self.cpu, self.programs, ix("kernel")).map(|s| (s, label("kernel")))
            }
            Err(e) => Err(e),
        }
    }
}

/// One line per point on stderr, as the run goes.
fn show(point: &Point) {
    let cpu: Vec<String> = point.cpu.iter().map(|c| format!("cpu{} {:.0}%", c.cpu, c.busy_pct)).collect();
    let d = &point.disturbance;
    let disturbed = format!(
        "steal {:.1}%, others {:.2} CPUs, stalled {:.1}% of requests{}{}",
        d.steal_pct,
        d.others_cpus,
        d.stalled_pct,
        if point.reruns > 0 { format!(", re-run {}x", point.reruns) } else { String::new() },
        if point.disturbed { ", DISTURBED" } else { "" }
    );
    let what = match point.purpose {
        Purpose::Search => String::new(),
        Purpose::Closed => format!(
            "  {} conns, server {} CPUs",
            point.connections,
            point.server_cpus().map_or_else(|| "-".into(), |v| format!("{v:.2}"))
        ),
        Purpose::Cost => {
            let us = |v: Option<f64>| v.map_or_else(|| "-".into(), |v| format!("{v:.1}"));
            let cost = point.cost.as_ref();
            format!(
                "  {}: server CPU {} us/req (its threads {}, softirq {}, NAPI threads {}; others {:.0}% of its CPU; \
                 before: {})",
                if point.steering.is_some() { "steered" } else { "unsteered" },
                us(point.server_cpu_us_per_request()),
                us(cost.and_then(|c| c.threads_us_per_request())),
                us(cost.and_then(|c| c.softirq_us_per_request())),
                us(cost.and_then(|c| c.receive_threads_us_per_request())),
                cost.map_or(0.0, |c| c.others_pct()),
                us(point.threads_cpu_over_run_us_per_request()),
            )
        }
    };
    match (&point.report, &point.error) {
        (Some(r), _) => eprintln!(
            "  {:<10} {:>7.0}/s: {:>7.0}/s  p50 {:>8}  p99 {:>9} unstalled, {:>9} all  errors {}{what}  ({}; {disturbed})",
            point.server.name(),
            point.offered,
            r.throughput,
            plot::human_us(r.latency_us.p50),
            point.p99_unstalled_us().map_or_else(|| "-".into(), plot::human_us),
            plot::human_us(r.latency_us.p99),
            r.errors.total(),
            cpu.join(", ")
        ),
        (None, Some(e)) => eprintln!("  {:<10} {:>7.0}/s: failed: {e}", point.server.name(), point.offered),
        (None, None) => {}
    }
}
