//! A dataplane's virtual port: a veth pair `ixcp` makes per dataplane, so that
//! each dataplane has an AF_XDP queue of its own (its own UMEM) even when the
//! managed interface has one queue for all, and a check on what it sends.
//!
//! ```text
//! managed interface --demux program--> ixdpNk ==veth==> ixdpN --rx program--> the dataplane's AF_XDP socket
//! the dataplane's AF_XDP socket --> ixdpN ==veth==> ixdpNk --tx program (source check)--> managed interface
//! ```

use std::net::Ipv4Addr;
use std::os::fd::{AsRawFd, OwnedFd};
use std::process::{Command, Stdio};

use crate::error::DriverError;
use crate::netdev::InterfaceControl;
use crate::xdp::bpf::{AttachMode, BpfMap, BpfProgram, MapType, privilege_error};
use crate::xdp::program;

/// License the programs are loaded under (the project's).
const PROGRAM_LICENSE: &std::ffi::CStr = c"MIT OR Apache-2.0";

/// The veth pair, its programs and their maps; dropping it detaches the
/// programs and deletes the pair.
#[derive(Debug)]
pub(crate) struct VirtualPort {
    /// The dataplane's end, where its AF_XDP socket is bound.
    pub(crate) name: String,
    pub(crate) ifindex: u32,
    /// The kernel's end, where the managed interface redirects to.
    pub(crate) kernel_ifindex: u32,
    _rx_link: OwnedFd,
    _tx_link: OwnedFd,
    _rx_program: BpfProgram,
    _tx_program: BpfProgram,
    xsks: BpfMap,
    _source_ports: BpfMap,
    _out: BpfMap,
}

impl VirtualPort {
    /// Makes `ixdp{slot}` and `ixdp{slot}k` with the managed interface's
    /// MTU, and attaches the receive program (every frame to the queue's
    /// socket) and the transmit program (frames from `addr` and `ports` out
    /// of the interface `out_ifindex`, others dropped).
    pub(crate) fn create(
        slot: u32,
        mtu: u32,
        addr: Ipv4Addr,
        ports: &[u16],
        out_ifindex: u32,
    ) -> Result<Self, DriverError> {
        let name = format!("ixdp{slot}");
        let kernel_name = format!("ixdp{slot}k");
        // A pair left by an ixcp that was killed.
        let _ = ip(&["link", "del", &name]);
        let mtu_text = mtu.to_string();
        ip(&["link", "add", &name, "mtu", &mtu_text, "type", "veth", "peer", "name", &kernel_name, "mtu", &mtu_text])?;
        let pair = PairGuard(name.clone());
        for end in [&name, &kernel_name] {
            // The kernel keeps IPv6 off these ends: nothing but the
            // dataplane's frames should cross them.
            let _ = std::fs::write(format!("/proc/sys/net/ipv6/conf/{end}/disable_ipv6"), "1");
            ip(&["link", "set", end, "up"])?;
        }
        let ifindex = InterfaceControl::new(&name, privilege_error)?.index()?;
        let kernel_ifindex = InterfaceControl::new(&kernel_name, privilege_error)?.index()?;

        let xsks = BpfMap::create(MapType::XskMap, "ixcp_xsks", 4, 4, 1)?;
        let source_ports = BpfMap::create(MapType::Hash, "ixcp_src_ports", 4, 4, ports.len().max(1) as u32)?;
        for &port in ports {
            source_ports.update(&u32::from(port).to_ne_bytes(), &1u32.to_ne_bytes())?;
        }
        let out = BpfMap::create(MapType::DevMap, "ixcp_out", 4, 4, 1)?;
        out.update(&0u32.to_ne_bytes(), &out_ifindex.to_ne_bytes())?;
        let rx_program = BpfProgram::load_xdp(
            "ixcp_port_rx",
            &program::ixcp_port_rx_program(xsks.fd().as_raw_fd()),
            PROGRAM_LICENSE,
        )?;
        let tx_program = BpfProgram::load_xdp(
            "ixcp_port_tx",
            &program::ixcp_port_tx_program(addr, source_ports.fd().as_raw_fd(), out.fd().as_raw_fd()),
            PROGRAM_LICENSE,
        )?;
        let attach_error =
            |error: std::io::Error| DriverError::Os { call: "bpf(BPF_LINK_CREATE) on a virtual port", source: error };
        let rx_link = rx_program.attach_xdp(ifindex, AttachMode::Native).map_err(attach_error)?;
        let tx_link = tx_program.attach_xdp(kernel_ifindex, AttachMode::Native).map_err(attach_error)?;
        std::mem::forget(pair);
        Ok(Self {
            name,
            ifindex,
            kernel_ifindex,
            _rx_link: rx_link,
            _tx_link: tx_link,
            _rx_program: rx_program,
            _tx_program: tx_program,
            xsks,
            _source_ports: source_ports,
            _out: out,
        })
    }

    /// Enters the dataplane's socket for queue 0.
    pub(crate) fn register_socket(&self, socket: &OwnedFd) -> Result<(), DriverError> {
        self.xsks.update(&0u32.to_ne_bytes(), &(socket.as_raw_fd() as u32).to_ne_bytes())
    }
}

impl Drop for VirtualPort {
    fn drop(&mut self) {
        if let Err(error) = ip(&["link", "del", &self.name]) {
            tracing::warn!(port = %self.name, %error, "could not delete a virtual port");
        }
    }
}

/// Deletes a pair whose set-up failed half-way.
struct PairGuard(String);

impl Drop for PairGuard {
    fn drop(&mut self) {
        let _ = ip(&["link", "del", &self.0]);
    }
}

/// Runs `ip ARGS` (iproute2), for what needs rtnetlink.
fn ip(args: &[&str]) -> Result<(), DriverError> {
    let output = Command::new("ip")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|source| DriverError::Os { call: "run ip (iproute2)", source })?;
    if output.status.success() {
        return Ok(());
    }
    Err(DriverError::Config(format!("ip {}: {}", args.join(" "), String::from_utf8_lossy(&output.stderr).trim())))
}
