//! A sweep of offered load against one server: one `ixload` run per rate on
//! the client side (pinned to its CPU), with the CPUs' load around each run.

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::harness::machine::{CpuLoad, CpuSnapshot};
use crate::harness::network::Network;
use crate::harness::servers::{Programs, ServerKind, WorkloadKind};
use crate::loadgen::Report;

/// A run keeps up when it completes at least this share of the offered rate.
const KEPT_UP_SHARE: f64 = 0.95;
/// ... and leaves at most this share of its requests unsent or unanswered.
const ABANDONED_MAX_SHARE: f64 = 0.01;

/// What to sweep and how long each point lasts.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Plan {
    /// Offered rates for the HTTP servers, requests per second, ascending.
    pub http_rates: Vec<f64>,
    /// Offered rates for the KV servers.
    pub kv_rates: Vec<f64>,
    /// Connections the generator opens.
    pub connections: usize,
    /// Warm-up before each measured window.
    pub warmup: Duration,
    /// Each measured window.
    pub duration: Duration,
    /// KV key space (stored before each run).
    pub kv_keys: u64,
}

impl Plan {
    /// The rates for `workload`.
    pub fn rates(&self, workload: WorkloadKind) -> &[f64] {
        match workload {
            WorkloadKind::Http => &self.http_rates,
            WorkloadKind::Kv => &self.kv_rates,
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

/// One measured point.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Point {
    /// The server.
    pub server: ServerKind,
    /// The IX backend, for IX servers.
    pub backend: Option<String>,
    /// The offered rate.
    pub offered: f64,
    /// What the generator measured (`None` when it failed).
    pub report: Option<Report>,
    /// Why the generator failed.
    pub error: Option<String>,
    /// Every CPU's load during the run.
    pub cpu: Vec<CpuLoad>,
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
}

/// Runs one point: `ixload` against `server` at `rate`, its JSON kept in `json`.
pub fn run_point(
    net: &Network,
    programs: &Programs,
    plan: &Plan,
    client: &Client,
    (server, backend): (ServerKind, Option<&str>),
    rate: f64,
    json: &Path,
) -> Point {
    let target = format!("{}:{}", net.server_ip(), server.port());
    let mut cmd = net.client_command(client.cpu, &programs.ixload);
    cmd.args(["--target", &target, "--connections", &plan.connections.to_string()]);
    cmd.args(["--rate", &rate.to_string(), "--duration", &format!("{}s", plan.duration.as_secs_f64())]);
    cmd.args(["--warmup", &format!("{}s", plan.warmup.as_secs_f64()), "--drain", "1s", "--quiet"]);
    cmd.arg("--json").arg(json);
    match server.workload() {
        WorkloadKind::Http => cmd.args(["--protocol", "http", "--path", "/"]),
        WorkloadKind::Kv => cmd
            .args(["--protocol", "memcache", "--get-ratio", "0.9", "--keys", &plan.kv_keys.to_string()])
            .args(["--key-size", "16", "--value-size", "32", "--prefill"]),
    };
    if let Some((backend, addr)) = &client.ix {
        cmd.args(["--runtime", "ix", "--backend", backend, "--addr", addr]);
    }
    let before = CpuSnapshot::take();
    let output = cmd.stdin(Stdio::null()).output();
    let cpu = before.load_until(&CpuSnapshot::take());
    let failed = |error: String| Point {
        server,
        backend: backend.map(str::to_string),
        offered: rate,
        report: None,
        error: Some(error),
        cpu: cpu.clone(),
    };
    let output = match output {
        Ok(o) if o.status.success() => o,
        Ok(o) => return failed(format!("ixload {}: {}", o.status, String::from_utf8_lossy(&o.stderr).trim())),
        Err(e) => return failed(format!("could not run {}: {e}", programs.ixload.display())),
    };
    drop(output);
    let report = std::fs::read_to_string(json)
        .map_err(|e| e.to_string())
        .and_then(|s| serde_json::from_str::<Report>(&s).map_err(|e| e.to_string()));
    match report {
        Ok(report) => Point {
            server,
            backend: backend.map(str::to_string),
            offered: rate,
            report: Some(report),
            error: None,
            cpu,
        },
        Err(e) => failed(format!("reading {}: {e}", json.display())),
    }
}
