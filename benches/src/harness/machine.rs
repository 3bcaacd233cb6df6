//! What the results were measured on: kernel, CPU, commit, and each core's
//! load over a run from `/proc/stat` deltas.

use std::path::Path;
use std::process::Command;

use serde::{Deserialize, Serialize};

/// The machine and the code a result set comes from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Machine {
    /// `/proc/sys/kernel/osrelease`.
    pub kernel: String,
    /// The first `model name` of `/proc/cpuinfo`.
    pub cpu_model: String,
    /// CPUs this process may use.
    pub cpus: usize,
    /// `git describe`-style commit of the workspace (`-dirty` when it has
    /// uncommitted changes), or `unknown`.
    pub commit: String,
    /// `rustc -V`, or `unknown`.
    pub rustc: String,
}

impl Machine {
    /// Reads the facts; what cannot be read is `unknown`.
    pub fn describe(workspace: &Path) -> Self {
        let read = |p: &str| std::fs::read_to_string(p).map(|s| s.trim().to_string()).ok();
        let cpu_model = read("/proc/cpuinfo")
            .and_then(|s| s.lines().find(|l| l.starts_with("model name")).map(|l| l.to_string()))
            .and_then(|l| l.split_once(':').map(|(_, v)| v.trim().to_string()));
        let output = |cmd: &mut Command| {
            cmd.output()
                .ok()
                .filter(|o| o.status.success())
                .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        };
        let commit = output(Command::new("git").arg("-C").arg(workspace).args(["rev-parse", "--short", "HEAD"]));
        let dirty = output(Command::new("git").arg("-C").arg(workspace).args(["status", "--porcelain"]))
            .is_some_and(|s| !s.is_empty());
        let unknown = || "unknown".to_string();
        Self {
            kernel: read("/proc/sys/kernel/osrelease").unwrap_or_else(unknown),
            cpu_model: cpu_model.unwrap_or_else(unknown),
            cpus: std::thread::available_parallelism().map_or(1, |n| n.get()),
            commit: commit.map_or_else(unknown, |c| if dirty { format!("{c}-dirty") } else { c }),
            rustc: output(Command::new("rustc").arg("-V")).unwrap_or_else(unknown),
        }
    }
}

/// The jiffies of one CPU line of `/proc/stat`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct CpuTimes {
    busy: u64,
    softirq: u64,
    steal: u64,
    total: u64,
}

/// Every CPU's counters at one moment.
#[derive(Debug, Clone, Default)]
pub struct CpuSnapshot(Vec<CpuTimes>);

/// One CPU's load between two snapshots, in percent of wall time.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct CpuLoad {
    /// The CPU.
    pub cpu: usize,
    /// Not idle (user, system, interrupts, softirq, steal).
    pub busy_pct: f64,
    /// Of which softirq (the kernel's network receive work).
    pub softirq_pct: f64,
    /// Of which stolen by the hypervisor.
    pub steal_pct: f64,
}

impl CpuSnapshot {
    /// Reads `/proc/stat` (empty when it cannot be read).
    pub fn take() -> Self {
        std::fs::read_to_string("/proc/stat").map(|s| Self::parse(&s)).unwrap_or_default()
    }

    fn parse(stat: &str) -> Self {
        let cpus = stat.lines().filter(|l| l.starts_with("cpu") && l.as_bytes().get(3).is_some_and(u8::is_ascii_digit));
        Self(
            cpus.map(|line| {
                let v: Vec<u64> = line.split_whitespace().skip(1).filter_map(|f| f.parse().ok()).collect();
                let at = |i: usize| v.get(i).copied().unwrap_or(0);
                // user nice system idle iowait irq softirq steal (guest time is inside user).
                let total: u64 = (0..8).map(at).sum();
                CpuTimes { busy: total - at(3) - at(4), softirq: at(6), steal: at(7), total }
            })
            .collect(),
        )
    }

    /// Each CPU's load from `self` (earlier) to `later`.
    pub fn load_until(&self, later: &CpuSnapshot) -> Vec<CpuLoad> {
        let pct = |part: u64, total: u64| if total == 0 { 0.0 } else { 100.0 * part as f64 / total as f64 };
        self.0
            .iter()
            .zip(&later.0)
            .enumerate()
            .map(|(cpu, (a, b))| {
                let total = b.total.saturating_sub(a.total);
                CpuLoad {
                    cpu,
                    busy_pct: pct(b.busy.saturating_sub(a.busy), total),
                    softirq_pct: pct(b.softirq.saturating_sub(a.softirq), total),
                    steal_pct: pct(b.steal.saturating_sub(a.steal), total),
                }
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn load_is_the_share_of_non_idle_jiffies() {
        let a = CpuSnapshot::parse("cpu  1 2 3 4\ncpu0 100 0 50 800 50 0 0 0 0 0\ncpu1 0 0 0 1000 0 0 0 0\n");
        let b = CpuSnapshot::parse("cpu  1 2 3 4\ncpu0 150 0 70 810 50 0 20 0 0 0\ncpu1 0 0 0 1100 0 0 0 0\n");
        let load = a.load_until(&b);
        assert_eq!(load.len(), 2);
        // cpu0: 100 jiffies passed, 90 of them busy (50 user + 20 system + 20 softirq).
        assert!((load[0].busy_pct - 90.0).abs() < 1e-9, "{load:?}");
        assert!((load[0].softirq_pct - 20.0).abs() < 1e-9);
        assert_eq!(load[1].busy_pct, 0.0);
    }
}
