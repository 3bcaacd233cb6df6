//! The key-value store shared by every core: a power-of-two number of shards,
//! each behind its own lock with its own LRU and memory budget, so no global
//! lock sits on any path (see `docs/kv.md` for the choice and its numbers).

mod classes;
mod clock;
mod shard;

use std::sync::atomic::{AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use bytes::{BufMut, Bytes, BytesMut};

pub use classes::{GROWTH_FACTOR, SizeClasses};
pub use clock::Clock;
pub use shard::ClassStats;
use shard::{Item, Liveness, Shard};

use crate::protocol::{StoreMode, parse_counter_value};

/// Bytes memcached's item header takes with its CAS field (64-bit build).
pub const ITEM_HEADER_BYTES: usize = 56;
/// Bytes memcached adds for non-zero client flags.
const CLIENT_FLAGS_BYTES: usize = 4;

/// The bytes an item counts against the memory limit and the item size limit,
/// as memcached counts them: header, key and its NUL, value and its `\r\n`,
/// and the client flags when they are not zero.
pub fn item_size(key_len: usize, value_len: usize, flags: u32) -> usize {
    ITEM_HEADER_BYTES + key_len + 1 + value_len + 2 + if flags == 0 { 0 } else { CLIENT_FLAGS_BYTES }
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

/// An item as a meta command sees it, under its shard's lock: what `mg`,
/// `ma` and `me` report and the marks they change.
#[derive(Debug)]
pub struct MetaItem<'a> {
    item: &'a mut Item,
    created: bool,
    class: usize,
    clock: &'a Clock,
    now: u32,
}

impl MetaItem<'_> {
    /// The value.
    pub fn value(&self) -> &Bytes {
        &self.item.value
    }

    /// The key as stored (decoded, when it came in base64).
    pub fn key(&self) -> &[u8] {
        &self.item.key
    }

    /// Whether the key came in base64 (replies encode it again).
    pub fn key_binary(&self) -> bool {
        self.item.key_binary
    }

    /// Client flags.
    pub fn flags(&self) -> u32 {
        self.item.flags
    }

    /// CAS unique.
    pub fn cas(&self) -> u64 {
        self.item.cas
    }

    /// Expiry on the store's clock (0: never).
    pub fn exptime(&self) -> u32 {
        self.item.exptime
    }

    /// Seconds to expiry, -1 for never.
    pub fn ttl(&self) -> i64 {
        ttl(self.item.exptime, self.now)
    }

    /// Sets the expiration from a client's time (`T`, `N`).
    pub fn set_expiry(&mut self, exptime: i64) {
        self.item.exptime = self.clock.expiry(exptime, self.now);
    }

    /// The expiry a client's time would give (to compare with, for `R`).
    pub fn expiry_of(&self, exptime: i64) -> u32 {
        self.clock.expiry(exptime, self.now)
    }

    /// Seconds since the last access before this one.
    pub fn idle_secs(&self) -> u32 {
        self.now.saturating_sub(self.item.last_access)
    }

    /// Whether a read had returned it before this one.
    pub fn fetched(&self) -> bool {
        self.item.fetched
    }

    /// Whether it was marked stale.
    pub fn stale(&self) -> bool {
        self.item.stale
    }

    /// Whether a win token was handed out already.
    pub fn token_sent(&self) -> bool {
        self.item.token_sent
    }

    /// Records that this request won the recache token.
    pub fn send_token(&mut self) {
        self.item.token_sent = true;
    }

    /// Whether this request created it (vivify on miss).
    pub fn created(&self) -> bool {
        self.created
    }

    /// memcached's size class of the item.
    pub fn class(&self) -> usize {
        self.class
    }

    /// The bytes memcached would count for it.
    pub fn total_size(&self) -> usize {
        self.item.size()
    }
}

/// Seconds from `now` to `exptime` (on the store's clock), -1 for never.
fn ttl(exptime: u32, now: u32) -> i64 {
    if exptime == 0 { -1 } else { i64::from(exptime) - i64::from(now) }
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
    /// The key came in base64 (meta `b`).
    pub key_binary: bool,
    /// Meta `I`: a compare-and-swap with an older unique stores the value
    /// marked stale (keeping the expiry) instead of failing.
    pub invalidate: bool,
    /// Meta `E`: the new item's CAS unique, instead of the next one.
    pub explicit_cas: Option<u64>,
}

impl<'a> StoreRequest<'a> {
    /// A plain request: no CAS, plain key, no meta marks.
    pub fn new(mode: StoreMode, key: &'a [u8], flags: u32, exptime: i64, data: &'a [u8]) -> Self {
        Self {
            mode,
            key,
            flags,
            exptime,
            data,
            compare_cas: None,
            key_binary: false,
            invalidate: false,
            explicit_cas: None,
        }
    }

    /// Whether memcached runs this as a compare-and-swap (`cas`, or `ms` with
    /// `C` in set or replace mode), which `stats` counts as one.
    pub fn is_compare_and_swap(&self) -> bool {
        self.mode == StoreMode::Cas
            || (self.compare_cas.is_some() && matches!(self.mode, StoreMode::Set | StoreMode::Replace))
    }
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

/// A delete (`delete`, `md`).
#[derive(Debug, Clone, Copy, Default)]
pub struct DeleteRequest {
    /// Only when the item has this CAS unique.
    pub compare_cas: Option<u64>,
    /// Meta `I`: mark the item stale (new CAS unique, token cleared) instead
    /// of removing it.
    pub invalidate: bool,
    /// With `invalidate`: a new expiration time.
    pub touch: Option<i64>,
    /// With `invalidate`: the new CAS unique (meta `E`).
    pub explicit_cas: Option<u64>,
}

/// What a delete did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeleteOutcome {
    /// Removed (or marked stale).
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
    /// Only when the item has this CAS unique (0 means none).
    pub compare_cas: Option<u64>,
    /// Create a missing item with this value (never expiring until the
    /// caller sets an expiry through [`MetaItem::set_expiry`]).
    pub vivify: Option<u64>,
    /// The changed item's CAS unique (meta `E`), instead of the next one.
    pub explicit_cas: Option<u64>,
}

impl<'a> ArithRequest<'a> {
    /// `incr`/`decr` as the classic command runs it.
    pub fn new(key: &'a [u8], incr: bool, delta: u64) -> Self {
        Self { key, incr, delta, compare_cas: None, vivify: None, explicit_cas: None }
    }
}

/// What an arithmetic command did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ArithOutcome {
    /// The new value and CAS unique.
    Value {
        /// The number now stored.
        value: u64,
        /// The item's new CAS unique.
        cas: u64,
    },
    /// Absent.
    NotFound,
    /// The value is not a number.
    NonNumeric,
    /// Present with another CAS unique.
    Exists,
}

/// A meta get's options that the store applies.
#[derive(Debug, Clone, Copy, Default)]
pub struct MetaGetRequest {
    /// `u`: neither bump the item in the LRU nor mark it fetched.
    pub no_update: bool,
    /// `N`: create an empty item on a miss.
    pub vivify: bool,
    /// `T`: counted as a touch, not a get, in the class counters.
    pub touch: bool,
    /// `E`: the CAS unique of a created item.
    pub explicit_cas: Option<u64>,
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
    /// Lookups that found an expired item.
    pub get_expired: u64,
    /// Lookups that found a flushed item.
    pub get_flushed: u64,
}

/// The hash tables' size, for `stats`.
#[derive(Debug, Clone, Copy, Default)]
pub struct HashTableStats {
    /// Buckets over every shard.
    pub buckets: usize,
    /// Their bytes (a 32-bit slot index each).
    pub bytes: usize,
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
    /// The memory limit in force (`-m`, changed by `cache_memlimit`).
    memory_limit_bytes: AtomicUsize,
    size_classes: Arc<SizeClasses>,
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
        let size_classes = Arc::new(SizeClasses::new(config.item_size_max));
        Self {
            shards: (0..shards).map(|_| ShardLock(Mutex::new(Shard::new(per_shard, size_classes.clone())))).collect(),
            shard_mask: shards - 1,
            hasher: foldhash::fast::RandomState::default(),
            next_cas: AtomicU64::new(0),
            oldest_live: AtomicU32::new(0),
            clock,
            config: StoreConfig { shards, ..config },
            memory_limit_bytes: AtomicUsize::new(config.memory_limit_bytes),
            size_classes,
        }
    }

    /// The configuration the store started with.
    pub fn config(&self) -> &StoreConfig {
        &self.config
    }

    /// memcached's size classes for this store's item size limit.
    pub fn size_classes(&self) -> &SizeClasses {
        &self.size_classes
    }

    /// The memory limit in force.
    pub fn memory_limit_bytes(&self) -> usize {
        self.memory_limit_bytes.load(Ordering::Relaxed)
    }

    /// `cache_memlimit`: a new memory limit, split over the shards as at
    /// start; a smaller one evicts as items are next stored.
    pub fn set_memory_limit(&self, bytes: usize) {
        self.memory_limit_bytes.store(bytes, Ordering::Relaxed);
        let per_shard = bytes / self.shards.len();
        for shard in self.shards.iter() {
            shard.0.lock().unwrap_or_else(|p| p.into_inner()).set_limit_bytes(per_shard);
        }
    }

    /// The store's clock.
    pub fn clock(&self) -> &Clock {
        &self.clock
    }

    /// Seconds until `exptime` (an expiry on the store's clock), -1 for never.
    pub fn ttl(&self, exptime: u32) -> i64 {
        ttl(exptime, self.clock.now())
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
        shard.class_of_item(idx).count_read(touch.is_some());
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
        item.last_access = live.now;
        if let Some(exptime) = touch {
            item.exptime = self.clock.expiry(exptime, live.now);
        }
        Some(view)
    }

    /// `mg`: finds `key` (creating an empty item on a miss when asked), lets
    /// `reply` read and mark it under the shard's lock, then bumps it and
    /// marks it fetched unless asked not to. `None` on a miss.
    pub fn meta_get<T>(
        &self,
        key: &[u8],
        req: MetaGetRequest,
        reply: impl FnOnce(&mut MetaItem<'_>) -> T,
    ) -> Option<T> {
        let live = self.liveness();
        let (hash, mut shard) = self.locate(key);
        let (idx, created) = match shard.find(hash, key, live) {
            Some(idx) => (idx, false),
            None if req.vivify => {
                let cas = req.explicit_cas.unwrap_or_else(|| self.new_cas());
                let item = Item::new(key, Bytes::new(), 0, 0, cas, live.now);
                (shard.insert(hash, item, live).ok()?, true)
            }
            None => return None,
        };
        shard.class_of_item(idx).count_read(req.touch);
        let class = usize::from(shard.class_for(shard.item(idx)));
        let item = shard.item_mut(idx);
        let answer = reply(&mut MetaItem { item, created, class, clock: &self.clock, now: live.now });
        if !req.no_update {
            let item = shard.item_mut(idx);
            item.fetched = true;
            item.last_access = live.now;
            shard.bump(idx);
        }
        Some(answer)
    }

    /// `me`: the item under `key` as `reply` reads it, without bumping it.
    pub fn meta_debug<T>(&self, key: &[u8], reply: impl FnOnce(&mut MetaItem<'_>) -> T) -> Option<T> {
        let live = self.liveness();
        let (hash, mut shard) = self.locate(key);
        let idx = shard.find(hash, key, live)?;
        let class = usize::from(shard.class_for(shard.item(idx)));
        let item = shard.item_mut(idx);
        Some(reply(&mut MetaItem { item, created: false, class, clock: &self.clock, now: live.now }))
    }

    /// Sets a present key's expiration time; false when absent.
    pub fn touch(&self, key: &[u8], exptime: i64) -> bool {
        let live = self.liveness();
        let (hash, mut shard) = self.locate(key);
        let Some(idx) = shard.lookup(hash, key, live) else { return false };
        shard.class_of_item(idx).touch_hits += 1;
        let item = shard.item_mut(idx);
        item.exptime = self.clock.expiry(exptime, live.now);
        // memcached counts a touch as a fetch (`mg ... h` says so afterwards).
        item.fetched = true;
        item.last_access = live.now;
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
        let swap = req.is_compare_and_swap();
        // Meta `I`: an older unique stores the value as stale.
        let stale_write = |idx: u32, shard: &Shard| {
            req.invalidate && swap && compare.is_some_and(|c| c != 0 && c < shard.item(idx).cas)
        };
        let cas_differs = |idx: u32, shard: &Shard| compare.is_some_and(|c| c != shard.item(idx).cas);
        match (req.mode, existing) {
            (StoreMode::Add, Some(_)) => return StoreOutcome::NotStored,
            (StoreMode::Set | StoreMode::Cas | StoreMode::Replace, None) if req.compare_cas.is_some() => {
                return StoreOutcome::NotFound;
            }
            (StoreMode::Replace | StoreMode::Append | StoreMode::Prepend, None) => return StoreOutcome::NotStored,
            (_, Some(idx)) if cas_differs(idx, &shard) && !stale_write(idx, &shard) => {
                if swap {
                    shard.class_of_item(idx).cas_badval += 1;
                }
                return StoreOutcome::Exists;
            }
            _ => {}
        }
        let (value, flags, mut exptime) = match (req.mode, existing) {
            (StoreMode::Append | StoreMode::Prepend, Some(idx)) => {
                let old = shard.item(idx);
                if item_size(req.key.len(), old.value.len() + req.data.len(), old.flags) > self.config.item_size_max {
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
        let mut marks = (false, false);
        if let Some(idx) = existing {
            if swap {
                shard.class_of_item(idx).cas_hits += 1;
            }
            if stale_write(idx, &shard) {
                let old = shard.item(idx);
                exptime = old.exptime;
                marks = (true, old.token_sent);
            }
            shard.remove(idx);
        }
        let cas = req.explicit_cas.unwrap_or_else(|| self.new_cas());
        let mut item = Item::new(req.key, value, flags, exptime, cas, live.now);
        (item.stale, item.token_sent) = marks;
        item.key_binary = req.key_binary;
        match shard.insert(hash, item, live) {
            Ok(_) => StoreOutcome::Stored(cas),
            Err(shard::OutOfMemory) => StoreOutcome::OutOfMemory,
        }
    }

    /// Removes `key`, or with `invalidate` marks it stale.
    pub fn delete(&self, key: &[u8], req: DeleteRequest) -> DeleteOutcome {
        let live = self.liveness();
        let (hash, mut shard) = self.locate(key);
        let Some(idx) = shard.find(hash, key, live) else { return DeleteOutcome::NotFound };
        if req.compare_cas.is_some_and(|c| c != shard.item(idx).cas) {
            return DeleteOutcome::Exists;
        }
        if req.invalidate {
            let cas = req.explicit_cas.unwrap_or_else(|| self.new_cas());
            let item = shard.item_mut(idx);
            if let Some(exptime) = req.touch {
                item.exptime = self.clock.expiry(exptime, live.now);
            }
            item.stale = true;
            item.token_sent = false;
            item.cas = cas;
            return DeleteOutcome::Deleted;
        }
        shard.class_of_item(idx).delete_hits += 1;
        shard.remove(idx);
        DeleteOutcome::Deleted
    }

    /// `incr`/`decr`/`ma`: memcached's arithmetic on a decimal value. A result
    /// no longer than the old value is written in place, padded with spaces
    /// (memcached does the same); a longer one replaces the value. On
    /// success `reply` reads and marks the item under the shard's lock.
    pub fn arith(&self, req: ArithRequest<'_>, reply: impl FnOnce(&mut MetaItem<'_>)) -> ArithOutcome {
        let live = self.liveness();
        let (hash, mut shard) = self.locate(req.key);
        let Some(idx) = shard.lookup(hash, req.key, live) else {
            return self.vivify(req, hash, shard, live, reply);
        };
        let item = shard.item(idx);
        // memcached refuses an empty value before it compares uniques.
        if item.value.is_empty() {
            return ArithOutcome::NonNumeric;
        }
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
        let cas = req.explicit_cas.unwrap_or_else(|| self.new_cas());
        shard.set_value(idx, new_value);
        let class = shard.class_of_item(idx);
        if req.incr {
            class.incr_hits += 1;
        } else {
            class.decr_hits += 1;
        }
        let class = usize::from(shard.class_for(shard.item(idx)));
        let item = shard.item_mut(idx);
        item.cas = cas;
        // A longer result is a new item to memcached: never fetched, and
        // without meta marks.
        if !in_place {
            (item.fetched, item.stale, item.token_sent) = (false, false, false);
        }
        reply(&mut MetaItem { item, created: false, class, clock: &self.clock, now: live.now });
        ArithOutcome::Value { value, cas }
    }

    fn vivify(
        &self,
        req: ArithRequest<'_>,
        hash: u64,
        mut shard: MutexGuard<'_, Shard>,
        live: Liveness,
        reply: impl FnOnce(&mut MetaItem<'_>),
    ) -> ArithOutcome {
        let Some(initial) = req.vivify else { return ArithOutcome::NotFound };
        let cas = req.explicit_cas.unwrap_or_else(|| self.new_cas());
        let item = Item::new(req.key, Bytes::from(initial.to_string()), 0, 0, cas, live.now);
        let Ok(idx) = shard.insert(hash, item, live) else { return ArithOutcome::NotFound };
        let class = usize::from(shard.class_for(shard.item(idx)));
        let item = shard.item_mut(idx);
        reply(&mut MetaItem { item, created: true, class, clock: &self.clock, now: live.now });
        ArithOutcome::Value { value: initial, cas }
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
            total.get_expired += c.get_expired;
            total.get_flushed += c.get_flushed;
        }
        total
    }

    /// The hash tables' size over every shard.
    pub fn hash_table_stats(&self) -> HashTableStats {
        let buckets: usize =
            self.shards.iter().map(|s| s.0.lock().unwrap_or_else(|p| p.into_inner()).table_buckets()).sum();
        HashTableStats { buckets, bytes: buckets * std::mem::size_of::<u32>() }
    }

    /// memcached's `oldest_live`: the clock reading up to which a delayed
    /// `flush_all` invalidates items (0: none pending or done).
    pub fn oldest_live(&self) -> u32 {
        self.oldest_live.load(Ordering::Relaxed)
    }

    /// Per size class figures summed over the shards (index = class; the
    /// oldest access is the least recent over the shards, 0 when empty).
    pub fn class_stats(&self) -> Vec<ClassStats> {
        let mut total = vec![ClassStats::default(); self.size_classes.len() + 1];
        for shard in self.shards.iter() {
            let shard = shard.0.lock().unwrap_or_else(|p| p.into_inner());
            for (sum, class) in total.iter_mut().zip(shard.class_stats()) {
                let oldest = match (sum.oldest_access, class.oldest_access) {
                    (0, b) => b,
                    (a, 0) => a,
                    (a, b) => a.min(b),
                };
                *sum = ClassStats {
                    number: sum.number + class.number,
                    mem_requested: sum.mem_requested + class.mem_requested,
                    evicted: sum.evicted + class.evicted,
                    evicted_nonzero: sum.evicted_nonzero + class.evicted_nonzero,
                    evicted_time: sum.evicted_time.max(class.evicted_time),
                    outofmemory: sum.outofmemory + class.outofmemory,
                    reclaimed: sum.reclaimed + class.reclaimed,
                    expired_unfetched: sum.expired_unfetched + class.expired_unfetched,
                    evicted_unfetched: sum.evicted_unfetched + class.evicted_unfetched,
                    get_hits: sum.get_hits + class.get_hits,
                    cmd_set: sum.cmd_set + class.cmd_set,
                    delete_hits: sum.delete_hits + class.delete_hits,
                    incr_hits: sum.incr_hits + class.incr_hits,
                    decr_hits: sum.decr_hits + class.decr_hits,
                    cas_hits: sum.cas_hits + class.cas_hits,
                    cas_badval: sum.cas_badval + class.cas_badval,
                    touch_hits: sum.touch_hits + class.touch_hits,
                    oldest_access: oldest,
                    used: sum.used || class.used,
                };
            }
        }
        total
    }

    /// Zeroes the resettable counters (`stats reset`).
    pub fn reset_stats(&self) {
        for shard in self.shards.iter() {
            shard.0.lock().unwrap_or_else(|p| p.into_inner()).reset_counters();
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
        s.store(StoreRequest::new(StoreMode::Set, key.as_bytes(), 0, exptime, value.as_bytes()))
    }

    fn incr(s: &Store, key: &str, incr: bool, delta: u64) -> ArithOutcome {
        s.arith(ArithRequest::new(key.as_bytes(), incr, delta), |_| {})
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
        let req = |cas| StoreRequest { compare_cas: Some(cas), ..StoreRequest::new(StoreMode::Cas, b"k", 0, 0, b"2") };
        assert!(matches!(s.store(req(first)), StoreOutcome::Stored(c) if c > first));
        assert_eq!(s.store(req(first)), StoreOutcome::Exists);
        assert_eq!(
            s.delete(b"k", DeleteRequest { compare_cas: Some(first), ..Default::default() }),
            DeleteOutcome::Exists
        );
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
