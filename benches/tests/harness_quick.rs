//! `ix-bench --quick` end to end with short windows: every server answered,
//! and the table, a plot per workload and the JSON were written; and
//! `ix-bench --cost-only`, steered and unsteered; and SIGTERM in the middle of
//! a run, after which no server and no namespace is left. With root they run
//! on their own namespaces (removed afterwards); without, on loopback.

mod support;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use support::workspace::build_release_binaries;

/// Removes the test network and the output folder however the test ends.
struct Cleanup {
    root: PathBuf,
    prefix: String,
    out: PathBuf,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        let _ = Command::new(self.root.join("scripts/testnet.sh")).args(["down", "-p", &self.prefix]).output();
        let _ = std::fs::remove_dir_all(&self.out);
    }
}

/// Builds the servers (the harness starts them from beside its own binary)
/// and returns the workspace root, a namespace prefix and an output folder of
/// this test's own, removed however it ends.
fn prepare(tag: &str) -> (PathBuf, String, PathBuf, Cleanup) {
    let root = build_release_binaries();
    let prefix = format!("ix{tag}{}", std::process::id() % 100_000);
    let out = std::env::temp_dir().join(format!("ix-bench-{tag}-{}", std::process::id()));
    let cleanup = Cleanup { root: root.clone(), prefix: prefix.clone(), out: out.clone() };
    (root, prefix, out, cleanup)
}

/// Runs `ix-bench ARGS MORE --out OUT` from the workspace root, requires
/// success and returns its `results.json` and its standard error.
fn run_bench(root: &Path, args: &[&str], more: &[&str], out: &Path) -> (Value, String) {
    let run = Command::new(env!("CARGO_BIN_EXE_ix-bench"))
        .current_dir(root)
        .args(args)
        .args(more)
        .arg("--out")
        .arg(out)
        .output()
        .expect("ix-bench runs");
    let stderr = String::from_utf8_lossy(&run.stderr).into_owned();
    eprintln!("{stderr}\n{}", String::from_utf8_lossy(&run.stdout));
    assert!(run.status.success(), "ix-bench failed");
    let results = serde_json::from_str(&std::fs::read_to_string(out.join("results.json")).unwrap()).unwrap();
    (results, stderr)
}

fn namespaces(root: &Path) -> bool {
    ix_driver::privilege::netns_available() && root.join("scripts/testnet.sh").is_file()
}

#[test]
fn quick_mode_measures_every_server_and_writes_table_plots_and_json() {
    let (root, prefix, out, _cleanup) = prepare("q");
    let args = ["--quick", "--duration", "0.3", "--http-rates", "2000,8000", "--kv-rates", "2000,8000"];
    let (results, stderr) = run_bench(&root, &args, &["--cost-rate", "2000", "--prefix", &prefix], &out);
    // Without namespaces (not root) the harness says so and measures on loopback.
    if namespaces(&root) {
        assert_eq!(results["namespaces"], true, "root with namespaces must not fall back");
    } else {
        assert!(stderr.contains("falling back to the in-process comparison"), "no fallback reason printed");
    }
    let points = results["points"].as_array().unwrap();
    let table = std::fs::read_to_string(out.join("table.md")).unwrap();
    let skipped = results["skipped"].as_array().unwrap();
    let servers =
        ["IxHttp", "TokioHttp", "MonoioHttp", "Nginx", "IxHttps", "TokioHttps", "IxKv", "TokioKv", "Memcached"];
    for server in servers {
        let mine: Vec<&Value> = points.iter().filter(|p| p["server"] == server).collect();
        if mine.is_empty() {
            let reason = skipped.iter().find(|s| s["server"] == server).map(|s| s["reason"].to_string());
            panic!("{server} was not measured: {}", reason.unwrap_or_else(|| "no reason given".into()));
        }
        // The lowest rate is far below any server's capacity: all answered, no failure.
        let first = &mine[0]["report"];
        assert!(first["completed"].as_u64().unwrap() > 0, "{server} answered nothing: {}", mine[0]);
        let errors = &first["errors"];
        for kind in ["connect", "io", "protocol", "error_replies"] {
            assert_eq!(errors[kind], 0, "{server}: {kind} errors: {}", mine[0]);
        }
        assert!(
            !results["table"].as_array().unwrap().iter().all(|r| r["server"] != server),
            "{server} not in the table"
        );
    }
    assert!(table.starts_with("| workload | server |"), "{table}");
    for workload in ["http", "https", "kv"] {
        let measured = results["table"].as_array().unwrap().iter().any(|r| r["workload"] == workload);
        assert!(measured, "no {workload} row in the table");
        {
            let svg = std::fs::read_to_string(out.join(format!("{workload}.svg"))).unwrap();
            assert!(svg.starts_with("<svg") && svg.contains("<polyline"), "{workload}.svg has no line");
        }
    }
    for key in ["kernel", "cpu_model", "commit"] {
        assert!(results["machine"][key].as_str().is_some_and(|s| !s.is_empty()), "machine.{key} missing");
    }
    assert!(points.iter().all(|p| !p["cpu"].as_array().unwrap().is_empty()), "per-core CPU load missing");
    // Every point knows what disturbed it and what the server's threads used.
    assert!(points.iter().all(|p| p["disturbance"]["steal_pct"].is_number() && p["server_cpu_secs"].is_number()));
    // Each server has its CPU-per-request point and its search result per objective.
    for row in results["table"].as_array().unwrap() {
        assert!(row["cpu_us_per_request"]["value"]["median"].as_f64().is_some_and(|v| v > 0.0), "{row}");
        assert_eq!(row["slas"].as_array().unwrap().len(), 2, "{row}");
    }
    assert!(table.contains("Procedure:"), "the table does not state its procedure");
    // The cost points ran on the steered network (the default there).
    let steered = namespaces(&root);
    let cost = results["cost"].as_array().unwrap();
    assert!(!cost.is_empty() && cost.iter().all(|r| r["steered"] == steered), "{cost:?}");
    assert!(std::fs::read_to_string(out.join("cost.md")).unwrap().contains("server CPU us/req"));
}

#[test]
fn cost_only_measures_each_servers_cpu_per_request_steered_and_unsteered() {
    let (root, prefix, out, _cleanup) = prepare("c");
    if !namespaces(&root) {
        // Steering needs the namespace network; on loopback only unsteered is measured.
        eprintln!("skipped: ix-bench --cost-steering steered needs network namespaces (root)");
        return;
    }
    let args = ["--cost-only", "--servers", "ix-http,tokio-http", "--cost-steering", "steered,unsteered"];
    let more = ["--repetitions", "1", "--duration", "0.5", "--cost-rate", "2000", "--prefix", &prefix];
    let (results, _) = run_bench(&root, &args, &more, &out);
    let points = results["points"].as_array().unwrap();
    assert_eq!(points.len(), 4, "two servers, two networks each: {points:?}");
    assert!(points.iter().all(|p| p["purpose"] == "cost"), "only cost points");
    for p in points {
        let cost = &p["cost"];
        assert!(cost["requests"].as_u64().is_some_and(|n| n > 0), "{p}");
        assert!(cost["threads_secs"].as_f64().is_some_and(|s| s > 0.0), "the server's threads ran: {p}");
        assert!(cost["busy_secs"].as_f64().is_some_and(|s| s > 0.0), "its CPU was busy: {p}");
        assert!(cost["window_secs"].as_f64().is_some_and(|s| (s - 0.5).abs() < 0.1), "the window alone: {p}");
    }
    // Steered, the IX server's XDP program brought a NAPI thread, pinned
    // after the server started, whose run time counts as the server's.
    let ix_steered = points.iter().find(|p| p["server"] == "IxHttp" && p["steering"].is_string()).unwrap();
    let account = ix_steered["steering"].as_str().unwrap();
    if ix_steered["backend"].as_str().is_some_and(|b| b.starts_with("xdp")) {
        assert!(account.contains(&format!("napi/{prefix}-s-")) && account.contains("to CPU 0"), "{account}");
        assert!(ix_steered["cost"]["receive_threads_secs"].as_f64().is_some_and(|s| s > 0.0), "{ix_steered}");
    }
    let unsteered = points.iter().filter(|p| p["steering"].is_null()).count();
    assert_eq!(unsteered, 2, "one unsteered point per server");
    let table = std::fs::read_to_string(out.join("cost.md")).unwrap();
    assert_eq!(table.lines().filter(|l| l.starts_with("| steered |")).count(), 2, "{table}");
    assert_eq!(table.lines().filter(|l| l.starts_with("| unsteered |")).count(), 2, "{table}");
}

/// The processes in namespace `name` (`ip netns pids`), each with its command
/// line; none when the namespace does not exist.
fn namespace_processes(name: &str) -> Vec<(String, Vec<u8>)> {
    let out = Command::new("ip").args(["netns", "pids", name]).stderr(Stdio::null()).output().expect("ip runs");
    let pids = String::from_utf8_lossy(&out.stdout).split_whitespace().map(str::to_string).collect::<Vec<_>>();
    pids.into_iter().filter_map(|pid| std::fs::read(format!("/proc/{pid}/cmdline")).ok().map(|c| (pid, c))).collect()
}

fn namespace_exists(name: &str) -> bool {
    let out = Command::new("ip").args(["netns", "list"]).output().expect("ip runs");
    String::from_utf8_lossy(&out.stdout).lines().any(|l| l.split_whitespace().next() == Some(name))
}

#[test]
fn sigterm_mid_run_stops_the_servers_and_removes_the_namespaces() {
    let (root, prefix, out, _cleanup) = prepare("i");
    if !ix_driver::privilege::require("network namespaces (ix-bench's test network)", namespaces(&root)) {
        return;
    }
    std::fs::create_dir_all(&out).unwrap();
    let log = std::fs::File::create(out.join("stderr.log")).unwrap();
    let mut bench = Command::new(env!("CARGO_BIN_EXE_ix-bench"))
        .current_dir(&root)
        .args(["--cost-only", "--servers", "ix-http,tokio-http", "--cost-steering", "unsteered"])
        .args(["--repetitions", "3", "--duration", "1", "--cost-rate", "2000", "--prefix", &prefix, "--out"])
        .arg(&out)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("ix-bench starts");
    let (server_ns, client_ns) = (format!("{prefix}-srv"), format!("{prefix}-cli"));
    // Wait for a point to be under way: a server and the load generator run.
    let deadline = Instant::now() + Duration::from_secs(120);
    let running = loop {
        let running: Vec<_> = [&server_ns, &client_ns].iter().flat_map(|ns| namespace_processes(ns)).collect();
        if running.len() >= 2 {
            break running;
        }
        assert!(Instant::now() < deadline, "no server and load generator running after 120 s");
        assert!(bench.try_wait().unwrap().is_none(), "ix-bench ended before its first point");
        std::thread::sleep(Duration::from_millis(50));
    };
    let pid = bench.id().to_string();
    assert!(Command::new("kill").args(["-TERM", &pid]).status().unwrap().success());
    // It finishes the point under way (a few seconds), then tears down.
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(status) = bench.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = bench.kill();
            panic!("ix-bench still running 60 s after SIGTERM");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let stderr = std::fs::read_to_string(out.join("stderr.log")).unwrap();
    eprintln!("{stderr}");
    assert!(!status.success(), "an interrupted run reports failure");
    assert!(stderr.contains("SIGTERM") && stderr.contains("interrupted"), "it says why it stopped");
    assert!(!namespace_exists(&server_ns) && !namespace_exists(&client_ns), "a namespace was left behind");
    for (pid, cmdline) in running {
        let now = std::fs::read(format!("/proc/{pid}/cmdline")).ok();
        assert_ne!(now.as_ref(), Some(&cmdline), "process {pid} ({}) left running", String::from_utf8_lossy(&cmdline));
    }
    // It measured no further server after the signal: at most the point under way.
    let results: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("results.json")).unwrap()).unwrap();
    assert!(results["points"].as_array().unwrap().len() <= 1, "{}", results["points"]);
}

#[test]
fn an_ix_server_with_busy_polling_serves_the_cost_point() {
    let (root, prefix, out, _cleanup) = prepare("b");
    if !ix_driver::privilege::require("network namespaces (XDP on the test network)", namespaces(&root)) {
        return;
    }
    let backend = format!("xdp:{prefix}-s,busy_poll=64:100");
    let args = ["--cost-only", "--servers", "ix-http", "--cost-steering", "steered", "--ix-backend", &backend];
    let more = ["--repetitions", "1", "--duration", "0.5", "--cost-rate", "2000", "--prefix", &prefix];
    let (results, _) = run_bench(&root, &args, &more, &out);
    let point = &results["points"].as_array().unwrap()[0];
    assert!(point["backend"].as_str().is_some_and(|b| b.contains("busy_poll=64:100")), "{point}");
    let report = &point["report"];
    assert!(report["completed"].as_u64().is_some_and(|n| n > 500), "answered every request: {point}");
    assert_eq!(report["errors"]["connect"], 0, "{point}");
    assert_eq!(report["errors"]["io"], 0, "{point}");
}
