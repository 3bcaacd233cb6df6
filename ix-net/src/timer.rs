//! The hierarchical timer wheel (Varghese–Lauck, as in IX) behind every TCP
//! timer: three wheels of 256 slots with 16 µs, 4.096 ms and 1.048576 s ticks,
//! and an overflow list for deadlines beyond the top wheel.

use std::fmt;

use slab::Slab;

use crate::time::Instant;

/// The resolution of the wheel: the duration of one slot of the lowest wheel.
pub const TICK_MICROS: u64 = 16;

/// Slots in each wheel.
pub const WHEEL_SLOTS: usize = 256;

/// Number of wheels below the overflow list.
pub const WHEEL_LEVELS: usize = 3;

/// The duration of one slot on each wheel, lowest first: 16 µs, 4.096 ms and
/// 1.048576 s.
pub const SLOT_MICROS: [u64; WHEEL_LEVELS] = [TICK_MICROS, TICK_MICROS << 8, TICK_MICROS << 16];

/// How far ahead the wheels reach (about 268 s). A timer further out than the
/// current top-wheel revolution waits in the overflow list, which is
/// re-examined each time the top wheel starts a new revolution.
pub const HORIZON_MICROS: u64 = TICK_MICROS << 24;

/// log2 of [`WHEEL_SLOTS`].
const SLOT_BITS: u32 = 8;
const SLOT_MASK: u64 = (WHEEL_SLOTS as u64) - 1;
/// Ticks per revolution of all wheels: the span the overflow list starts at.
const TOP_REVOLUTION_BITS: u32 = SLOT_BITS * WHEEL_LEVELS as u32;

/// List ids: `level * 256 + slot` for the wheel slots, then these two.
const OVERFLOW: usize = WHEEL_LEVELS * WHEEL_SLOTS;
/// Timers inserted with a deadline already reached: fired by the next advance.
const EXPIRED: usize = OVERFLOW + 1;
const LIST_COUNT: usize = EXPIRED + 1;

/// The null link of the intrusive lists.
const NIL: u32 = u32::MAX;

/// Names one timer in a [`TimerWheel`], to cancel it or read its deadline.
///
/// A key outlives its timer harmlessly: once the timer fired or was cancelled,
/// the key is stale and every operation with it returns `None`, even after the
/// wheel reused the timer's storage for another timer (each insertion gets a
/// fresh generation; the generation counter would have to wrap through all 2^32
/// values between two uses of the same slot for a stale key to match again).
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub struct TimerKey {
    index: u32,
    generation: u32,
}

/// One timer, a node of the doubly-linked list of its slot.
struct Entry<T> {
    value: T,
    deadline: Instant,
    generation: u32,
    /// Which list holds this entry (a wheel slot, `OVERFLOW` or `EXPIRED`).
    list: u16,
    prev: u32,
    next: u32,
}

/// Head and tail of one intrusive list threaded through the slab.
#[derive(Clone, Copy)]
struct List {
    head: u32,
    tail: u32,
}

const EMPTY_LIST: List = List { head: NIL, tail: NIL };

/// A hierarchical timer wheel holding values of type `T` until their deadline.
///
/// Insertion and cancellation are O(1) and, once the wheel has grown to its
/// working size, allocate nothing: timers live in a slab, and each slot is a
/// doubly-linked list threaded through the slab entries. [`advance`] costs
/// O(timers fired + timers cascaded + slots skipped / 64), independent of the
/// time elapsed: empty slots are skipped with occupancy bitmaps.
///
/// # Precision
///
/// Deadlines are rounded up to the next multiple of [`TICK_MICROS`]. A timer
/// never fires before its deadline, and fires during the first [`advance`]
/// whose `now` is at or past its rounded deadline. A timer inserted with a
/// deadline at or before the wheel's current time fires at the next
/// `advance`, before any other timer.
///
/// [`advance`]: TimerWheel::advance
pub struct TimerWheel<T> {
    entries: Slab<Entry<T>>,
    lists: Vec<List>,
    /// One bit per slot of each wheel: set when the slot's list is non-empty.
    occupied: [[u64; WHEEL_SLOTS / 64]; WHEEL_LEVELS],
    /// The latest `now` the wheel was given.
    now: Instant,
    /// `now` in ticks, rounded down: every timer whose rounded deadline is at
    /// or before this tick has fired.
    tick: u64,
    next_generation: u32,
}

impl<T> TimerWheel<T> {
    /// An empty wheel whose clock starts at `now`.
    pub fn new(now: Instant) -> Self {
        Self::with_capacity(now, 0)
    }

    /// An empty wheel with room for `capacity` timers before it allocates.
    pub fn with_capacity(now: Instant, capacity: usize) -> Self {
        TimerWheel {
            entries: Slab::with_capacity(capacity),
            lists: vec![EMPTY_LIST; LIST_COUNT],
            occupied: [[0; WHEEL_SLOTS / 64]; WHEEL_LEVELS],
            now,
            tick: now.as_micros() / TICK_MICROS,
            next_generation: 0,
        }
    }

    /// The wheel's current time: the latest `now` given to [`new`] or
    /// [`advance`].
    ///
    /// [`new`]: TimerWheel::new
    /// [`advance`]: TimerWheel::advance
    pub fn now(&self) -> Instant {
        self.now
    }

    /// Arms a timer that hands `value` back once `deadline` has passed.
    ///
    /// A deadline at or before [`now`](TimerWheel::now) fires on the next
    /// [`advance`](TimerWheel::advance).
    ///
    /// # Panics
    ///
    /// If the wheel already holds `u32::MAX` timers.
    pub fn insert(&mut self, deadline: Instant, value: T) -> TimerKey {
        let generation = self.next_generation;
        self.next_generation = self.next_generation.wrapping_add(1);
        let index = self.entries.insert(Entry { value, deadline, generation, list: 0, prev: NIL, next: NIL });
        let index = u32::try_from(index)
            .ok()
            .filter(|&index| index != NIL)
            .expect("timer wheel holds more than u32::MAX - 1 timers");
        let list = if deadline <= self.now { EXPIRED } else { self.list_for(deadline_tick(deadline)) };
        self.link_tail(index, list);
        TimerKey { index, generation }
    }

    /// Disarms a timer and returns its value, or `None` if `key` is stale (the
    /// timer already fired or was cancelled).
    pub fn cancel(&mut self, key: TimerKey) -> Option<T> {
        self.entry(key)?;
        self.unlink(key.index);
        Some(self.entries.remove(key.index as usize).value)
    }

    /// The deadline a timer was inserted with, or `None` if `key` is stale.
    pub fn deadline(&self, key: TimerKey) -> Option<Instant> {
        self.entry(key).map(|entry| entry.deadline)
    }

    /// Moves the wheel's clock to `now` and calls `fired` with every timer due
    /// by then, removing it from the wheel.
    ///
    /// Timers fire in order of their rounded deadlines; timers in the same
    /// 16 µs tick fire in the order they were inserted, and timers inserted
    /// with a deadline already passed fire first. A `now` earlier than the
    /// wheel's current time leaves the clock where it is (it only fires timers
    /// inserted in the past).
    pub fn advance(&mut self, now: Instant, fired: &mut impl FnMut(TimerKey, T)) {
        self.fire_list(EXPIRED, fired);
        let target = now.as_micros() / TICK_MICROS;
        while let Some(tick) = self.next_event_tick().filter(|&tick| tick <= target) {
            self.tick = tick;
            self.run_tick(fired);
        }
        if now > self.now {
            self.now = now;
            self.tick = target;
        }
    }

    /// When to call [`advance`](TimerWheel::advance) next, or `None` if the
    /// wheel is empty: the runtime may block until then when idle.
    ///
    /// This is never later than the moment the earliest timer becomes due.
    /// For a timer in the lowest wheel (due within the current 4.096 ms span)
    /// it is exact: the deadline rounded up to the tick, the instant at which
    /// `advance` fires it. For timers further out it is a conservative, earlier
    /// bound: the start of their slot, where `advance` cascades them to a
    /// lower wheel, after which `next_deadline` is more precise. A timer
    /// inserted with a deadline already passed makes it return the wheel's
    /// current time.
    pub fn next_deadline(&self) -> Option<Instant> {
        if self.lists[EXPIRED].head != NIL {
            return Some(self.now);
        }
        self.next_event_tick().map(|tick| Instant::from_micros(tick.saturating_mul(TICK_MICROS)))
    }

    /// The number of armed timers.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether no timer is armed.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    fn entry(&self, key: TimerKey) -> Option<&Entry<T>> {
        self.entries.get(key.index as usize).filter(|entry| entry.generation == key.generation)
    }

    /// The list that holds a timer due at `tick` (which is at or after the
    /// current tick): the lowest wheel whose current revolution contains it.
    fn list_for(&self, tick: u64) -> usize {
        let differing = tick ^ self.tick;
        for level in 0..WHEEL_LEVELS {
            let shift = SLOT_BITS * level as u32;
            if differing >> (shift + SLOT_BITS) == 0 {
                return level * WHEEL_SLOTS + ((tick >> shift) & SLOT_MASK) as usize;
            }
        }
        OVERFLOW
    }

    /// The next tick after the current one at which there is work: a slot of
    /// the lowest wheel to fire, a higher slot to cascade, or the overflow
    /// list to re-examine. Every timer in a wheel is due within that wheel's
    /// current revolution, so the first non-empty level gives the answer.
    fn next_event_tick(&self) -> Option<u64> {
        for (level, occupied) in self.occupied.iter().enumerate() {
            let shift = SLOT_BITS * level as u32;
            let current = ((self.tick >> shift) & SLOT_MASK) as usize;
            if let Some(slot) = next_set_bit_after(occupied, current) {
                let revolution = self.tick >> (shift + SLOT_BITS) << (shift + SLOT_BITS);
                return Some(revolution | (slot as u64) << shift);
            }
        }
        (self.lists[OVERFLOW].head != NIL).then(|| ((self.tick >> TOP_REVOLUTION_BITS) + 1) << TOP_REVOLUTION_BITS)
    }

    /// Does the work of the current tick: re-examine the overflow list and
    /// cascade the higher slots that start here, then fire the lowest slot.
    fn run_tick(&mut self, fired: &mut impl FnMut(TimerKey, T)) {
        if self.tick & ((1 << TOP_REVOLUTION_BITS) - 1) == 0 {
            self.cascade(OVERFLOW);
        }
        for level in (1..WHEEL_LEVELS).rev() {
            let shift = SLOT_BITS * level as u32;
            if self.tick & ((1 << shift) - 1) == 0 {
                let slot = ((self.tick >> shift) & SLOT_MASK) as usize;
                self.cascade(level * WHEEL_SLOTS + slot);
            }
        }
        self.fire_list((self.tick & SLOT_MASK) as usize, fired);
    }

    /// Re-files every timer of `list` by its deadline, keeping their order.
    fn cascade(&mut self, list: usize) {
        let mut index = self.take_list(list);
        while index != NIL {
            let entry = &self.entries[index as usize];
            let next = entry.next;
            let target = self.list_for(deadline_tick(entry.deadline));
            self.link_tail(index, target);
            index = next;
        }
    }

    fn fire_list(&mut self, list: usize, fired: &mut impl FnMut(TimerKey, T)) {
        let mut index = self.take_list(list);
        while index != NIL {
            let entry = self.entries.remove(index as usize);
            let key = TimerKey { index, generation: entry.generation };
            index = entry.next;
            fired(key, entry.value);
        }
    }

    /// Empties `list` and returns its old head; the entries keep their `next`
    /// links so the caller can walk them.
    fn take_list(&mut self, list: usize) -> u32 {
        let head = self.lists[list].head;
        self.lists[list] = EMPTY_LIST;
        self.set_occupied(list, false);
        head
    }

    fn link_tail(&mut self, index: u32, list: usize) {
        let tail = self.lists[list].tail;
        let entry = &mut self.entries[index as usize];
        entry.list = list as u16;
        entry.prev = tail;
        entry.next = NIL;
        if tail == NIL {
            self.lists[list].head = index;
            self.set_occupied(list, true);
        } else {
            self.entries[tail as usize].next = index;
        }
        self.lists[list].tail = index;
    }

    fn unlink(&mut self, index: u32) {
        let entry = &self.entries[index as usize];
        let (list, prev, next) = (entry.list as usize, entry.prev, entry.next);
        match prev {
            NIL => self.lists[list].head = next,
            prev => self.entries[prev as usize].next = next,
        }
        match next {
            NIL => self.lists[list].tail = prev,
            next => self.entries[next as usize].prev = prev,
        }
        if self.lists[list].head == NIL {
            self.set_occupied(list, false);
        }
    }

    fn set_occupied(&mut self, list: usize, occupied: bool) {
        if list >= OVERFLOW {
            return;
        }
        let (level, slot) = (list / WHEEL_SLOTS, list % WHEEL_SLOTS);
        let bit = 1u64 << (slot % 64);
        let word = &mut self.occupied[level][slot / 64];
        if occupied {
            *word |= bit;
        } else {
            *word &= !bit;
        }
    }
}

impl<T> fmt::Debug for TimerWheel<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TimerWheel")
            .field("now", &self.now)
            .field("len", &self.len())
            .field("next_deadline", &self.next_deadline())
            .finish()
    }
}

/// The tick at which a timer due at `deadline` fires: the deadline rounded up
/// to a whole tick (deadlines in the last partial tick of the clock's range
/// are rounded down, to the last tick that can be reached).
fn deadline_tick(deadline: Instant) -> u64 {
    deadline.as_micros().div_ceil(TICK_MICROS).min(u64::MAX / TICK_MICROS)
}

/// The first set bit of `bits` strictly after position `after`.
fn next_set_bit_after(bits: &[u64; WHEEL_SLOTS / 64], after: usize) -> Option<usize> {
    let start = after + 1;
    (start / 64..bits.len()).find_map(|word| {
        let mask = if word == start / 64 { u64::MAX << (start % 64) } else { u64::MAX };
        let masked = bits[word] & mask;
        (masked != 0).then(|| word * 64 + masked.trailing_zeros() as usize)
    })
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::time::Duration;

    use proptest::prelude::*;

    use super::*;

    fn at(micros: u64) -> Instant {
        Instant::from_micros(micros)
    }

    /// Advances `wheel` to `now` and returns the values fired, in order.
    fn fire<T>(wheel: &mut TimerWheel<T>, now: Instant) -> Vec<T> {
        let mut fired = Vec::new();
        wheel.advance(now, &mut |_, value| fired.push(value));
        fired
    }

    #[test]
    fn fires_in_deadline_order_across_all_wheels_and_overflow() {
        let deadlines_micros = [
            1_000_000_000, // overflow (1000 s)
            20,            // lowest wheel
            2_500_000,     // top wheel
            300_000_000,   // overflow (300 s)
            5_000,         // middle wheel
            100,
            4_000_000, // top wheel
            270_000_000,
            9_000,
        ];
        let mut wheel = TimerWheel::new(Instant::ZERO);
        for &deadline in &deadlines_micros {
            wheel.insert(at(deadline), deadline);
        }
        assert_eq!(wheel.len(), deadlines_micros.len());
        let mut sorted = deadlines_micros.to_vec();
        sorted.sort_unstable();
        assert_eq!(fire(&mut wheel, at(1_000_000_000)), sorted);
        assert!(wheel.is_empty());
        assert_eq!(wheel.next_deadline(), None);
    }

    #[test]
    fn fires_at_the_deadline_rounded_up_to_the_tick_never_before() {
        let mut wheel = TimerWheel::new(Instant::ZERO);
        wheel.insert(at(17), "low");
        wheel.insert(at(5_000), "middle");
        wheel.insert(at(2_000_001), "top");
        assert_eq!(wheel.next_deadline(), Some(at(32)));
        assert!(fire(&mut wheel, at(31)).is_empty());
        assert_eq!(fire(&mut wheel, at(32)), ["low"]);
        // 5000 µs rounds up to 5008 µs.
        assert!(fire(&mut wheel, at(5_007)).is_empty());
        assert_eq!(wheel.next_deadline(), Some(at(5_008)));
        assert_eq!(fire(&mut wheel, at(5_008)), ["middle"]);
        assert!(fire(&mut wheel, at(2_000_015)).is_empty());
        assert_eq!(fire(&mut wheel, at(2_000_016)), ["top"]);
    }

    #[test]
    fn next_deadline_is_exact_low_and_an_earlier_bound_high() {
        let mut wheel = TimerWheel::new(Instant::ZERO);
        assert_eq!(wheel.next_deadline(), None);
        wheel.insert(at(10_000), ());
        // In the middle wheel: the start of its 4.096 ms slot, 8.192 ms.
        assert_eq!(wheel.next_deadline(), Some(at(8_192)));
        fire(&mut wheel, at(8_192));
        assert_eq!(wheel.next_deadline(), Some(at(10_000)));
        wheel.insert(at(8_000), ());
        assert_eq!(wheel.next_deadline(), Some(at(8_192)));
    }

    #[test]
    fn same_tick_fires_in_insertion_order_after_cascading() {
        let mut wheel = TimerWheel::new(Instant::ZERO);
        // Tick 625 (10 ms) is in the middle wheel when inserted at 0...
        wheel.insert(at(10_000), 'a');
        assert!(fire(&mut wheel, at(9_600)).is_empty());
        // ...and in the lowest wheel for these two, inserted after cascading.
        wheel.insert(at(10_000), 'b');
        wheel.insert(at(9_990), 'c');
        assert_eq!(fire(&mut wheel, at(10_000)), ['a', 'b', 'c']);
    }

    #[test]
    fn past_deadlines_fire_first_on_the_next_advance() {
        let mut wheel = TimerWheel::new(at(1_000));
        wheel.insert(at(1_020), "future");
        wheel.insert(at(999), "past");
        wheel.insert(at(1_000), "now");
        assert_eq!(wheel.next_deadline(), Some(at(1_000)));
        // Even an advance that does not move the clock fires them.
        assert_eq!(fire(&mut wheel, at(500)), ["past", "now"]);
        assert_eq!(wheel.now(), at(1_000));
        assert_eq!(fire(&mut wheel, at(1_040)), ["future"]);
    }

    #[test]
    fn cancel_unlinks_head_middle_and_tail() {
        let mut wheel = TimerWheel::new(Instant::ZERO);
        let keys: Vec<_> = (0..5).map(|i| wheel.insert(at(96), i)).collect();
        assert_eq!(wheel.cancel(keys[0]), Some(0));
        assert_eq!(wheel.cancel(keys[2]), Some(2));
        assert_eq!(wheel.cancel(keys[4]), Some(4));
        assert_eq!(wheel.cancel(keys[4]), None);
        assert_eq!(wheel.len(), 2);
        // The list is still intact in both directions: append after the old tail.
        wheel.insert(at(96), 5);
        assert_eq!(fire(&mut wheel, at(96)), [1, 3, 5]);
    }

    #[test]
    fn cancelling_the_last_timer_of_a_slot_empties_it() {
        for deadline in [100, 10_000, 10_000_000, 1_000_000_000] {
            let mut wheel = TimerWheel::new(Instant::ZERO);
            let key = wheel.insert(at(deadline), ());
            assert!(wheel.next_deadline().is_some());
            assert_eq!(wheel.cancel(key), Some(()));
            assert_eq!(wheel.next_deadline(), None, "deadline {deadline}");
            assert!(fire(&mut wheel, at(deadline)).is_empty());
        }
    }

    #[test]
    fn stale_keys_never_touch_a_newer_timer() {
        let mut wheel = TimerWheel::new(Instant::ZERO);
        let fired_key = wheel.insert(at(50), "first");
        let mut keys = Vec::new();
        wheel.advance(at(64), &mut |key, _| keys.push(key));
        assert_eq!(keys, [fired_key]);
        let cancelled = wheel.insert(at(80), "second");
        wheel.cancel(cancelled);
        // The slab reuses the same storage for the third timer.
        let live = wheel.insert(at(90), "third");
        assert_eq!(live.index, fired_key.index);
        for stale in [fired_key, cancelled] {
            assert_eq!(wheel.deadline(stale), None);
            assert_eq!(wheel.cancel(stale), None);
        }
        assert_eq!(wheel.deadline(live), Some(at(90)));
        assert_eq!(fire(&mut wheel, at(96)), ["third"]);
    }

    #[test]
    fn large_idle_gaps_are_skipped_not_walked() {
        let hour = Duration::from_secs(3_600);
        let start = Instant::ZERO + hour;
        let mut wheel = TimerWheel::new(start);
        wheel.insert(start + hour * 240, "ten days");
        wheel.insert(start + hour, "one hour");
        wheel.insert(start + Duration::from_millis(1), "one ms");
        // Ten days is 5.4e10 ticks: walking them one by one would not finish.
        assert_eq!(fire(&mut wheel, start + hour * 240), ["one ms", "one hour", "ten days"]);
        assert_eq!(fire(&mut wheel, Instant::from_micros(u64::MAX / 2)), [""; 0]);
    }

    #[test]
    fn works_from_an_unaligned_start_across_revolutions() {
        // Start just before the top wheel's revolution ends.
        let start = at(HORIZON_MICROS * 5 - 7);
        let mut wheel = TimerWheel::new(start);
        let deadlines = [
            HORIZON_MICROS * 5 + 3,
            HORIZON_MICROS * 5 - 3,
            HORIZON_MICROS * 6 + 1,
            HORIZON_MICROS * 5 + SLOT_MICROS[1],
            HORIZON_MICROS * 5 + SLOT_MICROS[2] * 2,
        ];
        for &deadline in &deadlines {
            wheel.insert(at(deadline), deadline);
        }
        let mut sorted = deadlines.to_vec();
        sorted.sort_unstable();
        let mut fired = Vec::new();
        for step in 1..=600 {
            fired.extend(fire(&mut wheel, start + Duration::from_secs(step)));
        }
        assert_eq!(fired, sorted);
    }

    /// One step of a random workload.
    #[derive(Clone, Debug)]
    enum Op {
        /// Insert with a deadline this far from now (negative: in the past).
        Insert(i64),
        /// Cancel the n-th key handed out so far (modulo their number).
        Cancel(usize),
        /// Advance the clock by this much (negative: a `now` in the past).
        Advance(i64),
    }

    /// A signed offset in µs: up to `past_micros` back, or forward on one of
    /// several scales (within a tick, then up to each of `scales_micros`).
    fn offset_micros(past_micros: i64, scales_micros: [i64; 4]) -> impl Strategy<Value = i64> {
        let [a, b, c, d] = scales_micros;
        prop_oneof![-past_micros..=0, 0..64i64, 0..a, 0..b, 0..c, 0..d]
    }

    fn op() -> impl Strategy<Value = Op> {
        let delay = offset_micros(100, [20_000, 5_000_000, 700_000_000, 3_000_000_000]);
        let step = offset_micros(50, [10_000, 3_000_000, 400_000_000, 2_000_000_000]);
        prop_oneof![
            4 => delay.prop_map(Op::Insert),
            1 => any::<usize>().prop_map(Op::Cancel),
            3 => step.prop_map(Op::Advance),
        ]
    }

    /// The reference: a sorted map from (firing tick, insertion number).
    struct Model {
        now: u64,
        pending: BTreeMap<(u64, u64), u64>,
        ticks_by_id: BTreeMap<u64, (u64, u64)>,
    }

    impl Model {
        fn insert(&mut self, id: u64, deadline: u64) {
            let tick = if deadline <= self.now { self.now / TICK_MICROS } else { deadline.div_ceil(TICK_MICROS) };
            self.pending.insert((tick, id), id);
            self.ticks_by_id.insert(id, (tick, id));
        }

        fn cancel(&mut self, id: u64) -> Option<u64> {
            let slot = self.ticks_by_id.remove(&id)?;
            self.pending.remove(&slot)
        }

        fn advance(&mut self, now: u64) -> Vec<u64> {
            self.now = self.now.max(now);
            let due_tick = self.now / TICK_MICROS;
            let mut fired = Vec::new();
            while let Some(entry) = self.pending.first_entry() {
                if entry.key().0 > due_tick {
                    break;
                }
                let id = entry.remove();
                self.ticks_by_id.remove(&id);
                fired.push(id);
            }
            fired
        }

        /// When the earliest pending timer fires.
        fn next_fire(&self) -> Option<u64> {
            let (&(tick, _), _) = self.pending.first_key_value()?;
            Some((tick * TICK_MICROS).max(self.now))
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        #[test]
        fn matches_a_sorted_map_model(
            start in prop_oneof![Just(0u64), 0u64..1 << 40],
            ops in prop::collection::vec(op(), 1..200),
        ) {
            let mut wheel = TimerWheel::new(at(start));
            let mut model = Model { now: start, pending: BTreeMap::new(), ticks_by_id: BTreeMap::new() };
            let mut keys = Vec::new();
            for op in ops {
                match op {
                    Op::Insert(delay) => {
                        let id = keys.len() as u64;
                        let deadline = model.now.saturating_add_signed(delay);
                        keys.push(wheel.insert(at(deadline), id));
                        prop_assert_eq!(wheel.deadline(keys[id as usize]), Some(at(deadline)));
                        model.insert(id, deadline);
                    }
                    Op::Cancel(n) if !keys.is_empty() => {
                        let id = n % keys.len();
                        prop_assert_eq!(wheel.cancel(keys[id]), model.cancel(id as u64));
                    }
                    Op::Cancel(_) => {}
                    Op::Advance(step) => {
                        let now = model.now.saturating_add_signed(step);
                        prop_assert_eq!(fire(&mut wheel, at(now)), model.advance(now));
                    }
                }
                prop_assert_eq!(wheel.len(), model.pending.len());
                match (wheel.next_deadline(), model.next_fire()) {
                    (None, None) => {}
                    (Some(bound), Some(fires)) => prop_assert!(bound.as_micros() <= fires),
                    (bound, fires) => prop_assert!(false, "next_deadline {bound:?}, model {fires:?}"),
                }
            }
            let end = model.now + 10_000_000_000;
            prop_assert_eq!(fire(&mut wheel, at(end)), model.advance(end));
            prop_assert!(wheel.is_empty());
        }
    }
}
