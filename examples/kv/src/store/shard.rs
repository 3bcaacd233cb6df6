//! One shard of the store: a hash table of items (keyed by a hash computed once
//! per request), an intrusive LRU list over a slot vector, and a memory budget
//! that evicts from the LRU tail.

use std::sync::Arc;

use bytes::Bytes;
use hashbrown::HashTable;

use super::classes::SizeClasses;
use super::item_size;

/// End of the LRU list.
const NIL: u32 = u32::MAX;

/// A stored item.
#[derive(Debug)]
pub(crate) struct Item {
    pub key: Box<[u8]>,
    pub value: Bytes,
    pub flags: u32,
    /// Expiry on the store's clock; 0 never.
    pub exptime: u32,
    pub cas: u64,
    /// Clock reading when stored (for delayed `flush_all`).
    pub stored_at: u32,
    /// Clock reading of the last access.
    pub last_access: u32,
    /// Whether a read has returned it.
    pub fetched: bool,
    /// The key was given in base64 (meta `b`): meta replies encode it again.
    pub key_binary: bool,
    /// Marked stale by a meta invalidation (`md I`, `ms I`).
    pub stale: bool,
    /// A meta get already handed out the recache token (`W`).
    pub token_sent: bool,
}

impl Item {
    /// A new item with no access yet and no meta marks.
    pub(crate) fn new(key: &[u8], value: Bytes, flags: u32, exptime: u32, cas: u64, now: u32) -> Self {
        Self {
            key: key.into(),
            value,
            flags,
            exptime,
            cas,
            stored_at: now,
            last_access: now,
            fetched: false,
            key_binary: false,
            stale: false,
            token_sent: false,
        }
    }

    /// The bytes memcached would count for it.
    pub(crate) fn size(&self) -> usize {
        item_size(self.key.len(), self.value.len(), self.flags)
    }
}

/// Whether an item is still visible at a clock reading.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Liveness {
    pub now: u32,
    /// memcached's `oldest_live`: items stored at or before it are flushed
    /// once the clock reaches it; 0 means no delayed flush.
    pub oldest_live: u32,
}

impl Liveness {
    pub(crate) fn is_live(&self, item: &Item) -> bool {
        let expired = item.exptime != 0 && item.exptime <= self.now;
        !expired && !self.is_flushed(item)
    }

    /// Whether a `flush_all` made the item invisible.
    pub(crate) fn is_flushed(&self, item: &Item) -> bool {
        self.oldest_live != 0 && self.oldest_live <= self.now && item.stored_at <= self.oldest_live
    }
}

#[derive(Debug)]
struct Slot {
    item: Item,
    hash: u64,
    /// memcached's size class of the item (see `classes.rs`).
    class: u8,
    prev: u32,
    next: u32,
}

/// Counters a shard keeps under its lock.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct ShardCounters {
    pub total_items: u64,
    /// Live items dropped to make room.
    pub evictions: u64,
    /// Expired or flushed items whose memory was reused.
    pub reclaimed: u64,
    pub evicted_unfetched: u64,
    pub expired_unfetched: u64,
    /// Lookups that found an expired item.
    pub get_expired: u64,
    /// Lookups that found a flushed item.
    pub get_flushed: u64,
}

impl ClassStats {
    /// Counts a read that found an item: a touch (`gat`, `mg T`) or a get.
    pub(crate) fn count_read(&mut self, touch: bool) {
        if touch {
            self.touch_hits += 1;
        } else {
            self.get_hits += 1;
        }
    }
}

/// Per size class figures (memcached's `stats items` and `stats slabs`).
#[derive(Debug, Default, Clone, Copy)]
pub struct ClassStats {
    /// Items held.
    pub number: u64,
    /// Their bytes, counted as memcached does (`mem_requested`).
    pub mem_requested: u64,
    /// Live items evicted.
    pub evicted: u64,
    /// Evicted items that had an expiration time.
    pub evicted_nonzero: u64,
    /// Seconds since the last evicted item's last access.
    pub evicted_time: u64,
    /// Items that did not fit at all.
    pub outofmemory: u64,
    /// Expired items whose room was reused.
    pub reclaimed: u64,
    /// Expired items never read.
    pub expired_unfetched: u64,
    /// Evicted items never read.
    pub evicted_unfetched: u64,
    /// Reads that found an item.
    pub get_hits: u64,
    /// Writes stored into the class.
    pub cmd_set: u64,
    /// Deletes that found an item.
    pub delete_hits: u64,
    /// `incr` that changed an item.
    pub incr_hits: u64,
    /// `decr` that changed an item.
    pub decr_hits: u64,
    /// Compare-and-swaps that matched.
    pub cas_hits: u64,
    /// Compare-and-swaps with a stale unique.
    pub cas_badval: u64,
    /// Touches that found an item.
    pub touch_hits: u64,
    /// The clock reading of the least recently used item's last access (0: none).
    pub oldest_access: u32,
    /// Whether the class ever held an item (memcached keeps a class's pages,
    /// and lists the class, once it had one).
    pub used: bool,
}

/// The item does not fit in the shard's budget even with every other item evicted.
#[derive(Debug)]
pub(crate) struct OutOfMemory;

#[derive(Debug)]
pub(crate) struct Shard {
    table: HashTable<u32>,
    slots: Vec<Option<Slot>>,
    free: Vec<u32>,
    /// Most recently used.
    head: u32,
    /// Least recently used.
    tail: u32,
    bytes: usize,
    limit_bytes: usize,
    pub counters: ShardCounters,
    size_classes: Arc<SizeClasses>,
    /// Indexed by class (entry 0 unused).
    classes: Vec<ClassStats>,
}

impl Shard {
    pub(crate) fn new(limit_bytes: usize, size_classes: Arc<SizeClasses>) -> Self {
        Self {
            table: HashTable::new(),
            slots: Vec::new(),
            free: Vec::new(),
            head: NIL,
            tail: NIL,
            bytes: 0,
            limit_bytes,
            counters: ShardCounters::default(),
            classes: vec![ClassStats::default(); size_classes.len() + 1],
            size_classes,
        }
    }

    /// Changes the memory budget (`cache_memlimit`); a smaller one evicts on
    /// the next insert.
    pub(crate) fn set_limit_bytes(&mut self, limit_bytes: usize) {
        self.limit_bytes = limit_bytes;
    }

    /// The per class figures, with each class's oldest access found by walking
    /// the LRU from its tail.
    pub(crate) fn class_stats(&self) -> Vec<ClassStats> {
        let mut stats = self.classes.clone();
        let mut idx = self.tail;
        while idx != NIL {
            let slot = self.slot(idx);
            let class = &mut stats[usize::from(slot.class)];
            if class.oldest_access == 0 {
                class.oldest_access = slot.item.last_access;
            }
            idx = slot.prev;
        }
        stats
    }

    /// The per class counters of the item at `idx`, to count a command on it.
    pub(crate) fn class_of_item(&mut self, idx: u32) -> &mut ClassStats {
        let class = usize::from(self.slot(idx).class);
        &mut self.classes[class]
    }

    /// The class an item of `item`'s size goes in.
    pub(crate) fn class_for(&self, item: &Item) -> u8 {
        u8::try_from(self.size_classes.class_of(item.size())).unwrap_or(u8::MAX)
    }

    /// Zeroes the counters (`stats reset`), keeping the item counts.
    pub(crate) fn reset_counters(&mut self) {
        self.counters = ShardCounters::default();
        for class in &mut self.classes {
            *class = ClassStats {
                number: class.number,
                mem_requested: class.mem_requested,
                used: class.used,
                ..ClassStats::default()
            };
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.table.len()
    }

    pub(crate) fn bytes(&self) -> usize {
        self.bytes
    }

    fn slot(&self, idx: u32) -> &Slot {
        self.slots[idx as usize].as_ref().expect("linked slots are occupied")
    }

    fn slot_mut(&mut self, idx: u32) -> &mut Slot {
        self.slots[idx as usize].as_mut().expect("linked slots are occupied")
    }

    /// The live item under `key`, bumped to the LRU head; an expired or flushed
    /// one is removed on the way. The item's access time is the caller's to
    /// update, after it has read the previous one.
    pub(crate) fn lookup(&mut self, hash: u64, key: &[u8], live: Liveness) -> Option<u32> {
        let idx = self.find(hash, key, live)?;
        self.bump(idx);
        Some(idx)
    }

    /// The live item under `key`, left where it is in the LRU (meta `u`).
    pub(crate) fn find(&mut self, hash: u64, key: &[u8], live: Liveness) -> Option<u32> {
        let slots = &self.slots;
        let idx = *self.table.find(hash, |&i| slots[i as usize].as_ref().is_some_and(|s| &*s.item.key == key))?;
        let item = &self.slot(idx).item;
        if !live.is_live(item) {
            if live.is_flushed(item) {
                self.counters.get_flushed += 1;
            } else {
                self.counters.get_expired += 1;
            }
            self.remove(idx);
            return None;
        }
        Some(idx)
    }

    /// Buckets in the hash table.
    pub(crate) fn table_buckets(&self) -> usize {
        self.table.capacity()
    }

    /// Moves an item to the LRU head.
    pub(crate) fn bump(&mut self, idx: u32) {
        self.unlink(idx);
        self.push_head(idx);
    }

    pub(crate) fn item(&self, idx: u32) -> &Item {
        &self.slot(idx).item
    }

    pub(crate) fn item_mut(&mut self, idx: u32) -> &mut Item {
        &mut self.slot_mut(idx).item
    }

    /// Replaces an item's value in place, keeping its place and metadata.
    pub(crate) fn set_value(&mut self, idx: u32, value: Bytes) {
        self.uncount(idx);
        let slot = self.slot_mut(idx);
        slot.item.value = value;
        let class = self.class_for(&self.slot(idx).item);
        self.slot_mut(idx).class = class;
        self.count(idx);
    }

    /// Adds an item's bytes to the shard's and its class's totals.
    fn count(&mut self, idx: u32) {
        let slot = self.slot(idx);
        let (size, class) = (slot.item.size(), usize::from(slot.class));
        self.bytes += size;
        self.classes[class].number += 1;
        self.classes[class].mem_requested += size as u64;
    }

    /// Takes an item's bytes off the totals.
    fn uncount(&mut self, idx: u32) {
        let slot = self.slot(idx);
        let (size, class) = (slot.item.size(), usize::from(slot.class));
        self.bytes -= size;
        self.classes[class].number -= 1;
        self.classes[class].mem_requested -= size as u64;
    }

    /// Removes an item and returns it.
    pub(crate) fn remove(&mut self, idx: u32) -> Item {
        self.uncount(idx);
        self.unlink(idx);
        let slot = self.slots[idx as usize].take().expect("linked slots are occupied");
        if let Ok(entry) = self.table.find_entry(slot.hash, |&i| i == idx) {
            entry.remove();
        }
        self.free.push(idx);
        slot.item
    }

    /// Inserts an item whose key is absent, evicting from the LRU tail to make
    /// room.
    ///
    /// # Errors
    /// [`OutOfMemory`] when the item does not fit in the shard at all.
    pub(crate) fn insert(&mut self, hash: u64, item: Item, live: Liveness) -> Result<u32, OutOfMemory> {
        let size = item.size();
        let class = self.class_for(&item);
        if size > self.limit_bytes {
            self.classes[usize::from(class)].outofmemory += 1;
            return Err(OutOfMemory);
        }
        while self.bytes + size > self.limit_bytes && self.tail != NIL {
            self.evict_tail(live);
        }
        self.counters.total_items += 1;
        self.classes[usize::from(class)].cmd_set += 1;
        self.classes[usize::from(class)].used = true;
        let slot = Slot { item, hash, class, prev: NIL, next: NIL };
        let idx = match self.free.pop() {
            Some(i) => {
                self.slots[i as usize] = Some(slot);
                i
            }
            None => {
                self.slots.push(Some(slot));
                (self.slots.len() - 1) as u32
            }
        };
        let slots = &self.slots;
        self.table.insert_unique(hash, idx, |&i| slots[i as usize].as_ref().map_or(0, |s| s.hash));
        self.count(idx);
        self.push_head(idx);
        Ok(idx)
    }

    fn evict_tail(&mut self, live: Liveness) {
        let idx = self.tail;
        let class = usize::from(self.slot(idx).class);
        let item = self.remove(idx);
        let stats = &mut self.classes[class];
        if live.is_live(&item) {
            self.counters.evictions += 1;
            self.counters.evicted_unfetched += u64::from(!item.fetched);
            stats.evicted += 1;
            stats.evicted_nonzero += u64::from(item.exptime != 0);
            stats.evicted_time = u64::from(live.now.saturating_sub(item.last_access));
            stats.evicted_unfetched += u64::from(!item.fetched);
        } else {
            self.counters.reclaimed += 1;
            self.counters.expired_unfetched += u64::from(!item.fetched);
            stats.reclaimed += 1;
            stats.expired_unfetched += u64::from(!item.fetched);
        }
    }

    /// Drops every item.
    pub(crate) fn clear(&mut self) {
        self.table.clear();
        self.slots.clear();
        self.free.clear();
        self.head = NIL;
        self.tail = NIL;
        self.bytes = 0;
        for class in &mut self.classes {
            class.number = 0;
            class.mem_requested = 0;
        }
    }

    fn unlink(&mut self, idx: u32) {
        let (prev, next) = {
            let s = self.slot(idx);
            (s.prev, s.next)
        };
        match prev {
            NIL => self.head = next,
            p => self.slot_mut(p).next = next,
        }
        match next {
            NIL => self.tail = prev,
            n => self.slot_mut(n).prev = prev,
        }
        let s = self.slot_mut(idx);
        s.prev = NIL;
        s.next = NIL;
    }

    fn push_head(&mut self, idx: u32) {
        let old_head = self.head;
        {
            let s = self.slot_mut(idx);
            s.prev = NIL;
            s.next = old_head;
        }
        match old_head {
            NIL => self.tail = idx,
            h => self.slot_mut(h).prev = idx,
        }
        self.head = idx;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item(key: &str, value_len: usize) -> Item {
        Item::new(key.as_bytes(), Bytes::from(vec![b'v'; value_len]), 0, 0, 1, 2)
    }

    fn shard(limit_bytes: usize) -> Shard {
        Shard::new(limit_bytes, Arc::new(SizeClasses::new(1 << 20)))
    }

    const LIVE: Liveness = Liveness { now: 10, oldest_live: 0 };

    #[test]
    fn evicts_least_recently_used_first() {
        let one = item_size(1, 100, 0);
        let mut shard = shard(3 * one);
        for (h, k) in [(1, "a"), (2, "b"), (3, "c")] {
            shard.insert(h, item(k, 100), LIVE).unwrap();
        }
        // Touch "a": "b" becomes the least recently used.
        assert!(shard.lookup(1, b"a", LIVE).is_some());
        shard.insert(4, item("d", 100), LIVE).unwrap();
        assert!(shard.lookup(2, b"b", LIVE).is_none(), "b was evicted");
        assert!(shard.lookup(1, b"a", LIVE).is_some());
        assert!(shard.lookup(3, b"c", LIVE).is_some());
        assert_eq!(shard.counters.evictions, 1);
        assert_eq!(shard.len(), 3);
        assert_eq!(shard.bytes(), 3 * one);
    }

    #[test]
    fn expired_items_vanish_and_count_as_reclaimed_when_evicted() {
        let one = item_size(1, 10, 0);
        let mut shard = shard(2 * one);
        let mut short = item("s", 10);
        short.exptime = 5;
        shard.insert(1, short, LIVE).unwrap();
        shard.insert(2, item("l", 10), Liveness { now: 3, oldest_live: 0 }).unwrap();
        assert!(shard.lookup(1, b"s", Liveness { now: 4, oldest_live: 0 }).is_some());
        shard.lookup(2, b"l", LIVE);
        shard.insert(3, item("n", 10), LIVE).unwrap();
        assert_eq!(shard.counters.reclaimed, 1);
        assert_eq!(shard.counters.evictions, 0);
        assert!(shard.insert(4, item("huge", 10 * one), LIVE).is_err());
    }

    #[test]
    fn colliding_hashes_keep_keys_apart() {
        let mut shard = shard(1 << 20);
        shard.insert(7, item("x", 1), LIVE).unwrap();
        shard.insert(7, item("y", 2), LIVE).unwrap();
        let x = shard.lookup(7, b"x", LIVE).unwrap();
        let y = shard.lookup(7, b"y", LIVE).unwrap();
        assert_eq!(shard.item(x).value.len(), 1);
        assert_eq!(shard.item(y).value.len(), 2);
        shard.remove(x);
        assert!(shard.lookup(7, b"x", LIVE).is_none());
        assert!(shard.lookup(7, b"y", LIVE).is_some());
    }
}
