//! The core board a dataplane shares with `ixcp`: one sealed memfd `ixcp`
//! makes per dataplane, a versioned header and one slot of plain atomics per
//! core (counters the dataplane publishes, the mode word `ixcp` writes).
//!
//! # Layout (64-bit words, native byte order, no pointers)
//! ```text
//! header (64 bytes)  magic "IXCBOARD" | version | cores | self-poll batch | self-poll limit ns
//!                    | self-poll idle ns | 2 words reserved    (ixcp writes the self-poll words)
//! slot i (128 bytes) at 64 + 128 i:
//!   0 mode asked (ixcp writes: 0 block, 1 busy-poll)  1 mode in effect (the core writes)
//!   2 thread id      3 rounds     4 busy ns      5 batches      6 rx packets   7 tx packets
//!   8 blocks         9 connections 10 drops      11 pool free   12 pool capacity 13 published (count)
//!   14 self-polls (the core's count)              15 self-polls answered (ixcp writes)
//! ```
//! A blocking core that receives a burst of at least the self-poll batch
//! switches itself to busy-polling and counts it (word 14); it goes back to the
//! mode asked once `ixcp` has answered that count (word 15, written after the
//! mode word), once it has found no work for the self-poll idle time, or after
//! the self-poll limit without an answer. See [`SelfPollRule`].
//! Each side reads the other's words as untrusted numbers: `ixcp` clamps and
//! checks what it reads (a thread id must be one of the dataplane's threads),
//! and an unknown mode word reads as [`CoreMode::Block`].

use std::os::fd::{BorrowedFd, OwnedFd};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::error::DriverError;
use crate::region::{HugePages, Region};

/// The layout version this build writes and accepts (2: the self-poll words).
pub const BOARD_VERSION: u64 = 2;
/// Cores one board holds at most.
pub const BOARD_CORES_MAX: usize = 64;
const BOARD_MAGIC: u64 = u64::from_le_bytes(*b"IXCBOARD");
const HEADER_WORDS: usize = 8;
const SLOT_WORDS: usize = 16;

/// Word indexes in the header.
mod header_word {
    pub(super) const MAGIC: usize = 0;
    pub(super) const VERSION: usize = 1;
    pub(super) const CORES: usize = 2;
    pub(super) const SELF_POLL_BATCH: usize = 3;
    pub(super) const SELF_POLL_LIMIT_NS: usize = 4;
    pub(super) const SELF_POLL_IDLE_NS: usize = 5;
}

/// Word indexes in a slot.
mod word {
    pub(super) const MODE_ASKED: usize = 0;
    pub(super) const MODE_IN_EFFECT: usize = 1;
    pub(super) const THREAD_ID: usize = 2;
    pub(super) const ROUNDS: usize = 3;
    pub(super) const BUSY_NS: usize = 4;
    pub(super) const BATCHES: usize = 5;
    pub(super) const RX_PACKETS: usize = 6;
    pub(super) const TX_PACKETS: usize = 7;
    pub(super) const BLOCKS: usize = 8;
    pub(super) const CONNECTIONS: usize = 9;
    pub(super) const DROPS: usize = 10;
    pub(super) const POOL_FREE: usize = 11;
    pub(super) const POOL_CAPACITY: usize = 12;
    pub(super) const PUBLISHED: usize = 13;
    pub(super) const SELF_POLLS: usize = 14;
    pub(super) const SELF_POLLS_ANSWERED: usize = 15;
}

/// What a core does when a round finds no work, as `ixcp` asks it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum CoreMode {
    /// Block on the queue's wake-up descriptor, sharing a CPU with other work.
    #[default]
    Block,
    /// Busy-poll the queue on a CPU of its own.
    BusyPoll,
}

impl CoreMode {
    /// The mode a board word stands for: anything but 1 is `Block`.
    pub fn from_word(word: u64) -> CoreMode {
        if word == 1 { CoreMode::BusyPoll } else { CoreMode::Block }
    }

    /// The board word of this mode.
    pub fn word(self) -> u64 {
        match self {
            CoreMode::Block => 0,
            CoreMode::BusyPoll => 1,
        }
    }
}

/// One core's counters as published on the board (cumulative since the core
/// started, but for the gauges `connections`, `pool_free`, `pool_capacity`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct CoreSample {
    /// The core thread's id (as `gettid` gives it); 0 before the core started.
    pub thread_id: u64,
    /// The mode the core follows now.
    pub mode_in_effect: CoreMode,
    /// Rounds of its loop.
    pub rounds: u64,
    /// Nanoseconds spent in rounds that found work (their wall time, at most
    /// the CPU time the thread got between two publications).
    pub busy_ns: u64,
    /// Receive bursts that returned frames.
    pub batches: u64,
    /// Frames received.
    pub rx_packets: u64,
    /// Frames transmitted.
    pub tx_packets: u64,
    /// Times the core blocked.
    pub blocks: u64,
    /// Open connections.
    pub connections: u64,
    /// Frames the queue dropped (receive and transmit).
    pub drops: u64,
    /// Packet buffers free in the core's pool.
    pub pool_free: u64,
    /// Packet buffers in the core's pool.
    pub pool_capacity: u64,
    /// Times the core published (a dataplane that stopped publishing is stuck or gone).
    pub published: u64,
    /// Times the core switched itself from blocking to busy-polling (see
    /// [`SelfPollRule`]).
    pub self_polls: u64,
}

/// When a blocking core switches itself to busy-polling without waiting for
/// `ixcp`'s next decision, and for how long at most: `ixcp` writes it in the
/// board's header, the core reads it at every switch.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SelfPollRule {
    /// A receive burst of at least this many frames (or a full burst of the
    /// core's own bound, if that is smaller) switches a blocking core to
    /// busy-polling; 0: never.
    pub batch: u32,
    /// How long a core polls on its own at most when `ixcp` does not answer.
    pub limit: std::time::Duration,
    /// How long a core polling on its own may find no work before it
    /// follows the mode asked again (the burst drained and the load did not
    /// stay), answer or not.
    pub idle: std::time::Duration,
}

impl SelfPollRule {
    /// Whether a burst of `received` frames, of at most `burst_max`, switches
    /// a blocking core to busy-polling under this rule.
    pub fn switches(&self, received: usize, burst_max: usize) -> bool {
        self.batch > 0 && received > 0 && received >= burst_max.min(self.batch as usize)
    }
}

/// The board: a sealed memfd mapped in both processes.
#[derive(Debug)]
pub struct CoreBoard {
    region: Region,
    cores: usize,
}

fn board_bytes(cores: usize) -> usize {
    (HEADER_WORDS + cores * SLOT_WORDS) * 8
}

impl CoreBoard {
    /// Makes a board for `cores` cores, every mode word at
    /// [`CoreMode::Block`], its size sealed (`ixcp`'s side).
    ///
    /// # Errors
    /// [`DriverError::Config`] for 0 or more than [`BOARD_CORES_MAX`] cores;
    /// [`DriverError::Os`] when the memfd cannot be made, mapped or sealed.
    pub fn create(cores: usize) -> Result<CoreBoard, DriverError> {
        check_cores(cores)?;
        let region = Region::new(board_bytes(cores), HugePages::Never)?;
        region.seal_size()?;
        let board = CoreBoard { region, cores };
        board.header(header_word::MAGIC).store(BOARD_MAGIC, Ordering::Relaxed);
        board.header(header_word::VERSION).store(BOARD_VERSION, Ordering::Relaxed);
        board.header(header_word::CORES).store(cores as u64, Ordering::Release);
        Ok(board)
    }

    /// Maps the board `ixcp` handed over (the dataplane's side).
    ///
    /// # Errors
    /// [`DriverError::Config`] when it is too small, or its header is not a
    /// board of this version for `cores` cores; [`DriverError::Os`] when it
    /// cannot be mapped.
    pub fn from_memfd(fd: OwnedFd, cores: usize) -> Result<CoreBoard, DriverError> {
        check_cores(cores)?;
        let board = CoreBoard { region: Region::from_memfd(fd, board_bytes(cores))?, cores };
        let header = [header_word::MAGIC, header_word::VERSION, header_word::CORES]
            .map(|i| board.header(i).load(Ordering::Acquire));
        if header != [BOARD_MAGIC, BOARD_VERSION, cores as u64] {
            return Err(DriverError::Config(format!(
                "the core board handed over is not a version {BOARD_VERSION} board for {cores} cores"
            )));
        }
        Ok(board)
    }

    /// The memfd, to hand to the dataplane.
    pub fn fd(&self) -> BorrowedFd<'_> {
        self.region.fd()
    }

    /// Cores on the board.
    pub fn cores(&self) -> usize {
        self.cores
    }

    fn word_at(&self, index: usize) -> &AtomicU64 {
        assert!(index < board_bytes(self.cores) / 8, "board word {index} out of range");
        // SAFETY: the mapping holds board_bytes(cores) bytes (checked on
        // creation or handover, and sealed against shrinking by ixcp), is page
        // aligned, and lives as long as `self`; `index` is in range (asserted),
        // so the word is inside it and 8-byte aligned. Another process writes
        // it only through atomic instructions too; its value is untrusted.
        unsafe { AtomicU64::from_ptr(self.region.rw_base().as_ptr().cast::<u64>().add(index)) }
    }

    fn header(&self, index: usize) -> &AtomicU64 {
        self.word_at(index)
    }

    /// # Panics
    /// When `core` is not on the board (a bug in the caller).
    fn slot(&self, core: usize, word: usize) -> &AtomicU64 {
        assert!(core < self.cores, "core {core} is not on a board of {} cores", self.cores);
        self.word_at(HEADER_WORDS + core * SLOT_WORDS + word)
    }

    /// Asks `core` to follow `mode` (`ixcp`'s side).
    ///
    /// # Panics
    /// When `core` is not on the board.
    pub fn ask_mode(&self, core: usize, mode: CoreMode) {
        self.slot(core, word::MODE_ASKED).store(mode.word(), Ordering::Relaxed);
    }

    /// The mode `ixcp` asks `core` to follow.
    ///
    /// # Panics
    /// When `core` is not on the board.
    pub fn asked_mode(&self, core: usize) -> CoreMode {
        CoreMode::from_word(self.slot(core, word::MODE_ASKED).load(Ordering::Relaxed))
    }

    /// Sets the rule by which every core of the board switches itself to
    /// busy-polling (`ixcp`'s side; a new board's rule is "never").
    pub fn set_self_poll_rule(&self, rule: SelfPollRule) {
        let nanos = |time: std::time::Duration| u64::try_from(time.as_nanos()).unwrap_or(u64::MAX);
        self.header(header_word::SELF_POLL_LIMIT_NS).store(nanos(rule.limit), Ordering::Relaxed);
        self.header(header_word::SELF_POLL_IDLE_NS).store(nanos(rule.idle), Ordering::Relaxed);
        self.header(header_word::SELF_POLL_BATCH).store(u64::from(rule.batch), Ordering::Relaxed);
    }

    /// The rule by which a core switches itself to busy-polling.
    pub fn self_poll_rule(&self) -> SelfPollRule {
        let batch = self.header(header_word::SELF_POLL_BATCH).load(Ordering::Relaxed);
        let time = |index| std::time::Duration::from_nanos(self.header(index).load(Ordering::Relaxed));
        SelfPollRule {
            batch: u32::try_from(batch).unwrap_or(u32::MAX),
            limit: time(header_word::SELF_POLL_LIMIT_NS),
            idle: time(header_word::SELF_POLL_IDLE_NS),
        }
    }

    /// Tells `core` that `ixcp`'s decision took its first `self_polls`
    /// switches into account (`ixcp`'s side): written after the mode word
    /// ([`CoreBoard::ask_mode`]), so that a core reading this count reads
    /// that decision's mode too.
    ///
    /// # Panics
    /// When `core` is not on the board.
    pub fn answer_self_polls(&self, core: usize, self_polls: u64) {
        self.slot(core, word::SELF_POLLS_ANSWERED).store(self_polls, Ordering::Release);
    }

    /// The self-polls of `core` that `ixcp` answered, and the mode it asks
    /// (read in that order: see [`CoreBoard::answer_self_polls`]).
    ///
    /// # Panics
    /// When `core` is not on the board.
    pub fn answer(&self, core: usize) -> (u64, CoreMode) {
        let answered = self.slot(core, word::SELF_POLLS_ANSWERED).load(Ordering::Acquire);
        (answered, self.asked_mode(core))
    }

    /// Publishes `core`'s counters (the dataplane's side).
    ///
    /// # Panics
    /// When `core` is not on the board.
    pub fn publish(&self, core: usize, sample: &CoreSample) {
        let words = [
            (word::MODE_IN_EFFECT, sample.mode_in_effect.word()),
            (word::THREAD_ID, sample.thread_id),
            (word::ROUNDS, sample.rounds),
            (word::BUSY_NS, sample.busy_ns),
            (word::BATCHES, sample.batches),
            (word::RX_PACKETS, sample.rx_packets),
            (word::TX_PACKETS, sample.tx_packets),
            (word::BLOCKS, sample.blocks),
            (word::CONNECTIONS, sample.connections),
            (word::DROPS, sample.drops),
            (word::POOL_FREE, sample.pool_free),
            (word::POOL_CAPACITY, sample.pool_capacity),
            (word::SELF_POLLS, sample.self_polls),
        ];
        for (index, value) in words {
            self.slot(core, index).store(value, Ordering::Relaxed);
        }
        self.slot(core, word::PUBLISHED).fetch_add(1, Ordering::Release);
    }

    /// What `core` published last (`ixcp`'s side): untrusted numbers.
    ///
    /// # Panics
    /// When `core` is not on the board.
    pub fn read(&self, core: usize) -> CoreSample {
        let published = self.slot(core, word::PUBLISHED).load(Ordering::Acquire);
        let load = |index| self.slot(core, index).load(Ordering::Relaxed);
        CoreSample {
            thread_id: load(word::THREAD_ID),
            mode_in_effect: CoreMode::from_word(load(word::MODE_IN_EFFECT)),
            rounds: load(word::ROUNDS),
            busy_ns: load(word::BUSY_NS),
            batches: load(word::BATCHES),
            rx_packets: load(word::RX_PACKETS),
            tx_packets: load(word::TX_PACKETS),
            blocks: load(word::BLOCKS),
            connections: load(word::CONNECTIONS),
            drops: load(word::DROPS),
            pool_free: load(word::POOL_FREE),
            pool_capacity: load(word::POOL_CAPACITY),
            published,
            self_polls: load(word::SELF_POLLS),
        }
    }
}

fn check_cores(cores: usize) -> Result<(), DriverError> {
    if cores == 0 || cores > BOARD_CORES_MAX {
        return Err(DriverError::Config(format!("a core board holds 1 to {BOARD_CORES_MAX} cores, not {cores}")));
    }
    Ok(())
}

/// One core's slot of a board, owned by that core's thread.
#[derive(Debug, Clone)]
pub struct CoreSlot {
    board: Arc<CoreBoard>,
    core: usize,
}

impl CoreSlot {
    /// Slot `core` of `board`.
    ///
    /// # Panics
    /// When `core` is not on the board.
    pub fn new(board: Arc<CoreBoard>, core: usize) -> CoreSlot {
        assert!(core < board.cores(), "core {core} is not on a board of {} cores", board.cores());
        CoreSlot { board, core }
    }

    /// The mode `ixcp` asks this core to follow.
    pub fn asked_mode(&self) -> CoreMode {
        self.board.asked_mode(self.core)
    }

    /// The self-polls `ixcp` answered and the mode it asks, in that order.
    pub fn answer(&self) -> (u64, CoreMode) {
        self.board.answer(self.core)
    }

    /// The rule by which this core switches itself to busy-polling.
    pub fn self_poll_rule(&self) -> SelfPollRule {
        self.board.self_poll_rule()
    }

    /// Publishes this core's counters.
    pub fn publish(&self, sample: &CoreSample) {
        self.board.publish(self.core, sample);
    }
}

/// The calling thread's id, as `ixcp` needs it to move the thread between CPUs.
pub fn current_thread_id() -> u64 {
    // SAFETY: gettid has no preconditions and cannot fail.
    u64::try_from(unsafe { libc::gettid() }).unwrap_or(0)
}

/// Nanoseconds the calling thread has run on a CPU (`CLOCK_THREAD_CPUTIME_ID`):
/// on a guest with steal accounting, time the host took the virtual CPU away
/// is not in it, nor time the thread waited for a CPU.
pub fn thread_cpu_ns() -> u64 {
    let mut now = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: `now` is a valid, writable timespec; the clock id is a constant
    // the kernel knows, so the call cannot fail (it would leave `now` at 0).
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut now) };
    u64::try_from(now.tv_sec).unwrap_or(0).saturating_mul(1_000_000_000).saturating_add(now.tv_nsec as u64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsFd;

    #[test]
    fn thread_cpu_time_grows_while_working_and_not_while_sleeping() {
        let start = thread_cpu_ns();
        let wall = std::time::Instant::now();
        while wall.elapsed() < std::time::Duration::from_millis(20) {
            std::hint::black_box(thread_cpu_ns());
        }
        let worked = thread_cpu_ns();
        assert!(worked > start, "spinning for 20 ms used no CPU time");
        std::thread::sleep(std::time::Duration::from_millis(50));
        let slept = thread_cpu_ns() - worked;
        assert!(slept < 20_000_000, "50 ms of sleep counted {slept} ns of CPU time");
    }

    #[test]
    fn both_sides_see_each_others_words() {
        let ixcp = CoreBoard::create(2).unwrap();
        let dataplane = CoreBoard::from_memfd(ixcp.fd().as_fd().try_clone_to_owned().unwrap(), 2).unwrap();
        assert_eq!(dataplane.asked_mode(1), CoreMode::Block);
        ixcp.ask_mode(1, CoreMode::BusyPoll);
        assert_eq!(dataplane.asked_mode(1), CoreMode::BusyPoll);
        assert_eq!(dataplane.asked_mode(0), CoreMode::Block);
        let sample = CoreSample { thread_id: 7, rx_packets: 100, busy_ns: 5, pool_capacity: 512, ..Default::default() };
        dataplane.publish(1, &sample);
        assert_eq!(ixcp.read(1), CoreSample { published: 1, ..sample });
        assert_eq!(ixcp.read(0), CoreSample::default());
    }

    #[test]
    fn a_board_of_another_shape_is_refused() {
        let ixcp = CoreBoard::create(2).unwrap();
        let fd = || ixcp.fd().as_fd().try_clone_to_owned().unwrap();
        assert!(CoreBoard::from_memfd(fd(), 3).is_err(), "more cores than made");
        assert!(CoreBoard::from_memfd(fd(), 1).is_err(), "fewer cores than made");
        assert!(CoreBoard::create(0).is_err());
        assert!(CoreBoard::create(BOARD_CORES_MAX + 1).is_err());
        ixcp.header(header_word::VERSION).store(BOARD_VERSION + 1, Ordering::Relaxed);
        assert!(CoreBoard::from_memfd(fd(), 2).is_err(), "another version");
    }

    #[test]
    fn self_poll_words_cross_between_the_sides() {
        let ixcp = CoreBoard::create(2).unwrap();
        let dataplane = CoreBoard::from_memfd(ixcp.fd().as_fd().try_clone_to_owned().unwrap(), 2).unwrap();
        assert_eq!(dataplane.self_poll_rule(), SelfPollRule::default(), "a new board never self-polls");
        let rule = SelfPollRule {
            batch: 16,
            limit: std::time::Duration::from_millis(200),
            idle: std::time::Duration::from_micros(200),
        };
        ixcp.set_self_poll_rule(rule);
        assert_eq!(dataplane.self_poll_rule(), rule);
        dataplane.publish(1, &CoreSample { self_polls: 3, mode_in_effect: CoreMode::BusyPoll, ..Default::default() });
        assert_eq!(ixcp.read(1).self_polls, 3);
        assert_eq!(dataplane.answer(1), (0, CoreMode::Block));
        ixcp.ask_mode(1, CoreMode::BusyPoll);
        ixcp.answer_self_polls(1, 3);
        assert_eq!(dataplane.answer(1), (3, CoreMode::BusyPoll));
        assert_eq!(dataplane.answer(0), (0, CoreMode::Block), "the other core's words are its own");
    }

    #[test]
    fn a_burst_switches_at_the_rule_s_batch_or_a_full_burst() {
        let rule = SelfPollRule { batch: 16, ..SelfPollRule::default() };
        // (frames received, burst bound, switches)
        for (received, burst_max, switches) in [
            (0, 64, false),
            (15, 64, false),
            (16, 64, true),
            (64, 64, true),
            (4, 4, true),
            (3, 4, false),
            (0, 0, false),
        ] {
            assert_eq!(rule.switches(received, burst_max), switches, "{received} of {burst_max}");
        }
        assert!(!SelfPollRule { batch: 0, ..rule }.switches(64, 64), "0 turns it off");
    }

    #[test]
    fn unknown_mode_words_mean_block() {
        for word in [0, 2, 77, u64::MAX] {
            assert_eq!(CoreMode::from_word(word), CoreMode::Block);
        }
        assert_eq!(CoreMode::from_word(CoreMode::BusyPoll.word()), CoreMode::BusyPoll);
    }
}
