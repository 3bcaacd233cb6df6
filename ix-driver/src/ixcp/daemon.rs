//! The daemon's state and loop: each managed interface's demux program and
//! maps, the control socket, per connection the dataplane it admitted
//! (virtual port, AF_XDP socket, region, core board), released when the
//! connection closes, and each period the CPU decision for every core.

use std::net::Ipv4Addr;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use super::config::DaemonConfig;
use super::core_board::{CoreBoard, CoreMode, CoreSample};
use super::cpu_policy::{CoreState, CpuPolicy, StepWatch, core_load, decide, starting_state, stepped_state};
use super::protocol::{
    AdmitRequest, CoreEntry, DaemonStats, DataplaneEntry, Grant, LISTING_CORES_MAX, Listing, Message, Refusal,
    RefusalCode, Share,
};
use super::thread_placement::{all_cpus, is_thread_of, move_thread, set_slice};
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

/// What `ixcp` knows of one dataplane core between decisions.
#[derive(Debug, Default)]
struct ManagedCore {
    state: CoreState,
    /// The polling CPU it holds.
    cpu: Option<usize>,
    /// The thread id its board names, and that thread once checked to be
    /// one of the dataplane's.
    named_thread: u64,
    thread: Option<u64>,
    last: CoreSample,
    load: f64,
    /// Its counters at the last short window of the step rule, and the
    /// rule's count of busy windows.
    step_last: CoreSample,
    step: StepWatch,
    to_polling: u64,
    to_blocking: u64,
    /// The core's self-poll count `ixcp` answered last.
    self_polls_answered: u64,
    /// Of its switches to polling on its own, those a decision kept (giving
    /// it a polling CPU) and those it sent back to blocking.
    self_polls_kept: u64,
    self_polls_ended: u64,
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

    /// One period's decision for every core of every dataplane: reads its
    /// counters, computes its load, and moves it between blocking on the
    /// shared CPUs and polling on a CPU of its own.
    fn decide_cpus(&mut self, wall: Duration) {
        let policy = self.config.policy;
        let mut held = self.held_cpus();
        for connection in &mut self.connections {
            let pid = connection.pid;
            let Some(dataplane) = connection.dataplane.as_mut() else { continue };
            for index in 0..dataplane.cores.len() {
                let sample = dataplane.board.read(index);
                let polling_elsewhere = polling_elsewhere(&dataplane.cores, index);
                let core = &mut dataplane.cores[index];
                core.load = core_load(&core.last, &sample, wall);
                core.last = sample;
                if core.named_thread != sample.thread_id {
                    core.named_thread = sample.thread_id;
                    core.thread = is_thread_of(pid, sample.thread_id).then_some(sample.thread_id);
                    if core.thread.is_none() && sample.thread_id != 0 {
                        self.stats.threads_refused += 1;
                        tracing::warn!(
                            pid,
                            tid = sample.thread_id,
                            "ixcp: a core board names a thread not the dataplane's"
                        );
                    }
                    // A new thread starts blocking on the shared CPUs; what it
                    // counted so far is answered.
                    core.state = CoreState::default();
                    if let Some(cpu) = core.cpu.take() {
                        held.retain(|&c| c != cpu);
                    }
                    dataplane.board.ask_mode(index, CoreMode::Block);
                    dataplane.board.answer_self_polls(index, sample.self_polls);
                    core.self_polls_answered = sample.self_polls;
                    if let Some(tid) = core.thread {
                        place(tid, &self.shared_cpus, policy.slice());
                    }
                    // Its counters so far are not one period's: decide from the next.
                    core.load = 0.0;
                    continue;
                }
                let free_cpu = self.config.cpus.polling.iter().copied().find(|cpu| !held.contains(cpu));
                let may_poll = core.thread.is_some()
                    && polling_elsewhere < usize::from(dataplane.share)
                    && (core.cpu.is_some() || free_cpu.is_some());
                // A core that switched itself to polling since the last
                // decision enters it as polling (see `starting_state`); the
                // answer goes after the mode word, whatever the decision.
                let switched_itself = sample.self_polls != core.self_polls_answered;
                let next = decide(&policy, starting_state(&policy, core.state, switched_itself), core.load, may_poll);
                if switched_itself && core.state.mode == CoreMode::Block {
                    let kept = next.mode == CoreMode::BusyPoll;
                    let (mine, total) = if kept {
                        (&mut core.self_polls_kept, &mut self.stats.self_polls_kept)
                    } else {
                        (&mut core.self_polls_ended, &mut self.stats.self_polls_ended)
                    };
                    *mine += 1;
                    *total += 1;
                    tracing::debug!(
                        pid,
                        core = index,
                        load = core.load,
                        kept,
                        "ixcp: a core switched itself to polling"
                    );
                }
                if let (Some(tid), true) = (core.thread, next.mode != core.state.mode) {
                    match next.mode {
                        CoreMode::BusyPoll => {
                            let cpu = free_cpu.expect("may_poll checked a free CPU");
                            give_polling_cpu(core, &dataplane.board, index, tid, cpu, &policy, &mut self.stats);
                            held.push(cpu);
                        }
                        CoreMode::Block => {
                            dataplane.board.ask_mode(index, CoreMode::Block);
                            place(tid, &self.shared_cpus, policy.slice());
                            if let Some(cpu) = core.cpu.take() {
                                held.retain(|&c| c != cpu);
                            }
                            core.to_blocking += 1;
                            self.stats.to_blocking += 1;
                        }
                    }
                    tracing::debug!(pid, core = index, load = core.load, mode = ?next.mode, cpu = ?core.cpu, "ixcp: core moved");
                }
                core.state = next;
                if switched_itself {
                    dataplane.board.answer_self_polls(index, sample.self_polls);
                    core.self_polls_answered = sample.self_polls;
                }
            }
            // Its cores may switch themselves to polling only while one of
            // them could be given a polling CPU.
            let cpu_for_it = dataplane.cores.iter().any(|c| c.cpu.is_some())
                || self.config.cpus.polling.iter().any(|cpu| !held.contains(cpu));
            let may_poll = dataplane.share > 0 && cpu_for_it;
            dataplane.board.set_self_poll_rule(policy.self_poll_rule(may_poll));
        }
    }

    /// One short window of the step rule (see [`StepWatch`]): reads every
    /// core's counters, and gives a blocking core whose windows make a step a
    /// polling CPU at once, if it may poll, as a decision would. The period's
    /// decisions go on as before and judge it at the next one (see
    /// [`stepped_state`]).
    fn watch_for_steps(&mut self, wall: Duration) {
        let (policy, mut held) = (self.config.policy, self.held_cpus());
        let dataplanes = self.connections.iter_mut().filter_map(|c| Some((c.pid, c.dataplane.as_mut()?)));
        for (pid, dataplane) in dataplanes {
            for index in 0..dataplane.cores.len() {
                let sample = dataplane.board.read(index);
                let share_left = polling_elsewhere(&dataplane.cores, index) < usize::from(dataplane.share);
                let core = &mut dataplane.cores[index];
                let load = core_load(&core.step_last, &sample, wall);
                core.step_last = sample;
                // Only a blocking core of a thread the period's decision
                // checked; a new thread waits for that decision.
                let Some(tid) =
                    core.thread.filter(|_| core.state.mode == CoreMode::Block && core.named_thread == sample.thread_id)
                else {
                    core.step.reset();
                    continue;
                };
                if !core.step.observe(&policy, load) {
                    continue;
                }
                let free_cpu = self.config.cpus.polling.iter().copied().find(|cpu| !held.contains(cpu));
                let Some(cpu) = free_cpu.filter(|_| share_left) else {
                    continue;
                };
                give_polling_cpu(core, &dataplane.board, index, tid, cpu, &policy, &mut self.stats);
                held.push(cpu);
                core.state = stepped_state(&policy);
                tracing::debug!(pid, core = index, load, mode = ?core.state.mode, cpu = ?core.cpu, "ixcp: core moved by a step");
            }
        }
    }

    fn held_cpus(&self) -> Vec<usize> {
        self.cores().filter_map(|c| c.cpu).collect()
    }

    fn cores(&self) -> impl Iterator<Item = &ManagedCore> {
        self.connections.iter().filter_map(|c| c.dataplane.as_ref()).flat_map(|d| &d.cores)
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
                    cores: d.cores.iter().take(LISTING_CORES_MAX).enumerate().map(core_entry).collect(),
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

/// How many of `cores` other than `index` hold a polling CPU.
fn polling_elsewhere(cores: &[ManagedCore], index: usize) -> usize {
    cores.iter().enumerate().filter(|(i, c)| *i != index && c.cpu.is_some()).count()
}

/// Moves a blocking core to polling on `cpu`: the thread there first, then
/// the mode asked; counted.
fn give_polling_cpu(
    core: &mut ManagedCore,
    board: &CoreBoard,
    index: usize,
    tid: u64,
    cpu: usize,
    policy: &CpuPolicy,
    stats: &mut DaemonStats,
) {
    place(tid, &[cpu], policy.slice());
    core.cpu = Some(cpu);
    board.ask_mode(index, CoreMode::BusyPoll);
    core.to_polling += 1;
    stats.to_polling += 1;
}

fn place(tid: u64, cpus: &[usize], slice: Option<Duration>) {
    if let Err(error) = move_thread(tid, cpus) {
        tracing::debug!(tid, ?cpus, %error, "ixcp: a core's thread could not be moved");
    }
    if let Some(Err(error)) = slice.map(|slice| set_slice(tid, slice)) {
        tracing::debug!(tid, ?slice, %error, "ixcp: a core's thread's slice was not set");
    }
}

fn core_entry((index, core): (usize, &ManagedCore)) -> CoreEntry {
    CoreEntry {
        core: index as u16,
        mode: core.state.mode,
        cpu: core.cpu.map(|cpu| cpu as u16),
        load_permille: (core.load * 1000.0).round() as u16,
        sample: core.last,
        to_polling: core.to_polling,
        to_blocking: core.to_blocking,
        self_polls_kept: core.self_polls_kept,
        self_polls_ended: core.self_polls_ended,
    }
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
