//! What the results were measured on: kernel, CPU, commit; each core's load
//! over a run from `/proc/stat` deltas, a process's own CPU time from
//! `/proc/PID/task/*/stat`, and what other processes and the host took.

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

/// The 1, 5 and 15 minute load averages, as `/proc/loadavg` gives them
/// (`unknown` when it cannot be read).
pub fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "unknown".into())
}

/// The jiffies of one CPU line of `/proc/stat`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
struct CpuTimes {
    busy: u64,
    /// user + nice + system: time charged to processes.
    process: u64,
    softirq: u64,
    steal: u64,
    total: u64,
}

/// Every CPU's counters at one moment.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CpuSnapshot(Vec<CpuTimes>);

/// One CPU's time between two snapshots, seconds (`/proc/stat` counts it in
/// ticks of 10 ms, sampled by the scheduler tick: exact over many ticks).
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct CpuSecs {
    /// Neither idle nor stolen: processes, interrupts and softirq.
    pub busy: f64,
    /// Of which in processes' own context (user, nice, system), kernel
    /// threads included. Without IRQ time accounting (this kernel) a task's
    /// own CPU time also holds the softirq ticks that landed while it ran,
    /// which `/proc/stat` puts in `softirq` instead.
    pub process: f64,
    /// Of which softirq (the kernel's network receive work, among others).
    pub softirq: f64,
    /// Stolen by the host (not in `busy`).
    pub steal: f64,
}

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

    pub(crate) fn parse(stat: &str) -> Self {
        let cpus = stat.lines().filter(|l| l.starts_with("cpu") && l.as_bytes().get(3).is_some_and(u8::is_ascii_digit));
        Self(
            cpus.map(|line| {
                let v: Vec<u64> = line.split_whitespace().skip(1).filter_map(|f| f.parse().ok()).collect();
                let at = |i: usize| v.get(i).copied().unwrap_or(0);
                // user nice system idle iowait irq softirq steal (guest time is inside user).
                let total: u64 = (0..8).map(at).sum();
                CpuTimes {
                    busy: total - at(3) - at(4),
                    process: at(0) + at(1) + at(2),
                    softirq: at(6),
                    steal: at(7),
                    total,
                }
            })
            .collect(),
        )
    }

    /// Each CPU's steal counter, in `/proc/stat` ticks.
    pub fn steal_ticks(&self) -> Vec<u64> {
        self.0.iter().map(|c| c.steal).collect()
    }

    /// Each CPU's time from `self` (earlier) to `later`, in seconds.
    pub fn secs_until(&self, later: &CpuSnapshot) -> Vec<CpuSecs> {
        let secs = |ticks: u64| ticks as f64 / PROC_TICKS_PER_SEC;
        self.0
            .iter()
            .zip(&later.0)
            .map(|(a, b)| {
                let steal = b.steal.saturating_sub(a.steal);
                CpuSecs {
                    busy: secs(b.busy.saturating_sub(a.busy).saturating_sub(steal)),
                    process: secs(b.process.saturating_sub(a.process)),
                    softirq: secs(b.softirq.saturating_sub(a.softirq)),
                    steal: secs(steal),
                }
            })
            .collect()
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

/// Clock ticks per second of `/proc` CPU times (USER_HZ: 100 on Linux, fixed
/// by its ABI).
pub const PROC_TICKS_PER_SEC: f64 = 100.0;

/// Seconds of CPU (user + system) all threads of process `pid` have used,
/// from `/proc/PID/task/*/stat`; `None` when the process is gone.
pub fn process_cpu_secs(pid: u32) -> Option<f64> {
    let tasks = std::fs::read_dir(format!("/proc/{pid}/task")).ok()?;
    let ticks: u64 = tasks
        .filter_map(Result::ok)
        .filter_map(|t| std::fs::read_to_string(t.path().join("stat")).ok())
        .filter_map(|stat| stat_cpu_ticks(&stat))
        .sum();
    Some(ticks as f64 / PROC_TICKS_PER_SEC)
}

/// Process `pid` and all its descendants (nginx's workers, say), `pid` first;
/// `None` when `/proc` cannot be read.
pub fn process_tree(pid: u32) -> Option<Vec<u32>> {
    let parents: Vec<(u32, u32)> = std::fs::read_dir("/proc")
        .ok()?
        .filter_map(Result::ok)
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter_map(|p| Some((p, stat_parent(&std::fs::read_to_string(format!("/proc/{p}/stat")).ok()?)?)))
        .collect();
    let mut tree = vec![pid];
    let mut i = 0;
    while let Some(&parent) = tree.get(i) {
        tree.extend(parents.iter().filter(|(_, pp)| *pp == parent).map(|(p, _)| *p));
        i += 1;
    }
    Some(tree)
}

/// Seconds of CPU that process `pid` and all its descendants have used;
/// `None` when `pid` is gone.
pub fn process_tree_cpu_secs(pid: u32) -> Option<f64> {
    let tree = process_tree(pid)?;
    let own = process_cpu_secs(pid)?;
    Some(own + tree[1..].iter().filter_map(|&p| process_cpu_secs(p)).sum::<f64>())
}

/// One thread's scheduler times, from `/proc/PID/task/TID/schedstat`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ThreadSchedTimes {
    /// The thread.
    pub tid: u32,
    /// Nanoseconds it has run on a CPU (exact, not sampled by ticks).
    pub run_ns: u64,
    /// Nanoseconds it has waited, runnable, for a CPU (`run_delay`).
    pub wait_ns: u64,
    /// Its voluntary context switches so far, when it was runnable (state
    /// `R`, `/proc/PID/task/TID/status`) as read; `None` when it was asleep
    /// or the status could not be read. Two readings with the same count
    /// mean that it did not sleep in between.
    pub runnable_switches: Option<u64>,
}

/// Each thread of process `pid` with its scheduler times; empty when the
/// process is gone.
pub fn thread_sched_times(pid: u32) -> Vec<ThreadSchedTimes> {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else { return Vec::new() };
    tasks
        .filter_map(Result::ok)
        .filter_map(|t| {
            let tid = t.file_name().to_str()?.parse().ok()?;
            let schedstat = std::fs::read_to_string(t.path().join("schedstat")).ok()?;
            let mut fields = schedstat.split_whitespace().map(|f| f.parse().ok());
            let (run_ns, wait_ns) = (fields.next()??, fields.next()??);
            let runnable_switches =
                std::fs::read_to_string(t.path().join("status")).ok().as_deref().and_then(runnable_switches);
            Some(ThreadSchedTimes { tid, run_ns, wait_ns, runnable_switches })
        })
        .collect()
}

/// From a thread's `/proc/.../status`: its voluntary context switches when
/// its state is `R` (running or runnable), else `None`.
fn runnable_switches(status: &str) -> Option<u64> {
    let field = |name: &str| status.lines().find_map(|l| l.strip_prefix(name)).map(str::trim);
    if !field("State:")?.starts_with('R') {
        return None;
    }
    field("voluntary_ctxt_switches:")?.parse().ok()
}

/// The processes whose name (`/proc/PID/comm`, whole for kernel threads)
/// starts with `prefix`: the NAPI threads of a device are `napi/DEV-ID`.
pub fn processes_named(prefix: &str) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else { return Vec::new() };
    entries
        .filter_map(Result::ok)
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| std::fs::read_to_string(format!("/proc/{pid}/comm")).is_ok_and(|c| c.starts_with(prefix)))
        .collect()
}

/// The parent pid of one `/proc/PID/stat` line.
fn stat_parent(stat: &str) -> Option<u32> {
    stat.rsplit_once(')')?.1.split_whitespace().nth(1)?.parse().ok()
}

/// utime + stime of one `/proc/.../stat` line, in ticks.
fn stat_cpu_ticks(stat: &str) -> Option<u64> {
    // The command name may hold spaces and parentheses: fields are counted
    // after its last `)`, from field 3 (state); utime and stime are 14 and 15.
    let mut fields = stat.rsplit_once(')')?.1.split_whitespace().skip(11);
    Some(fields.next()?.parse::<u64>().ok()? + fields.next()?.parse::<u64>().ok()?)
}

/// What disturbed a measurement: the hypervisor and the other processes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Disturbance {
    /// Time stolen by the host, in percent of all CPUs' time.
    pub steal_pct: f64,
    /// CPUs' worth of process time (user + system) taken by processes other
    /// than the ones measured.
    pub others_cpus: f64,
    /// Requests whose life a host stall touched, percent (0 when stalls were
    /// not sampled; see [`crate::harness::stalls`]).
    #[serde(default)]
    pub stalled_pct: f64,
}

impl Disturbance {
    /// From whole-machine snapshots around a run of `wall_secs`, minus the
    /// `own_cpu_secs` the measured processes (server and client) used.
    pub fn between(before: &CpuSnapshot, after: &CpuSnapshot, wall_secs: f64, own_cpu_secs: f64) -> Self {
        let sum = |s: &CpuSnapshot, f: fn(&CpuTimes) -> u64| s.0.iter().map(f).sum::<u64>();
        let delta = |f: fn(&CpuTimes) -> u64| sum(after, f).saturating_sub(sum(before, f)) as f64;
        let total = delta(|c| c.total);
        let process_secs = delta(|c| c.process) / PROC_TICKS_PER_SEC;
        Disturbance {
            steal_pct: if total > 0.0 { 100.0 * delta(|c| c.steal) / total } else { 0.0 },
            others_cpus: if wall_secs > 0.0 { ((process_secs - own_cpu_secs) / wall_secs).max(0.0) } else { 0.0 },
            stalled_pct: 0.0,
        }
    }

    /// Whether any figure passed its limit.
    pub fn exceeds(&self, limits: &Disturbance) -> bool {
        self.steal_pct > limits.steal_pct
            || self.others_cpus > limits.others_cpus
            || self.stalled_pct > limits.stalled_pct
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
        let c = CpuSnapshot::parse("cpu0 150 0 70 810 50 0 20 5\ncpu1 0 0 0 1100 0 0 0 0\n");
        let secs = b.secs_until(&c);
        // cpu0: 5 ticks stolen, which are not busy.
        assert_eq!(secs[0], CpuSecs { busy: 0.0, process: 0.0, softirq: 0.0, steal: 0.05 });
        let secs = a.secs_until(&b);
        assert!((secs[0].busy - 0.9).abs() < 1e-9 && (secs[0].process - 0.7).abs() < 1e-9, "{secs:?}");
        assert!((secs[0].softirq - 0.2).abs() < 1e-9 && secs[0].steal == 0.0, "{secs:?}");
    }

    #[test]
    fn process_ticks_are_read_after_the_command_name() {
        let stat = "42 (a b) c) S 1 42 42 0 -1 4194304 100 0 0 0 250 75 0 0 20 0 3 0 1000 0 0";
        assert_eq!(stat_cpu_ticks(stat), Some(325));
        assert_eq!(stat_cpu_ticks("42 (x) S 1"), None);
        assert_eq!(stat_parent(stat), Some(1));
        let times = thread_sched_times(std::process::id());
        assert!(times.iter().any(|t| t.tid == std::process::id() && t.run_ns > 0), "the main thread: {times:?}");
        let me = std::fs::read_to_string("/proc/self/comm").unwrap();
        assert!(processes_named(me.trim()).contains(&std::process::id()), "{me}");
        assert!(processes_named("no process is named like this").is_empty());
        assert_eq!(process_tree(std::process::id()).map(|t| t[0]), Some(std::process::id()));
        let mine = process_cpu_secs(std::process::id()).expect("own process");
        let tree = process_tree_cpu_secs(std::process::id()).expect("own process");
        assert!(mine >= 0.0 && tree >= mine, "{mine} {tree}");
    }

    #[test]
    fn a_thread_counts_its_switches_only_while_runnable() {
        let status = |state: &str| {
            format!("Name:\tx\nState:\t{state}\nvoluntary_ctxt_switches:\t17\nnonvoluntary_ctxt_switches:\t3\n")
        };
        assert_eq!(runnable_switches(&status("R (running)")), Some(17));
        assert_eq!(runnable_switches(&status("S (sleeping)")), None);
        assert_eq!(runnable_switches("State:\tR (running)\n"), None, "no count");
        // This thread reads its own status while it runs.
        let link = std::fs::read_link("/proc/thread-self").expect("/proc/thread-self");
        let own: u32 = link.file_name().and_then(|n| n.to_str()).and_then(|n| n.parse().ok()).expect("a tid");
        let threads = thread_sched_times(std::process::id());
        let this = threads.iter().find(|t| t.tid == own).expect("this thread");
        assert!(this.runnable_switches.is_some(), "{this:?}");
    }

    #[test]
    fn disturbance_is_steal_share_and_process_time_not_ours() {
        let a = CpuSnapshot::parse("cpu0 100 0 50 800 0 0 0 0\ncpu1 0 0 0 1000 0 0 0 0\n");
        // 2 s of wall time (200 ticks per CPU): 150 ticks of process time, 10 of steal.
        let b = CpuSnapshot::parse("cpu0 200 0 100 850 0 0 0 0\ncpu1 0 0 0 1190 0 0 0 10\n");
        let d = Disturbance::between(&a, &b, 2.0, 1.0);
        assert!((d.steal_pct - 100.0 * 10.0 / 400.0).abs() < 1e-9, "{d:?}");
        // 1.5 s of process time, 1 s of it ours: 0.25 CPUs of others.
        assert!((d.others_cpus - 0.25).abs() < 1e-9, "{d:?}");
        let limits = |others_cpus, stalled_pct| Disturbance { steal_pct: 5.0, others_cpus, stalled_pct };
        assert!(d.exceeds(&limits(0.2, 20.0)));
        assert!(!d.exceeds(&limits(0.3, 20.0)));
        assert!(Disturbance { stalled_pct: 20.5, ..d }.exceeds(&limits(0.3, 20.0)), "too many stalled requests");
    }
}
