//! The key-value store shared by every core: a power-of-two number of shards,
//! each behind its own lock with its own LRU and memory budget, so no global
//! lock sits on any path (see `docs/kv.md` for the choice and its numbers).

mod clock;
mod shard;

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};

use bytes::{BufMut, Bytes, BytesMut};

pub use clock::Clock;
use shard::{Item, Liveness, Shard};

use crate::protocol::{StoreMode, parse_counter_value};

/// Bytes memcached's item header takes with its CAS field (64-bit build).
pub const ITEM_HEADER_BYTES: usize = 56;

/// The bytes an item counts against the memory limit and the item size limit,
/// as memcached counts them: header, key and its NUL, value and its `\r\n`.
pub fn item_size(key_len: usize, value_len: usize) -> usize {
    ITEM_HEADER_BYTES + key_len + 1 + value_len + 2
}

/// How big the store is and how it is cut.
#[derive(Debug, Clone, Copy)]
pub struct StoreConfig {
    /// memcached's `-m`, in bytes.
    pub memory_limit_bytes: usize,
    /// memcached's `-I`, in bytes.
    pub item_size_max: usize,
    /// Number of shards (a power of two).
    pub shards: usize,
}

impl StoreConfig {
    /// A configuration for `cores` serving threads: [`shard_count`] shards.
    pub fn new(memory_limit_bytes: usize, item_size_max: usize, cores: usize) -> Self {
        Self { memory_limit_bytes, item_size_max, shards: shard_count(cores, memory_limit_bytes, item_size_max) }
    }
}

/// Shards for `cores` threads: at least 16 and 8 per core, so two cores rarely
/// meet on one lock; but no more than leave each shard room for two of the
/// largest items (each shard evicts within its own share of the memory).
pub fn shard_count(cores: usize, memory_limit_bytes: usize, item_size_max: usize) -> usize {
    let wanted = (cores.max(1) * 8).max(16).next_power_of_two();
    let room = (memory_limit_bytes / (2 * item_size_max.max(1))).max(1);
    let room = 1usize << room.ilog2();
    wanted.min(room)
}

/// One shard on its own cache lines, so two cores locking neighbours do not
/// share a line.
#[derive(Debug)]
#[repr(align(128))]
struct ShardLock(Mutex<Shard>);

/// A snapshot of an item returned by a read.
#[derive(Debug, Clone)]
pub struct ItemView {
    /// The value.
    pub value: Bytes,
    /// Client flags.
    pub flags: u32,
    /// CAS unique.
    pub cas: u64,
    /// Expiry on the store's clock (0: never).
    pub exptime: u32,
    /// Clock reading of the access before this one.
    pub last_access: u32,
    /// Whether a read had returned it before this one.
    pub fetched_before: bool,
}

/// A write to the store.
#[derive(Debug, Clone, Copy)]
pub struct StoreRequest<'a> {
    /// What to do with an existing item.
    pub mode: StoreMode,
    /// The key.
    pub key: &'a [u8],
    /// Client flags (ignored by append and prepend, which keep the item's).
    pub flags: u32,
    /// The client's expiration time (ignored by append and prepend).
    pub exptime: i64,
    /// The data.
    pub data: &'a [u8],
    /// Store only when the item exists with this CAS unique.
    pub compare_cas: Option<u64>,
}

/// What a write did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreOutcome {
    /// Stored, with its new CAS unique.
    Stored(u64),
    /// The mode's condition failed (add on a present key, replace on an
    /// absent one, append beyond the item size limit).
    NotStored,
    /// The CAS unique did not match.
    Exists,
    /// A compare-and-swap on an absent key.
    NotFound,
    /// The item cannot fit in its shard's memory.
    OutOfMemory,
}

/// What a delete did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeleteOutcome {
    /// Removed.
    Deleted,
    /// Absent.
    NotFound,
    /// Present with another CAS unique.
    Exists,
}

/// An `incr`/`decr`/`ma`.
#[derive(Debug, Clone, Copy)]
pub struct ArithRequest<'a> {
    /// The key.
    pub key: &'a [u8],
    /// Add (wrapping at 2^64) or subtract (stopping at 0).
    pub incr: bool,
    /// The delta.
    pub delta: u64,
    /// Only when the item has this CAS unique.
    pub compare_cas: Option<u64>,
    /// Create a missing item with this value and expiration time.
    pub vivify: Option<(u64, i64)>,
    /// New expiration time on success.
    pub touch: Option<i64>,
}

/// What an arithmetic command did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ArithOutcome {
    /// The new value, CAS unique and expiry.
    Value {
        /// The number now stored.
        value: u64,
        /// The item's new CAS unique.
        cas: u64,
        /// Its expiry on the store's clock.
        exptime: u32,
    },
    /// Absent.
    NotFound,
    /// The value is not a number.
    NonNumeric,
    /// Present with another CAS unique.
    Exists,
}

/// Store-wide numbers for `stats`.
#[derive(Debug, Clone, Copy, Default)]
pub struct StoreStats {
    /// Items held (expired ones included until touched or evicted).
    pub curr_items: u64,
    /// Items ever stored.
    pub total_items: u64,
    /// Bytes held, counted as memcached does.
    pub bytes: u64,
    /// Live items evicted for room.
    pub evictions: u64,
    /// Expired items whose room was reused.
    pub reclaimed: u64,
    /// Evicted items never read.
    pub evicted_unfetched: u64,
    /// Expired items never read.
    pub expired_unfetched: u64,
}

/// The sharded store.
#[derive(Debug)]
pub struct Store {
    shards: Box<[ShardLock]>,
    shard_mask: usize,
    hasher: foldhash::fast::RandomState,
    next_cas: AtomicU64,
    /// memcached's `oldest_live` for a delayed `flush_all`; 0 none.
    oldest_live: AtomicU32,
    clock: Clock,
    config: StoreConfig,
}

impl Store {
    /// A store on the system clock.
    pub fn new(config: StoreConfig) -> Self {
        Self::with_clock(config, Clock::system())
    }

    /// A store on the given clock (tests use [`Clock::manual`]).
    pub fn with_clock(config: StoreConfig, clock: Clock) -> Self {
        let shards = config.shards.max(1).next_power_of_two();
        let per_shard = config.memory_limit_bytes / shards;
        Self {
            shards: (0..shards).map(|_| ShardLock(Mutex::new(Shard::new(per_shard)))).collect(),
            shard_mask: shards - 1,
            hasher: foldhash::fast::RandomState::default(),
            next_cas: AtomicU64::new(0),
            oldest_live: AtomicU32::new(0),
            clock,
            config: StoreConfig { shards, ..config },
        }
    }

    /// The configuration in force.
    pub fn config(&self) -> &StoreConfig {
        &self.config
    }

    /// The store's clock.
    pub fn clock(&self) -> &Clock {
        &self.clock
    }

    /// Seconds until `exptime` (an expiry on the store's clock), -1 for never.
    pub fn ttl(&self, exptime: u32) -> i64 {
        if exptime == 0 { -1 } else { i64::from(exptime) - i64::from(self.clock.now()) }
    }

    fn locate(&self, key: &[u8]) -> (u64, MutexGuard<'_, Shard>) {
        let hash = std::hash::BuildHasher::hash_one(&self.hasher, key);
        let shard = &self.shards[(hash >> 40) as usize & self.shard_mask].0;
        // A panic elsewhere while holding a shard cannot leave it unsafe to
        // read: every mutation keeps the list and table consistent first.
        (hash, shard.lock().unwrap_or_else(|poisoned| poisoned.into_inner()))
    }

    fn liveness(&self) -> Liveness {
        Liveness { now: self.clock.now(), oldest_live: self.oldest_live.load(Ordering::Relaxed) }
    }

    fn new_cas(&self) -> u64 {
        self.next_cas.fetch_add(1, Ordering::Relaxed) + 1
    }

    /// Reads `key`; with `touch`, also sets its expiration time (`gat`).
    pub fn get(&self, key: &[u8], touch: Option<i64>) -> Option<ItemView> {
        let live = self.liveness();
        let (hash, mut shard) = self.locate(key);
        let idx = shard.lookup(hash, key, live)?;
        let item = shard.item_mut(idx);
        let view = ItemView {
            value: item.value.clone(),
            flags: item.flags,
            cas: item.cas,
            exptime: item.exptime,
            last_access: item.last_access,
            fetched_before: item.fetched,
        };
        item.fetched = true;
        if let Some(exptime) = touch {
            item.exptime = self.clock.expiry(exptime, live.now);
        }
        Some(view)
    }

    /// Sets a present key's expiration time; false when absent.
    pub fn touch(&self, key: &[u8], exptime: i64) -> bool {
        let live = self.liveness();
        let (hash, mut shard) = self.locate(key);
        let Some(idx) = shard.lookup(hash, key, live) else { return false };
        let item = shard.item_mut(idx);
        item.exptime = self.clock.expiry(exptime, live.now);
        // memcached counts a touch as a fetch (`mg ... h` says so afterwards).
        item.fetched = true;
        true
    }

    /// A write (`set`, `add`, `replace`, `append`, `prepend`, `cas`, `ms`).
    pub fn store(&self, req: StoreRequest<'_>) -> StoreOutcome {
        let live = self.liveness();
        let (hash, mut shard) = self.locate(req.key);
        let existing = shard.lookup(hash, req.key, live);
        // memcached's order of checks: add ignores a CAS unique; set and
        // replace with one are a compare-and-swap (NOT_FOUND when absent);
        // append and prepend need the item, then a matching unique.
        // Append and prepend (like arithmetic) read a unique of 0 as none.
        let compare = match req.mode {
            StoreMode::Append | StoreMode::Prepend => req.compare_cas.filter(|&c| c != 0),
            _ => req.compare_cas,
        };
        let cas_differs = |idx: u32| compare.is_some_and(|c| c != shard.item(idx).cas);
        match (req.mode, existing) {
            (StoreMode::Add, Some(_)) => return StoreOutcome::NotStored,
            (StoreMode::Set | StoreMode::Cas | StoreMode::Replace, None) if req.compare_cas.is_some() => {
                return StoreOutcome::NotFound;
            }
            (StoreMode::Replace | StoreMode::Append | StoreMode::Prepend, None) => return StoreOutcome::NotStored,
            (_, Some(idx)) if cas_differs(idx) => return StoreOutcome::Exists,
            _ => {}
        }
        let (value, flags, exptime) = match (req.mode, existing) {
            (StoreMode::Append | StoreMode::Prepend, Some(idx)) => {
                let old = shard.item(idx);
                if item_size(req.key.len(), old.value.len() + req.data.len()) > self.config.item_size_max {
                    return StoreOutcome::NotStored;
                }
                let mut joined = BytesMut::with_capacity(old.value.len() + req.data.len());
                let (first, second): (&[u8], &[u8]) =
                    if req.mode == StoreMode::Append { (&old.value, req.data) } else { (req.data, &old.value) };
                joined.put_slice(first);
                joined.put_slice(second);
                (joined.freeze(), old.flags, old.exptime)
            }
            _ => (Bytes::copy_from_slice(req.data), req.flags, self.clock.expiry(req.exptime, live.now)),
        };
        if let Some(idx) = existing {
            shard.remove(idx);
        }
        let cas = self.new_cas();
        let item = Item {
            key: req.key.into(),
            value,
            flags,
            exptime,
            cas,
            stored_at: live.now,
            last_access: live.now,
            fetched: false,
        };
        match shard.insert(hash, item, live) {
            Ok(_) => StoreOutcome::Stored(cas),
            Err(shard::OutOfMemory) => StoreOutcome::OutOfMemory,
        }
    }

    /// Removes `key` (only with this CAS unique, when given).
    pub fn delete(&self, key: &[u8], compare_cas: Option<u64>) -> DeleteOutcome {
        let live = self.liveness();
        let (hash, mut shard) = self.locate(key);
        let Some(idx) = shard.lookup(hash, key, live) else { return DeleteOutcome::NotFound };
        if compare_cas.is_some_and(|c| c != shard.item(idx).cas) {
            return DeleteOutcome::Exists;
        }
        shard.remove(idx);
        DeleteOutcome::Deleted
    }

    /// `incr`/`decr`/`ma`: memcached's arithmetic on a decimal value. A result
    /// no longer than the old value is written in place, padded with spaces
    /// (memcached does the same); a longer one replaces the value.
    pub fn arith(&self, req: ArithRequest<'_>) -> ArithOutcome {
        let live = self.liveness();
        let (hash, mut shard) = self.locate(req.key);
        let Some(idx) = shard.lookup(hash, req.key, live) else {
            return self.vivify(req, hash, shard, live);
        };
        let item = shard.item(idx);
        if req.compare_cas.is_some_and(|c| c != 0 && c != item.cas) {
            return ArithOutcome::Exists;
        }
        let Some(old) = parse_counter_value(&item.value) else { return ArithOutcome::NonNumeric };
        let value = if req.incr { old.wrapping_add(req.delta) } else { old.saturating_sub(req.delta) };
        let digits = value.to_string();
        let in_place = digits.len() <= item.value.len();
        let new_value = if in_place {
            let mut padded = BytesMut::with_capacity(item.value.len());
            padded.put_slice(digits.as_bytes());
            padded.put_bytes(b' ', item.value.len() - digits.len());
            padded.freeze()
        } else {
            Bytes::from(digits)
        };
        let cas = self.new_cas();
        shard.set_value(idx, new_value);
        let item = shard.item_mut(idx);
        item.cas = cas;
        // A longer result is a new item to memcached: never fetched.
        item.fetched &= in_place;
        if let Some(t) = req.touch {
            item.exptime = self.clock.expiry(t, live.now);
        }
        ArithOutcome::Value { value, cas, exptime: item.exptime }
    }

    fn vivify(
        &self,
        req: ArithRequest<'_>,
        hash: u64,
        mut shard: MutexGuard<'_, Shard>,
        live: Liveness,
    ) -> ArithOutcome {
        let Some((initial, exptime)) = req.vivify else { return ArithOutcome::NotFound };
        let cas = self.new_cas();
        let exptime = self.clock.expiry(exptime, live.now);
        let item = Item {
            key: req.key.into(),
            value: Bytes::from(initial.to_string()),
            flags: 0,
            exptime,
            cas,
            stored_at: live.now,
            last_access: live.now,
            fetched: false,
        };
        match shard.insert(hash, item, live) {
            Ok(_) => ArithOutcome::Value { value: initial, cas, exptime },
            Err(shard::OutOfMemory) => ArithOutcome::NotFound,
        }
    }

    /// `flush_all`: with `delay <= 0` every item goes now; otherwise every item
    /// stored up to the moment the delay ends is invalid from then on.
    pub fn flush_all(&self, delay: i64) {
        if delay > 0 {
            let now = self.clock.now();
            let at = self.clock.expiry(delay, now).saturating_sub(1).max(1);
            self.oldest_live.store(at, Ordering::Relaxed);
            return;
        }
        self.oldest_live.store(0, Ordering::Relaxed);
        for shard in self.shards.iter() {
            shard.0.lock().unwrap_or_else(|p| p.into_inner()).clear();
        }
    }

    /// Totals over every shard (each locked in turn, briefly).
    pub fn stats(&self) -> StoreStats {
        let mut total = StoreStats::default();
        for shard in self.shards.iter() {
            let shard = shard.0.lock().unwrap_or_else(|p| p.into_inner());
            let c = shard.counters;
            total.curr_items += shard.len() as u64;
            total.bytes += shard.bytes() as u64;
            total.total_items += c.total_items;
            total.evictions += c.evictions;
            total.reclaimed += c.reclaimed;
            total.evicted_unfetched += c.evicted_unfetched;
            total.expired_unfetched += c.expired_unfetched;
        }
        total
    }

    /// Zeroes the resettable counters (`stats reset`).
    pub fn reset_stats(&self) {
        for shard in self.shards.iter() {
            let mut shard = shard.0.lock().unwrap_or_else(|p| p.into_inner());
            shard.counters = Default::default();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store() -> Store {
        Store::with_clock(StoreConfig::new(64 << 20, 1 << 20, 2), Clock::manual())
    }

    fn set(s: &Store, key: &str, value: &str, exptime: i64) -> StoreOutcome {
        s.store(StoreRequest {
            mode: StoreMode::Set,
            key: key.as_bytes(),
            flags: 0,
            exptime,
            data: value.as_bytes(),
            compare_cas: None,
        })
    }

    fn incr(s: &Store, key: &str, incr: bool, delta: u64) -> ArithOutcome {
        s.arith(ArithRequest { key: key.as_bytes(), incr, delta, compare_cas: None, vivify: None, touch: None })
    }

    #[test]
    fn relative_expiry_follows_the_clock() {
        let s = store();
        set(&s, "k", "v", 10);
        s.clock().advance(9);
        assert!(s.get(b"k", None).is_some());
        s.clock().advance(1);
        assert!(s.get(b"k", None).is_none());
        set(&s, "gone", "v", -1);
        assert!(s.get(b"gone", None).is_none());
    }

    #[test]
    fn arithmetic_wraps_floors_and_pads_like_memcached() {
        let s = store();
        set(&s, "n", "18446744073709551615", 0);
        assert!(matches!(incr(&s, "n", true, 2), ArithOutcome::Value { value: 1, .. }));
        assert_eq!(&s.get(b"n", None).unwrap().value[..], b"1                   ");
        assert!(matches!(incr(&s, "n", false, 5), ArithOutcome::Value { value: 0, .. }));
        set(&s, "t", "abc", 0);
        assert_eq!(incr(&s, "t", true, 1), ArithOutcome::NonNumeric);
        assert_eq!(incr(&s, "missing", true, 1), ArithOutcome::NotFound);
    }

    #[test]
    fn cas_uniques_change_on_every_write() {
        let s = store();
        let StoreOutcome::Stored(first) = set(&s, "k", "1", 0) else { panic!() };
        let req = |cas| StoreRequest {
            mode: StoreMode::Cas,
            key: b"k",
            flags: 0,
            exptime: 0,
            data: b"2",
            compare_cas: Some(cas),
        };
        assert!(matches!(s.store(req(first)), StoreOutcome::Stored(c) if c > first));
        assert_eq!(s.store(req(first)), StoreOutcome::Exists);
        assert_eq!(s.delete(b"k", Some(first)), DeleteOutcome::Exists);
    }

    /// `mg k l` answered `l0` after any wait: the lookup moved the access
    /// time to now before the view copied it.
    #[test]
    fn a_read_reports_the_previous_access_time() {
        let s = store();
        set(&s, "k", "v", 0);
        let stored_at = s.clock().now();
        s.clock().advance(5);
        let first = s.get(b"k", None).unwrap();
        assert_eq!(first.last_access, stored_at, "the first read sees the store's time");
        s.clock().advance(3);
        let second = s.get(b"k", None).unwrap();
        assert_eq!(second.last_access, stored_at + 5, "the second read sees the first read's time");
    }

    #[test]
    fn delayed_flush_invalidates_items_stored_before_it() {
        let s = store();
        set(&s, "old", "v", 0);
        s.flush_all(5);
        assert!(s.get(b"old", None).is_some());
        s.clock().advance(5);
        assert!(s.get(b"old", None).is_none());
        set(&s, "new", "v", 0);
        assert!(s.get(b"new", None).is_some());
        s.flush_all(0);
        assert!(s.get(b"new", None).is_none());
        assert_eq!(s.stats().curr_items, 0);
    }

    #[test]
    fn memory_limit_evicts_and_counts() {
        let s = Store::with_clock(
            StoreConfig { memory_limit_bytes: 64 * 1024, item_size_max: 1024, shards: 1 },
            Clock::manual(),
        );
        for i in 0..2000 {
            set(&s, &format!("key{i}"), &"v".repeat(100), 0);
        }
        let stats = s.stats();
        assert!(stats.bytes <= 64 * 1024);
        assert!(stats.evictions > 0);
        assert_eq!(stats.curr_items + stats.evictions, 2000);
        assert!(s.get(b"key1999", None).is_some(), "the newest item survives");
        assert!(s.get(b"key0", None).is_none(), "the oldest was evicted");
    }
}
