//! The ARP cache: resolved neighbours with expiry, and the frames waiting for a
//! neighbour to be resolved (bounded), with request retries.

use std::collections::{HashMap, VecDeque};
use std::net::Ipv4Addr;
use std::time::Duration;

use ix_driver::TxBuf;

use crate::time::Instant;
use crate::wire::EthernetAddress;

/// Neighbours learned by any core of a dataplane, shared so that every core
/// can resolve them: a NIC delivers ARP (which carries no 4-tuple to hash) to
/// one queue only, so the other cores would otherwise never hear the replies.
/// Cores consult it only when their own cache misses, so the per-packet path
/// stays free of locks.
#[derive(Debug, Default)]
pub struct SharedNeighbors {
    map: std::sync::Mutex<HashMap<Ipv4Addr, EthernetAddress>>,
}

impl SharedNeighbors {
    /// An empty table.
    pub fn new() -> Self {
        Self::default()
    }

    /// Records what a core learned.
    pub fn publish(&self, ip: Ipv4Addr, mac: EthernetAddress) {
        let mut map = self.map.lock().unwrap_or_else(|e| e.into_inner());
        if map.get(&ip) != Some(&mac) {
            map.insert(ip, mac);
        }
    }

    /// What some core learned for `ip`, if anything.
    pub fn get(&self, ip: Ipv4Addr) -> Option<EthernetAddress> {
        self.map.lock().unwrap_or_else(|e| e.into_inner()).get(&ip).copied()
    }
}

/// Frames held per unresolved neighbour; more are dropped and counted.
pub const ARP_PENDING_FRAMES_MAX: usize = 16;
/// Requests sent for one neighbour before its waiting frames are dropped.
pub const ARP_REQUESTS_MAX: u32 = 3;

/// ARP settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ArpConfig {
    /// How long a resolved entry is trusted.
    pub entry_ttl: Duration,
    /// Time between requests for an unresolved neighbour.
    pub retry: Duration,
    /// Neighbours remembered at most; the oldest entry goes first when full.
    pub capacity: usize,
}

impl Default for ArpConfig {
    fn default() -> Self {
        Self { entry_ttl: Duration::from_secs(60), retry: Duration::from_secs(1), capacity: 1024 }
    }
}

#[derive(Debug)]
enum Entry {
    Resolved { mac: EthernetAddress, expires: Instant },
    Pending { frames: VecDeque<TxBuf>, next_request: Instant, requests: u32 },
}

/// What happened to a frame offered to [`ArpCache::hold`].
#[derive(Debug)]
pub enum HoldOutcome {
    /// Queued; a request for the neighbour must go out now.
    SendRequest,
    /// Queued behind a request already out.
    Queued,
    /// The neighbour's queue was full: the frame is given back to be dropped.
    Full(TxBuf),
}

/// Resolved and pending neighbours.
#[derive(Debug)]
pub struct ArpCache {
    /// Looked up for every frame sent: foldhash (seeded per process, as the
    /// flow table) rather than SipHash, which cost 200 instructions a round trip.
    entries: HashMap<Ipv4Addr, Entry, foldhash::fast::RandomState>,
    config: ArpConfig,
    /// Entries in the pending state.
    pending: usize,
}

impl ArpCache {
    /// An empty cache.
    pub fn new(config: ArpConfig) -> Self {
        Self {
            entries: HashMap::with_capacity_and_hasher(
                config.capacity.min(1024),
                foldhash::fast::RandomState::default(),
            ),
            config,
            pending: 0,
        }
    }

    /// The MAC of `ip`, if resolved and fresh.
    pub fn lookup(&self, ip: Ipv4Addr, now: Instant) -> Option<EthernetAddress> {
        match self.entries.get(&ip) {
            Some(Entry::Resolved { mac, expires }) if *expires > now => Some(*mac),
            _ => None,
        }
    }

    /// Holds a frame for an unresolved neighbour.
    pub fn hold(&mut self, ip: Ipv4Addr, frame: TxBuf, now: Instant) -> HoldOutcome {
        self.make_room(ip, now);
        let retry = self.config.retry;
        let mut created = false;
        let entry = self.entries.entry(ip).or_insert_with(|| {
            created = true;
            Entry::Pending { frames: VecDeque::new(), next_request: now, requests: 0 }
        });
        if let Entry::Resolved { expires, .. } = entry {
            if *expires <= now {
                *entry = Entry::Pending { frames: VecDeque::new(), next_request: now, requests: 0 };
                created = true;
            }
        }
        if created {
            self.pending += 1;
        }
        match entry {
            Entry::Pending { frames, next_request, requests } => {
                if frames.len() >= ARP_PENDING_FRAMES_MAX {
                    return HoldOutcome::Full(frame);
                }
                frames.push_back(frame);
                if *requests == 0 {
                    *requests = 1;
                    *next_request = now + retry;
                    HoldOutcome::SendRequest
                } else {
                    HoldOutcome::Queued
                }
            }
            // Resolved and fresh: the caller should have used `lookup`.
            Entry::Resolved { .. } => HoldOutcome::Full(frame),
        }
    }

    /// Records `ip` at `mac`. A new entry is made only when `create` is set
    /// (the sender was asking for us, RFC 826) or the neighbour was being
    /// resolved; otherwise only an existing entry is refreshed. Returns the
    /// frames that were waiting, for the caller to address and send.
    pub fn learn(&mut self, ip: Ipv4Addr, mac: EthernetAddress, now: Instant, create: bool) -> VecDeque<TxBuf> {
        if !mac.is_unicast() || ip.is_unspecified() || ip.is_broadcast() || ip.is_multicast() {
            return VecDeque::new();
        }
        let expires = now + self.config.entry_ttl;
        match self.entries.get_mut(&ip) {
            Some(entry) => match std::mem::replace(entry, Entry::Resolved { mac, expires }) {
                Entry::Pending { frames, .. } => {
                    self.pending -= 1;
                    frames
                }
                Entry::Resolved { .. } => VecDeque::new(),
            },
            None if create => {
                self.make_room(ip, now);
                self.entries.insert(ip, Entry::Resolved { mac, expires });
                VecDeque::new()
            }
            None => VecDeque::new(),
        }
    }

    /// Retries due requests through `request` and drops the frames of
    /// neighbours that never answered; returns how many frames were dropped.
    pub fn poll(&mut self, now: Instant, mut request: impl FnMut(Ipv4Addr)) -> usize {
        let mut dropped = 0;
        let mut dropped_entries = 0;
        let retry = self.config.retry;
        self.entries.retain(|ip, entry| match entry {
            Entry::Pending { frames, next_request, requests } if *next_request <= now => {
                if *requests >= ARP_REQUESTS_MAX {
                    dropped += frames.len();
                    dropped_entries += 1;
                    false
                } else {
                    *requests += 1;
                    *next_request = now + retry;
                    request(*ip);
                    true
                }
            }
            _ => true,
        });
        self.pending -= self.pending.min(dropped_entries);
        dropped
    }

    /// Whether any neighbour is being resolved.
    pub fn has_pending(&self) -> bool {
        self.pending > 0
    }

    /// Adopts what other cores learned for the neighbours this core is
    /// resolving; returns each one's MAC and the frames that waited for it.
    pub fn adopt(&mut self, now: Instant, shared: &SharedNeighbors) -> Vec<(EthernetAddress, VecDeque<TxBuf>)> {
        let pending: Vec<Ipv4Addr> =
            self.entries.iter().filter(|(_, e)| matches!(e, Entry::Pending { .. })).map(|(ip, _)| *ip).collect();
        pending.into_iter().filter_map(|ip| shared.get(ip).map(|mac| (mac, self.learn(ip, mac, now, true)))).collect()
    }

    /// The next instant [`ArpCache::poll`] has work.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.entries
            .values()
            .filter_map(|e| match e {
                Entry::Pending { next_request, .. } => Some(*next_request),
                Entry::Resolved { .. } => None,
            })
            .min()
    }

    /// Neighbours known or being resolved.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether the cache is empty.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    fn make_room(&mut self, ip: Ipv4Addr, now: Instant) {
        if self.entries.len() < self.config.capacity || self.entries.contains_key(&ip) {
            return;
        }
        self.entries.retain(|_, e| !matches!(e, Entry::Resolved { expires, .. } if *expires <= now));
        if self.entries.len() >= self.config.capacity {
            // Still full: forget the resolved entry closest to expiry.
            let victim = self
                .entries
                .iter()
                .filter_map(|(ip, e)| match e {
                    Entry::Resolved { expires, .. } => Some((*expires, *ip)),
                    Entry::Pending { .. } => None,
                })
                .min()
                .map(|(_, ip)| ip);
            if let Some(victim) = victim {
                self.entries.remove(&victim);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ix_driver::{HugePages, PacketPool, PoolConfig};

    const PEER: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 2);
    const MAC: EthernetAddress = EthernetAddress([2, 0, 0, 0, 0, 2]);

    fn frame(pool: &PacketPool) -> TxBuf {
        pool.alloc().unwrap()
    }

    #[test]
    fn frames_wait_for_resolution_and_come_back_on_reply() {
        let pool = PacketPool::new(PoolConfig { frames: 32, huge_pages: HugePages::Never }).unwrap();
        let mut arp = ArpCache::new(ArpConfig::default());
        let t0 = Instant::ZERO;
        assert!(matches!(arp.hold(PEER, frame(&pool), t0), HoldOutcome::SendRequest));
        assert!(matches!(arp.hold(PEER, frame(&pool), t0), HoldOutcome::Queued));
        let waiting = arp.learn(PEER, MAC, t0, false);
        assert_eq!(waiting.len(), 2);
        assert_eq!(arp.lookup(PEER, t0), Some(MAC));
    }

    #[test]
    fn entries_expire() {
        let mut arp = ArpCache::new(ArpConfig::default());
        arp.learn(PEER, MAC, Instant::ZERO, true);
        assert_eq!(arp.lookup(PEER, Instant::from_millis(59_999)), Some(MAC));
        assert_eq!(arp.lookup(PEER, Instant::from_millis(60_000)), None);
    }

    #[test]
    fn unsolicited_replies_do_not_create_entries() {
        let mut arp = ArpCache::new(ArpConfig::default());
        arp.learn(PEER, MAC, Instant::ZERO, false);
        assert_eq!(arp.lookup(PEER, Instant::ZERO), None);
        arp.learn(PEER, EthernetAddress::BROADCAST, Instant::ZERO, true);
        assert_eq!(arp.lookup(PEER, Instant::ZERO), None, "a broadcast MAC is never learned");
    }

    #[test]
    fn unanswered_requests_are_retried_then_dropped() {
        let pool = PacketPool::new(PoolConfig { frames: 32, huge_pages: HugePages::Never }).unwrap();
        let mut arp = ArpCache::new(ArpConfig::default());
        assert!(matches!(arp.hold(PEER, frame(&pool), Instant::ZERO), HoldOutcome::SendRequest));
        let mut sent = 0;
        let mut dropped = 0;
        for s in 1..=5 {
            dropped += arp.poll(Instant::from_millis(s * 1000), |_| sent += 1);
        }
        assert_eq!(sent, ARP_REQUESTS_MAX - 1);
        assert_eq!(dropped, 1);
        assert_eq!(pool.available(), 32, "the dropped frame went back to the pool");
    }

    #[test]
    fn a_neighbour_queue_is_bounded() {
        let pool = PacketPool::new(PoolConfig { frames: 64, huge_pages: HugePages::Never }).unwrap();
        let mut arp = ArpCache::new(ArpConfig::default());
        for _ in 0..ARP_PENDING_FRAMES_MAX {
            assert!(!matches!(arp.hold(PEER, frame(&pool), Instant::ZERO), HoldOutcome::Full(_)));
        }
        assert!(matches!(arp.hold(PEER, frame(&pool), Instant::ZERO), HoldOutcome::Full(_)));
    }

    #[test]
    fn capacity_is_bounded() {
        let mut arp = ArpCache::new(ArpConfig { capacity: 4, ..ArpConfig::default() });
        for i in 0..10u8 {
            arp.learn(Ipv4Addr::new(10, 0, 1, i), MAC, Instant::from_millis(u64::from(i)), true);
        }
        assert_eq!(arp.len(), 4);
    }
}
