//! The soak test's CI version: `scripts/soak.sh 2` (two minutes of mixed,
//! checked load through the fault-injecting relay) must pass every check.
//! Needs root (namespaces, AF_XDP, AF_PACKET): skips outside CI without it.

mod support;

use std::process::Command;
use std::time::Instant;

use ix_driver::privilege::{has_net_admin, netns_available, require};
use support::workspace::build_release_binaries;

#[test]
fn two_minutes_of_mixed_load_through_faults_lose_nothing_stall_nothing_and_leak_nothing() {
    if !require("the soak test (network namespaces, AF_XDP, AF_PACKET)", has_net_admin() && netns_available()) {
        return;
    }
    // The script runs the servers, the relay and the client from target/release.
    let root = build_release_binaries();
    // Unique per process: other test runs may use the machine at the same time.
    let prefix = format!("ixsk{}", std::process::id() % 100_000);
    let started = Instant::now();
    // 30 s of warm-up; the relay's delay steps every 10 s, so the two
    // minutes see each of its five delays at least twice.
    let run = Command::new(root.join("scripts/soak.sh"))
        .current_dir(&root)
        .env("DELAY_PERIOD_S", "10")
        .args(["-p", &prefix, "-w", "30", "2"])
        .output()
        .expect("scripts/soak.sh runs");
    let stdout = String::from_utf8_lossy(&run.stdout);
    eprintln!("{}\n{stdout}", String::from_utf8_lossy(&run.stderr));
    let checks: Vec<&str> = stdout.lines().filter(|l| l.starts_with("check ")).collect();
    // bodies, stall, rss of each server, counters of each server.
    assert_eq!(checks.len(), 6, "every check ran: {checks:?}");
    assert!(checks.iter().all(|l| l.split(' ').nth(2) == Some("ok")), "failed checks: {checks:#?}");
    assert!(run.status.success(), "scripts/soak.sh exited with {}", run.status);
    eprintln!("soak test took {:.0} s", started.elapsed().as_secs_f64());
}
