//! `ixcp`'s configuration (a TOML file): the interfaces it manages, and what
//! each unix user may be granted on them; and the admission check of a request
//! against it.

use std::net::Ipv4Addr;
use std::path::PathBuf;

use serde::Deserialize;

use super::cpu_policy::CpuPolicy;
use super::protocol::{AdmitRequest, Refusal, RefusalCode};
use crate::xdp::XdpMode;

/// Frames per queue at least: the smallest AF_XDP rings need them.
pub const QUEUE_FRAMES_MIN: u32 = 512;

/// The whole file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DaemonConfig {
    /// Where the control socket is made.
    pub socket: PathBuf,
    /// The interfaces `ixcp` attaches its program to.
    #[serde(rename = "interface")]
    pub interfaces: Vec<InterfaceConfig>,
    /// What may be granted to whom.
    #[serde(rename = "grant", default)]
    pub grants: Vec<GrantConfig>,
    /// The CPUs `ixcp` moves dataplane cores between.
    #[serde(default)]
    pub cpus: CpuConfig,
    /// When a core polls and when it blocks.
    #[serde(default)]
    pub policy: CpuPolicy,
}

/// The CPUs of the `[cpus]` table.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CpuConfig {
    /// CPUs `ixcp` may give a busy-polling core, one core each (none: every
    /// core blocks).
    #[serde(default)]
    pub polling: Vec<usize>,
    /// Where blocking cores run, sharing them with other work (empty: every
    /// CPU).
    #[serde(default)]
    pub shared: Vec<usize>,
}

/// One managed interface.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InterfaceConfig {
    /// Its name, in `ixcp`'s network namespace.
    pub name: String,
    /// `native` (default) or `generic` XDP.
    #[serde(default)]
    pub mode: ModeName,
}

/// The XDP mode as spelled in the file.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ModeName {
    /// In the driver's receive path.
    #[default]
    Native,
    /// After the kernel built an skb.
    Generic,
}

impl From<ModeName> for XdpMode {
    fn from(mode: ModeName) -> Self {
        match mode {
            ModeName::Native => XdpMode::Native,
            ModeName::Generic => XdpMode::Generic,
        }
    }
}

/// What one unix user may be granted on one interface.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GrantConfig {
    /// The user (as `SO_PEERCRED` reports the dataplane's process).
    pub uid: u32,
    /// The interface (one of the `[[interface]]` names).
    pub interface: String,
    /// Addresses it may serve on.
    pub addresses: Vec<Ipv4Addr>,
    /// Ports it may take: numbers or `"first-last"` ranges.
    pub ports: Vec<PortSpec>,
    /// Queues per dataplane at most.
    #[serde(default = "one")]
    pub max_queues: u16,
    /// Packet-buffer frames (4 KiB each) per queue at most.
    #[serde(default = "default_frames")]
    pub max_frames_per_queue: u32,
    /// Connections per dataplane at most.
    #[serde(default = "default_connections")]
    pub max_connections: u32,
    /// CPUs a dataplane's cores may poll on at once at most (its largest
    /// share; `ixctl set-share` changes the share within it).
    #[serde(default = "one")]
    pub max_cpus: u16,
}

fn one() -> u16 {
    1
}

fn default_frames() -> u32 {
    crate::pool::DEFAULT_POOL_FRAMES
}

fn default_connections() -> u32 {
    65_536
}

/// A port or a range of ports.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(untagged)]
pub enum PortSpec {
    /// One port.
    One(u16),
    /// `"first-last"`, both included.
    Range(String),
}

impl PortSpec {
    fn contains(&self, port: u16) -> Result<bool, String> {
        match self {
            PortSpec::One(p) => Ok(*p == port),
            PortSpec::Range(text) => {
                let (first, last) = parse_range(text)?;
                Ok((first..=last).contains(&port))
            }
        }
    }
}

fn parse_range(text: &str) -> Result<(u16, u16), String> {
    let bad = || format!("port range {text:?} is not \"first-last\" with first <= last");
    let (first, last) = text.split_once('-').ok_or_else(bad)?;
    let first: u16 = first.trim().parse().map_err(|_| bad())?;
    let last: u16 = last.trim().parse().map_err(|_| bad())?;
    if first == 0 || first > last {
        return Err(bad());
    }
    Ok((first, last))
}

impl DaemonConfig {
    /// Reads and checks the file at `path`.
    ///
    /// # Errors
    /// A sentence naming the file and what is wrong in it.
    pub fn load(path: &std::path::Path) -> Result<Self, String> {
        let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
        text.parse().map_err(|e| format!("{}: {e}", path.display()))
    }

    /// Refuses a request that the grants of `uid` do not cover; returns the
    /// grant that covers it.
    ///
    /// # Errors
    /// The [`Refusal`] to send, with a sentence saying what is not granted.
    pub fn admit(&self, uid: u32, request: &AdmitRequest) -> Result<&GrantConfig, Refusal> {
        let mine: Vec<&GrantConfig> = self.grants.iter().filter(|g| g.uid == uid).collect();
        if mine.is_empty() {
            return Err(Refusal::new(RefusalCode::NotPermitted, format!("nothing is granted to uid {uid}")));
        }
        let grant = mine.iter().find(|g| g.addresses.contains(&request.addr)).ok_or_else(|| {
            Refusal::new(
                RefusalCode::AddressNotGranted,
                format!("address {} is not granted to uid {uid}", request.addr),
            )
        })?;
        if request.ports.is_empty() {
            return Err(Refusal::new(RefusalCode::Malformed, "a request names at least one port"));
        }
        for &port in &request.ports {
            let granted = grant.ports.iter().any(|spec| spec.contains(port).unwrap_or(false));
            if port == 0 || !granted {
                return Err(Refusal::new(
                    RefusalCode::PortNotGranted,
                    format!("port {port} on {} is not granted to uid {uid}", request.addr),
                ));
            }
        }
        let over = |what: String| Err(Refusal::new(RefusalCode::OverLimit, what));
        if request.queues == 0 || request.queues > grant.max_queues {
            return over(format!("{} queues asked, 1 to {} granted", request.queues, grant.max_queues));
        }
        if request.queues > 1 {
            return over("ixcp gives one queue per dataplane for now (its virtual port has one)".into());
        }
        if request.frames_per_queue < QUEUE_FRAMES_MIN || request.frames_per_queue > grant.max_frames_per_queue {
            return over(format!(
                "{} frames per queue asked, {QUEUE_FRAMES_MIN} to {} granted",
                request.frames_per_queue, grant.max_frames_per_queue
            ));
        }
        if request.max_connections == 0 || request.max_connections > grant.max_connections {
            return over(format!(
                "{} connections asked, 1 to {} granted",
                request.max_connections, grant.max_connections
            ));
        }
        Ok(grant)
    }
}

impl std::str::FromStr for DaemonConfig {
    type Err = String;

    /// Parses the TOML text and checks that every grant names a managed
    /// interface and well-formed port ranges.
    fn from_str(text: &str) -> Result<Self, String> {
        let config: DaemonConfig = toml::from_str(text).map_err(|e| e.to_string())?;
        config.policy.check()?;
        let cpus = super::thread_placement::all_cpus().len();
        if let Some(cpu) = config.cpus.polling.iter().chain(&config.cpus.shared).find(|&&cpu| cpu >= cpus) {
            return Err(format!("cpus: CPU {cpu} does not exist here ({cpus} CPUs)"));
        }
        let mut polling = config.cpus.polling.clone();
        polling.sort_unstable();
        polling.dedup();
        if polling.len() != config.cpus.polling.len() {
            return Err("cpus.polling names a CPU twice".into());
        }
        for interface in &config.interfaces {
            crate::netdev::validate_name(&interface.name).map_err(|e| e.to_string())?;
        }
        for grant in &config.grants {
            if !config.interfaces.iter().any(|i| i.name == grant.interface) {
                return Err(format!(
                    "grant for uid {} names interface {:?}, which is not managed",
                    grant.uid, grant.interface
                ));
            }
            for spec in &grant.ports {
                if let PortSpec::Range(text) = spec {
                    parse_range(text)?;
                }
            }
        }
        Ok(config)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const EXAMPLE: &str = r#"
        socket = "/run/ixcp.sock"

        [[interface]]
        name = "eth0"

        [[grant]]
        uid = 33
        interface = "eth0"
        addresses = ["10.0.0.1"]
        ports = [80, 443]
        max_frames_per_queue = 8192

        [[grant]]
        uid = 65534
        interface = "eth0"
        addresses = ["10.0.0.1"]
        ports = ["11211-11212"]
        max_connections = 100
    "#;

    fn request(addr: [u8; 4], ports: &[u16]) -> AdmitRequest {
        AdmitRequest {
            addr: Ipv4Addr::from(addr),
            ports: ports.to_vec(),
            queues: 1,
            frames_per_queue: 4096,
            max_connections: 100,
        }
    }

    fn refusal(config: &DaemonConfig, uid: u32, request: &AdmitRequest) -> RefusalCode {
        config.admit(uid, request).expect_err("refused").code
    }

    #[test]
    fn the_example_parses() {
        let config: DaemonConfig = EXAMPLE.parse().unwrap();
        assert_eq!(config.interfaces[0].mode, ModeName::Native);
        assert_eq!(config.grants[0].max_queues, 1);
        assert_eq!(config.grants[1].ports, vec![PortSpec::Range("11211-11212".into())]);
        assert_eq!(config.grants[0].max_cpus, 1);
        assert!(config.cpus.polling.is_empty(), "no polling CPU unless configured");
        assert_eq!(config.policy, CpuPolicy::default());
    }

    #[test]
    fn cpus_and_policy_are_read_and_checked() {
        let with = |tail: &str| format!("{EXAMPLE}\n{tail}").parse::<DaemonConfig>();
        let config = with("[cpus]\npolling = [0]\nshared = [0]\n[policy]\npoll_above = 0.5").unwrap();
        assert_eq!(config.cpus.polling, vec![0]);
        assert_eq!(config.policy.poll_above, 0.5);
        assert_eq!(config.policy.block_below, CpuPolicy::default().block_below);
        for (tail, expect) in [
            ("[cpus]\npolling = [4096]", "does not exist"),
            ("[cpus]\npolling = [0, 0]", "twice"),
            ("[policy]\npoll_above = 0.05", "block_below < poll_above"),
            ("[policy]\nperiod_ms = 1", "period_ms"),
            ("[policy]\nspeed = 1", "speed"),
        ] {
            let error = with(tail).expect_err(tail);
            assert!(error.contains(expect), "{tail}: {error}");
        }
    }

    #[test]
    fn granted_requests_pass() {
        let config: DaemonConfig = EXAMPLE.parse().unwrap();
        assert_eq!(config.admit(33, &request([10, 0, 0, 1], &[80, 443])).unwrap().uid, 33);
        assert_eq!(config.admit(65534, &request([10, 0, 0, 1], &[11212])).unwrap().uid, 65534);
    }

    #[test]
    fn everything_not_granted_is_refused_with_its_reason() {
        let config: DaemonConfig = EXAMPLE.parse().unwrap();
        assert_eq!(refusal(&config, 1000, &request([10, 0, 0, 1], &[80])), RefusalCode::NotPermitted);
        assert_eq!(refusal(&config, 33, &request([10, 0, 0, 2], &[80])), RefusalCode::AddressNotGranted);
        assert_eq!(refusal(&config, 33, &request([10, 0, 0, 1], &[80, 22])), RefusalCode::PortNotGranted);
        assert_eq!(refusal(&config, 65534, &request([10, 0, 0, 1], &[80])), RefusalCode::PortNotGranted);
        assert_eq!(refusal(&config, 33, &request([10, 0, 0, 1], &[])), RefusalCode::Malformed);
        let mut big = request([10, 0, 0, 1], &[80]);
        big.frames_per_queue = 8193;
        assert_eq!(refusal(&config, 33, &big), RefusalCode::OverLimit);
        let mut small = request([10, 0, 0, 1], &[80]);
        small.frames_per_queue = 64;
        assert_eq!(refusal(&config, 33, &small), RefusalCode::OverLimit);
        let mut queues = request([10, 0, 0, 1], &[80]);
        queues.queues = 2;
        assert_eq!(refusal(&config, 33, &queues), RefusalCode::OverLimit);
        let mut connections = request([10, 0, 0, 1], &[11211]);
        connections.max_connections = 101;
        assert_eq!(refusal(&config, 65534, &connections), RefusalCode::OverLimit);
    }

    #[test]
    fn bad_files_say_what_is_wrong() {
        for (text, expect) in [
            ("socket = 1", "socket"),
            ("socket = \"/s\"\ninterface = []\ncolour = 1", "colour"),
            (
                "socket = \"/s\"\n[[interface]]\nname = \"a\"\n[[grant]]\nuid = 1\ninterface = \"b\"\naddresses = []\nports = []",
                "not managed",
            ),
            (
                "socket = \"/s\"\n[[interface]]\nname = \"a\"\n[[grant]]\nuid = 1\ninterface = \"a\"\naddresses = []\nports = [\"9-3\"]",
                "first <= last",
            ),
            ("socket = \"/s\"\n[[interface]]\nname = \"a/b\"", "'/'"),
        ] {
            let error = text.parse::<DaemonConfig>().expect_err(text);
            assert!(error.contains(expect), "{text}: {error}");
        }
    }
}
