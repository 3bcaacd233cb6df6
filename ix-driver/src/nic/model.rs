//! Tests of the descriptor rings and the queue set-up of both families against
//! a small in-memory model: a register file, and a device that fills receive
//! descriptors and consumes transmit descriptors as the 82576 and 82599 do.

use super::family::{Family, enable_ring, program_rss};
use super::igb::Igb;
use super::ixgbe::Ixgbe;
use super::model_registers::ModelRegisters;
use super::regs::{QUEUE_ENABLE, Registers};
use super::ring::{DescriptorRing, RX_BUFFER_BYTES, RX_REPLENISH_MIN_DESCS, RxRing, TxRing};
use crate::pool::{PacketBuf, PacketPool, PoolConfig};
use crate::queue::QueueStats;
use crate::region::HugePages;
use crate::rss::{RSS_DEFAULT_KEY, RedirectionTable};

const FAMILIES: [&dyn Family; 2] = [&Igb, &Ixgbe];
/// Descriptors of the test rings: small, so tests wrap around often.
const DESCS: u16 = 64;
/// Where the model's pool region starts in the device's address space.
const POOL_IOVA: u64 = 0x8000_0000;
const MAX_FRAME: usize = 1514;

/// The device side of one queue.
struct ModelDevice {
    family: &'static dyn Family,
    queue: u16,
    regs: ModelRegisters,
    rx_head: u16,
    tx_head: u16,
    /// Frames the device had no descriptor for (its missed-packet counter).
    missed: u64,
}

impl ModelDevice {
    fn new(family: &'static dyn Family, queue: u16) -> Self {
        Self { family, queue, regs: ModelRegisters::default(), rx_head: 0, tx_head: 0, missed: 0 }
    }

    fn rx_tail(&self) -> u16 {
        self.regs.read(self.family.rx_ring(self.queue).tail) as u16
    }

    fn tx_tail(&self) -> u16 {
        self.regs.read(self.family.tx_ring(self.queue).tail) as u16
    }

    /// DMA: the pool bytes at `iova`.
    fn dma(pool: &PacketPool, iova: u64, len: usize) -> *mut u8 {
        let offset = iova.checked_sub(POOL_IOVA).expect("DMA below the pool's window") as usize;
        assert!(offset + len <= pool.region().len(), "DMA past the pool's region");
        // SAFETY: in bounds (checked above); the test is single-threaded and the
        // frame is lent to the device (no Rust reference to its bytes exists).
        unsafe { pool.region().rw_base().as_ptr().add(offset) }
    }

    /// Receives `frame` from the wire: writes it into the descriptors from the
    /// head (several if it is longer than a buffer) and writes them back.
    /// Returns false when the ring had too few descriptors (the frame is missed).
    fn deliver(&mut self, ring: &DescriptorRing, pool: &PacketPool, frame: &[u8]) -> bool {
        let pieces: Vec<&[u8]> = frame.chunks(RX_BUFFER_BYTES as usize).collect();
        let available = (self.rx_tail() + DESCS - self.rx_head) % DESCS;
        if usize::from(available) < pieces.len() {
            self.missed += 1;
            return false;
        }
        for (i, piece) in pieces.iter().enumerate() {
            let buffer = ring.read(self.rx_head, 0);
            let target = Self::dma(pool, buffer, piece.len());
            // SAFETY: `target..target + len` lies in the pool's region (see `dma`).
            unsafe { std::ptr::copy_nonoverlapping(piece.as_ptr(), target, piece.len()) };
            let eop = if i + 1 == pieces.len() { 0b10 } else { 0 };
            ring.write(self.rx_head, 0, 0b01 | eop | ((piece.len() as u64) << 32));
            self.rx_head = (self.rx_head + 1) % DESCS;
        }
        true
    }

    /// Sends what the transmit ring holds up to the tail; returns the frames.
    fn drain_tx(&mut self, ring: &DescriptorRing, pool: &PacketPool) -> Vec<Vec<u8>> {
        let mut sent = Vec::new();
        while self.tx_head != self.tx_tail() {
            let address = ring.read(self.tx_head, 0);
            let high = ring.read(self.tx_head, 1);
            let command = high as u32;
            assert_eq!(command & (0b1111 << 20), 0b0011 << 20, "advanced data descriptor");
            assert_ne!(command & (1 << 29), 0, "DEXT");
            assert_ne!(command & (1 << 24), 0, "one descriptor per frame: EOP");
            assert_ne!(command & (1 << 27), 0, "RS: the driver reclaims by DD");
            let len = (command & 0xffff) as usize;
            assert_eq!((high >> 32) as usize >> 14, len, "PAYLEN");
            let source = Self::dma(pool, address, len);
            // SAFETY: in the pool's region (see `dma`); the frame is in flight,
            // so nothing writes it.
            sent.push(unsafe { std::slice::from_raw_parts(source, len) }.to_vec());
            ring.write(self.tx_head, 0, 1 << 32);
            self.tx_head = (self.tx_head + 1) % DESCS;
        }
        sent
    }
}

fn pool(frames: u32) -> PacketPool {
    PacketPool::new(PoolConfig { frames, huge_pages: HugePages::Never }).unwrap()
}

fn frame(seq: u32, len: usize) -> Vec<u8> {
    (0..len).map(|i| (seq as usize * 31 + i) as u8).collect()
}

fn rx_setup(family: &'static dyn Family) -> (ModelDevice, RxRing, PacketPool, QueueStats) {
    let device = ModelDevice::new(family, 1);
    let ring = RxRing::new(DescriptorRing::new(DESCS).unwrap(), family.rx_ring(1).tail, POOL_IOVA);
    (device, ring, pool(512), QueueStats::default())
}

#[test]
fn receive_wraps_around_the_ring_with_every_byte_intact() {
    for family in FAMILIES {
        let (mut device, mut rx, pool, mut stats) = rx_setup(family);
        rx.replenish(&device.regs, &pool, &mut stats);
        assert_eq!(rx.posted(), DESCS - 1, "{}: one descriptor stays empty", family.name());
        let mut batch = Vec::new();
        let mut seq = 0;
        // Five times round the ring, in bursts of 20.
        for _ in 0..16 {
            for _ in 0..20 {
                assert!(device.deliver(rx.ring(), &pool, &frame(seq, 60 + seq as usize % 1400)));
                seq += 1;
            }
            assert_eq!(rx.receive(&device.regs, &pool, &mut batch, 64, &mut stats), 20);
        }
        for (i, got) in batch.iter().enumerate() {
            assert_eq!(&got[..], &frame(i as u32, 60 + i % 1400)[..], "{}: frame {i}", family.name());
        }
        assert_eq!((stats.rx_packets, stats.rx_drops), (320, 0));
        drop(batch);
        // Every frame came back to the pool, bar those the device holds.
        assert_eq!(pool.available(), 512 - u32::from(rx.posted()));
    }
}

#[test]
fn partial_bursts_take_what_is_there_up_to_max() {
    for family in FAMILIES {
        let (mut device, mut rx, pool, mut stats) = rx_setup(family);
        rx.replenish(&device.regs, &pool, &mut stats);
        for seq in 0..10 {
            device.deliver(rx.ring(), &pool, &frame(seq, 100));
        }
        let mut batch = Vec::new();
        let bursts: Vec<usize> = (0..4).map(|_| rx.receive(&device.regs, &pool, &mut batch, 4, &mut stats)).collect();
        assert_eq!(bursts, [4, 4, 2, 0], "{}", family.name());
        assert!(batch.iter().enumerate().all(|(i, b)| b[..] == frame(i as u32, 100)[..]));
    }
}

#[test]
fn a_full_ring_misses_frames_until_replenished() {
    for family in FAMILIES {
        let (mut device, mut rx, pool, mut stats) = rx_setup(family);
        rx.replenish(&device.regs, &pool, &mut stats);
        let delivered = (0..100).filter(|&seq| device.deliver(rx.ring(), &pool, &frame(seq, 64))).count();
        assert_eq!(delivered, usize::from(DESCS) - 1, "{}", family.name());
        assert_eq!(device.missed, 100 - u64::from(DESCS - 1));
        let mut batch = Vec::new();
        assert_eq!(rx.receive(&device.regs, &pool, &mut batch, 256, &mut stats), usize::from(DESCS) - 1);
        // Replenished in the same call: the device has room again.
        assert_eq!(rx.posted(), DESCS - 1);
        assert!(device.deliver(rx.ring(), &pool, &frame(1000, 64)));
    }
}

#[test]
fn descriptors_go_back_at_least_32_at_a_time_with_one_tail_write() {
    for family in FAMILIES {
        let (mut device, mut rx, pool, mut stats) = rx_setup(family);
        let tail = family.rx_ring(1).tail;
        rx.replenish(&device.regs, &pool, &mut stats);
        assert_eq!(device.regs.writes_to(tail), 1);
        let mut batch = Vec::new();
        for seq in 0..31 {
            device.deliver(rx.ring(), &pool, &frame(seq, 64));
            rx.receive(&device.regs, &pool, &mut batch, 64, &mut stats);
        }
        // 31 free descriptors: below the threshold, the tail has not moved.
        assert_eq!(device.regs.writes_to(tail), 1, "{}", family.name());
        assert_eq!(rx.posted(), DESCS - 1 - 31);
        device.deliver(rx.ring(), &pool, &frame(31, 64));
        rx.receive(&device.regs, &pool, &mut batch, 64, &mut stats);
        assert_eq!(device.regs.writes_to(tail), 2, "{}: one write for the batch", family.name());
        assert_eq!(rx.posted(), DESCS - 1);
        assert_eq!(device.rx_tail(), 32 + DESCS - 1 - DESCS, "tail wrapped past the ring's end");
        assert_eq!(RX_REPLENISH_MIN_DESCS, 32);
    }
}

#[test]
fn replenish_stops_at_an_empty_pool_and_counts_it() {
    for family in FAMILIES {
        let device = ModelDevice::new(family, 0);
        let mut rx = RxRing::new(DescriptorRing::new(DESCS).unwrap(), family.rx_ring(0).tail, POOL_IOVA);
        let small = pool(40);
        let mut stats = QueueStats::default();
        assert_eq!(rx.replenish(&device.regs, &small, &mut stats), 40);
        assert_eq!(stats.pool_exhausted, 1, "{}", family.name());
        assert_eq!(device.rx_tail(), 40);
    }
}

#[test]
fn frames_spanning_descriptors_are_dropped_and_counted() {
    for family in FAMILIES {
        let (mut device, mut rx, pool, mut stats) = rx_setup(family);
        rx.replenish(&device.regs, &pool, &mut stats);
        device.deliver(rx.ring(), &pool, &frame(0, 100));
        device.deliver(rx.ring(), &pool, &frame(1, 5000)); // three descriptors
        device.deliver(rx.ring(), &pool, &frame(2, 100));
        device.deliver(rx.ring(), &pool, &frame(3, 3000)); // two descriptors
        let mut batch = Vec::new();
        // One frame per burst: a dropped frame's pieces span bursts.
        let mut total = 0;
        for _ in 0..8 {
            total += rx.receive(&device.regs, &pool, &mut batch, 1, &mut stats);
        }
        assert_eq!(total, 2, "{}", family.name());
        assert_eq!(&batch[0][..], &frame(0, 100)[..]);
        assert_eq!(&batch[1][..], &frame(2, 100)[..]);
        assert_eq!(stats.rx_drops, 2, "{}: one drop per frame, not per piece", family.name());
        drop(batch);
        assert_eq!(pool.available(), 512 - u32::from(rx.posted()), "pieces return to the pool");
    }
}

#[test]
fn a_length_beyond_the_buffer_is_dropped_not_trusted() {
    for family in FAMILIES {
        let (device, mut rx, pool, mut stats) = rx_setup(family);
        rx.replenish(&device.regs, &pool, &mut stats);
        // A device writing back a length past the buffer it was given.
        rx.ring().write(0, 0, 0b11 | (u64::from(RX_BUFFER_BYTES + 1) << 32));
        rx.ring().write(1, 0, 0b11);
        let mut batch = Vec::new();
        assert_eq!(rx.receive(&device.regs, &pool, &mut batch, 8, &mut stats), 0);
        assert_eq!(stats.rx_drops, 2, "{}: too long and empty", family.name());
    }
}

fn tx_setup(family: &'static dyn Family) -> (ModelDevice, TxRing, PacketPool, QueueStats) {
    let device = ModelDevice::new(family, 0);
    let ring = TxRing::new(DescriptorRing::new(DESCS).unwrap(), family.tx_ring(0).tail, POOL_IOVA, MAX_FRAME);
    (device, ring, pool(512), QueueStats::default())
}

fn frames_to_send(pool: &PacketPool, from: u32, count: u32) -> Vec<PacketBuf> {
    (from..from + count)
        .map(|seq| {
            let mut buf = pool.alloc().unwrap();
            buf.extend_from_slice(&frame(seq, 60 + seq as usize % 1000)).unwrap();
            buf.freeze()
        })
        .collect()
}

#[test]
fn transmit_writes_the_tail_once_per_burst_and_wraps_around() {
    for family in FAMILIES {
        let (mut device, mut tx, pool, mut stats) = tx_setup(family);
        let tail = family.tx_ring(0).tail;
        let mut sent = Vec::new();
        for burst in 0..10u32 {
            let mut batch = frames_to_send(&pool, burst * 30, 30);
            assert_eq!(tx.transmit(&device.regs, &pool, &mut batch, &mut stats), 30);
            assert!(batch.is_empty());
            assert_eq!(device.regs.writes_to(tail), burst as usize + 1, "{}", family.name());
            sent.extend(device.drain_tx(tx.ring(), &pool));
        }
        assert_eq!(sent.len(), 300);
        for (i, bytes) in sent.iter().enumerate() {
            assert_eq!(bytes[..], frame(i as u32, 60 + i % 1000)[..], "{}: frame {i}", family.name());
        }
        assert_eq!((stats.tx_packets, stats.tx_drops), (300, 0));
    }
}

#[test]
fn completed_frames_are_reclaimed_lazily() {
    for family in FAMILIES {
        let (mut device, mut tx, pool, mut stats) = tx_setup(family);
        let mut batch = frames_to_send(&pool, 0, 10);
        tx.transmit(&device.regs, &pool, &mut batch, &mut stats);
        device.drain_tx(tx.ring(), &pool);
        // Done, but not reclaimed: the ring has room, so nothing looked.
        assert_eq!(tx.in_flight(), 10, "{}", family.name());
        assert_eq!(pool.available(), 512 - 10);
        assert_eq!(tx.reclaim(), 10);
        assert_eq!(pool.available(), 512, "frames return to the pool once reclaimed");
    }
}

#[test]
fn a_full_ring_keeps_the_rest_of_the_batch_for_later() {
    for family in FAMILIES {
        let (mut device, mut tx, pool, mut stats) = tx_setup(family);
        let mut batch = frames_to_send(&pool, 0, 100);
        assert_eq!(tx.transmit(&device.regs, &pool, &mut batch, &mut stats), usize::from(DESCS) - 1);
        assert_eq!(batch.len(), 100 - usize::from(DESCS - 1), "{}", family.name());
        // The device has sent nothing yet: no room.
        assert_eq!(tx.transmit(&device.regs, &pool, &mut batch, &mut stats), 0);
        let first = device.drain_tx(tx.ring(), &pool);
        assert_eq!(tx.transmit(&device.regs, &pool, &mut batch, &mut stats), 100 - usize::from(DESCS - 1));
        let second = device.drain_tx(tx.ring(), &pool);
        let all: Vec<_> = first.into_iter().chain(second).collect();
        assert!(all.iter().enumerate().all(|(i, b)| b[..] == frame(i as u32, 60 + i % 1000)[..]));
    }
}

#[test]
fn frames_the_device_cannot_send_are_dropped_and_counted() {
    for family in FAMILIES {
        let (mut device, mut tx, pool, mut stats) = tx_setup(family);
        let other_pool =
            super::super::pool::PacketPool::new(PoolConfig { frames: 4, huge_pages: HugePages::Never }).unwrap();
        let mut too_long = pool.alloc().unwrap();
        too_long.extend_from_slice(&[0u8; MAX_FRAME + 1]).unwrap();
        let empty = pool.alloc().unwrap().freeze();
        let mut foreign = other_pool.alloc().unwrap();
        foreign.extend_from_slice(&[1u8; 100]).unwrap();
        let mut batch = vec![too_long.freeze(), empty, foreign.freeze()];
        batch.extend(frames_to_send(&pool, 0, 1));
        assert_eq!(tx.transmit(&device.regs, &pool, &mut batch, &mut stats), 4);
        assert_eq!((stats.tx_drops, stats.tx_packets), (3, 1), "{}", family.name());
        assert_eq!(device.drain_tx(tx.ring(), &pool).len(), 1);
    }
}

#[test]
fn queue_set_up_programs_the_family_s_ring_registers() {
    for family in FAMILIES {
        let regs = ModelRegisters::default();
        family.configure_rx_queue(&regs, 3);
        let ring = family.rx_ring(3);
        enable_ring(&regs, ring, 0x1_2345_6000, 8192).unwrap();
        assert_eq!(regs.read(ring.base_low), 0x2345_6000);
        assert_eq!(regs.read(ring.base_high), 1);
        assert_eq!(regs.read(ring.len), 8192);
        assert_ne!(regs.read(ring.control) & QUEUE_ENABLE, 0);
        // SRRCTL: advanced one-buffer descriptors of 2 KiB.
        let srrctl = regs.read(family.srrctl(3));
        assert_eq!(srrctl & (0b111 << 25), 1 << 25, "{}: DESCTYPE", family.name());
        assert_eq!(srrctl & 0x1f, 2, "{}: BSIZEPACKET in KiB", family.name());
        // Queue registers do not collide across queues or directions.
        let mut offsets: Vec<u32> = (0..family.max_queues())
            .flat_map(|q| {
                let (r, t) = (family.rx_ring(q), family.tx_ring(q));
                [
                    r.base_low,
                    r.base_high,
                    r.len,
                    r.head,
                    r.tail,
                    r.control,
                    family.srrctl(q),
                    t.base_low,
                    t.head,
                    t.tail,
                    t.control,
                ]
            })
            .collect();
        let n = offsets.len();
        offsets.sort_unstable();
        offsets.dedup();
        assert_eq!(offsets.len(), n, "{}", family.name());
    }
}

#[test]
fn rss_key_and_redirection_table_are_loaded_bytewise() {
    let regs = ModelRegisters::default();
    let table = RedirectionTable::new(128, 3).unwrap();
    program_rss(&regs, &RSS_DEFAULT_KEY, &table, 0x2);
    for i in 0..10u32 {
        let bytes = regs.read(0x5C80 + 4 * i).to_le_bytes();
        assert_eq!(bytes[..], RSS_DEFAULT_KEY[4 * i as usize..4 * i as usize + 4]);
    }
    for entry in 0..128usize {
        let byte = regs.read(0x5C00 + 4 * (entry as u32 / 4)).to_le_bytes()[entry % 4];
        assert_eq!(u16::from(byte), table.queue(entry));
    }
    assert_ne!(regs.read(super::family::RXCSUM) & super::family::RXCSUM_PCSD, 0);
}
