//! Command counters for `stats`, one cache-line-aligned slot per serving
//! thread (assigned on first use) so cores do not write the same lines; `stats`
//! sums the slots.

use std::cell::Cell;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

/// A counted event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(usize)]
pub enum Counter {
    /// Keys requested by retrieval commands.
    CmdGet,
    /// Storage commands.
    CmdSet,
    /// `flush_all` commands.
    CmdFlush,
    /// `touch`, `gat`, `gats` keys.
    CmdTouch,
    /// Meta commands.
    CmdMeta,
    /// Keys found by retrieval commands.
    GetHits,
    /// Keys not found by retrieval commands.
    GetMisses,
    /// `delete` on an absent key.
    DeleteMisses,
    /// `delete` on a present key.
    DeleteHits,
    /// `incr` on an absent key.
    IncrMisses,
    /// `incr` done.
    IncrHits,
    /// `decr` on an absent key.
    DecrMisses,
    /// `decr` done.
    DecrHits,
    /// `cas` on an absent key.
    CasMisses,
    /// `cas` stored.
    CasHits,
    /// `cas` with a stale unique.
    CasBadval,
    /// Touches of a present key.
    TouchHits,
    /// Touches of an absent key.
    TouchMisses,
    /// Bytes received from clients.
    BytesRead,
    /// Bytes sent to clients.
    BytesWritten,
    /// Connections accepted.
    TotalConnections,
    /// Connections refused by the connection limit.
    RejectedConnections,
    /// Lines refused with `ERROR` or `CLIENT_ERROR`, and connections closed
    /// for an overlong line or a line that looks like HTTP.
    ProtocolErrors,
    /// Items refused as larger than the item size limit.
    StoreTooLarge,
    /// Items that did not fit in memory.
    StoreNoMemory,
}

const COUNTERS: usize = Counter::StoreNoMemory as usize + 1;

/// Counters that `stats reset` zeroes (all but the connection totals).
const RESETTABLE: [Counter; 23] = [
    Counter::CmdGet,
    Counter::CmdSet,
    Counter::CmdFlush,
    Counter::CmdTouch,
    Counter::CmdMeta,
    Counter::GetHits,
    Counter::GetMisses,
    Counter::DeleteMisses,
    Counter::DeleteHits,
    Counter::IncrMisses,
    Counter::IncrHits,
    Counter::DecrMisses,
    Counter::DecrHits,
    Counter::CasMisses,
    Counter::CasHits,
    Counter::CasBadval,
    Counter::TouchHits,
    Counter::TouchMisses,
    Counter::BytesRead,
    Counter::BytesWritten,
    Counter::ProtocolErrors,
    Counter::StoreTooLarge,
    Counter::StoreNoMemory,
];

#[derive(Debug)]
#[repr(align(128))]
struct Slot([AtomicU64; COUNTERS]);

/// Per-thread counter slots.
#[derive(Debug)]
pub struct Counters {
    slots: Box<[Slot]>,
}

static NEXT_SLOT: AtomicUsize = AtomicUsize::new(0);

thread_local! {
    static THREAD_SLOT: Cell<usize> = const { Cell::new(usize::MAX) };
}

impl Counters {
    /// Counters with `slots` slots (one per serving thread is enough; more
    /// threads share slots, which stays correct).
    pub fn new(slots: usize) -> Self {
        Self { slots: (0..slots.max(1)).map(|_| Slot(std::array::from_fn(|_| AtomicU64::new(0)))).collect() }
    }

    fn slot(&self) -> &Slot {
        let index = THREAD_SLOT.with(|s| {
            if s.get() == usize::MAX {
                s.set(NEXT_SLOT.fetch_add(1, Ordering::Relaxed));
            }
            s.get()
        });
        &self.slots[index % self.slots.len()]
    }

    /// Adds `n` to a counter.
    pub fn add(&self, counter: Counter, n: u64) {
        self.slot().0[counter as usize].fetch_add(n, Ordering::Relaxed);
    }

    /// Adds one to a counter.
    pub fn incr(&self, counter: Counter) {
        self.add(counter, 1);
    }

    /// The sum over every slot.
    pub fn get(&self, counter: Counter) -> u64 {
        self.slots.iter().map(|s| s.0[counter as usize].load(Ordering::Relaxed)).sum()
    }

    /// Zeroes the counters `stats reset` covers.
    pub fn reset(&self) {
        for slot in self.slots.iter() {
            for c in RESETTABLE {
                slot.0[c as usize].store(0, Ordering::Relaxed);
            }
        }
    }
}
