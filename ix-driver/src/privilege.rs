//! Whether privileged features (TAP devices, network namespaces) and the commands
//! tests drive are available, and the test policy when not: skip locally, fail in CI.

use std::ffi::OsStr;
use std::process::{Command, Stdio};

/// Bit of `CAP_NET_ADMIN` in the capability sets (linux/capability.h).
const CAP_NET_ADMIN_BIT: u32 = 12;
/// Bit of `CAP_SYS_ADMIN` in the capability sets (linux/capability.h).
const CAP_SYS_ADMIN_BIT: u32 = 21;

/// Whether this process may configure network devices (create a TAP device, set
/// an interface up): its effective capabilities include `CAP_NET_ADMIN`.
///
/// Reads `/proc/self/status`; answers `false` when it cannot be read.
pub fn has_net_admin() -> bool {
    has_effective_capability(CAP_NET_ADMIN_BIT)
}

/// Whether this process can create network namespaces: the `ip` tool of iproute2
/// answers `ip netns list`, and the effective capabilities include
/// `CAP_SYS_ADMIN`.
pub fn netns_available() -> bool {
    if !has_effective_capability(CAP_SYS_ADMIN_BIT) {
        return false;
    }
    Command::new("ip")
        .args(["netns", "list"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|status| status.success())
}

/// The test policy for a privileged feature. Returns `true` when `available`, so
/// the test goes on; otherwise prints `skipped: FEATURE needs ...` to stderr and
/// returns `false`, so the test returns early.
///
/// ```
/// # fn some_test() {
/// if !ix_driver::privilege::require("TAP", ix_driver::privilege::has_net_admin()) {
///     return;
/// }
/// # }
/// ```
///
/// # Panics
/// When the feature is not available and the environment variable `CI` is
/// `true` (or `1`): in CI a missing privilege is a failure, never a silent skip.
pub fn require(feature: &str, available: bool) -> bool {
    require_with(feature, available, std::env::var_os("CI").as_deref())
}

/// The same policy for a command a test drives (a peer or a traffic tool):
/// `true` when `command` is on `PATH`; otherwise a skip that names the Debian
/// `package` to install, or, with `CI` true, a failure.
///
/// # Panics
/// When `command` is missing and `CI` is `true` (or `1`).
pub fn require_command(command: &str, package: &str) -> bool {
    let available = std::env::var_os("PATH")
        .is_some_and(|path| std::env::split_paths(&path).any(|dir| dir.join(command).is_file()));
    let need = format!("the `{command}` command (apt-get install {package})");
    act(decide_need(command, &need, available, std::env::var_os("CI").as_deref()))
}

/// [`require`] with the value of `CI` given (`None` when unset).
fn require_with(feature: &str, available: bool, ci: Option<&OsStr>) -> bool {
    act(decide(feature, available, ci))
}

fn act(verdict: Verdict) -> bool {
    match verdict {
        Verdict::Run => true,
        Verdict::Skip(message) => {
            eprintln!("{message}");
            false
        }
        Verdict::Fail(message) => panic!("{message}"),
    }
}

/// What [`require`] does, decided without touching the process.
#[derive(Debug, PartialEq, Eq)]
enum Verdict {
    Run,
    Skip(String),
    Fail(String),
}

/// Decides the policy from the value of the `CI` variable (`None` when unset).
fn decide(feature: &str, available: bool, ci: Option<&OsStr>) -> Verdict {
    let need = "root privileges (CAP_NET_ADMIN; CAP_SYS_ADMIN and iproute2 for namespaces)";
    decide_need(feature, need, available, ci)
}

/// [`decide`] for `feature`, which needs `need`.
fn decide_need(feature: &str, need: &str, available: bool, ci: Option<&OsStr>) -> Verdict {
    if available {
        return Verdict::Run;
    }
    let in_ci = ci.and_then(OsStr::to_str).is_some_and(|v| v.eq_ignore_ascii_case("true") || v == "1");
    if in_ci {
        Verdict::Fail(format!(
            "{feature} needs {need}, which is missing in CI (CI=true): a missing privilege or tool \
             in CI is a failure, not a skip"
        ))
    } else {
        Verdict::Skip(format!("skipped: {feature} needs {need}"))
    }
}

fn has_effective_capability(bit: u32) -> bool {
    std::fs::read_to_string("/proc/self/status").is_ok_and(|status| effective_capability_in(&status, bit))
}

/// Whether the `CapEff:` line of a `/proc/PID/status` text has `bit` set.
fn effective_capability_in(status: &str, bit: u32) -> bool {
    status
        .lines()
        .find_map(|line| line.strip_prefix("CapEff:"))
        .and_then(|hex| u64::from_str_radix(hex.trim(), 16).ok())
        .is_some_and(|caps| bit < 64 && caps & (1 << bit) != 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    const ROOT_STATUS: &str = "Name:\tcargo\nCapInh:\t0000000000000000\n\
        CapPrm:\t000001ffffffffff\nCapEff:\t000001ffffffffff\n";
    const USER_STATUS: &str = "Name:\tcargo\nCapPrm:\t0000000000000000\nCapEff:\t0000000000000000\n";

    #[test]
    fn available_feature_runs_in_and_out_of_ci() {
        assert_eq!(decide("TAP", true, None), Verdict::Run);
        assert_eq!(decide("TAP", true, Some(OsStr::new("true"))), Verdict::Run);
    }

    #[test]
    fn missing_feature_skips_outside_ci() {
        for ci in [None, Some("false"), Some(""), Some("0")] {
            match decide("TAP", false, ci.map(OsStr::new)) {
                Verdict::Skip(message) => {
                    assert!(message.starts_with("skipped: TAP needs "), "{message}")
                }
                other => panic!("CI={ci:?}: expected a skip, got {other:?}"),
            }
        }
    }

    #[test]
    fn missing_feature_fails_in_ci() {
        for ci in ["true", "TRUE", "1"] {
            match decide("netns", false, Some(OsStr::new(ci))) {
                Verdict::Fail(message) => {
                    assert!(message.starts_with("netns needs "), "{message}");
                    assert!(message.contains("missing in CI"), "{message}");
                }
                other => panic!("CI={ci}: expected a failure, got {other:?}"),
            }
        }
    }

    #[test]
    fn require_runs_or_skips_outside_ci() {
        assert!(require_with("TAP", true, None));
        assert!(!require_with("TAP", false, None));
        assert!(!require_with("TAP", false, Some(OsStr::new("false"))));
    }

    #[test]
    #[should_panic(expected = "missing in CI")]
    fn require_panics_on_a_missing_privilege_in_ci() {
        require_with("TAP", false, Some(OsStr::new("true")));
    }

    #[test]
    fn a_missing_command_names_its_package_and_fails_in_ci() {
        let need = "the `hping3` command (apt-get install hping3)";
        match decide_need("hping3", need, false, None) {
            Verdict::Skip(message) => assert!(message.contains("apt-get install hping3"), "{message}"),
            other => panic!("expected a skip, got {other:?}"),
        }
        assert!(matches!(decide_need("hping3", need, false, Some(OsStr::new("true"))), Verdict::Fail(_)));
        assert!(require_command("sh", "dash"), "sh is on every PATH");
    }

    #[test]
    fn capability_bits_are_read_from_cap_eff() {
        assert!(effective_capability_in(ROOT_STATUS, CAP_NET_ADMIN_BIT));
        assert!(effective_capability_in(ROOT_STATUS, CAP_SYS_ADMIN_BIT));
        assert!(!effective_capability_in(USER_STATUS, CAP_NET_ADMIN_BIT));
        // Only CAP_NET_ADMIN (bit 12 = 0x1000) set.
        let net_admin_only = "CapEff:\t0000000000001000\n";
        assert!(effective_capability_in(net_admin_only, CAP_NET_ADMIN_BIT));
        assert!(!effective_capability_in(net_admin_only, CAP_SYS_ADMIN_BIT));
    }

    #[test]
    fn missing_or_garbled_cap_eff_means_no_capability() {
        assert!(!effective_capability_in("Name:\tx\nCapPrm:\tffff\n", CAP_NET_ADMIN_BIT));
        assert!(!effective_capability_in("CapEff:\tnot-hex\n", CAP_NET_ADMIN_BIT));
        assert!(!effective_capability_in("CapEff:\tffffffffffffffff\n", 64));
    }
}
