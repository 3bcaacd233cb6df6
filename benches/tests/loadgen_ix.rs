//! The load generator running on IX itself: on the `kernel` backend over
//! loopback (unprivileged), and on a TAP device against a kernel-side server
//! (root); latency matches a known service time and the open-loop rate holds.

mod support;

use std::net::{Ipv4Addr, SocketAddrV4};
use std::process::Command;
use std::sync::Mutex;
use std::time::Duration;

use ix_benches::loadgen::{self, ConnectionUse, LoadConfig, Mode, Report, Workload};
use ix_driver::privilege;
use ix_runtime::Backend;
use support::{Behaviour, TestServer};

static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

fn http(target: SocketAddrV4, rate: f64) -> LoadConfig {
    LoadConfig {
        target,
        connections: 16,
        mode: Mode::Open { rate },
        workload: Workload::Http { host: target.to_string(), path: "/".into() },
        warmup: Duration::from_millis(300),
        duration: Duration::from_secs(2),
        drain: Duration::from_millis(500),
        connect_timeout: Duration::from_secs(2),
        connect_rate: None,
        seed: 7,
        timeline: false,
        connection_use: ConnectionUse::KeepAlive,
    }
}

fn check(report: &Report, rate: f64, service_ms: f64) {
    eprintln!("{}", report.summary());
    assert_eq!(report.errors.total(), 0, "{:?}", report.errors);
    assert_eq!((report.unsent, report.unanswered), (0, 0));
    let off = (report.send_rate - rate).abs() / rate;
    assert!(off < 0.02, "send rate {:.0}/s is {:.2}% off {rate}/s", report.send_rate, off * 100.0);
    let p50 = report.latency_us.p50 / 1000.0;
    assert!((service_ms..service_ms + 0.6).contains(&p50), "p50 {p50} ms for a {service_ms} ms service");
}

#[test]
fn ix_kernel_backend_client_measures_the_service_time() {
    let _serial = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let server = TestServer::start(Behaviour::HttpServiceTime(Duration::from_millis(2)));
    let report = loadgen::run_on_ix(Backend::Kernel, None, &http(server.addr, 500.0)).expect("run");
    check(&report, 500.0, 2.0);
}

/// Deletes the TAP device however the test ends.
struct LinkGuard(String);

impl Drop for LinkGuard {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["link", "del", &self.0]).output();
    }
}

fn ip(args: &[&str]) {
    let out = Command::new("ip").args(args).output().expect("ip runs");
    assert!(out.status.success(), "ip {args:?}: {}", String::from_utf8_lossy(&out.stderr));
}

#[test]
fn ix_tap_client_measures_the_service_time() {
    if !privilege::require("TAP", privilege::has_net_admin()) {
        return;
    }
    let _serial = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let name = format!("ixlg{}", std::process::id() % 100_000);
    let kernel_side = Ipv4Addr::new(10, 97, 0, 1);
    // The device exists (persistent, multi-queue) before the runtime attaches,
    // so the kernel side is addressed and the server listens before the first SYN.
    ip(&["tuntap", "add", "dev", &name, "mode", "tap", "multi_queue"]);
    let _guard = LinkGuard(name.clone());
    ip(&["addr", "add", &format!("{kernel_side}/24"), "dev", &name]);
    ip(&["link", "set", &name, "up"]);
    let server = TestServer::start_on(kernel_side, Behaviour::HttpServiceTime(Duration::from_millis(2)));
    let backend = Backend::Tap { name: name.clone() };
    let report =
        loadgen::run_on_ix(backend, Some((Ipv4Addr::new(10, 97, 0, 2), 24)), &http(server.addr, 500.0)).expect("run");
    check(&report, 500.0, 2.0);
}
