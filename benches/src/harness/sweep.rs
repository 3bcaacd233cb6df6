//! One measured point against one server: an `ixload` run on the client side
//! (pinned to its CPU), with the CPUs' load, the server's own CPU time and
//! its CPU's busy time over the measured window, the requests host stalls
//! touched and what disturbed the machine around it; a disturbed point is run
//! again.

use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::harness::machine::{CpuLoad, CpuSnapshot, Disturbance, processes_named};
use crate::harness::network::Network;
use crate::harness::search::{Probe, SearchPlan};
use crate::harness::servers::{Programs, RunningServer, ServerKind, WorkloadKind};
use crate::loadgen::{KvPreset, Report};

/// A run keeps up when it completes at least this share of the offered rate.
const KEPT_UP_SHARE: f64 = 0.95;
/// ... and leaves at most this share of its requests unsent or unanswered.
const ABANDONED_MAX_SHARE: f64 = 0.01;

/// What to measure and how long each point lasts.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Plan {
    /// The HTTP servers' search for the rate within each p99 objective.
    pub http: SearchPlan,
    /// The KV servers' search.
    pub kv: SearchPlan,
    /// Rounds over all servers (each server searched once per round, the
    /// servers interleaved: A B C, A B C, ...).
    pub repetitions: usize,
    /// Connections the generator opens.
    pub connections: usize,
    /// Closed loop (each connection sends when answered) instead of the
    /// open-loop rate of each point.
    pub closed_loop: bool,
    /// Warm-up before each measured window.
    pub warmup: Duration,
    /// Each measured window.
    pub duration: Duration,
    /// KV key space (stored before each run).
    pub kv_keys: u64,
    /// The KV mix: a named workload, or (`None`) 90% `get` of 16-byte keys
    /// and 32-byte values.
    pub kv_workload: Option<KvPreset>,
    /// The fixed rate, below every server's saturation, at which each
    /// server's CPU per request is measured (IX not spinning).
    pub cost_rate: f64,
    /// A point is run again when the host or other processes took more than
    /// this during it, or host stalls touched more than this share of its
    /// requests.
    pub disturbance_limits: Disturbance,
    /// ... at most this many times (the last run is kept, marked).
    pub max_reruns: u32,
}

impl Plan {
    /// The search for `workload`.
    pub fn search(&self, workload: WorkloadKind) -> &SearchPlan {
        match workload {
            WorkloadKind::Http | WorkloadKind::Https => &self.http,
            WorkloadKind::Kv => &self.kv,
        }
    }
}

/// How the load generator itself runs.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Client {
    /// The CPU it is pinned to.
    pub cpu: usize,
    /// `None`: kernel sockets (tokio). `Some((backend, IP/LEN))`: on IX.
    pub ix: Option<(String, String)>,
}

/// Why a point was measured.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Purpose {
    /// A step of the search for the rate within the p99 objectives.
    Search,
    /// The CPU-per-request measurement at the plan's fixed rate.
    Cost,
    /// A closed-loop point: the unloaded latency of one connection, or the
    /// throughput of many (connection scalability).
    Closed,
}

/// One measured point.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Point {
    /// The server.
    pub server: ServerKind,
    /// The IX backend and idle policy, for IX servers.
    pub backend: Option<String>,
    /// Which round of the interleaved servers (from 0).
    pub repetition: usize,
    /// Why it was measured.
    pub purpose: Purpose,
    /// The offered rate.
    pub offered: f64,
    /// What the generator measured (`None` when it failed).
    pub report: Option<Report>,
    /// Why the generator failed.
    pub error: Option<String>,
    /// Every CPU's load during the run.
    pub cpu: Vec<CpuLoad>,
    /// CPU seconds the server's own threads used during the run (warm-up,
    /// window and drain, from `/proc/PID/task/*/stat`).
    pub server_cpu_secs: Option<f64>,
    /// What the server's CPU did over the measured window alone.
    #[serde(default)]
    pub cost: Option<ServerCost>,
    /// `testnet.sh steer`'s account when each side's receive work ran on its
    /// own CPU; `None` when it ran where veth put it (the sender's CPU).
    #[serde(default)]
    pub steering: Option<String>,
    /// How long the run took (warm-up, window and drain).
    pub wall_secs: f64,
    /// Connections the generator opened.
    pub connections: usize,
    /// What the host and other processes took during the run.
    pub disturbance: Disturbance,
    /// How many times this point was run again for being disturbed.
    pub reruns: u32,
    /// Whether even the last run was disturbed past the limits.
    pub disturbed: bool,
}

impl Point {
    /// Whether the server kept up with the offered rate, without failures.
    pub fn kept_up(&self) -> bool {
        self.report.as_ref().is_some_and(|r| {
            let e = &r.errors;
            let abandoned = (r.unsent + r.unanswered) as f64;
            r.throughput >= KEPT_UP_SHARE * self.offered
                && abandoned <= ABANDONED_MAX_SHARE * r.scheduled.max(1) as f64
                && e.connect + e.io + e.protocol == 0
        })
    }

    /// What the search needs of it.
    pub fn probe(&self) -> Probe {
        Probe {
            rate: self.offered,
            kept_up: self.kept_up(),
            p99_us: self.p99_unstalled_us().unwrap_or(f64::INFINITY),
            p99_all_us: self.report.as_ref().map_or(f64::INFINITY, |r| r.latency_us.p99),
        }
    }

    /// The p99 of the requests no stall touched (of all requests when stalls
    /// were not sampled, or touched every request), microseconds.
    pub fn p99_unstalled_us(&self) -> Option<f64> {
        let r = self.report.as_ref()?;
        Some(r.stalls.and_then(|s| s.unstalled_p99_us()).unwrap_or(r.latency_us.p99))
    }

    /// CPUs' worth of time the server's threads used over the run.
    pub fn server_cpus(&self) -> Option<f64> {
        self.server_cpu_secs.filter(|_| self.wall_secs > 0.0).map(|s| s / self.wall_secs)
    }

    /// The server's CPU per request: its CPU's busy time over the window,
    /// less what other processes took there, per request completed in it,
    /// microseconds (see [`ServerCost`]).
    pub fn server_cpu_us_per_request(&self) -> Option<f64> {
        self.cost.as_ref()?.server_cpu_us_per_request()
    }

    /// The figure before [`ServerCost`]: CPU time of the server's threads
    /// over the whole `ixload` run (connecting, warm-up, window and drain) per
    /// request completed in the window, microseconds. On veth unsteered it
    /// holds the client's receive work behind the server's sends and misses
    /// the server's own receive; the whole run's time over the window's
    /// requests also inflates it by about (warm-up + window) / window.
    pub fn threads_cpu_over_run_us_per_request(&self) -> Option<f64> {
        let completed = self.report.as_ref()?.completed;
        let secs = self.server_cpu_secs?;
        (completed > 0).then(|| 1e6 * secs / completed as f64)
    }
}

/// What the server's CPU did over a point's measured window, read by the
/// load generator's sampler within 5 ms of the window's start and end.
///
/// The server's CPU per request is that CPU's busy time (neither idle nor
/// stolen: processes, interrupts, softirq) less the time other processes took
/// there, over the requests completed. With the test network steered
/// (`testnet.sh steer`) everything else on that CPU is the server's work: its
/// threads, its system calls, its receive softirq or NAPI thread. Other
/// processes' time is the CPU's process time (user, nice, system in
/// `/proc/stat`) less the run time of the server's threads and of the server
/// side's NAPI threads. A task's run time also holds the softirq that ran
/// while it was current, which `/proc/stat` counts as softirq, not process
/// time: when other processes ran on the CPU too, the softirq in the server's
/// own threads is counted twice (an upper bound, exact when no other process
/// ran there; `others_secs` says how much was taken off).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct ServerCost {
    /// The server's CPU.
    pub cpu: usize,
    /// Seconds between the two readings.
    pub window_secs: f64,
    /// The server CPU's busy time (not idle, not stolen), seconds.
    pub busy_secs: f64,
    /// Of which softirq.
    pub softirq_secs: f64,
    /// Of which stolen by the host (not in `busy_secs`).
    pub steal_secs: f64,
    /// How long the server's threads ran (`schedstat`), seconds.
    pub threads_secs: f64,
    /// How long the server side's NAPI threads (`napi/IFACE-ID`, steered
    /// XDP only) ran, seconds.
    pub receive_threads_secs: f64,
    /// Other processes' time on the server's CPU, seconds (at least 0).
    pub others_secs: f64,
    /// Requests completed in the window.
    pub requests: u64,
}

impl ServerCost {
    /// The server's CPU per request, microseconds.
    pub fn server_cpu_us_per_request(&self) -> Option<f64> {
        self.per_request(self.busy_secs - self.others_secs)
    }

    /// The server's threads' run time per request, microseconds.
    pub fn threads_us_per_request(&self) -> Option<f64> {
        self.per_request(self.threads_secs)
    }

    /// The server CPU's softirq time per request, microseconds.
    pub fn softirq_us_per_request(&self) -> Option<f64> {
        self.per_request(self.softirq_secs)
    }

    /// The server side's NAPI threads' run time per request, microseconds.
    pub fn receive_threads_us_per_request(&self) -> Option<f64> {
        self.per_request(self.receive_threads_secs)
    }

    /// Other processes' share of the server CPU's time, percent.
    pub fn others_pct(&self) -> f64 {
        if self.window_secs > 0.0 { 100.0 * self.others_secs / self.window_secs } else { 0.0 }
    }

    fn per_request(&self, secs: f64) -> Option<f64> {
        (self.requests > 0).then(|| 1e6 * secs.max(0.0) / self.requests as f64)
    }

    /// From the load generator's report: the window's CPU time of CPU `cpu`,
    /// of the server (the first measured process) and of the receive threads
    /// (`receive_threads`, also measured).
    pub fn from_report(report: &Report, cpu: usize, server_pid: u32, receive_threads: &[u32]) -> Option<Self> {
        let window = report.window_cpu.as_ref()?;
        let on_cpu = window.cpus.get(cpu)?;
        let threads_secs = window.run_secs_of(server_pid);
        let receive_threads_secs: f64 = receive_threads.iter().map(|&pid| window.run_secs_of(pid)).sum();
        Some(Self {
            cpu,
            window_secs: window.secs,
            busy_secs: on_cpu.busy,
            softirq_secs: on_cpu.softirq,
            steal_secs: on_cpu.steal,
            threads_secs,
            receive_threads_secs,
            others_secs: (on_cpu.process - threads_secs - receive_threads_secs).max(0.0),
            requests: report.completed,
        })
    }
}

/// What a point is run against.
#[derive(Debug)]
pub struct Target<'a> {
    /// The network.
    pub net: &'a Network,
    /// The programs.
    pub programs: &'a Programs,
    /// The load generator's placement.
    pub client: &'a Client,
    /// The server kind.
    pub server: ServerKind,
    /// The running server.
    pub running: &'a RunningServer,
    /// Its label (backend, idle policy) for IX servers.
    pub label: Option<String>,
    /// The CPU the server is pinned to.
    pub server_cpu: usize,
    /// `testnet.sh steer`'s account if the network is steered.
    pub steering: Option<String>,
}

/// Runs one point at `rate`, again (up to the plan's limit) while the host or
/// other processes disturbed it past the plan's limits.
pub fn run_point(
    target: &Target<'_>,
    plan: &Plan,
    (repetition, purpose): (usize, Purpose),
    rate: f64,
    json: &Path,
) -> Point {
    let mut reruns = 0;
    loop {
        let mut point = run_once(target, plan, rate, json);
        point.repetition = repetition;
        point.purpose = purpose;
        point.reruns = reruns;
        point.disturbed = point.disturbance.exceeds(&plan.disturbance_limits);
        if !point.disturbed || reruns >= plan.max_reruns {
            return point;
        }
        reruns += 1;
        tracing::info!(server = target.server.name(), rate, ?point.disturbance, "disturbed point: running it again");
    }
}

/// The `ixload` command line of one point; `receive_threads` are measured
/// with the server.
fn load_command(
    target: &Target<'_>,
    plan: &Plan,
    rate: f64,
    json: &Path,
    receive_threads: &[u32],
) -> std::process::Command {
    let addr = format!("{}:{}", target.net.server_ip(), target.server.port());
    let mut cmd = target.net.client_command(target.client.cpu, &target.programs.ixload);
    cmd.args(["--target", &addr, "--connections", &plan.connections.to_string()]);
    if plan.closed_loop {
        cmd.arg("--closed");
    } else {
        cmd.args(["--rate", &rate.to_string()]);
    }
    cmd.args(["--duration", &format!("{}s", plan.duration.as_secs_f64())]);
    cmd.args(["--warmup", &format!("{}s", plan.warmup.as_secs_f64()), "--drain", "1s", "--quiet", "--stalls"]);
    let measured: Vec<String> =
        std::iter::once(target.running.pid()).chain(receive_threads.iter().copied()).map(|p| p.to_string()).collect();
    cmd.args(["--stall-pids", &measured.join(",")]);
    cmd.arg("--json").arg(json);
    match target.server.workload() {
        WorkloadKind::Http => cmd.args(["--protocol", "http", "--path", "/"]),
        WorkloadKind::Https => {
            cmd.args(["--protocol", "http", "--path", "/"]);
            match &target.running.tls_trust {
                Some(pem) => cmd.arg("--tls-trust").arg(pem),
                None => &mut cmd,
            }
        }
        WorkloadKind::Kv => {
            cmd.args(["--protocol", "memcache", "--keys", &plan.kv_keys.to_string(), "--prefill"]);
            match plan.kv_workload {
                Some(preset) => cmd.args(["--workload", preset.name()]),
                None => cmd.args(["--get-ratio", "0.9", "--key-size", "16", "--value-size", "32"]),
            }
        }
    };
    if let Some((backend, addr)) = &target.client.ix {
        cmd.args(["--runtime", "ix", "--backend", backend, "--addr", addr]);
    }
    cmd
}

fn run_once(target: &Target<'_>, plan: &Plan, rate: f64, json: &Path) -> Point {
    // The server side's NAPI threads (threaded NAPI: steered, with XDP):
    // their run time is the server's receive work.
    let receive_threads =
        target.net.server_iface().map(|iface| processes_named(&format!("napi/{iface}-"))).unwrap_or_default();
    let mut cmd = load_command(target, plan, rate, json, &receive_threads);
    let (before, server_before, started) = (CpuSnapshot::take(), target.running.cpu_secs(), Instant::now());
    let output = cmd.stdin(Stdio::null()).output();
    let (after, server_after, wall) = (CpuSnapshot::take(), target.running.cpu_secs(), started.elapsed());
    let server_cpu_secs = server_before.zip(server_after).map(|(a, b)| b - a);
    let mut point = Point {
        server: target.server,
        backend: target.label.clone(),
        repetition: 0,
        purpose: Purpose::Search,
        offered: rate,
        report: None,
        error: None,
        cpu: before.load_until(&after),
        server_cpu_secs,
        cost: None,
        steering: target.steering.clone(),
        wall_secs: wall.as_secs_f64(),
        connections: plan.connections,
        disturbance: Disturbance::default(),
        reruns: 0,
        disturbed: false,
    };
    let report = match output {
        Ok(o) if o.status.success() => std::fs::read_to_string(json)
            .map_err(|e| format!("reading {}: {e}", json.display()))
            .and_then(|s| serde_json::from_str::<Report>(&s).map_err(|e| format!("reading {}: {e}", json.display()))),
        Ok(o) => Err(format!("ixload {}: {}", o.status, String::from_utf8_lossy(&o.stderr).trim())),
        Err(e) => Err(format!("could not run {}: {e}", target.programs.ixload.display())),
    };
    let client_cpu = report.as_ref().ok().and_then(|r| r.process_cpu_secs).unwrap_or(0.0);
    let own = server_cpu_secs.unwrap_or(0.0) + client_cpu;
    point.disturbance = Disturbance::between(&before, &after, wall.as_secs_f64(), own);
    point.disturbance.stalled_pct = report.as_ref().ok().and_then(|r| r.stalls).map_or(0.0, |s| s.stalled_pct);
    match report {
        Ok(r) => {
            point.cost = ServerCost::from_report(&r, target.server_cpu, target.running.pid(), &receive_threads);
            point.report = Some(r);
        }
        Err(e) => point.error = Some(e),
    }
    point
}

/// One server's search in one repetition.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Searched {
    /// The server.
    pub server: ServerKind,
    /// The repetition.
    pub repetition: usize,
    /// The rate found for each objective.
    pub rates: Vec<crate::harness::search::SlaRate>,
}
