//! The daemon's state and loop: each managed interface's demux program and
//! maps, the control socket, per connection the dataplane it admitted
//! (virtual port, AF_XDP socket, region, core board), released when the
//! connection closes, and each period the CPU decision for every core.

use std::net::Ipv4Addr;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use super::config::DaemonConfig;
use super::core_board::CoreBoard;
use super::cpu_allocation::{Allocation, HostThreads, ManagedCore, Tenant};
use super::protocol::{
    AdmitRequest, DaemonStats, DataplaneEntry, Grant, LISTING_CORES_MAX, Listing, Message, Refusal, RefusalCode, Share,
};
use super::thread_placement::all_cpus;
use super::transport;
use super::virtual_port::VirtualPort;
use crate::error::DriverError;
use crate::netdev::InterfaceControl;
use crate::region::{HugePages, Region};
use crate::xdp::bpf::{AttachMode, BpfMap, BpfProgram, MapType, privilege_error};
use crate::xdp::queue::{ring_size_for, umem_bytes};
use crate::xdp::socket::{SocketParams, open_for_handover, socket_stats};
use crate::xdp::{XdpMode, program};

/// Dataplanes per managed interface at most (slots of its device map).
pub const DATAPLANES_PER_INTERFACE_MAX: u32 = 64;
/// (address, port) entries per managed interface at most.
const STEERING_ENTRIES_MAX: u32 = 4096;
/// Connections to the control socket at most (admitted or not).
const CONNECTIONS_MAX: usize = 1024;
/// Longest wait in one round of the loop: how soon a stop request is seen.
const POLL_TIMEOUT_MS: i32 = 200;
/// License the demux program is loaded under (the project's).
const PROGRAM_LICENSE: &std::ffi::CStr = c"MIT OR Apache-2.0";

/// One interface with `ixcp`'s demux program attached through a BPF link this
/// process holds: the kernel detaches it when the process dies.
#[derive(Debug)]
struct ManagedInterface {
    name: String,
    ifindex: u32,
    mac: [u8; 6],
    mtu: u32,
    _link: OwnedFd,
    _program: BpfProgram,
    /// (address, port) → slot.
    steer: BpfMap,
    /// slot → the kernel end of the dataplane's virtual port.
    ports: BpfMap,
    used_slots: Vec<bool>,
}

impl ManagedInterface {
    fn attach(name: &str, mode: XdpMode) -> Result<Self, DriverError> {
        let control = InterfaceControl::new(name, privilege_error)?;
        let ifindex = control.index()?;
        let mac = control.hardware_address()?;
        let mtu = control.mtu()?;
        let steer = BpfMap::create(MapType::Hash, "ixcp_steer", 8, 4, STEERING_ENTRIES_MAX)?;
        let ports = BpfMap::create(MapType::DevMap, "ixcp_ports", 4, 4, DATAPLANES_PER_INTERFACE_MAX)?;
        let insns = program::ixcp_demux_program(steer.fd().as_raw_fd(), ports.fd().as_raw_fd());
        let program = BpfProgram::load_xdp("ixcp_demux", &insns, PROGRAM_LICENSE)?;
        let attach_mode = match mode {
            XdpMode::Native => AttachMode::Native,
            XdpMode::Generic => AttachMode::Generic,
        };
        let link = program.attach_xdp(ifindex, attach_mode).map_err(|error| DriverError::XdpUnsupported {
            iface: name.to_owned(),
            what: format!("the demux program could not be attached ({error})"),
            hint: "detach the program already there (`ip link set dev IFACE xdp off`) or try mode = \"generic\"",
        })?;
        tracing::info!(iface = name, ifindex, ?mode, "ixcp: demux program attached");
        Ok(Self {
            name: name.to_owned(),
            ifindex,
            mac,
            mtu,
            _link: link,
            _program: program,
            steer,
            ports,
            used_slots: vec![false; DATAPLANES_PER_INTERFACE_MAX as usize],
        })
    }
}

/// The key of the steering map for `addr` and `port`.
fn steering_key(addr: Ipv4Addr, port: u16) -> [u8; 8] {
    let mut key = [0u8; 8];
    key[..4].copy_from_slice(&addr.octets());
    key[4..].copy_from_slice(&u32::from(port).to_ne_bytes());
    key
}

/// An admitted dataplane. Its steering entries are removed by
/// [`Daemon::release`] before the virtual port and socket go.
#[derive(Debug)]
struct Dataplane {
    interface: usize,
    slot: u32,
    addr: Ipv4Addr,
    ports: Vec<u16>,
    frames_per_queue: u32,
    /// Declared before the sockets: its programs go first.
    port: VirtualPort,
    sockets: Vec<OwnedFd>,
    _regions: Vec<Region>,
    /// Where its cores publish their counters and read their mode.
    board: CoreBoard,
    cores: Vec<ManagedCore>,
    /// CPUs its cores may poll on at once now, and at most.
    share: u16,
    max_share: u16,
}

#[derive(Debug)]
struct Connection {
    socket: OwnedFd,
    uid: u32,
    /// The peer's process, whose threads alone `ixcp` moves.
    pid: i32,
    dataplane: Option<Dataplane>,
}

/// The control plane: managed interfaces, the control socket, connections.
#[derive(Debug)]
pub struct Daemon {
    config: DaemonConfig,
    listener: OwnedFd,
    interfaces: Vec<ManagedInterface>,
    connections: Vec<Connection>,
    stats: DaemonStats,
    /// Where blocking cores run.
    shared_cpus: Vec<usize>,
    last_decision: Instant,
    /// When the step rule last read the boards (if it is on).
    last_step_check: Instant,
}

impl Daemon {
    /// Attaches the demux program to every configured interface (in the
    /// calling thread's network namespace) and listens on the socket.
    ///
    /// # Errors
    /// [`DriverError::Privilege`] without root's capabilities; the attach
    /// errors of each interface; [`DriverError::Os`] for the socket.
    pub fn start(config: DaemonConfig) -> Result<Self, DriverError> {
        let interfaces = config
            .interfaces
            .iter()
            .map(|i| ManagedInterface::attach(&i.name, i.mode.into()))
            .collect::<Result<_, _>>()?;
        let listener = transport::listen(&config.socket)
            .map_err(|source| DriverError::Os { call: "listen on the ixcp socket", source })?;
        tracing::info!(socket = %config.socket.display(), "ixcp: listening");
        let shared_cpus = if config.cpus.shared.is_empty() { all_cpus() } else { config.cpus.shared.clone() };
        Ok(Self {
            config,
            listener,
            interfaces,
            connections: Vec::new(),
            stats: DaemonStats::default(),
            shared_cpus,
            last_decision: Instant::now(),
            last_step_check: Instant::now(),
        })
    }

    /// What the daemon counted so far.
    pub fn stats(&self) -> DaemonStats {
        self.stats
    }

    /// Serves until `stop` is set (checked at least every 200 ms).
    ///
    /// # Errors
    /// [`DriverError::Os`] when `poll` fails.
    pub fn serve(&mut self, stop: &AtomicBool) -> Result<(), DriverError> {
        while !stop.load(Ordering::Relaxed) {
            self.round(Duration::from_millis(POLL_TIMEOUT_MS as u64))?;
        }
        Ok(())
    }

    /// One round: waits up to `timeout` (less when a CPU decision is due) for
    /// the socket or a connection, then accepts, answers requests and releases
    /// the dataplanes whose connection closed; then decides the cores' modes
    /// and CPUs when a period of the policy has passed.
    ///
    /// # Errors
    /// [`DriverError::Os`] when `poll` fails.
    pub fn round(&mut self, timeout: Duration) -> Result<(), DriverError> {
        let mut fds: Vec<libc::pollfd> = std::iter::once(self.listener.as_raw_fd())
            .chain(self.connections.iter().map(|c| c.socket.as_raw_fd()))
            .map(|fd| libc::pollfd { fd, events: libc::POLLIN, revents: 0 })
            .collect();
        let next_decision = self.last_decision + self.config.policy.period();
        let step_window = self.config.policy.step_window();
        let next_step_check = step_window.map_or(next_decision, |window| self.last_step_check + window);
        let timeout = timeout.min(next_decision.min(next_step_check).saturating_duration_since(Instant::now()));
        let timeout_ms = poll_timeout_ms(timeout);
        // SAFETY: `fds` is a live array of `fds.len()` pollfd entries.
        let rc = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, timeout_ms) };
        if rc < 0 {
            let error = std::io::Error::last_os_error();
            if error.kind() == std::io::ErrorKind::Interrupted {
                return Ok(());
            }
            return Err(DriverError::Os { call: "poll", source: error });
        }
        // Connections first, from the last, so indexes stay valid as some go.
        for index in (0..self.connections.len()).rev() {
            let revents = fds[index + 1].revents;
            if revents & libc::POLLIN != 0 {
                self.serve_connection(index);
            } else if revents & (libc::POLLHUP | libc::POLLERR | libc::POLLNVAL) != 0 {
                self.close(index);
            }
        }
        if fds[0].revents & libc::POLLIN != 0 {
            self.accept_all();
        }
        let now = Instant::now();
        if now >= next_decision {
            let wall = now - self.last_decision;
            self.last_decision = now;
            self.decide_cpus(wall);
        } else if step_window.is_some() && now >= next_step_check {
            let wall = now - self.last_step_check;
            self.last_step_check = now;
            self.watch_for_steps(wall);
        }
        Ok(())
    }

    /// One period's decision for every core of every dataplane (see
    /// [`Allocation::decide`]).
    fn decide_cpus(&mut self, wall: Duration) {
        let allocation =
            Allocation { policy: &self.config.policy, polling: &self.config.cpus.polling, shared: &self.shared_cpus };
        allocation.decide(&mut tenants(&mut self.connections), wall, &mut HostThreads, &mut self.stats);
    }

    /// One short window of the step rule (see [`Allocation::watch_for_steps`]).
    fn watch_for_steps(&mut self, wall: Duration) {
        let allocation =
            Allocation { policy: &self.config.policy, polling: &self.config.cpus.polling, shared: &self.shared_cpus };
        allocation.watch_for_steps(&mut tenants(&mut self.connections), wall, &mut HostThreads, &mut self.stats);
    }

    fn accept_all(&mut self) {
        loop {
            match transport::accept(self.listener.as_fd()) {
                Ok(Some(socket)) => {
                    if self.connections.len() >= CONNECTIONS_MAX {
                        tracing::warn!("ixcp: connection refused: {CONNECTIONS_MAX} already open");
                        continue;
                    }
                    match transport::peer_credentials(socket.as_fd()) {
                        Ok((uid, pid)) => self.connections.push(Connection { socket, uid, pid, dataplane: None }),
                        Err(error) => tracing::warn!(%error, "ixcp: peer credentials unreadable; connection closed"),
                    }
                }
                Ok(None) => return,
                Err(error) => {
                    tracing::warn!(%error, "ixcp: accept failed");
                    return;
                }
            }
        }
    }

    fn serve_connection(&mut self, index: usize) {
        let received = match transport::recv(self.connections[index].socket.as_fd()) {
            Ok(Some(received)) => received,
            Ok(None) => return self.close(index),
            Err(error) if error.kind() == std::io::ErrorKind::WouldBlock => return,
            Err(error) => {
                tracing::debug!(%error, "ixcp: receive failed; connection closed");
                return self.close(index);
            }
        };
        // Descriptors a dataplane sends are not wanted: `received.fds` closes them.
        let answer = if received.truncated {
            self.stats.malformed += 1;
            Err(Refusal::new(RefusalCode::Malformed, "message larger than the protocol allows"))
        } else {
            match Message::decode(&received.bytes) {
                Ok(Message::Admit(request)) => self.admit(index, &request),
                Ok(Message::List) => match self.listing(self.connections[index].uid) {
                    Ok(listing) => return self.answer(index, &Message::Listing(listing), &[]),
                    Err(refusal) => Err(refusal),
                },
                Ok(Message::SetShare(share)) => match self.set_share(self.connections[index].uid, &share) {
                    Ok(set) => return self.answer(index, &Message::ShareSet(set), &[]),
                    Err(refusal) => Err(refusal),
                },
                Ok(other) => {
                    self.stats.malformed += 1;
                    Err(Refusal::new(RefusalCode::Malformed, format!("a dataplane sends requests, not {other:?}")))
                }
                Err(error) => {
                    self.stats.malformed += 1;
                    Err(error.refusal())
                }
            }
        };
        match answer {
            Ok((grant, fds)) => self.answer(index, &Message::Grant(grant), &fds),
            Err(refusal) => {
                self.stats.refused += 1;
                let uid = self.connections[index].uid;
                tracing::info!(uid, code = ?refusal.code, message = %refusal.message, "ixcp: refused");
                self.answer(index, &Message::Refusal(refusal), &[]);
            }
        }
    }

    /// Sends `message` with `fds` on connection `index`, or closes it.
    fn answer(&mut self, index: usize, message: &Message, fds: &[OwnedFd]) {
        let borrowed: Vec<_> = fds.iter().map(|fd| fd.as_fd()).collect();
        if let Err(error) = transport::send(self.connections[index].socket.as_fd(), &message.encode(), &borrowed) {
            tracing::debug!(%error, "ixcp: answer not delivered; connection closed");
            self.close(index);
        }
    }

    /// The admitted dataplanes and the counters, for root only.
    fn listing(&self, uid: u32) -> Result<Listing, Refusal> {
        if uid != 0 {
            return Err(Refusal::new(RefusalCode::NotPermitted, "listing the dataplanes needs root"));
        }
        let dataplanes = self
            .connections
            .iter()
            .filter_map(|c| c.dataplane.as_ref().map(|d| (c.uid, d)))
            .map(|(uid, d)| {
                let kernel = d.sockets.first().and_then(|s| socket_stats(s.as_fd()).ok()).unwrap_or_default();
                DataplaneEntry {
                    uid,
                    addr: d.addr,
                    interface: self.interfaces[d.interface].name.clone(),
                    port_name: d.port.name.clone(),
                    frames_per_queue: d.frames_per_queue,
                    ports: d.ports.clone(),
                    rx_dropped: kernel.rx_dropped,
                    rx_ring_full: kernel.rx_ring_full,
                    rx_fill_ring_empty: kernel.rx_fill_ring_empty,
                    tx_invalid_descs: kernel.tx_invalid_descs,
                    share: d.share,
                    max_share: d.max_share,
                    cores: d
                        .cores
                        .iter()
                        .take(LISTING_CORES_MAX)
                        .enumerate()
                        .map(|(index, core)| core.entry(index))
                        .collect(),
                }
            })
            .collect();
        Ok(Listing { stats: self.stats, dataplanes })
    }

    /// Sets the CPU share of the dataplane on virtual port `share.port_name`,
    /// for root only, within its grant's `max_cpus`; the next decision takes
    /// polling CPUs back from its cores beyond the new share.
    fn set_share(&mut self, uid: u32, share: &Share) -> Result<Share, Refusal> {
        if uid != 0 {
            return Err(Refusal::new(RefusalCode::NotPermitted, "setting a CPU share needs root"));
        }
        let dataplane = self
            .connections
            .iter_mut()
            .filter_map(|c| c.dataplane.as_mut())
            .find(|d| d.port.name == share.port_name)
            .ok_or_else(|| {
                Refusal::new(
                    RefusalCode::NoSuchDataplane,
                    format!("no dataplane on virtual port {:?}", share.port_name),
                )
            })?;
        if share.share > dataplane.max_share {
            return Err(Refusal::new(
                RefusalCode::OverLimit,
                format!("a share of {} CPUs asked, {} at most granted", share.share, dataplane.max_share),
            ));
        }
        tracing::info!(port = %share.port_name, from = dataplane.share, to = share.share, "ixcp: CPU share set");
        dataplane.share = share.share;
        Ok(share.clone())
    }

    /// Checks and sets up a dataplane; the grant and the descriptors to send.
    fn admit(&mut self, index: usize, request: &AdmitRequest) -> Result<(Grant, Vec<OwnedFd>), Refusal> {
        let uid = self.connections[index].uid;
        if self.connections[index].dataplane.is_some() {
            return Err(Refusal::new(RefusalCode::AlreadyAdmitted, "this connection already holds a grant"));
        }
        let grant = self.config.admit(uid, request)?;
        let max_cpus = grant.max_cpus;
        let max_connections = request.max_connections;
        let interface = self.interfaces.iter().position(|i| i.name == grant.interface).expect("checked on load");
        if let Some(port) = request.ports.iter().find(|&&port| self.port_in_use(request.addr, port)) {
            return Err(Refusal::new(
                RefusalCode::PortInUse,
                format!("port {port} on {} is held by another dataplane", request.addr),
            ));
        }
        let unavailable = |error: DriverError| {
            tracing::warn!(%error, "ixcp: could not set a dataplane up");
            Refusal::new(RefusalCode::Unavailable, format!("ixcp could not set the dataplane up: {error}"))
        };
        let (mut dataplane, fds) = self.set_up(interface, request).map_err(unavailable)?;
        (dataplane.share, dataplane.max_share) = (max_cpus, max_cpus);
        let managed = &self.interfaces[interface];
        let grant = Grant {
            mac: managed.mac,
            mtu: managed.mtu,
            queues: 1,
            frames_per_queue: request.frames_per_queue,
            max_connections,
            port_name: dataplane.port.name.clone(),
        };
        tracing::info!(
            uid,
            iface = %managed.name,
            addr = %request.addr,
            ports = ?request.ports,
            port = %grant.port_name,
            "ixcp: admitted"
        );
        self.connections[index].dataplane = Some(dataplane);
        self.stats.admitted += 1;
        Ok((grant, fds))
    }

    fn port_in_use(&self, addr: Ipv4Addr, port: u16) -> bool {
        self.connections.iter().filter_map(|c| c.dataplane.as_ref()).any(|d| d.addr == addr && d.ports.contains(&port))
    }

    /// Makes the virtual port, the region and the socket, and enters the
    /// steering entries last, when everything they lead to exists.
    fn set_up(&mut self, interface: usize, request: &AdmitRequest) -> Result<(Dataplane, Vec<OwnedFd>), DriverError> {
        let managed = &mut self.interfaces[interface];
        let slot = managed.used_slots.iter().position(|used| !used).ok_or_else(|| {
            DriverError::Config(format!("{} serves {DATAPLANES_PER_INTERFACE_MAX} dataplanes already", managed.name))
        })? as u32;
        let port = VirtualPort::create(slot, managed.mtu, request.addr, &request.ports, managed.ifindex)?;
        let frames = request.frames_per_queue;
        let region = Region::new(umem_bytes(frames), HugePages::Auto)?;
        region.seal_size()?;
        let params = SocketParams {
            iface: &port.name,
            ifindex: port.ifindex,
            queue: 0,
            umem: region.rw_base().as_ptr(),
            umem_len: umem_bytes(frames),
            ring_size: ring_size_for(frames)?,
        };
        let socket = open_for_handover(&params)?;
        port.register_socket(&socket)?;
        managed.ports.update(&slot.to_ne_bytes(), &port.kernel_ifindex.to_ne_bytes())?;
        for &p in &request.ports {
            managed.steer.update(&steering_key(request.addr, p), &slot.to_ne_bytes())?;
        }
        managed.used_slots[slot as usize] = true;
        let board = CoreBoard::create(1)?;
        let may_poll = !self.config.cpus.polling.is_empty();
        board.set_self_poll_rule(self.config.policy.self_poll_rule(may_poll));
        let fds = vec![
            socket.try_clone().map_err(|source| DriverError::Os { call: "dup(AF_XDP socket)", source })?,
            region.fd().try_clone_to_owned().map_err(|source| DriverError::Os { call: "dup(region memfd)", source })?,
            board.fd().try_clone_to_owned().map_err(|source| DriverError::Os { call: "dup(core board)", source })?,
        ];
        let dataplane = Dataplane {
            interface,
            slot,
            addr: request.addr,
            ports: request.ports.clone(),
            frames_per_queue: frames,
            port,
            sockets: vec![socket],
            _regions: vec![region],
            board,
            cores: vec![ManagedCore::default()],
            share: 0,
            max_share: 0,
        };
        Ok((dataplane, fds))
    }

    /// Closes connection `index` and releases its dataplane.
    fn close(&mut self, index: usize) {
        let connection = self.connections.swap_remove(index);
        if let Some(dataplane) = connection.dataplane {
            self.release(connection.uid, dataplane);
        }
    }

    /// Removes a dataplane's steering entries, then its port and socket.
    fn release(&mut self, uid: u32, dataplane: Dataplane) {
        let managed = &mut self.interfaces[dataplane.interface];
        for &port in &dataplane.ports {
            if let Err(error) = managed.steer.delete(&steering_key(dataplane.addr, port)) {
                tracing::warn!(%error, port, "ixcp: steering entry not removed");
            }
        }
        if let Err(error) = managed.ports.delete(&dataplane.slot.to_ne_bytes()) {
            tracing::warn!(%error, "ixcp: device map slot not cleared");
        }
        managed.used_slots[dataplane.slot as usize] = false;
        tracing::info!(uid, addr = %dataplane.addr, ports = ?dataplane.ports, "ixcp: dataplane gone, its ports released");
        self.stats.released += 1;
    }
}

/// Lets thread `tid` run on `cpus` only, with `slice` as its scheduler slice
/// if one is given; a failure (the thread is gone) is logged: the
/// dataplane's release follows when its connection closes.
/// `poll`'s timeout for `timeout`, in whole milliseconds rounded up: a
/// timeout truncated to 0 would make the loop spin until a decision is due.
fn poll_timeout_ms(timeout: Duration) -> i32 {
    i32::try_from(timeout.as_micros().div_ceil(1000)).unwrap_or(i32::MAX)
}

/// The admitted dataplanes of `connections`, for the CPU allocation.
fn tenants(connections: &mut [Connection]) -> Vec<Tenant<'_>> {
    connections
        .iter_mut()
        .filter_map(|c| {
            let dataplane = c.dataplane.as_mut()?;
            Some(Tenant { pid: c.pid, share: dataplane.share, board: &dataplane.board, cores: &mut dataplane.cores })
        })
        .collect()
}

/// Set by SIGINT or SIGTERM once [`stop_on_signals`] ran.
static STOP_REQUESTED: AtomicBool = AtomicBool::new(false);

extern "C" fn request_stop(_signal: libc::c_int) {
    STOP_REQUESTED.store(true, Ordering::Relaxed);
}

/// Makes SIGINT and SIGTERM set the returned flag (for [`Daemon::serve`])
/// instead of killing the process, so the daemon can remove its virtual ports
/// on the way out.
///
/// # Errors
/// [`DriverError::Os`] when a handler cannot be installed.
pub fn stop_on_signals() -> Result<&'static AtomicBool, DriverError> {
    for signal in [libc::SIGINT, libc::SIGTERM] {
        // SAFETY: the handler only stores to an atomic, which is
        // async-signal-safe.
        if unsafe { libc::signal(signal, request_stop as *const () as libc::sighandler_t) } == libc::SIG_ERR {
            return Err(DriverError::os("signal"));
        }
    }
    Ok(&STOP_REQUESTED)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn poll_waits_until_the_next_decision_and_not_less() {
        // Less than a millisecond left must not make a zero timeout: `poll`
        // would return at once and the loop spin on its CPU until the
        // decision is due (up to a millisecond every short window).
        assert_eq!(poll_timeout_ms(Duration::from_micros(900)), 1);
        assert_eq!(poll_timeout_ms(Duration::from_micros(1_100)), 2);
        assert_eq!(poll_timeout_ms(Duration::from_millis(10)), 10);
        assert_eq!(poll_timeout_ms(Duration::ZERO), 0);
        assert_eq!(poll_timeout_ms(Duration::from_secs(u64::MAX)), i32::MAX);
    }
}
