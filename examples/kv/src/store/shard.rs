//! One shard of the store: a hash table of items (keyed by a hash computed once
//! per request), an intrusive LRU list over a slot vector, and a memory budget
//! that evicts from the LRU tail.

use bytes::Bytes;
use hashbrown::HashTable;

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
}

impl Item {
    fn size(&self) -> usize {
        item_size(self.key.len(), self.value.len())
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
        let flushed = self.oldest_live != 0 && self.oldest_live <= self.now && item.stored_at <= self.oldest_live;
        !expired && !flushed
    }
}

#[derive(Debug)]
struct Slot {
    item: Item,
    hash: u64,
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
}

impl Shard {
    pub(crate) fn new(limit_bytes: usize) -> Self {
        Self {
            table: HashTable::new(),
            slots: Vec::new(),
            free: Vec::new(),
            head: NIL,
            tail: NIL,
            bytes: 0,
            limit_bytes,
            counters: ShardCounters::default(),
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
    /// one is removed on the way.
    pub(crate) fn lookup(&mut self, hash: u64, key: &[u8], live: Liveness) -> Option<u32> {
        let slots = &self.slots;
        let idx = *self.table.find(hash, |&i| slots[i as usize].as_ref().is_some_and(|s| &*s.item.key == key))?;
        if !live.is_live(&self.slot(idx).item) {
            self.remove(idx);
            return None;
        }
        self.unlink(idx);
        self.push_head(idx);
        let item = &mut self.slot_mut(idx).item;
        item.last_access = live.now;
        Some(idx)
    }

    pub(crate) fn item(&self, idx: u32) -> &Item {
        &self.slot(idx).item
    }

    pub(crate) fn item_mut(&mut self, idx: u32) -> &mut Item {
        &mut self.slot_mut(idx).item
    }

    /// Replaces an item's value in place, keeping its place and metadata.
    pub(crate) fn set_value(&mut self, idx: u32, value: Bytes) {
        let slot = self.slot_mut(idx);
        let old = slot.item.size();
        slot.item.value = value;
        let new = slot.item.size();
        self.bytes = self.bytes - old + new;
    }

    /// Removes an item and returns it.
    pub(crate) fn remove(&mut self, idx: u32) -> Item {
        self.unlink(idx);
        let slot = self.slots[idx as usize].take().expect("linked slots are occupied");
        if let Ok(entry) = self.table.find_entry(slot.hash, |&i| i == idx) {
            entry.remove();
        }
        self.free.push(idx);
        self.bytes -= slot.item.size();
        slot.item
    }

    /// Inserts an item whose key is absent, evicting from the LRU tail to make
    /// room.
    ///
    /// # Errors
    /// [`OutOfMemory`] when the item does not fit in the shard at all.
    pub(crate) fn insert(&mut self, hash: u64, item: Item, live: Liveness) -> Result<u32, OutOfMemory> {
        let size = item.size();
        if size > self.limit_bytes {
            return Err(OutOfMemory);
        }
        while self.bytes + size > self.limit_bytes && self.tail != NIL {
            self.evict_tail(live);
        }
        self.counters.total_items += 1;
        let slot = Slot { item, hash, prev: NIL, next: NIL };
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
        self.bytes += size;
        self.push_head(idx);
        Ok(idx)
    }

    fn evict_tail(&mut self, live: Liveness) {
        let idx = self.tail;
        let item = self.remove(idx);
        match (live.is_live(&item), item.fetched) {
            (true, fetched) => {
                self.counters.evictions += 1;
                self.counters.evicted_unfetched += u64::from(!fetched);
            }
            (false, fetched) => {
                self.counters.reclaimed += 1;
                self.counters.expired_unfetched += u64::from(!fetched);
            }
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
        Item {
            key: key.as_bytes().into(),
            value: Bytes::from(vec![b'v'; value_len]),
            flags: 0,
            exptime: 0,
            cas: 1,
            stored_at: 2,
            last_access: 2,
            fetched: false,
        }
    }

    const LIVE: Liveness = Liveness { now: 10, oldest_live: 0 };

    #[test]
    fn evicts_least_recently_used_first() {
        let one = item_size(1, 100);
        let mut shard = Shard::new(3 * one);
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
        let one = item_size(1, 10);
        let mut shard = Shard::new(2 * one);
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
        let mut shard = Shard::new(1 << 20);
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
