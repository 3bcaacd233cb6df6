//! Which CPU ran each network device's receive work: a private tracefs
//! instance recording the kernel's `net:netif_receive_skb` and
//! `napi:napi_poll` events of chosen devices, counted per device and CPU.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};

/// Where tracefs is mounted (the second is the older debugfs place).
const TRACEFS_ROOTS: [&str; 2] = ["/sys/kernel/tracing", "/sys/kernel/debug/tracing"];
/// Per-CPU buffer of the instance, KiB: room for some 20,000 events per CPU.
const BUFFER_KIB: u32 = 1024;
/// The events recorded, each with its device-name field.
const EVENTS: [(&str, &str); 2] = [("net/netif_receive_skb", "name"), ("napi/napi_poll", "dev_name")];

/// Distinguishes the instances one process creates.
static NEXT_INSTANCE: AtomicU32 = AtomicU32::new(0);

/// A tracefs instance recording receive events; removed when dropped.
#[derive(Debug)]
pub struct ReceiveTrace {
    dir: PathBuf,
}

/// Per device, how many receive events (a frame through the stack, or a NAPI
/// poll) ran on each CPU.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReceiveCpus(BTreeMap<String, BTreeMap<usize, u64>>);

impl ReceiveTrace {
    /// Starts recording the receive events of the devices whose names start
    /// with `device_prefix`, in a tracefs instance of this process's own (other
    /// tracers and other processes' instances are not touched).
    ///
    /// When tracefs is mounted nowhere (a fresh machine without systemd, as
    /// the CI's was in session 16), it is mounted at its own place,
    /// `/sys/kernel/tracing`, as systemd mounts it at boot; the mount is left
    /// in place for later tests.
    ///
    /// # Errors
    /// When tracefs is not mounted and cannot be, or the instance cannot be
    /// set up (not root).
    pub fn start(device_prefix: &str) -> Result<Self, String> {
        let root = tracefs_root()?;
        let name = format!("ix-receive-{}-{}", std::process::id(), NEXT_INSTANCE.fetch_add(1, Ordering::Relaxed));
        let dir = root.join("instances").join(name);
        std::fs::create_dir(&dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
        let trace = Self { dir };
        let write = |file: &str, value: &str| {
            let path = trace.dir.join(file);
            std::fs::write(&path, value).map_err(|e| format!("writing {value:?} to {}: {e}", path.display()))
        };
        write("buffer_size_kb", &BUFFER_KIB.to_string())?;
        for (event, field) in EVENTS {
            write(&format!("events/{event}/filter"), &format!("{field} ~ \"{device_prefix}*\""))?;
            write(&format!("events/{event}/enable"), "1")?;
        }
        write("tracing_on", "1")?;
        Ok(trace)
    }

    /// Stops recording and counts the events per device and CPU.
    ///
    /// # Errors
    /// When the instance's trace cannot be read.
    pub fn finish(self) -> Result<ReceiveCpus, String> {
        let off = self.dir.join("tracing_on");
        std::fs::write(&off, "0").map_err(|e| format!("writing {}: {e}", off.display()))?;
        let path = self.dir.join("trace");
        let text = std::fs::read_to_string(&path).map_err(|e| format!("reading {}: {e}", path.display()))?;
        Ok(ReceiveCpus::parse(&text))
    }
}

/// Where tracefs is mounted, mounting it at the first of `TRACEFS_ROOTS`
/// when it is mounted nowhere.
fn tracefs_root() -> Result<&'static Path, String> {
    let mounted = || TRACEFS_ROOTS.iter().map(Path::new).find(|p| p.join("instances").is_dir());
    if let Some(root) = mounted() {
        return Ok(root);
    }
    let place = TRACEFS_ROOTS[0];
    let out = std::process::Command::new("mount")
        .args(["-t", "tracefs", "nodev", place])
        .output()
        .map_err(|e| format!("tracefs is not mounted, and running mount failed: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "tracefs is not mounted, and `mount -t tracefs nodev {place}` failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    mounted().ok_or_else(|| format!("tracefs mounted at {place}, but it has no instances directory"))
}

impl Drop for ReceiveTrace {
    fn drop(&mut self) {
        if let Err(e) = std::fs::remove_dir(&self.dir) {
            tracing::warn!(dir = %self.dir.display(), "removing the tracefs instance failed: {e}");
        }
    }
}

impl ReceiveCpus {
    /// Counts the events of a tracefs `trace` file.
    pub fn parse(trace: &str) -> Self {
        let mut counts: BTreeMap<String, BTreeMap<usize, u64>> = BTreeMap::new();
        for (device, cpu) in trace.lines().filter_map(event_device_and_cpu) {
            *counts.entry(device.to_string()).or_default().entry(cpu).or_default() += 1;
        }
        Self(counts)
    }

    /// How many of `device`'s receive events ran on each CPU.
    pub fn of(&self, device: &str) -> BTreeMap<usize, u64> {
        self.0.get(device).cloned().unwrap_or_default()
    }

    /// The share of `device`'s receive events that ran on `cpu` (0 when it
    /// had none).
    pub fn share_on(&self, device: &str, cpu: usize) -> f64 {
        let cpus = self.of(device);
        let total: u64 = cpus.values().sum();
        if total == 0 { 0.0 } else { cpus.get(&cpu).copied().unwrap_or(0) as f64 / total as f64 }
    }

    /// Whether `device` had receive events, all on `cpu`.
    pub fn only_on(&self, device: &str, cpu: usize) -> bool {
        let cpus = self.of(device);
        !cpus.is_empty() && cpus.keys().all(|&c| c == cpu)
    }
}

/// The device and CPU of one trace line of a recorded event; `None` for
/// comments, other events and lost-event notes.
fn event_device_and_cpu(line: &str) -> Option<(&str, usize)> {
    // `TASK-PID [CPU] FLAGS TIMESTAMP: EVENT: FIELDS`; the task name may hold
    // spaces, so the CPU is the first whitespace-separated `[digits]`.
    let cpu = line
        .split_whitespace()
        .find_map(|t| t.strip_prefix('[')?.strip_suffix(']').filter(|d| d.bytes().all(|b| b.is_ascii_digit())))?
        .parse()
        .ok()?;
    let device = if let Some((_, rest)) = line.split_once(" netif_receive_skb: dev=") {
        rest.split_whitespace().next()?
    } else {
        let (_, rest) = line.split_once(" napi_poll: ")?;
        let (_, rest) = rest.split_once(" for device ")?;
        rest.split_whitespace().next()?
    };
    Some((device, cpu))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_are_counted_per_device_and_cpu() {
        let trace = "\
# tracer: nop
#           TASK-PID     CPU#  |||||  TIMESTAMP  FUNCTION
          <idle>-0       [001] ..s1.  10.000001: netif_receive_skb: dev=ixb-c skbaddr=00000000a1 len=84
 napi/ixb-s-1093-3051    [000] ...1.  10.000002: napi_poll: napi poll on napi struct 00000000b2 for device ixb-s work 1 budget 64
   tokio runtime-77      [000] ..s1.  10.000003: netif_receive_skb: dev=ixb-s skbaddr=00000000a3 len=60
          <idle>-0       [001] ..s1.  10.000004: netif_receive_skb: dev=ixb-c skbaddr=00000000a4 len=60
CPU:1 [LOST 3 EVENTS]
";
        let cpus = ReceiveCpus::parse(trace);
        assert_eq!(cpus.of("ixb-c"), BTreeMap::from([(1, 2)]));
        assert_eq!(cpus.of("ixb-s"), BTreeMap::from([(0, 2)]));
        assert!(cpus.only_on("ixb-s", 0) && cpus.only_on("ixb-c", 1));
        assert!(!cpus.only_on("ixb-s", 1));
        assert_eq!(cpus.share_on("ixb-c", 1), 1.0);
        assert_eq!(cpus.share_on("ixb-c", 0), 0.0);
        assert_eq!(cpus.share_on("other", 0), 0.0);
        assert!(!cpus.only_on("other", 0), "no events is not 'only on'");
    }
}
