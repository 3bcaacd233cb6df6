//! Network interfaces by name: name checks, and the `ioctl`s on a datagram
//! socket that read and set an interface's index, flags, MTU, MAC and channels.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

use crate::error::DriverError;

/// `SIOCETHTOOL` command that reads a device's channel (queue) counts.
const ETHTOOL_GCHANNELS: u32 = 0x3c;

/// Checks `name` as Linux checks interface names (`dev_valid_name`).
pub(crate) fn validate_name(name: &str) -> Result<(), DriverError> {
    let problem = if name.is_empty() {
        "is empty"
    } else if name.len() >= libc::IFNAMSIZ {
        "is longer than 15 bytes (IFNAMSIZ 16, with the terminating NUL)"
    } else if name == "." || name == ".." {
        "is a path component"
    } else if name.chars().any(|c| c == '/' || c == ':' || c == '\0' || c.is_whitespace()) {
        "contains '/', ':', NUL or white space"
    } else {
        return Ok(());
    };
    Err(DriverError::Config(format!("interface name {name:?} {problem}")))
}

/// An `ifreq` naming `name`, everything else zero. `name` must have passed
/// [`validate_name`].
pub(crate) fn interface_request(name: &str) -> libc::ifreq {
    // SAFETY: `ifreq` is plain data (byte arrays, integers, a union of those and
    // a raw pointer) for which all zero bytes is a valid value.
    let mut request: libc::ifreq = unsafe { std::mem::zeroed() };
    for (dst, src) in request.ifr_name.iter_mut().zip(name.bytes()) {
        *dst = src as libc::c_char;
    }
    request
}

/// The interface name an `ifreq` carries (NUL-terminated by the kernel).
pub(crate) fn name_of(request: &libc::ifreq) -> String {
    let bytes: Vec<u8> = request.ifr_name.iter().take_while(|&&c| c != 0).map(|&c| c as u8).collect();
    String::from_utf8_lossy(&bytes).into_owned()
}

/// `struct ethtool_channels` (linux/ethtool.h).
#[repr(C)]
#[derive(Debug, Default)]
struct EthtoolChannels {
    cmd: u32,
    max_rx: u32,
    max_tx: u32,
    max_other: u32,
    max_combined: u32,
    rx_count: u32,
    tx_count: u32,
    other_count: u32,
    combined_count: u32,
}

/// Interface settings through `ioctl`s on a datagram socket, as `ip link` and
/// `ethtool` do them. The socket lives in the calling thread's network
/// namespace, so names are looked up there.
pub(crate) struct InterfaceControl<'a> {
    socket: OwnedFd,
    name: &'a str,
    /// The error a refused privilege becomes (says which backend and what to do).
    denied: fn() -> DriverError,
}

impl<'a> InterfaceControl<'a> {
    /// Opens the control socket for the interface `name` (checked by
    /// [`validate_name`]); `denied` makes the error for EPERM/EACCES.
    pub(crate) fn new(name: &'a str, denied: fn() -> DriverError) -> Result<Self, DriverError> {
        validate_name(name)?;
        // SAFETY: `socket` takes only integer arguments and returns a new
        // descriptor or -1.
        let raw = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
        if raw < 0 {
            return Err(DriverError::os("socket(AF_INET, SOCK_DGRAM)"));
        }
        // SAFETY: `raw` is a descriptor that `socket` just returned to us alone.
        let socket = unsafe { OwnedFd::from_raw_fd(raw) };
        Ok(Self { socket, name, denied })
    }

    /// Runs one interface `ioctl` on `request`.
    fn ioctl(&self, call: &'static str, op: libc::Ioctl, request: &mut libc::ifreq) -> Result<(), DriverError> {
        // SAFETY: every `op` used here (SIOC[GS]IF*, SIOCETHTOOL) reads and writes
        // one `ifreq` (and for SIOCETHTOOL the buffer its data pointer names,
        // which the caller keeps alive), alive and exclusively borrowed.
        let rc = unsafe { libc::ioctl(self.socket.as_raw_fd(), op, request as *mut libc::ifreq) };
        if rc < 0 {
            let error = io::Error::last_os_error();
            return Err(match error.raw_os_error() {
                Some(libc::EPERM | libc::EACCES) => (self.denied)(),
                Some(libc::ENODEV) => DriverError::NoSuchInterface { name: self.name.to_owned() },
                _ => DriverError::Os { call, source: error },
            });
        }
        Ok(())
    }

    /// Sets the interface up if it is not.
    pub(crate) fn set_up(&self) -> Result<(), DriverError> {
        let mut request = interface_request(self.name);
        self.ioctl("ioctl(SIOCGIFFLAGS)", libc::SIOCGIFFLAGS, &mut request)?;
        // SAFETY: SIOCGIFFLAGS filled the `ifru_flags` member of the union.
        let flags = unsafe { request.ifr_ifru.ifru_flags };
        if flags & libc::IFF_UP as libc::c_short != 0 {
            return Ok(());
        }
        request.ifr_ifru.ifru_flags = flags | libc::IFF_UP as libc::c_short;
        self.ioctl("ioctl(SIOCSIFFLAGS)", libc::SIOCSIFFLAGS, &mut request)
    }

    /// The interface index.
    pub(crate) fn index(&self) -> Result<u32, DriverError> {
        let mut request = interface_request(self.name);
        self.ioctl("ioctl(SIOCGIFINDEX)", libc::SIOCGIFINDEX, &mut request)?;
        // SAFETY: SIOCGIFINDEX filled the `ifru_ifindex` member of the union.
        let index = unsafe { request.ifr_ifru.ifru_ifindex };
        Ok(index.max(0) as u32)
    }

    /// The MTU in bytes (IP packet, without the Ethernet header).
    pub(crate) fn mtu(&self) -> Result<u32, DriverError> {
        let mut request = interface_request(self.name);
        self.ioctl("ioctl(SIOCGIFMTU)", libc::SIOCGIFMTU, &mut request)?;
        // SAFETY: SIOCGIFMTU filled the `ifru_mtu` member of the union.
        let mtu = unsafe { request.ifr_ifru.ifru_mtu };
        Ok(mtu.max(0) as u32)
    }

    /// Sets the MTU.
    pub(crate) fn set_mtu(&self, mtu: u32) -> Result<(), DriverError> {
        let mut request = interface_request(self.name);
        request.ifr_ifru.ifru_mtu = mtu as libc::c_int;
        self.ioctl("ioctl(SIOCSIFMTU)", libc::SIOCSIFMTU, &mut request)
    }

    /// The interface's own MAC address.
    pub(crate) fn hardware_address(&self) -> Result<[u8; 6], DriverError> {
        let mut request = interface_request(self.name);
        self.ioctl("ioctl(SIOCGIFHWADDR)", libc::SIOCGIFHWADDR, &mut request)?;
        // SAFETY: SIOCGIFHWADDR filled the `ifru_hwaddr` member of the union.
        let data = unsafe { request.ifr_ifru.ifru_hwaddr.sa_data };
        Ok(std::array::from_fn(|i| data[i] as u8))
    }

    /// Receive queues in use (`ethtool -l`: rx plus combined channels), or
    /// `None` when the driver does not report channels.
    pub(crate) fn rx_queues(&self) -> Result<Option<u32>, DriverError> {
        let mut channels = EthtoolChannels { cmd: ETHTOOL_GCHANNELS, ..EthtoolChannels::default() };
        let mut request = interface_request(self.name);
        request.ifr_ifru.ifru_data = (&raw mut channels).cast();
        match self.ioctl("ioctl(SIOCETHTOOL, ETHTOOL_GCHANNELS)", libc::SIOCETHTOOL, &mut request) {
            Ok(()) => Ok(Some(channels.rx_count + channels.combined_count)),
            Err(DriverError::Os { source, .. }) if source.raw_os_error() == Some(libc::EOPNOTSUPP) => Ok(None),
            Err(other) => Err(other),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config_message(result: Result<(), DriverError>) -> String {
        match result {
            Err(DriverError::Config(message)) => message,
            other => panic!("expected a configuration error, got {other:?}"),
        }
    }

    #[test]
    fn interface_names_are_checked_as_linux_does() {
        assert!(validate_name("ixtap0").is_ok());
        assert!(validate_name("tap%d").is_ok());
        assert!(validate_name("fifteen-bytes-x").is_ok());
        assert!(config_message(validate_name("sixteen-bytes-xx")).contains("IFNAMSIZ"));
        assert!(config_message(validate_name("")).contains("empty"));
        for bad in [".", "..", "a/b", "a:1", "a b", "a\0b"] {
            assert!(validate_name(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn interface_request_round_trips_the_name() {
        let request = interface_request("fifteen-bytes-x");
        assert_eq!(request.ifr_name[15], 0, "the name stays NUL-terminated");
        assert_eq!(name_of(&request), "fifteen-bytes-x");
    }

    #[test]
    fn loopback_is_found_and_a_missing_interface_is_named() {
        let lo = InterfaceControl::new("lo", || DriverError::Config("denied".into())).unwrap();
        assert!(lo.index().unwrap() > 0);
        assert!(lo.mtu().unwrap() > 0);
        let missing = InterfaceControl::new("ixnosuch0", || DriverError::Config("denied".into())).unwrap();
        let err = missing.index().unwrap_err();
        assert!(matches!(err, DriverError::NoSuchInterface { .. }), "{err:?}");
        assert!(err.to_string().contains("ixnosuch0"), "{err}");
    }
}
