//! The XDP backend's settings and their text form,
//! `IFACE[,queues=N][,mode=native|generic][,bind=zerocopy|copy|auto][,ports=P1+P2][,hugepages=auto|require|never]
//! [,busy_poll=BUDGET[:HOLD_US]]`.

use std::str::FromStr;

use crate::error::DriverError;
use crate::region::HugePages;

/// Where the XDP program runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum XdpMode {
    /// In the driver's receive path (`XDP_FLAGS_DRV_MODE`): fastest, and the
    /// only mode that reports the receive queue, so the only one for more
    /// than one queue.
    #[default]
    Native,
    /// After the kernel built an skb (`XDP_FLAGS_SKB_MODE`): works on every
    /// interface; every frame reports queue 0.
    Generic,
}

/// How the AF_XDP sockets bind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum BindMode {
    /// Zero-copy (`XDP_ZEROCOPY`): the driver fills the UMEM itself; an error
    /// where the driver cannot.
    ZeroCopy,
    /// Copy (`XDP_COPY`): the kernel copies frames into and out of the UMEM.
    Copy,
    /// Zero-copy when the driver allows it, copy otherwise; logged.
    #[default]
    Auto,
}

/// NAPI busy polling of the queues' sockets: the dataplane's own calls run the
/// device's receive poll (the XDP program and the copy into the UMEM) in its
/// thread, and the kernel holds back its own poll (an interrupt, a NAPI thread)
/// for a while after each of them. See `docs/backends.md`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BusyPoll {
    /// Frames one busy poll takes at most (`SO_BUSY_POLL_BUDGET`).
    pub budget: u16,
    /// How long after the dataplane's last poll the kernel defers its own,
    /// microseconds: the device's `gro_flush_timeout` while the dataplane runs
    /// (with `napi_defer_hard_irqs`), restored when it stops.
    pub hold_us: u32,
}

impl BusyPoll {
    /// The hold when none is given: the kernel's AF_XDP documentation's
    /// example (`gro_flush_timeout` 200000 ns).
    pub const DEFAULT_HOLD_US: u32 = 200;
}

/// Settings of the XDP backend.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct XdpConfig {
    /// The interface (in the calling thread's network namespace).
    pub iface: String,
    /// Queues, one per core; `None`: as many as the runtime has cores.
    pub queues: Option<u16>,
    /// Native or generic XDP.
    pub mode: XdpMode,
    /// Zero-copy, copy or either.
    pub bind: BindMode,
    /// With ports, the dataplane shares the interface's address with the
    /// kernel and takes only TCP and UDP to these ports; without, every frame
    /// for its address is its own.
    pub ports: Vec<u16>,
    /// Whether each core's pool, and so its UMEM, sits on 2 MiB huge pages:
    /// when available (default), always (an error that says how to reserve
    /// them otherwise), or never.
    pub huge_pages: HugePages,
    /// NAPI busy polling (`busy_poll=`), off by default.
    pub busy_poll: Option<BusyPoll>,
}

impl XdpConfig {
    /// Defaults for `iface`: as many queues as cores, native, bind auto, the
    /// address the dataplane's alone.
    pub fn new(iface: impl Into<String>) -> Self {
        Self {
            iface: iface.into(),
            queues: None,
            mode: XdpMode::Native,
            bind: BindMode::Auto,
            ports: Vec::new(),
            huge_pages: HugePages::Auto,
            busy_poll: None,
        }
    }

    /// The number of queues for a runtime of `cores` cores.
    ///
    /// # Errors
    /// [`DriverError::Config`] when `queues=` differs from the core count (each
    /// core owns one queue), or when generic mode is asked for more than one
    /// queue (generic XDP reports every frame on queue 0).
    pub fn queue_count(&self, cores: usize) -> Result<u16, DriverError> {
        let cores = u16::try_from(cores).map_err(|_| DriverError::Config(format!("{cores} cores is too many")))?;
        let queues = self.queues.unwrap_or(cores);
        if queues != cores {
            return Err(DriverError::Config(format!(
                "xdp:{}: queues={queues} but the runtime has {cores} core(s): each core owns one queue, \
                 so use as many cores as queues",
                self.iface
            )));
        }
        if queues > 1 && self.mode == XdpMode::Generic {
            return Err(DriverError::Config(format!(
                "xdp:{}: generic XDP sees every frame on queue 0, so it serves one queue only: \
                 use mode=native for {queues} queues, or one core",
                self.iface
            )));
        }
        Ok(queues)
    }
}

impl FromStr for XdpConfig {
    type Err = DriverError;

    /// Parses `IFACE[,key=value]...`, with or without a leading `xdp:`.
    fn from_str(spec: &str) -> Result<Self, DriverError> {
        let spec = spec.strip_prefix("xdp:").unwrap_or(spec);
        let mut parts = spec.split(',');
        let iface = parts.next().unwrap_or_default().trim();
        crate::netdev::validate_name(iface).map_err(|e| DriverError::Config(format!("xdp:{spec}: {e}")))?;
        let mut config = XdpConfig::new(iface);
        for option in parts {
            let (key, value) =
                option.split_once('=').ok_or_else(|| bad(spec, &format!("option {option:?} is not key=value")))?;
            match key.trim() {
                "queues" => {
                    let n: u16 = value.parse().map_err(|_| bad(spec, "queues= takes a number from 1"))?;
                    if n == 0 {
                        return Err(bad(spec, "queues= takes a number from 1"));
                    }
                    config.queues = Some(n);
                }
                "mode" => {
                    config.mode = match value {
                        "native" | "drv" => XdpMode::Native,
                        "generic" | "skb" => XdpMode::Generic,
                        _ => return Err(bad(spec, "mode= is native or generic")),
                    }
                }
                "bind" => {
                    config.bind = match value {
                        "zerocopy" => BindMode::ZeroCopy,
                        "copy" => BindMode::Copy,
                        "auto" => BindMode::Auto,
                        _ => return Err(bad(spec, "bind= is zerocopy, copy or auto")),
                    }
                }
                "ports" => config.ports = parse_ports(spec, value)?,
                "hugepages" => {
                    config.huge_pages = match value {
                        "auto" => HugePages::Auto,
                        "require" => HugePages::Require,
                        "never" => HugePages::Never,
                        _ => return Err(bad(spec, "hugepages= is auto, require or never")),
                    }
                }
                "busy_poll" => config.busy_poll = Some(parse_busy_poll(spec, value)?),
                other => return Err(bad(spec, &format!("unknown option {other:?}"))),
            }
        }
        Ok(config)
    }
}

fn parse_ports(spec: &str, value: &str) -> Result<Vec<u16>, DriverError> {
    let mut ports = Vec::new();
    for port in value.split('+') {
        match port.trim().parse::<u16>() {
            Ok(p) if p != 0 => {
                if !ports.contains(&p) {
                    ports.push(p);
                }
            }
            _ => return Err(bad(spec, &format!("ports= takes ports 1-65535 joined by '+', not {port:?}"))),
        }
    }
    Ok(ports)
}

fn parse_busy_poll(spec: &str, value: &str) -> Result<BusyPoll, DriverError> {
    let why = "busy_poll= takes BUDGET[:HOLD_US], a budget of 1-65535 frames and a hold of 1-1000000 us";
    let (budget, hold) = value.split_once(':').map_or((value, None), |(b, h)| (b, Some(h)));
    let budget = budget.trim().parse::<u16>().ok().filter(|&b| b > 0).ok_or_else(|| bad(spec, why))?;
    let hold_us = match hold {
        None => BusyPoll::DEFAULT_HOLD_US,
        Some(h) => {
            h.trim().parse::<u32>().ok().filter(|h| (1..=1_000_000).contains(h)).ok_or_else(|| bad(spec, why))?
        }
    };
    Ok(BusyPoll { budget, hold_us })
}

fn bad(spec: &str, why: &str) -> DriverError {
    DriverError::Config(format!(
        "xdp:{spec}: {why} (expected xdp:IFACE[,queues=N][,mode=native|generic][,bind=zerocopy|copy|auto]\
         [,ports=P1+P2][,hugepages=auto|require|never][,busy_poll=BUDGET[:HOLD_US]])"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_interface_alone_takes_the_defaults() {
        let config: XdpConfig = "ixt-s".parse().unwrap();
        assert_eq!(config, XdpConfig::new("ixt-s"));
        assert_eq!("xdp:ixt-s".parse::<XdpConfig>().unwrap(), config);
        assert_eq!(config.queue_count(2).unwrap(), 2);
    }

    #[test]
    fn every_option_is_read() {
        let config: XdpConfig =
            "xdp:veth0,queues=2,mode=native,bind=copy,ports=8080+11211+8080,hugepages=require".parse().unwrap();
        assert_eq!(config.huge_pages, HugePages::Require);
        assert_eq!(config.iface, "veth0");
        assert_eq!(config.queues, Some(2));
        assert_eq!(config.mode, XdpMode::Native);
        assert_eq!(config.bind, BindMode::Copy);
        assert_eq!(config.ports, vec![8080, 11211], "duplicates are merged");
        let generic: XdpConfig = "eth1,mode=generic,bind=zerocopy".parse().unwrap();
        assert_eq!((generic.mode, generic.bind), (XdpMode::Generic, BindMode::ZeroCopy));
        assert_eq!(config.busy_poll, None, "busy polling is off unless asked for");
        let polled: XdpConfig = "eth1,busy_poll=64".parse().unwrap();
        assert_eq!(polled.busy_poll, Some(BusyPoll { budget: 64, hold_us: BusyPoll::DEFAULT_HOLD_US }));
        let held: XdpConfig = "eth1,busy_poll=16:50".parse().unwrap();
        assert_eq!(held.busy_poll, Some(BusyPoll { budget: 16, hold_us: 50 }));
    }

    #[test]
    fn bad_specifications_say_what_is_wrong() {
        for (spec, expect) in [
            ("", "empty"),
            ("a-name-that-is-too-long", "IFNAMSIZ"),
            ("eth0,queues=0", "queues="),
            ("eth0,queues=many", "queues="),
            ("eth0,mode=fast", "mode="),
            ("eth0,bind=maybe", "bind="),
            ("eth0,ports=80+0", "ports="),
            ("eth0,ports=80+x", "ports="),
            ("eth0,ports=", "ports="),
            ("eth0,colour=blue", "unknown option"),
            ("eth0,hugepages=yes", "hugepages="),
            ("eth0,queues", "key=value"),
            ("eth0,busy_poll=0", "busy_poll="),
            ("eth0,busy_poll=70000", "busy_poll="),
            ("eth0,busy_poll=64:0", "busy_poll="),
            ("eth0,busy_poll=64:", "busy_poll="),
            ("eth0,busy_poll=64:2000000", "busy_poll="),
        ] {
            match spec.parse::<XdpConfig>() {
                Err(DriverError::Config(message)) => assert!(message.contains(expect), "{spec}: {message}"),
                other => panic!("{spec:?}: expected a configuration error, got {other:?}"),
            }
        }
    }

    #[test]
    fn queues_must_match_cores_and_generic_serves_one() {
        let two: XdpConfig = "eth0,queues=2".parse().unwrap();
        assert_eq!(two.queue_count(2).unwrap(), 2);
        assert!(two.queue_count(1).unwrap_err().to_string().contains("each core owns one queue"));
        let generic: XdpConfig = "eth0,mode=generic".parse().unwrap();
        assert_eq!(generic.queue_count(1).unwrap(), 1);
        assert!(generic.queue_count(2).unwrap_err().to_string().contains("queue 0"));
    }
}
