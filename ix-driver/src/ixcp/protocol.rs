//! The admission protocol between `ixcp` and a dataplane: versioned, typed
//! messages of at most [`MESSAGE_BYTES_MAX`] bytes, one per `SOCK_SEQPACKET`
//! datagram, encoded and decoded here (decoding treats every byte as hostile).
//!
//! # Layout (all integers little-endian)
//! ```text
//! header  magic "IXCP" | version u16 | kind u16 | body length u32
//! Admit   (1)  address [4] | queues u16 | frames per queue u32 | max connections u32 | port count u16 | ports u16...
//! Grant   (2)  mac [6] | mtu u32 | queues u16 | frames per queue u32 | max connections u32 | port name length u8 | name
//!              + SCM_RIGHTS: per queue, its AF_XDP socket then its region's memfd; then the core board's memfd
//! Refusal (3)  code u16 | message length u16 | message (UTF-8)
//! List    (4)  (empty): the operator asks for the admitted dataplanes (root only)
//! Listing (5)  admitted u64 | refused u64 | malformed u64 | released u64 | to polling u64 | to blocking u64
//!              | threads refused u64 | self-polls kept u64 | self-polls ended u64 | count u16 | per dataplane:
//!              uid u32 | address [4] | interface (u8 length, name) | port name (u8 length, name)
//!              | frames per queue u32 | port count u16 | ports u16... | rx dropped u64 | rx ring full u64
//!              | rx fill ring empty u64 | tx invalid descriptors u64 | share u16 | max share u16
//!              | core count u16 (<= 8) | per core: core u16 | mode asked u8 | polling CPU u16 (0xffff: none)
//!              | load per mille u16 | mode in effect u8 | thread id, rounds, busy ns, batches, rx packets,
//!              tx packets, blocks, connections, drops, pool free, pool capacity, published, self-polls,
//!              to polling, to blocking, self-polls kept, self-polls ended: u64 each
//! SetShare (6) port name (u8 length, name) | share u16: the operator sets a dataplane's CPU share (root only)
//! ShareSet (7) port name (u8 length, name) | share u16: ixcp's answer when it did
//! ```

use std::net::Ipv4Addr;

use super::core_board::{CoreMode, CoreSample};

/// The protocol version this build speaks; a message of another version is
/// refused with [`RefusalCode::UnsupportedVersion`].
pub const PROTOCOL_VERSION: u16 = 3;
/// Largest message in bytes, header included (a listing of 64 dataplanes
/// with 64 ports and 8 cores each fits).
pub const MESSAGE_BYTES_MAX: usize = 128 * 1024;
/// Ports one request may ask for at most.
pub const REQUEST_PORTS_MAX: usize = 64;
/// Bytes of a refusal's message at most (longer ones are cut on encoding).
pub const REFUSAL_MESSAGE_BYTES_MAX: usize = 512;
const MAGIC: [u8; 4] = *b"IXCP";
const HEADER_BYTES: usize = 12;

const KIND_ADMIT: u16 = 1;
const KIND_GRANT: u16 = 2;
const KIND_REFUSAL: u16 = 3;
const KIND_LIST: u16 = 4;
const KIND_LISTING: u16 = 5;
const KIND_SET_SHARE: u16 = 6;
const KIND_SHARE_SET: u16 = 7;
/// Dataplanes one listing carries at most.
const LISTING_ENTRIES_MAX: usize = 64;
/// Cores of one dataplane a listing carries at most.
pub const LISTING_CORES_MAX: usize = 8;
/// The wire's "no polling CPU".
const NO_CPU: u16 = u16::MAX;

/// What a dataplane asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdmitRequest {
    /// The IPv4 address it serves on (shared with the kernel).
    pub addr: Ipv4Addr,
    /// The TCP and UDP ports to steer to it.
    pub ports: Vec<u16>,
    /// Queues (one per core).
    pub queues: u16,
    /// Frames of packet buffer per queue (its UMEM).
    pub frames_per_queue: u32,
    /// Connections it will hold at most.
    pub max_connections: u32,
}

/// What `ixcp` granted; the descriptors travel beside it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    /// The managed interface's MAC, the dataplane's own.
    pub mac: [u8; 6],
    /// The managed interface's MTU.
    pub mtu: u32,
    /// Queues granted (as many socket and memfd pairs follow).
    pub queues: u16,
    /// Frames per queue (each memfd holds this many 4 KiB frames).
    pub frames_per_queue: u32,
    /// Connections the dataplane may hold.
    pub max_connections: u32,
    /// The virtual port `ixcp` made for the dataplane (for messages).
    pub port_name: String,
}

/// Why a request was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u16)]
pub enum RefusalCode {
    /// The message could not be decoded (truncated, bad field, unknown kind).
    Malformed = 1,
    /// The message is of a protocol version this `ixcp` does not speak.
    UnsupportedVersion = 2,
    /// The configuration grants nothing to the caller's user.
    NotPermitted = 3,
    /// The address is not granted to the caller's user.
    AddressNotGranted = 4,
    /// A port is not granted to the caller's user.
    PortNotGranted = 5,
    /// A port is held by another dataplane.
    PortInUse = 6,
    /// Queues, frames or connections beyond the configured limits.
    OverLimit = 7,
    /// This connection already holds a grant.
    AlreadyAdmitted = 8,
    /// `ixcp` could not set the dataplane up (its log says why).
    Unavailable = 9,
    /// No admitted dataplane has that virtual port.
    NoSuchDataplane = 10,
}

impl RefusalCode {
    fn from_wire(code: u16) -> Option<Self> {
        use RefusalCode::*;
        [
            Malformed,
            UnsupportedVersion,
            NotPermitted,
            AddressNotGranted,
            PortNotGranted,
            PortInUse,
            OverLimit,
            AlreadyAdmitted,
            Unavailable,
            NoSuchDataplane,
        ]
        .into_iter()
        .find(|c| *c as u16 == code)
    }
}

/// A refusal: a code and a sentence for the operator.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("ixcp refused the request ({code:?}): {message}")]
pub struct Refusal {
    /// What kind of refusal.
    pub code: RefusalCode,
    /// What was wrong and what to do.
    pub message: String,
}

impl Refusal {
    /// A refusal with `code` and `message`.
    pub fn new(code: RefusalCode, message: impl Into<String>) -> Self {
        Self { code, message: message.into() }
    }
}

/// What the daemon counted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct DaemonStats {
    /// Dataplanes admitted.
    pub admitted: u64,
    /// Requests refused (malformed ones included).
    pub refused: u64,
    /// Messages that were not protocol messages.
    pub malformed: u64,
    /// Dataplanes released after their connection closed.
    pub released: u64,
    /// Decisions that gave a core a polling CPU.
    pub to_polling: u64,
    /// Decisions that sent a polling core back to blocking.
    pub to_blocking: u64,
    /// Thread ids on a core board that were not the dataplane's threads
    /// (ignored: that core is not moved).
    pub threads_refused: u64,
    /// Cores' switches to polling on their own that a decision kept (giving
    /// the core a polling CPU).
    pub self_polls_kept: u64,
    /// Cores' switches to polling on their own that a decision ended
    /// (sending the core back to blocking).
    pub self_polls_ended: u64,
}

/// One core of an admitted dataplane, as the operator sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize)]
pub struct CoreEntry {
    /// The core's index in its dataplane.
    pub core: u16,
    /// The mode `ixcp` asks of it.
    pub mode: CoreMode,
    /// The CPU it polls on, when it polls.
    pub cpu: Option<u16>,
    /// Its load over the last period, in thousandths.
    pub load_permille: u16,
    /// Its counters as it published them last.
    pub sample: CoreSample,
    /// Decisions that gave it a polling CPU.
    pub to_polling: u64,
    /// Decisions that sent it back to blocking.
    pub to_blocking: u64,
    /// Its switches to polling on its own that a decision kept.
    pub self_polls_kept: u64,
    /// Its switches to polling on its own that a decision ended.
    pub self_polls_ended: u64,
}

/// One admitted dataplane, as the operator sees it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct DataplaneEntry {
    /// Its unix user.
    pub uid: u32,
    /// Its address.
    pub addr: Ipv4Addr,
    /// The managed interface.
    pub interface: String,
    /// Its virtual port.
    pub port_name: String,
    /// Frames of its region.
    pub frames_per_queue: u32,
    /// Its TCP and UDP ports.
    pub ports: Vec<u16>,
    /// The kernel's counters of its AF_XDP socket: frames dropped for other
    /// reasons, for a full receive ring, for an empty fill ring; transmit
    /// descriptors refused.
    pub rx_dropped: u64,
    /// See `rx_dropped`.
    pub rx_ring_full: u64,
    /// See `rx_dropped`.
    pub rx_fill_ring_empty: u64,
    /// See `rx_dropped`.
    pub tx_invalid_descs: u64,
    /// CPUs it may poll on at once now (its share).
    pub share: u16,
    /// The largest share its grant allows.
    pub max_share: u16,
    /// Its cores (at most [`LISTING_CORES_MAX`]).
    pub cores: Vec<CoreEntry>,
}

/// The answer to [`Message::List`].
#[derive(Debug, Clone, PartialEq, Eq, Default, serde::Serialize)]
pub struct Listing {
    /// The daemon's counters.
    pub stats: DaemonStats,
    /// The admitted dataplanes.
    pub dataplanes: Vec<DataplaneEntry>,
}

/// A dataplane's CPU share: CPUs its cores may poll on at once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Share {
    /// The dataplane, by its virtual port's name (as listed).
    pub port_name: String,
    /// CPUs at most (0: its cores always block).
    pub share: u16,
}

/// One protocol message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    /// Dataplane to `ixcp`.
    Admit(AdmitRequest),
    /// `ixcp` to dataplane, with descriptors.
    Grant(Grant),
    /// `ixcp` to dataplane.
    Refusal(Refusal),
    /// Operator to `ixcp`.
    List,
    /// `ixcp` to operator.
    Listing(Listing),
    /// Operator to `ixcp`: set a dataplane's share.
    SetShare(Share),
    /// `ixcp` to operator: the share is set.
    ShareSet(Share),
}

/// Why bytes are not a message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProtocolError {
    /// Fewer bytes than the header or the body needs.
    #[error("truncated message: {needed} bytes needed, {got} received")]
    Truncated {
        /// Bytes the message needs.
        needed: usize,
        /// Bytes there were.
        got: usize,
    },
    /// More than [`MESSAGE_BYTES_MAX`] bytes.
    #[error("message larger than {MESSAGE_BYTES_MAX} bytes")]
    Oversized,
    /// The first four bytes are not `IXCP`.
    #[error("not an ixcp message (bad magic)")]
    BadMagic,
    /// Another protocol version.
    #[error("protocol version {0} is not spoken here (this build speaks {PROTOCOL_VERSION})")]
    UnsupportedVersion(u16),
    /// An unknown message kind.
    #[error("unknown message kind {0}")]
    UnknownKind(u16),
    /// The body is longer than its fields.
    #[error("{0} bytes after the last field")]
    TrailingBytes(usize),
    /// A field holds a value it may not.
    #[error("bad field: {0}")]
    BadField(&'static str),
}

impl ProtocolError {
    /// The refusal a daemon answers this error with.
    pub fn refusal(&self) -> Refusal {
        let code = match self {
            ProtocolError::UnsupportedVersion(_) => RefusalCode::UnsupportedVersion,
            _ => RefusalCode::Malformed,
        };
        Refusal::new(code, self.to_string())
    }
}

impl Message {
    /// The message's bytes.
    ///
    /// # Panics
    /// When a field does not fit the layout (more than [`REQUEST_PORTS_MAX`]
    /// ports, a port name over 255 bytes): a bug in the caller.
    pub fn encode(&self) -> Vec<u8> {
        let mut body = Vec::new();
        let kind = match self {
            Message::Admit(r) => {
                assert!(r.ports.len() <= REQUEST_PORTS_MAX, "at most {REQUEST_PORTS_MAX} ports per request");
                body.extend_from_slice(&r.addr.octets());
                body.extend_from_slice(&r.queues.to_le_bytes());
                body.extend_from_slice(&r.frames_per_queue.to_le_bytes());
                body.extend_from_slice(&r.max_connections.to_le_bytes());
                body.extend_from_slice(&(r.ports.len() as u16).to_le_bytes());
                r.ports.iter().for_each(|p| body.extend_from_slice(&p.to_le_bytes()));
                KIND_ADMIT
            }
            Message::Grant(g) => {
                body.extend_from_slice(&g.mac);
                body.extend_from_slice(&g.mtu.to_le_bytes());
                body.extend_from_slice(&g.queues.to_le_bytes());
                body.extend_from_slice(&g.frames_per_queue.to_le_bytes());
                body.extend_from_slice(&g.max_connections.to_le_bytes());
                put_name(&mut body, &g.port_name);
                KIND_GRANT
            }
            Message::Refusal(r) => {
                let mut end = r.message.len().min(REFUSAL_MESSAGE_BYTES_MAX);
                while !r.message.is_char_boundary(end) {
                    end -= 1;
                }
                body.extend_from_slice(&(r.code as u16).to_le_bytes());
                body.extend_from_slice(&(end as u16).to_le_bytes());
                body.extend_from_slice(&r.message.as_bytes()[..end]);
                KIND_REFUSAL
            }
            Message::List => KIND_LIST,
            Message::Listing(listing) => {
                encode_listing(listing, &mut body);
                KIND_LISTING
            }
            Message::SetShare(share) | Message::ShareSet(share) => {
                put_name(&mut body, &share.port_name);
                body.extend_from_slice(&share.share.to_le_bytes());
                if matches!(self, Message::SetShare(_)) { KIND_SET_SHARE } else { KIND_SHARE_SET }
            }
        };
        let mut bytes = Vec::with_capacity(HEADER_BYTES + body.len());
        bytes.extend_from_slice(&MAGIC);
        bytes.extend_from_slice(&PROTOCOL_VERSION.to_le_bytes());
        bytes.extend_from_slice(&kind.to_le_bytes());
        bytes.extend_from_slice(&(body.len() as u32).to_le_bytes());
        bytes.extend_from_slice(&body);
        bytes
    }

    /// Decodes one message.
    ///
    /// # Errors
    /// A [`ProtocolError`] saying what is wrong; never panics on any input.
    pub fn decode(bytes: &[u8]) -> Result<Message, ProtocolError> {
        if bytes.len() > MESSAGE_BYTES_MAX {
            return Err(ProtocolError::Oversized);
        }
        let mut header = Reader { bytes, at: 0 };
        if header.take(4)? != MAGIC {
            return Err(ProtocolError::BadMagic);
        }
        let version = header.u16()?;
        if version != PROTOCOL_VERSION {
            return Err(ProtocolError::UnsupportedVersion(version));
        }
        let kind = header.u16()?;
        let body_len = header.u32()? as usize;
        let body = header.take(body_len)?;
        if header.at != bytes.len() {
            return Err(ProtocolError::TrailingBytes(bytes.len() - header.at));
        }
        let mut r = Reader { bytes: body, at: 0 };
        let message = match kind {
            KIND_ADMIT => {
                let addr = Ipv4Addr::from(<[u8; 4]>::try_from(r.take(4)?).expect("4 bytes"));
                let queues = r.u16()?;
                let frames_per_queue = r.u32()?;
                let max_connections = r.u32()?;
                let count = usize::from(r.u16()?);
                if count > REQUEST_PORTS_MAX {
                    return Err(ProtocolError::BadField("more than 64 ports"));
                }
                let ports = (0..count).map(|_| r.u16()).collect::<Result<Vec<_>, _>>()?;
                Message::Admit(AdmitRequest { addr, ports, queues, frames_per_queue, max_connections })
            }
            KIND_GRANT => {
                let mac = <[u8; 6]>::try_from(r.take(6)?).expect("6 bytes");
                let mtu = r.u32()?;
                let queues = r.u16()?;
                let frames_per_queue = r.u32()?;
                let max_connections = r.u32()?;
                let port_name = r.name()?;
                Message::Grant(Grant { mac, mtu, queues, frames_per_queue, max_connections, port_name })
            }
            KIND_REFUSAL => {
                let code = RefusalCode::from_wire(r.u16()?).ok_or(ProtocolError::BadField("unknown refusal code"))?;
                let len = usize::from(r.u16()?);
                let message = String::from_utf8_lossy(r.take(len)?).into_owned();
                Message::Refusal(Refusal { code, message })
            }
            KIND_LIST => Message::List,
            KIND_LISTING => Message::Listing(decode_listing(&mut r)?),
            KIND_SET_SHARE => Message::SetShare(Share { port_name: r.name()?, share: r.u16()? }),
            KIND_SHARE_SET => Message::ShareSet(Share { port_name: r.name()?, share: r.u16()? }),
            other => return Err(ProtocolError::UnknownKind(other)),
        };
        if r.at != body.len() {
            return Err(ProtocolError::TrailingBytes(body.len() - r.at));
        }
        Ok(message)
    }
}

fn put_name(body: &mut Vec<u8>, name: &str) {
    let len = name.len().min(usize::from(u8::MAX));
    body.push(len as u8);
    body.extend_from_slice(&name.as_bytes()[..len]);
}

fn encode_listing(listing: &Listing, body: &mut Vec<u8>) {
    let stats = listing.stats;
    for value in [
        stats.admitted,
        stats.refused,
        stats.malformed,
        stats.released,
        stats.to_polling,
        stats.to_blocking,
        stats.threads_refused,
        stats.self_polls_kept,
        stats.self_polls_ended,
    ] {
        body.extend_from_slice(&value.to_le_bytes());
    }
    let entries = &listing.dataplanes[..listing.dataplanes.len().min(LISTING_ENTRIES_MAX)];
    body.extend_from_slice(&(entries.len() as u16).to_le_bytes());
    for d in entries {
        body.extend_from_slice(&d.uid.to_le_bytes());
        body.extend_from_slice(&d.addr.octets());
        put_name(body, &d.interface);
        put_name(body, &d.port_name);
        body.extend_from_slice(&d.frames_per_queue.to_le_bytes());
        let ports = &d.ports[..d.ports.len().min(REQUEST_PORTS_MAX)];
        body.extend_from_slice(&(ports.len() as u16).to_le_bytes());
        ports.iter().for_each(|p| body.extend_from_slice(&p.to_le_bytes()));
        for value in [d.rx_dropped, d.rx_ring_full, d.rx_fill_ring_empty, d.tx_invalid_descs] {
            body.extend_from_slice(&value.to_le_bytes());
        }
        body.extend_from_slice(&d.share.to_le_bytes());
        body.extend_from_slice(&d.max_share.to_le_bytes());
        let cores = &d.cores[..d.cores.len().min(LISTING_CORES_MAX)];
        body.extend_from_slice(&(cores.len() as u16).to_le_bytes());
        cores.iter().for_each(|c| encode_core(c, body));
    }
}

fn encode_core(c: &CoreEntry, body: &mut Vec<u8>) {
    body.extend_from_slice(&c.core.to_le_bytes());
    body.push(c.mode.word() as u8);
    body.extend_from_slice(&c.cpu.unwrap_or(NO_CPU).to_le_bytes());
    body.extend_from_slice(&c.load_permille.to_le_bytes());
    body.push(c.sample.mode_in_effect.word() as u8);
    let s = &c.sample;
    for value in [
        s.thread_id,
        s.rounds,
        s.busy_ns,
        s.batches,
        s.rx_packets,
        s.tx_packets,
        s.blocks,
        s.connections,
        s.drops,
        s.pool_free,
        s.pool_capacity,
        s.published,
        s.self_polls,
        c.to_polling,
        c.to_blocking,
        c.self_polls_kept,
        c.self_polls_ended,
    ] {
        body.extend_from_slice(&value.to_le_bytes());
    }
}

fn decode_mode(r: &mut Reader<'_>) -> Result<CoreMode, ProtocolError> {
    match r.take(1)?[0] {
        0 => Ok(CoreMode::Block),
        1 => Ok(CoreMode::BusyPoll),
        _ => Err(ProtocolError::BadField("unknown core mode")),
    }
}

fn decode_core(r: &mut Reader<'_>) -> Result<CoreEntry, ProtocolError> {
    let core = r.u16()?;
    let mode = decode_mode(r)?;
    let cpu = Some(r.u16()?).filter(|&cpu| cpu != NO_CPU);
    let load_permille = r.u16()?;
    if load_permille > 1000 {
        return Err(ProtocolError::BadField("a load above 1000 per mille"));
    }
    let mode_in_effect = decode_mode(r)?;
    let sample = CoreSample {
        thread_id: r.u64()?,
        mode_in_effect,
        rounds: r.u64()?,
        busy_ns: r.u64()?,
        batches: r.u64()?,
        rx_packets: r.u64()?,
        tx_packets: r.u64()?,
        blocks: r.u64()?,
        connections: r.u64()?,
        drops: r.u64()?,
        pool_free: r.u64()?,
        pool_capacity: r.u64()?,
        published: r.u64()?,
        self_polls: r.u64()?,
    };
    Ok(CoreEntry {
        core,
        mode,
        cpu,
        load_permille,
        sample,
        to_polling: r.u64()?,
        to_blocking: r.u64()?,
        self_polls_kept: r.u64()?,
        self_polls_ended: r.u64()?,
    })
}

fn decode_listing(r: &mut Reader<'_>) -> Result<Listing, ProtocolError> {
    let stats = DaemonStats {
        admitted: r.u64()?,
        refused: r.u64()?,
        malformed: r.u64()?,
        released: r.u64()?,
        to_polling: r.u64()?,
        to_blocking: r.u64()?,
        threads_refused: r.u64()?,
        self_polls_kept: r.u64()?,
        self_polls_ended: r.u64()?,
    };
    let count = usize::from(r.u16()?);
    if count > LISTING_ENTRIES_MAX {
        return Err(ProtocolError::BadField("more than 64 dataplanes listed"));
    }
    let mut dataplanes = Vec::with_capacity(count);
    for _ in 0..count {
        let uid = r.u32()?;
        let addr = Ipv4Addr::from(<[u8; 4]>::try_from(r.take(4)?).expect("4 bytes"));
        let interface = r.name()?;
        let port_name = r.name()?;
        let frames_per_queue = r.u32()?;
        let port_count = usize::from(r.u16()?);
        if port_count > REQUEST_PORTS_MAX {
            return Err(ProtocolError::BadField("more than 64 ports"));
        }
        let ports = (0..port_count).map(|_| r.u16()).collect::<Result<Vec<_>, _>>()?;
        let (rx_dropped, rx_ring_full, rx_fill_ring_empty, tx_invalid_descs) = (r.u64()?, r.u64()?, r.u64()?, r.u64()?);
        let (share, max_share) = (r.u16()?, r.u16()?);
        let core_count = usize::from(r.u16()?);
        if core_count > LISTING_CORES_MAX {
            return Err(ProtocolError::BadField("more than 8 cores listed"));
        }
        let cores = (0..core_count).map(|_| decode_core(r)).collect::<Result<Vec<_>, _>>()?;
        dataplanes.push(DataplaneEntry {
            uid,
            addr,
            interface,
            port_name,
            frames_per_queue,
            ports,
            rx_dropped,
            rx_ring_full,
            rx_fill_ring_empty,
            tx_invalid_descs,
            share,
            max_share,
            cores,
        });
    }
    Ok(Listing { stats, dataplanes })
}

/// A cursor over untrusted bytes.
struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], ProtocolError> {
        let end = self.at.checked_add(n).filter(|&end| end <= self.bytes.len());
        let end = end.ok_or(ProtocolError::Truncated { needed: self.at.saturating_add(n), got: self.bytes.len() })?;
        let slice = &self.bytes[self.at..end];
        self.at = end;
        Ok(slice)
    }

    fn u16(&mut self) -> Result<u16, ProtocolError> {
        Ok(u16::from_le_bytes(self.take(2)?.try_into().expect("2 bytes")))
    }

    fn u32(&mut self) -> Result<u32, ProtocolError> {
        Ok(u32::from_le_bytes(self.take(4)?.try_into().expect("4 bytes")))
    }

    fn u64(&mut self) -> Result<u64, ProtocolError> {
        Ok(u64::from_le_bytes(self.take(8)?.try_into().expect("8 bytes")))
    }

    /// A name: a length byte and that many bytes of UTF-8.
    fn name(&mut self) -> Result<String, ProtocolError> {
        let len = usize::from(self.take(1)?[0]);
        let bytes = self.take(len)?;
        Ok(std::str::from_utf8(bytes).map_err(|_| ProtocolError::BadField("a name is not UTF-8"))?.to_owned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn request() -> AdmitRequest {
        AdmitRequest {
            addr: Ipv4Addr::new(10, 77, 0, 1),
            ports: vec![8080, 11211],
            queues: 1,
            frames_per_queue: 4096,
            max_connections: 1000,
        }
    }

    #[test]
    fn every_kind_survives_a_round_trip() {
        let grant = Grant {
            mac: [2, 0, 0, 0, 0, 9],
            mtu: 1500,
            queues: 1,
            frames_per_queue: 4096,
            max_connections: 1000,
            port_name: "ixdp3".into(),
        };
        for message in [
            Message::Admit(request()),
            Message::Grant(grant),
            Message::Refusal(Refusal::new(RefusalCode::PortNotGranted, "port 22 is not granted to uid 65534")),
            Message::List,
            Message::Listing(Listing {
                stats: DaemonStats {
                    admitted: 3,
                    refused: 2,
                    malformed: 1,
                    released: 1,
                    to_polling: 5,
                    to_blocking: 4,
                    threads_refused: 1,
                    self_polls_kept: 6,
                    self_polls_ended: 7,
                },
                dataplanes: vec![DataplaneEntry {
                    uid: 33,
                    addr: Ipv4Addr::new(10, 0, 0, 1),
                    interface: "eth0".into(),
                    port_name: "ixdp0".into(),
                    frames_per_queue: 4096,
                    ports: vec![80, 443],
                    rx_dropped: 1,
                    rx_ring_full: 2,
                    rx_fill_ring_empty: 3,
                    tx_invalid_descs: 4,
                    share: 1,
                    max_share: 2,
                    cores: vec![CoreEntry {
                        core: 0,
                        mode: CoreMode::BusyPoll,
                        cpu: Some(1),
                        load_permille: 420,
                        sample: CoreSample {
                            thread_id: 99,
                            rx_packets: 7,
                            pool_capacity: 4096,
                            self_polls: 5,
                            ..Default::default()
                        },
                        to_polling: 2,
                        to_blocking: 1,
                        self_polls_kept: 3,
                        self_polls_ended: 2,
                    }],
                }],
            }),
            Message::SetShare(Share { port_name: "ixdp0".into(), share: 0 }),
            Message::ShareSet(Share { port_name: "ixdp0".into(), share: 1 }),
        ] {
            assert_eq!(Message::decode(&message.encode()), Ok(message));
        }
    }

    #[test]
    fn every_truncation_is_an_error() {
        let bytes = Message::Admit(request()).encode();
        for len in 0..bytes.len() {
            assert!(Message::decode(&bytes[..len]).is_err(), "{len} bytes decoded");
        }
    }

    #[test]
    fn foreign_bytes_are_named() {
        let mut bytes = Message::Admit(request()).encode();
        bytes[0] = b'X';
        assert_eq!(Message::decode(&bytes), Err(ProtocolError::BadMagic));
        let mut bytes = Message::Admit(request()).encode();
        bytes[4] = 9;
        assert_eq!(Message::decode(&bytes), Err(ProtocolError::UnsupportedVersion(9)));
        assert_eq!(ProtocolError::UnsupportedVersion(9).refusal().code, RefusalCode::UnsupportedVersion);
        let mut bytes = Message::Admit(request()).encode();
        bytes[6] = 77;
        assert_eq!(Message::decode(&bytes), Err(ProtocolError::UnknownKind(77)));
        let mut bytes = Message::Admit(request()).encode();
        bytes.push(0);
        assert_eq!(Message::decode(&bytes), Err(ProtocolError::TrailingBytes(1)));
        assert_eq!(Message::decode(&vec![0; MESSAGE_BYTES_MAX + 1]), Err(ProtocolError::Oversized));
    }

    #[test]
    fn a_body_longer_than_its_fields_is_refused() {
        let mut bytes = Message::Admit(request()).encode();
        bytes.extend_from_slice(&[0, 0]);
        let body_len = u32::from_le_bytes(bytes[8..12].try_into().unwrap()) + 2;
        bytes[8..12].copy_from_slice(&body_len.to_le_bytes());
        assert_eq!(Message::decode(&bytes), Err(ProtocolError::TrailingBytes(2)));
    }

    #[test]
    fn long_refusals_are_cut_on_a_character_boundary() {
        let message = "é".repeat(400);
        let bytes = Message::Refusal(Refusal::new(RefusalCode::Unavailable, message)).encode();
        let Ok(Message::Refusal(refusal)) = Message::decode(&bytes) else { panic!("not a refusal") };
        assert_eq!(refusal.message.len(), 512);
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = Message::decode(&bytes);
        }

        #[test]
        fn arbitrary_bodies_behind_a_good_header_never_panic(
            kind in 1u16..8,
            body in proptest::collection::vec(any::<u8>(), 0..100),
        ) {
            let mut bytes = MAGIC.to_vec();
            bytes.extend_from_slice(&PROTOCOL_VERSION.to_le_bytes());
            bytes.extend_from_slice(&kind.to_le_bytes());
            bytes.extend_from_slice(&(body.len() as u32).to_le_bytes());
            bytes.extend_from_slice(&body);
            let _ = Message::decode(&bytes);
        }
    }
}
