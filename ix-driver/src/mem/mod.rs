//! Backend `mem`: ports joined by an in-process switch, each with several queues
//! steered by RSS, with seeded, reproducible loss, duplication, reordering,
//! corruption and delay, for deterministic tests and stack benchmarks.
//!
//! # Model
//!
//! A [`MemWire`] has `ports` ports with `queues_per_port` queues each; every
//! queue is taken once, as a [`MemQueue`](crate::MemQueue), by the core thread
//! that owns it. A frame sent on a queue is switched by destination MAC (port `p` is
//! [`mem_port_mac`]`(p)`): to that port, to every other port for broadcast and
//! multicast, nowhere for unknown unicast (counted in [`SwitchStats`]). At the
//! destination port, the queue is chosen as a NIC's RSS would: the Toeplitz
//! hash of the IPv4 4-tuple for TCP and UDP, of the addresses for other IPv4,
//! queue 0 for everything else (ARP), through the port's redirection table.
//!
//! # Transport
//!
//! Each destination queue has an inbox behind a `Mutex`. This is a test
//! backend, not the fast path: a sender locks each destination inbox once per
//! burst and a receiver its own inbox once per burst, never once per frame.
//!
//! As a NIC's driver stocks its receive ring (AF_XDP's fill ring), each
//! receive burst that took frames posts free frames of the *receiving* queue's
//! pool to its inbox, up to 1/64 of the pool and at most 128, and only while the
//! pool is under no pressure; a burst that finds the inbox empty takes them back,
//! so an idle queue holds none of its pool. A frame that arrives the instant it is sent (no fault, no delay)
//! is written by the sender straight into a posted frame: one copy, as a NIC's
//! DMA makes, and the frame belongs to the wire until the receiver takes it
//! back. Every other frame (delayed, faulty, or finding no posted frame)
//! travels in a `Vec<u8>` buffer recycled through a free list of the wire (and
//! a small cache per queue), and [`NetQueue::rx_burst`](crate::NetQueue::rx_burst)
//! copies it into a frame of the receiving pool. Where a NIC would drop a frame
//! that finds no posted buffer, this wire keeps it in such a buffer: a core
//! slow to post loses nothing. If the pool runs dry the burst stops before
//! the frames that still need a frame of it (counted in `pool_exhausted`) and
//! the rest waits; an inbox holds at most [`MemWireConfig::inbox_depth`]
//! frames, beyond which arriving frames are dropped and counted in the
//! receiver's `rx_drops`, like a full receive ring. Dropping a queue takes its
//! posted frames back; frames that had landed in them are copied into wire
//! buffers and wait for the queue's next owner.
//!
//! # Time and faults
//!
//! The wire reads a [`WireClock`]: [`MonotonicClock`] for real time or
//! [`ManualClock`] for simulations. Faults ([`FaultConfig`]) are decided per
//! frame at send time, per link (source port → destination queue), by a
//! generator seeded from the wire's seed and the link's number, so the
//! decisions on a link depend only on the seed and the order of the frames on
//! it, never on thread timing. A frame is not handed out before its due time
//! (send time + delay + jitter); inboxes keep frames ordered by (due time,
//! arrival), so jitter reorders deterministically.
//! [`MemQueue::next_due_micros`](crate::MemQueue::next_due_micros) tells an
//! idle runtime how long it may sleep.
//!
//! # Wake-ups
//!
//! With [`WakeUp::EventFd`] (the default) each queue has a non-blocking eventfd ([`NetQueue::wait_fd`](crate::NetQueue::wait_fd)), signalled when
//! a frame lands in its empty inbox and again after a receive burst that left
//! due frames behind; [`NetQueue::ack_wakeup`](crate::NetQueue::ack_wakeup) clears it unless a frame is
//! already due, so a core that clears it just before blocking cannot sleep
//! through a frame that landed after its last burst. Frames that are not
//! yet due do not keep it readable: sleep until
//! [`MemQueue::next_due_micros`](crate::MemQueue::next_due_micros).
//! With [`WakeUp::Polled`] no queue has one: for a simulation that steps every
//! queue under a [`ManualClock`] and never blocks, it saves a descriptor per
//! queue and a `write` per frame landing in an empty inbox.

mod clock;
mod fault;
mod inbox;
mod posted;
pub(crate) mod queue;
mod switch;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError, RwLock};

pub use clock::{ManualClock, MonotonicClock, WireClock};
pub use fault::{FaultConfig, FaultStats};
pub use switch::mem_port_mac;

use crate::error::DriverError;
use crate::eventfd::EventFd;
use crate::pool::FRAME_DATA_BYTES;
use crate::queue::ETHERNET_HEADER_BYTES;
use crate::rss::{DEFAULT_RETA_ENTRIES, RSS_DEFAULT_KEY, RSS_KEY_BYTES, RedirectionTable, Toeplitz};
use inbox::Inbox;

/// The largest frame by default: a 1514-byte Ethernet frame and its 4-byte FCS.
pub const DEFAULT_MAX_FRAME_BYTES: usize = 1514 + 4;
/// Frames an inbox holds by default before it drops (the receive ring size).
pub const DEFAULT_INBOX_DEPTH_FRAMES: usize = 4096;
/// The most ports a wire has: port MACs number them in one byte.
pub const MAX_PORTS: u16 = 255;

/// How to build a [`MemWire`].
#[derive(Debug, Clone)]
pub struct MemWireConfig {
    /// Ports on the switch, `1..=MAX_PORTS`.
    pub ports: u16,
    /// Receive queues per port (at least one).
    pub queues_per_port: u16,
    /// Faults applied to every link.
    pub faults: FaultConfig,
    /// Seed of every link's fault generator.
    pub seed: u64,
    /// Toeplitz key of every port's RSS.
    pub rss_key: [u8; RSS_KEY_BYTES],
    /// Entries in each port's redirection table (a power of two).
    pub reta_entries: usize,
    /// Largest frame carried, Ethernet header included; at most a pool frame's
    /// [`FRAME_DATA_BYTES`]. Longer frames are dropped at transmit.
    pub max_frame_len: usize,
    /// Frames an inbox holds before dropping (at least one).
    pub inbox_depth: usize,
    /// The wire's time source.
    pub clock: Arc<dyn WireClock>,
    /// How a queue's owner learns that frames arrived.
    pub wakeup: WakeUp,
}

/// How the owner of a mem queue learns that frames arrived.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum WakeUp {
    /// An eventfd per queue ([`NetQueue::wait_fd`](crate::NetQueue::wait_fd)), for
    /// a core that blocks when idle.
    #[default]
    EventFd,
    /// None: the owner polls its queue and never blocks (a simulation under a
    /// virtual clock). `wait_fd` is `None` and nothing is signalled.
    Polled,
}

impl Default for MemWireConfig {
    fn default() -> Self {
        Self {
            ports: 2,
            queues_per_port: 1,
            faults: FaultConfig::NONE,
            seed: 0,
            rss_key: RSS_DEFAULT_KEY,
            reta_entries: DEFAULT_RETA_ENTRIES,
            max_frame_len: DEFAULT_MAX_FRAME_BYTES,
            inbox_depth: DEFAULT_INBOX_DEPTH_FRAMES,
            clock: Arc::new(MonotonicClock::new()),
            wakeup: WakeUp::EventFd,
        }
    }
}

impl MemWireConfig {
    fn validate(&self) -> Result<(), DriverError> {
        let bad = |what: String| Err(DriverError::Config(what));
        if !(1..=MAX_PORTS).contains(&self.ports) {
            return bad(format!("a mem wire has 1 to {MAX_PORTS} ports, not {}", self.ports));
        }
        if self.queues_per_port == 0 {
            return bad("a mem port needs at least one queue".into());
        }
        if !(ETHERNET_HEADER_BYTES..=FRAME_DATA_BYTES as usize).contains(&self.max_frame_len) {
            return bad(format!(
                "max_frame_len {} is outside {ETHERNET_HEADER_BYTES}..={FRAME_DATA_BYTES}",
                self.max_frame_len
            ));
        }
        if self.inbox_depth == 0 {
            return bad("an inbox needs room for at least one frame".into());
        }
        self.faults.validate()
    }
}

/// Switch counters of a wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SwitchStats {
    /// Broadcast and multicast frames flooded to the other ports.
    pub flooded: u64,
    /// Unicast frames dropped: for a MAC of no port, or for the sender's own port.
    pub unicast_drops: u64,
}

/// The shared state of one queue: its inbox, its wake-up, whether it is taken.
#[derive(Debug)]
struct QueueSlot {
    inbox: Mutex<Inbox>,
    /// `None` on a [`WakeUp::Polled`] wire.
    wakeup: Option<EventFd>,
    taken: AtomicBool,
}

impl QueueSlot {
    /// Makes the queue's wake-up descriptor readable, if it has one.
    fn signal(&self) {
        if let Some(wakeup) = &self.wakeup {
            wakeup.signal();
        }
    }
}

/// An in-process switch joining `ports` ports of `queues_per_port` queues.
/// Shared between the core threads through an `Arc`.
#[derive(Debug)]
pub struct MemWire {
    config: MemWireConfig,
    /// Built on first use: a wire of one queue per port never hashes (a
    /// simulation making a wire per run saves building 12 KiB of tables).
    toeplitz: OnceLock<Toeplitz>,
    /// One redirection table per port; read once per transmit burst.
    tables: RwLock<Vec<RedirectionTable>>,
    /// Indexed by `port * queues_per_port + queue`.
    slots: Box<[QueueSlot]>,
    free_buffers: Mutex<Vec<Vec<u8>>>,
    flooded: AtomicU64,
    unicast_drops: AtomicU64,
}

impl MemWire {
    /// Builds a wire with empty inboxes and round-robin redirection tables.
    ///
    /// # Errors
    /// [`DriverError::Config`] for an out-of-range field (ports, queues, frame
    /// length, inbox depth, redirection-table size, a fault probability);
    /// [`DriverError::Os`] if an eventfd cannot be made ([`WakeUp::EventFd`]).
    pub fn new(config: MemWireConfig) -> Result<Arc<Self>, DriverError> {
        config.validate()?;
        let table = RedirectionTable::new(config.reta_entries, config.queues_per_port)?;
        let (ports, queues) = (u64::from(config.ports), u64::from(config.queues_per_port));
        let mut slots = Vec::with_capacity((ports * queues) as usize);
        for dst in 0..ports * queues {
            // Link number: (source port, destination port, destination queue).
            let link_ids = (0..ports).map(|src| src * ports * queues + dst);
            slots.push(QueueSlot {
                inbox: Mutex::new(Inbox::new(config.inbox_depth, config.seed, link_ids)),
                wakeup: match config.wakeup {
                    WakeUp::EventFd => Some(EventFd::new()?),
                    WakeUp::Polled => None,
                },
                taken: AtomicBool::new(false),
            });
        }
        tracing::debug!(
            ports = config.ports,
            queues_per_port = config.queues_per_port,
            seed = config.seed,
            faults = ?config.faults,
            "mem wire up"
        );
        Ok(Arc::new(Self {
            toeplitz: OnceLock::new(),
            tables: RwLock::new(vec![table; usize::from(config.ports)]),
            slots: slots.into_boxed_slice(),
            free_buffers: Mutex::new(Vec::new()),
            flooded: AtomicU64::new(0),
            unicast_drops: AtomicU64::new(0),
            config,
        }))
    }

    /// The wire's configuration.
    pub fn config(&self) -> &MemWireConfig {
        &self.config
    }

    /// The Toeplitz hash every port uses (for port probing).
    pub fn toeplitz(&self) -> &Toeplitz {
        self.toeplitz.get_or_init(|| Toeplitz::new(self.config.rss_key))
    }

    /// A copy of port `port`'s redirection table, `None` if there is no such port.
    pub fn redirection_table(&self, port: u16) -> Option<RedirectionTable> {
        read(&self.tables).get(usize::from(port)).cloned()
    }

    /// Points entry `entry` of port `port`'s redirection table at `queue`.
    ///
    /// # Errors
    /// [`DriverError::Config`] when the port, entry or queue does not exist.
    pub fn set_redirection(&self, port: u16, entry: usize, queue: u16) -> Result<(), DriverError> {
        self.slot_index(port, queue)?;
        let mut tables = self.tables.write().unwrap_or_else(PoisonError::into_inner);
        let table = &mut tables[usize::from(port)];
        if entry >= table.len() {
            return Err(DriverError::Config(format!("redirection entry {entry} out of a {}-entry table", table.len())));
        }
        table.set(entry, queue);
        Ok(())
    }

    /// Faults injected on the link from `src_port` to queue `dst_queue` of
    /// `dst_port`; `None` if either end does not exist.
    pub fn link_fault_stats(&self, src_port: u16, dst_port: u16, dst_queue: u16) -> Option<FaultStats> {
        let slot = self.slot_index(dst_port, dst_queue).ok()?;
        (src_port < self.config.ports).then(|| lock(&self.slots[slot].inbox).link_stats(src_port))
    }

    /// Faults injected on all links into queue `queue` of `port`; `None` if there
    /// is no such queue.
    pub fn queue_fault_stats(&self, port: u16, queue: u16) -> Option<FaultStats> {
        let slot = self.slot_index(port, queue).ok()?;
        Some(lock(&self.slots[slot].inbox).total_stats())
    }

    /// Faults injected on the whole wire.
    pub fn fault_stats(&self) -> FaultStats {
        let mut total = FaultStats::default();
        for slot in self.slots.iter() {
            total.add(&lock(&slot.inbox).total_stats());
        }
        total
    }

    /// The switch's counters.
    pub fn switch_stats(&self) -> SwitchStats {
        SwitchStats {
            flooded: self.flooded.load(Ordering::Relaxed),
            unicast_drops: self.unicast_drops.load(Ordering::Relaxed),
        }
    }

    fn slot_index(&self, port: u16, queue: u16) -> Result<usize, DriverError> {
        let MemWireConfig { ports, queues_per_port, .. } = self.config;
        if port >= ports || queue >= queues_per_port {
            return Err(DriverError::Config(format!(
                "mem queue {queue} of port {port} does not exist ({ports} ports of {queues_per_port} queues)"
            )));
        }
        Ok(usize::from(port) * usize::from(queues_per_port) + usize::from(queue))
    }
}

/// Locks a wire mutex. A thread that panicked while holding it left the data
/// consistent (every update is a push or pop), so poisoning is ignored.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

fn read<T>(lock: &RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    lock.read().unwrap_or_else(PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use std::os::fd::AsRawFd;

    use super::*;
    use crate::pool::{PacketBuf, PacketPool, PoolConfig, PoolPressure, TxBuf};
    use crate::queue::NetQueue;
    use crate::region::HugePages;

    fn pool(frames: u32) -> PacketPool {
        PacketPool::new(PoolConfig { frames, huge_pages: HugePages::Never }).unwrap()
    }

    fn wire(ports: u16, queues_per_port: u16) -> Arc<MemWire> {
        MemWire::new(MemWireConfig { ports, queues_per_port, ..MemWireConfig::default() }).unwrap()
    }

    /// A non-IP frame (local experimental EtherType) to `dst` tagged with `tag`.
    fn frame(pool: &PacketPool, dst: [u8; 6], tag: u8, len: usize) -> PacketBuf {
        let mut tx = pool.alloc().unwrap();
        let bytes = tx.append(len).unwrap();
        bytes.fill(tag);
        bytes[..6].copy_from_slice(&dst);
        bytes[12..14].copy_from_slice(&0x88b5u16.to_be_bytes());
        tx.freeze()
    }

    fn send(queue: &mut impl NetQueue, frames: Vec<PacketBuf>) -> usize {
        let mut batch = frames;
        let taken = queue.tx_burst(&mut batch);
        assert!(batch.is_empty());
        taken
    }

    fn tags(queue: &mut impl NetQueue, max: usize) -> Vec<u8> {
        let mut batch = Vec::new();
        queue.rx_burst(&mut batch, max);
        batch.iter().map(|f| f[20]).collect()
    }

    fn readable(queue: &impl NetQueue) -> bool {
        let mut pfd = libc::pollfd { fd: queue.wait_fd().unwrap().as_raw_fd(), events: libc::POLLIN, revents: 0 };
        // SAFETY: one valid pollfd for the duration of the call; zero timeout.
        let n = unsafe { libc::poll(&mut pfd, 1, 0) };
        assert!(n >= 0, "poll failed");
        n == 1
    }

    #[test]
    fn broadcast_reaches_every_other_port_only() {
        let wire = wire(3, 2);
        let mut queues: Vec<_> = (0..3).map(|p| wire.queue(p, 0, pool(8)).unwrap()).collect();
        let tx_pool = queues[0].pool().clone();
        send(&mut queues[0], vec![frame(&tx_pool, [0xff; 6], 7, 60)]);
        assert_eq!(tags(&mut queues[0], 8), []);
        assert_eq!(tags(&mut queues[1], 8), [7]);
        assert_eq!(tags(&mut queues[2], 8), [7]);
        assert_eq!(wire.switch_stats(), SwitchStats { flooded: 1, unicast_drops: 0 });
    }

    #[test]
    fn unicast_goes_to_its_port_and_unknown_or_own_is_dropped() {
        let wire = wire(3, 1);
        let mut q0 = wire.queue(0, 0, pool(8)).unwrap();
        let mut q1 = wire.queue(1, 0, pool(8)).unwrap();
        let mut q2 = wire.queue(2, 0, pool(8)).unwrap();
        let p = q0.pool().clone();
        let frames = vec![
            frame(&p, mem_port_mac(2), 1, 60),
            frame(&p, mem_port_mac(0), 2, 60),
            frame(&p, [0x02, 0, 0, 0, 0, 9], 3, 60),
        ];
        assert_eq!(send(&mut q0, frames), 3);
        assert_eq!(tags(&mut q1, 8), []);
        assert_eq!(tags(&mut q2, 8), [1]);
        assert_eq!(tags(&mut q0, 8), []);
        assert_eq!(wire.switch_stats().unicast_drops, 2);
        assert_eq!(q0.stats().tx_packets, 3);
        assert_eq!(p.available(), 8, "the sender's frames are released once copied");
    }

    #[test]
    fn received_frames_live_in_the_receivers_pool() {
        let wire = wire(2, 1);
        let mut q0 = wire.queue(0, 0, pool(4)).unwrap();
        let mut q1 = wire.queue(1, 0, pool(4)).unwrap();
        let p = q0.pool().clone();
        send(&mut q0, vec![frame(&p, mem_port_mac(1), 5, 100)]);
        let mut batch = Vec::new();
        assert_eq!(q1.rx_burst(&mut batch, 4), 1);
        assert!(q1.pool().same_pool(&batch[0]));
        assert_eq!(batch[0].len(), 100);
        assert_eq!(q1.stats().rx_bytes, 100);
    }

    #[test]
    fn runts_and_oversized_frames_are_transmit_drops() {
        let wire = wire(2, 1);
        let mut q0 = wire.queue(0, 0, pool(4)).unwrap();
        let p = q0.pool().clone();
        let max = q0.max_frame_len();
        let frames = vec![
            frame(&p, mem_port_mac(1), 1, max + 1),
            frame(&p, mem_port_mac(1), 2, max),
            p.alloc().unwrap().freeze(),
        ];
        assert_eq!(send(&mut q0, frames), 3);
        let stats = q0.stats();
        assert_eq!((stats.tx_packets, stats.tx_drops), (1, 2));
    }

    #[test]
    fn a_queue_is_taken_once_and_given_back_on_drop() {
        let wire = wire(2, 2);
        let q = wire.queue(1, 1, pool(1)).unwrap();
        assert!(matches!(wire.queue(1, 1, pool(1)), Err(DriverError::QueueTaken { port: 1, queue: 1, .. })));
        assert!(matches!(wire.queue(2, 0, pool(1)), Err(DriverError::Config(_))));
        assert!(matches!(wire.queue(0, 2, pool(1)), Err(DriverError::Config(_))));
        drop(q);
        assert!(wire.queue(1, 1, pool(1)).is_ok());
    }

    #[test]
    fn an_exhausted_pool_stops_the_burst_and_frames_wait() {
        let wire = wire(2, 1);
        let mut q0 = wire.queue(0, 0, pool(8)).unwrap();
        let mut q1 = wire.queue(1, 0, pool(2)).unwrap();
        let p = q0.pool().clone();
        send(&mut q0, (0..5).map(|t| frame(&p, mem_port_mac(1), t, 60)).collect());
        let mut held = Vec::new();
        assert_eq!(q1.rx_burst(&mut held, 64), 2);
        assert_eq!(q1.stats().pool_exhausted, 1);
        assert_eq!(tags(&mut q1, 64), [], "no frame free while the first two are held");
        assert_eq!(q1.stats().pool_exhausted, 2);
        assert_eq!(held.iter().map(|f| f[20]).collect::<Vec<_>>(), [0, 1]);
        drop(held);
        assert_eq!(tags(&mut q1, 64), [2, 3]);
        let stats = q1.stats();
        assert_eq!((stats.rx_packets, stats.rx_drops, stats.empty_polls), (4, 0, 1));
    }

    /// Sends one frame tagged `tag` from `from` to `to`, a queue of port 1,
    /// and receives it, so that the receiver posts frames afterwards.
    fn warm_up(from: &mut impl NetQueue, to: &mut impl NetQueue, tag: u8) {
        let p = from.pool().clone();
        send(from, vec![frame(&p, mem_port_mac(1), tag, 60)]);
        assert_eq!(tags(to, 64), [tag]);
    }

    #[test]
    fn frames_land_in_frames_the_receiver_posted_then_in_wire_buffers() {
        let wire = wire(2, 1);
        let mut q0 = wire.queue(0, 0, pool(8)).unwrap();
        let mut q1 = wire.queue(1, 0, pool(256)).unwrap();
        assert_eq!(tags(&mut q1, 64), []);
        assert_eq!(q1.posted_frames(), 0, "an idle queue posts nothing");
        warm_up(&mut q0, &mut q1, 100);
        assert_eq!((q1.posted_frames(), q1.pool().available()), (4, 252), "1/64 of the pool is posted");
        let p = q0.pool().clone();
        send(&mut q0, (0..6).map(|t| frame(&p, mem_port_mac(1), t, 60 + usize::from(t))).collect());
        assert_eq!(p.available(), 8, "the sender's frames are released once delivered");
        let mut batch = Vec::new();
        assert_eq!(q1.rx_burst(&mut batch, 64), 6);
        // Four went straight into the posted frames, the two after them in
        // wire buffers; order and bytes are kept either way.
        assert_eq!(q1.received_into_posted(), 4);
        for (tag, received) in batch.iter().enumerate() {
            assert_eq!(received.len(), 60 + tag);
            assert!(received[14..].iter().all(|&b| usize::from(b) == tag), "frame {tag} changed");
            assert!(q1.pool().same_pool(received));
        }
        assert_eq!((q1.posted_frames(), q1.pool().available()), (4, 246), "four posted again, six held");
        assert_eq!(q1.stats().rx_packets, 7);
        drop(batch);
        assert_eq!(tags(&mut q1, 64), []);
        assert_eq!((q1.posted_frames(), q1.pool().available()), (0, 256), "idle again: every frame is back");
    }

    #[test]
    fn a_pool_under_pressure_posts_nothing_and_frames_still_arrive() {
        let wire = wire(2, 1);
        let mut q0 = wire.queue(0, 0, pool(8)).unwrap();
        let mut q1 = wire.queue(1, 0, pool(128)).unwrap();
        let held: Vec<TxBuf> = (0..100).map(|_| q1.pool().alloc().unwrap()).collect();
        assert_eq!(q1.pool().pressure(), PoolPressure::Tight);
        let p = q0.pool().clone();
        send(&mut q0, (0..3).map(|t| frame(&p, mem_port_mac(1), t, 60)).collect());
        assert_eq!(tags(&mut q1, 64), [0, 1, 2]);
        assert_eq!((q1.posted_frames(), q1.received_into_posted()), (0, 0));
        drop(held);
        warm_up(&mut q0, &mut q1, 3);
        assert_eq!(q1.posted_frames(), 2, "posting resumes once the pressure is gone");
    }

    #[test]
    fn a_dropped_queue_takes_back_its_posted_frames_and_keeps_what_arrived() {
        let wire = wire(2, 1);
        let mut q0 = wire.queue(0, 0, pool(8)).unwrap();
        let mut q1 = wire.queue(1, 0, pool(256)).unwrap();
        warm_up(&mut q0, &mut q1, 0);
        let p = q0.pool().clone();
        send(&mut q0, (1..3).map(|t| frame(&p, mem_port_mac(1), t, 70)).collect());
        let old_pool = q1.pool().clone();
        drop(q1);
        assert_eq!(old_pool.available(), 256, "every posted frame went back to its pool");
        // The next owner gets the frames that had landed in the old pool.
        let mut q1 = wire.queue(1, 0, pool(256)).unwrap();
        let mut batch = Vec::new();
        assert_eq!(q1.rx_burst(&mut batch, 64), 2);
        assert_eq!(batch.iter().map(|f| (f[20], f.len())).collect::<Vec<_>>(), [(1, 70), (2, 70)]);
        assert_eq!(q1.received_into_posted(), 0);
        // Sent after it posted: into its own frames.
        send(&mut q0, vec![frame(&p, mem_port_mac(1), 3, 60)]);
        assert_eq!(tags(&mut q1, 64), [3]);
        assert_eq!(q1.received_into_posted(), 1);
    }

    #[test]
    fn a_delayed_frame_travels_in_a_wire_buffer_not_a_posted_frame() {
        let clock = Arc::new(ManualClock::new(0));
        let faults = FaultConfig { delay_micros: 5, ..FaultConfig::NONE };
        let config = MemWireConfig { faults, clock: clock.clone(), ..MemWireConfig::default() };
        let wire = MemWire::new(config).unwrap();
        let mut q0 = wire.queue(0, 0, pool(8)).unwrap();
        let mut q1 = wire.queue(1, 0, pool(256)).unwrap();
        let p = q0.pool().clone();
        for tag in [8, 9] {
            send(&mut q0, vec![frame(&p, mem_port_mac(1), tag, 60)]);
            assert_eq!(tags(&mut q1, 64), [], "not due yet");
            clock.advance(5);
            assert_eq!(tags(&mut q1, 64), [tag]);
        }
        assert_eq!((q1.received_into_posted(), q1.posted_frames()), (0, 4));
    }

    #[test]
    fn a_full_inbox_drops_like_a_full_ring() {
        let config = MemWireConfig { inbox_depth: 3, ..MemWireConfig::default() };
        let wire = MemWire::new(config).unwrap();
        let mut q0 = wire.queue(0, 0, pool(8)).unwrap();
        let mut q1 = wire.queue(1, 0, pool(8)).unwrap();
        let p = q0.pool().clone();
        send(&mut q0, (0..5).map(|t| frame(&p, mem_port_mac(1), t, 60)).collect());
        assert_eq!(q1.stats().rx_drops, 2);
        assert_eq!(tags(&mut q1, 64), [0, 1, 2]);
    }

    #[test]
    fn the_eventfd_rises_on_arrival_and_stays_up_while_due_frames_remain() {
        let wire = wire(2, 1);
        let mut q0 = wire.queue(0, 0, pool(8)).unwrap();
        let mut q1 = wire.queue(1, 0, pool(8)).unwrap();
        let p = q0.pool().clone();
        assert!(!readable(&q1));
        send(&mut q0, (0..3).map(|t| frame(&p, mem_port_mac(1), t, 60)).collect());
        assert!(readable(&q1));
        q1.ack_wakeup();
        assert!(readable(&q1), "three frames are due: clearing keeps it up");
        assert_eq!(tags(&mut q1, 2), [0, 1]);
        q1.ack_wakeup();
        assert!(readable(&q1), "a frame is still due");
        assert_eq!(tags(&mut q1, 2), [2]);
        q1.ack_wakeup();
        assert!(!readable(&q1));
    }

    /// The runtime's idle path: a receive burst finds nothing, a frame lands
    /// (raising the eventfd), then the core clears the eventfd just before it
    /// blocks. The frame is waiting, so the descriptor must stay readable, or
    /// the core sleeps through it until its next timer.
    #[test]
    fn a_frame_that_lands_just_before_the_wakeup_is_cleared_keeps_the_eventfd_readable() {
        let wire = wire(2, 1);
        let mut q0 = wire.queue(0, 0, pool(8)).unwrap();
        let mut q1 = wire.queue(1, 0, pool(8)).unwrap();
        let p = q0.pool().clone();
        assert_eq!(tags(&mut q1, 64), []);
        send(&mut q0, vec![frame(&p, mem_port_mac(1), 7, 60)]);
        q1.ack_wakeup();
        assert!(readable(&q1), "a due frame waits: blocking now would miss it");
        assert_eq!(tags(&mut q1, 64), [7]);
        q1.ack_wakeup();
        assert!(!readable(&q1));
    }

    #[test]
    fn a_polled_wire_has_no_wakeup_descriptor_and_still_delivers() {
        let wire = MemWire::new(MemWireConfig { wakeup: WakeUp::Polled, ..MemWireConfig::default() }).unwrap();
        let mut q0 = wire.queue(0, 0, pool(8)).unwrap();
        let mut q1 = wire.queue(1, 0, pool(8)).unwrap();
        assert!(q0.wait_fd().is_none() && q1.wait_fd().is_none());
        let p = q0.pool().clone();
        send(&mut q0, (0..3).map(|t| frame(&p, mem_port_mac(1), t, 60)).collect());
        q1.ack_wakeup();
        assert_eq!(tags(&mut q1, 2), [0, 1]);
        assert_eq!(tags(&mut q1, 2), [2]);
    }

    #[test]
    fn the_control_plane_rewrites_a_ports_redirection() {
        let wire = wire(2, 4);
        assert!(wire.set_redirection(1, 3, 0).is_ok());
        assert_eq!(wire.redirection_table(1).unwrap().queue(3), 0);
        assert_eq!(wire.redirection_table(0).unwrap().queue(3), 3);
        assert!(wire.set_redirection(1, 128, 0).is_err());
        assert!(wire.set_redirection(1, 0, 4).is_err());
        assert!(wire.set_redirection(2, 0, 0).is_err());
        assert!(wire.redirection_table(2).is_none());
    }

    #[test]
    fn bad_configurations_are_refused() {
        let bad = [
            MemWireConfig { ports: 0, ..MemWireConfig::default() },
            MemWireConfig { ports: 256, ..MemWireConfig::default() },
            MemWireConfig { queues_per_port: 0, ..MemWireConfig::default() },
            MemWireConfig { reta_entries: 100, ..MemWireConfig::default() },
            MemWireConfig { max_frame_len: 13, ..MemWireConfig::default() },
            MemWireConfig { max_frame_len: 4000, ..MemWireConfig::default() },
            MemWireConfig { inbox_depth: 0, ..MemWireConfig::default() },
            MemWireConfig { faults: FaultConfig { loss: 2.0, ..FaultConfig::NONE }, ..MemWireConfig::default() },
        ];
        for config in bad {
            assert!(matches!(MemWire::new(config), Err(DriverError::Config(_))));
        }
    }
}
