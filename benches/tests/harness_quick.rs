//! `ix-bench --quick` end to end with short windows: every server answered,
//! and the table, a plot per workload and the JSON were written. With root it
//! runs on its own namespaces (removed afterwards); without, on loopback.

mod support;

use std::path::PathBuf;
use std::process::Command;

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

#[test]
fn quick_mode_measures_every_server_and_writes_table_plots_and_json() {
    // The harness starts the example servers from beside its own binary.
    let root = build_release_binaries();
    let prefix = format!("ixq{}", std::process::id() % 100_000);
    let out = std::env::temp_dir().join(format!("ix-bench-quick-{}", std::process::id()));
    let _cleanup = Cleanup { root: root.clone(), prefix: prefix.clone(), out: out.clone() };
    let run = Command::new(env!("CARGO_BIN_EXE_ix-bench"))
        .current_dir(&root)
        .args([
            "--quick",
            "--duration",
            "0.3",
            "--http-rates",
            "2000,8000",
            "--kv-rates",
            "2000,8000",
            "--cost-rate",
            "2000",
        ])
        .args(["--prefix", &prefix, "--out"])
        .arg(&out)
        .output()
        .expect("ix-bench runs");
    let stderr = String::from_utf8_lossy(&run.stderr);
    eprintln!("{stderr}\n{}", String::from_utf8_lossy(&run.stdout));
    assert!(run.status.success(), "ix-bench failed");

    let results: Value = serde_json::from_str(&std::fs::read_to_string(out.join("results.json")).unwrap()).unwrap();
    // Without namespaces (not root) the harness says so and measures on loopback.
    if ix_driver::privilege::netns_available() && root.join("scripts/testnet.sh").is_file() {
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
}
