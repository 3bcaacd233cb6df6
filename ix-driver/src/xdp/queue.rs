//! One AF_XDP queue owned by one core: frames lent to the kernel through the
//! fill ring come back on the receive ring as `PacketBuf`s with no copy, and
//! frames to send go out by their place in the same region until completed.

use std::os::fd::{BorrowedFd, OwnedFd};
use std::sync::Arc;

use super::device::{Attachment, XdpQueueSource};
use super::socket::{Kick, SocketParams, XdpSocket, XdpSocketStats};
use crate::error::DriverError;
use crate::frame_table::FrameTable;
use crate::pool::{FRAME_STRIDE_BYTES, PacketBuf, PacketPool, TxBuf};
use crate::queue::{ETHERNET_HEADER_BYTES, NetQueue, QueueStats};

/// Descriptors per ring at most (fill, completion, receive, transmit). A
/// larger pool buys a deeper receive ring, up to this: 16,384 descriptors
/// (a 131,072-frame pool, 512 MiB of UMEM) absorb about 100 ms of SYNs at
/// 150k/s, a host's stall of the core. The rings themselves cost 24 bytes
/// per descriptor (16 for receive and transmit, 8 for fill and completion).
const RING_DESCS_MAX: u32 = 16_384;
/// Descriptors per ring at least.
const RING_DESCS_MIN: u32 = 64;
/// Pool frames per ring descriptor. Frames on the fill and receive rings, and
/// those on the transmit and completion rings, are at most twice the ring size
/// each: a quarter of the pool each, so the kernel never holds more than half.
const POOL_FRAMES_PER_DESC: u32 = 8;
/// The fill ring is topped up once this many slots are free (IX replenished
/// receive descriptors at least 32 at a time).
const FILL_BATCH_MIN: u32 = 32;
/// `sendto` calls per transmit burst at most; copy mode sends a bounded number
/// of frames per call.
const TX_KICKS_MAX: u32 = 16;

/// An AF_XDP queue: the socket, the core's pool registered as its UMEM, and
/// the frames the kernel holds.
///
/// The socket is declared first so it closes (and the kernel stops writing
/// into lent frames) before the frames return to the pool.
#[derive(Debug)]
pub struct XdpQueue {
    socket: XdpSocket,
    /// Frames on the fill or receive ring, by frame index: the kernel may
    /// write into them, so no handle on them is handed out.
    lent: FrameTable<TxBuf>,
    /// Frames on the transmit or completion ring, by frame index.
    in_flight: FrameTable<PacketBuf>,
    pool: PacketPool,
    /// The steering program this process attached, kept attached while the
    /// queue lives; `None` for a queue `ixcp` made and handed over.
    attachment: Option<Arc<Attachment>>,
    /// For a queue `ixcp` made: the control connection, whose closing (when
    /// the last queue of the dataplane goes) releases the grant.
    _lease: Option<Arc<OwnedFd>>,
    mac: [u8; 6],
    index: u16,
    max_frame_len: usize,
    /// Whether each receive burst busy-polls the device (a `recvfrom` that
    /// runs its receive poll in this thread) before reading the ring.
    busy_poll: bool,
    stats: QueueStats,
}

impl XdpQueue {
    /// Builds the queue on the thread that will own it: registers `pool`'s
    /// region as the UMEM, stocks the fill ring, binds the socket to the queue
    /// (zero-copy or copy as configured, retrying while the queue is busy) and
    /// enters it in the program's socket map.
    ///
    /// # Errors
    /// [`DriverError::Config`] for a pool too small for the rings;
    /// [`DriverError::Privilege`], [`DriverError::XdpUnsupported`] or
    /// [`DriverError::Os`] when the socket cannot be made or bound.
    pub fn new(source: XdpQueueSource, pool: PacketPool) -> Result<Self, DriverError> {
        let attachment = source.attachment;
        let frames = pool.capacity();
        let ring_size = ring_size_for(frames)?;
        let params = SocketParams {
            iface: &attachment.iface,
            ifindex: attachment.ifindex,
            queue: u32::from(source.index),
            umem: pool.region().rw_base().as_ptr(),
            umem_len: umem_bytes(frames),
            ring_size,
        };
        let mut lent = FrameTable::new(frames);
        let mut stats = QueueStats::default();
        let socket = XdpSocket::open(&params, attachment.bind, &mut |socket| {
            // A socket that failed to bind never saw these frames.
            lent.clear();
            refill(socket, &mut lent, &pool, &mut stats);
        })?;
        if let Some(busy_poll) = attachment.busy_poll {
            socket.set_busy_poll(busy_poll)?;
        }
        attachment.register_socket(source.index, socket.fd())?;
        tracing::info!(
            iface = %attachment.iface,
            queue = source.index,
            zero_copy = socket.is_zero_copy(),
            ring_size,
            huge_pages = pool.region().is_huge(),
            busy_poll = ?attachment.busy_poll,
            "AF_XDP queue bound"
        );
        Ok(Self {
            socket,
            lent,
            in_flight: FrameTable::new(frames),
            max_frame_len: attachment.mtu as usize + ETHERNET_HEADER_BYTES,
            busy_poll: attachment.busy_poll.is_some(),
            pool,
            mac: attachment.mac,
            attachment: Some(attachment),
            _lease: None,
            index: source.index,
            stats,
        })
    }

    /// Builds a queue from a socket another process (`ixcp`) made and bound
    /// over `pool`'s region: maps its rings and stocks the fill ring. Needs
    /// no privilege. `mac` and `mtu` are the interface's.
    ///
    /// # Errors
    /// [`DriverError::Config`] for a pool too small for the rings;
    /// [`DriverError::Os`] when the rings cannot be mapped.
    pub(crate) fn from_bound_socket(
        fd: OwnedFd,
        pool: PacketPool,
        index: u16,
        (mac, mtu): ([u8; 6], u32),
        lease: Arc<OwnedFd>,
    ) -> Result<Self, DriverError> {
        let frames = pool.capacity();
        let mut socket = XdpSocket::map_rings(fd, ring_size_for(frames)?, false)?;
        let mut lent = FrameTable::new(frames);
        let mut stats = QueueStats::default();
        refill(&mut socket, &mut lent, &pool, &mut stats);
        Ok(Self {
            socket,
            lent,
            in_flight: FrameTable::new(frames),
            max_frame_len: mtu as usize + ETHERNET_HEADER_BYTES,
            busy_poll: false,
            pool,
            attachment: None,
            _lease: Some(lease),
            mac,
            index,
            stats,
        })
    }

    /// The attached program when it steers by port on an address shared with
    /// the kernel (and so needs to hear of the dataplane's ARP requests).
    fn shared_address_program(&self) -> Option<&Attachment> {
        self.attachment.as_deref().filter(|attachment| attachment.shared_address)
    }

    /// Whether the socket is bound zero-copy.
    pub fn is_zero_copy(&self) -> bool {
        self.socket.is_zero_copy()
    }

    /// The kernel's counters for this queue's socket (frames it dropped for
    /// a full receive ring or an empty fill ring, invalid descriptors).
    ///
    /// # Errors
    /// [`DriverError::Os`] when the kernel does not answer.
    pub fn kernel_stats(&self) -> Result<XdpSocketStats, DriverError> {
        self.socket.kernel_stats()
    }

    /// Turns one receive descriptor into a frame for `batch`, or drops it
    /// (counted) when it is not a frame this queue lent or not a sane length.
    fn take_received(&mut self, desc: libc::xdp_desc, batch: &mut Vec<PacketBuf>) -> bool {
        let Some(mut buf) = self.lent.take_at(desc.addr) else {
            self.stats.rx_drops += 1;
            tracing::warn!(queue = self.index, addr = desc.addr, "AF_XDP: received a frame that was not lent");
            return false;
        };
        let start = (desc.addr % u64::from(FRAME_STRIDE_BYTES)) as u32;
        let len = desc.len as usize;
        let end = start as usize + len;
        if end > FRAME_STRIDE_BYTES as usize || len > self.max_frame_len || len < ETHERNET_HEADER_BYTES {
            self.stats.rx_drops += 1;
            tracing::debug!(queue = self.index, start, len, "AF_XDP: frame of a bad length dropped");
            return false;
        }
        buf.set_window(start, end as u32);
        let frame = buf.freeze();
        if let Some(program) = self.shared_address_program() {
            if let Some(sender) = arp_sender_of_reply(&frame) {
                program.arp_reply_seen(sender);
            }
        }
        self.stats.rx_packets += 1;
        self.stats.rx_bytes += len as u64;
        batch.push(frame);
        true
    }

    /// Returns completed transmit frames to the pool.
    fn reclaim_completed(&mut self) {
        let done = self.socket.completion.available(u32::MAX);
        for i in 0..done {
            let addr = self.socket.completion.get(i);
            if self.in_flight.take_at(addr).is_none() {
                tracing::warn!(queue = self.index, addr, "AF_XDP: completion for a frame not in flight");
            }
        }
        if done > 0 {
            self.socket.completion.release(done);
        }
    }

    /// Asks the kernel to send what the transmit ring holds, as often as it
    /// wants (bounded).
    fn kick_tx(&mut self) {
        if self.socket.is_zero_copy() && !self.socket.tx.needs_wakeup() {
            return;
        }
        for _ in 0..TX_KICKS_MAX {
            match self.socket.kick_tx() {
                Ok(Kick::Done) | Ok(Kick::Busy) => return,
                Ok(Kick::Again) => {}
                Err(error) => {
                    tracing::debug!(queue = self.index, %error, "AF_XDP: sendto failed");
                    return;
                }
            }
            if self.socket.tx.outstanding() == 0 {
                return;
            }
        }
    }

    /// The frame to transmit for `frame`: itself when it lies in this queue's
    /// UMEM and is not already in flight, else a copy in a fresh frame.
    fn transmittable(&mut self, frame: &PacketBuf) -> Option<PacketBuf> {
        if self.pool.same_pool(frame) && self.in_flight.is_free(frame.frame_index()) {
            return Some(frame.clone());
        }
        let mut copy = self.pool.alloc().ok()?;
        copy.extend_from_slice(frame).ok()?;
        Some(copy.freeze())
    }
}

/// Descriptors per ring for a pool of `frames` (a power of two).
///
/// # Errors
/// [`DriverError::Config`] for a pool too small for the smallest rings.
pub(crate) fn ring_size_for(frames: u32) -> Result<u32, DriverError> {
    let ring_size = (frames / POOL_FRAMES_PER_DESC).min(RING_DESCS_MAX);
    if ring_size < RING_DESCS_MIN {
        return Err(DriverError::Config(format!(
            "an AF_XDP queue needs a pool of at least {} frames, not {frames}",
            POOL_FRAMES_PER_DESC * RING_DESCS_MIN
        )));
    }
    Ok(1 << ring_size.ilog2())
}

/// Bytes of UMEM a pool of `frames` frames registers.
pub(crate) fn umem_bytes(frames: u32) -> usize {
    frames as usize * FRAME_STRIDE_BYTES as usize
}

/// Tops up the fill ring once at least [`FILL_BATCH_MIN`] slots are free. It
/// takes only as many frames from the pool as the ring has room for, so every
/// frame taken is accepted and none is left over; a pool running dry is
/// counted in `pool_exhausted`.
fn refill(socket: &mut XdpSocket, lent: &mut FrameTable<TxBuf>, pool: &PacketPool, stats: &mut QueueStats) {
    let room = socket.fill.free_now();
    if room < FILL_BATCH_MIN {
        return;
    }
    let mut pushed = 0;
    for _ in 0..room {
        let Ok(buf) = pool.alloc() else {
            stats.pool_exhausted += 1;
            break;
        };
        let index = buf.frame_index();
        socket.fill.push(u64::from(index) * u64::from(FRAME_STRIDE_BYTES));
        lent.put(index, buf);
        pushed += 1;
    }
    if pushed > 0 {
        socket.fill.submit();
        if socket.fill.needs_wakeup() {
            socket.kick_rx();
        }
    }
}

impl NetQueue for XdpQueue {
    /// Takes up to `max` frames off the receive ring (no copy: each is the
    /// pool frame the kernel wrote), tops up the fill ring, and returns
    /// completed transmit frames to the pool. With busy polling it first runs
    /// the device's receive poll in this thread (one `recvfrom`).
    fn rx_burst(&mut self, batch: &mut Vec<PacketBuf>, max: usize) -> usize {
        self.reclaim_completed();
        if self.busy_poll {
            self.socket.kick_rx();
        }
        let ready = self.socket.rx.available(u32::try_from(max).unwrap_or(u32::MAX));
        let mut received = 0;
        for i in 0..ready {
            let desc = self.socket.rx.get(i);
            received += usize::from(self.take_received(desc, batch));
        }
        if ready > 0 {
            self.socket.rx.release(ready);
        }
        refill(&mut self.socket, &mut self.lent, &self.pool, &mut self.stats);
        if received == 0 {
            self.stats.empty_polls += 1;
            if self.socket.tx.outstanding() > 0 {
                self.kick_tx();
            }
        }
        received
    }

    /// Puts frames from the front of `batch` on the transmit ring by their
    /// place in the UMEM (a frame from elsewhere is copied into a fresh one)
    /// and kicks the kernel. A full ring, or a pool with no frame for a copy,
    /// ends the burst and leaves the rest in `batch`; an oversized or empty
    /// frame is taken and counted in `tx_drops`.
    fn tx_burst(&mut self, batch: &mut Vec<PacketBuf>) -> usize {
        self.reclaim_completed();
        let mut room = self.socket.tx.free_now();
        let mut taken = 0;
        let mut pushed = 0u32;
        for frame in batch.iter() {
            if frame.len() > self.max_frame_len || frame.is_empty() {
                self.stats.tx_drops += 1;
                taken += 1;
                continue;
            }
            if room == 0 {
                break;
            }
            let Some(frame) = self.transmittable(frame) else {
                self.stats.pool_exhausted += 1;
                break;
            };
            if let Some(program) = self.shared_address_program() {
                if let Some(target) = arp_target_of_request(&frame) {
                    program.expect_arp_reply(target);
                }
            }
            self.socket.tx.push(libc::xdp_desc {
                addr: frame.region_offset() as u64,
                len: frame.len() as u32,
                options: 0,
            });
            self.stats.tx_packets += 1;
            self.stats.tx_bytes += frame.len() as u64;
            self.in_flight.put(frame.frame_index(), frame);
            room -= 1;
            pushed += 1;
            taken += 1;
        }
        batch.drain(..taken);
        if pushed > 0 {
            self.socket.tx.submit();
            self.kick_tx();
        }
        taken
    }

    fn wait_fd(&self) -> Option<BorrowedFd<'_>> {
        Some(self.socket.fd())
    }

    fn pool(&self) -> &PacketPool {
        &self.pool
    }

    fn queue_index(&self) -> u16 {
        self.index
    }

    fn mac(&self) -> [u8; 6] {
        self.mac
    }

    fn max_frame_len(&self) -> usize {
        self.max_frame_len
    }

    fn stats(&self) -> QueueStats {
        self.stats
    }
}

/// EtherType ARP, ARP over Ethernet/IPv4, the operation; `None` for other
/// frames or a truncated one.
fn arp_operation(frame: &[u8]) -> Option<u16> {
    let arp = frame.get(14..42)?;
    if frame[12..14] != [0x08, 0x06] || arp[..6] != [0x00, 0x01, 0x08, 0x00, 6, 4] {
        return None;
    }
    Some(u16::from_be_bytes([arp[6], arp[7]]))
}

/// The target address of an outgoing ARP request.
fn arp_target_of_request(frame: &[u8]) -> Option<[u8; 4]> {
    (arp_operation(frame)? == 1).then(|| frame[38..42].try_into().expect("4 bytes"))
}

/// The sender address of a received ARP reply.
fn arp_sender_of_reply(frame: &[u8]) -> Option<[u8; 4]> {
    (arp_operation(frame)? == 2).then(|| frame[28..32].try_into().expect("4 bytes"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn arp(operation: u8, sender: [u8; 4], target: [u8; 4]) -> Vec<u8> {
        let mut frame = vec![0xff; 6];
        frame.extend_from_slice(&[2, 0, 0, 0, 0, 1, 0x08, 0x06]);
        frame.extend_from_slice(&[0, 1, 8, 0, 6, 4, 0, operation]);
        frame.extend_from_slice(&[2, 0, 0, 0, 0, 1]);
        frame.extend_from_slice(&sender);
        frame.extend_from_slice(&[0; 6]);
        frame.extend_from_slice(&target);
        frame
    }

    #[test]
    fn arp_requests_and_replies_are_told_apart() {
        let request = arp(1, [10, 77, 0, 1], [10, 77, 0, 2]);
        assert_eq!(arp_target_of_request(&request), Some([10, 77, 0, 2]));
        assert_eq!(arp_sender_of_reply(&request), None);
        let reply = arp(2, [10, 77, 0, 2], [10, 77, 0, 1]);
        assert_eq!(arp_sender_of_reply(&reply), Some([10, 77, 0, 2]));
        assert_eq!(arp_target_of_request(&reply), None);
    }

    #[test]
    fn truncated_or_foreign_frames_are_not_arp() {
        let request = arp(1, [10, 77, 0, 1], [10, 77, 0, 2]);
        assert_eq!(arp_operation(&request[..41]), None);
        let mut ipv4 = request.clone();
        ipv4[12..14].copy_from_slice(&[0x08, 0x00]);
        assert_eq!(arp_operation(&ipv4), None);
        let mut ipv6_arp = request;
        ipv6_arp[16] = 0x86;
        assert_eq!(arp_operation(&ipv6_arp), None);
    }

    #[test]
    fn rings_are_an_eighth_of_the_pool_rounded_down_to_a_power_of_two_within_bounds() {
        for (frames, ring) in [(512, 64), (8192, 1024), (12_000, 1024), (16_384, 2048), (65_536, 8192)] {
            assert_eq!(ring_size_for(frames).unwrap(), ring, "{frames} frames");
        }
        assert_eq!(ring_size_for(1 << 20).unwrap(), RING_DESCS_MAX, "a huge pool stops at the largest ring");
        assert!(matches!(ring_size_for(511), Err(DriverError::Config(_))), "too small a pool for the smallest rings");
    }
}
