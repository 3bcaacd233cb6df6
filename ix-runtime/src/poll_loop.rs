//! A core's poll loop: rounds of its backend's I/O and its tasks until the
//! core's work is done or a graceful shutdown has drained, spinning or blocking
//! when a round finds nothing to do.

use std::os::fd::BorrowedFd;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use ix_driver::QueueStats;

use crate::config::Settings;
use crate::core::Core;
use crate::core_board_link::CoreBoardLink;
use crate::executor::{Executor, JoinHandle};
use crate::idle::IdleSpin;
use crate::idle_wait::IdleWait;
use crate::stats::LoopStats;

/// Upper bound on one idle block, so that a shutdown request is seen quickly.
const IDLE_BLOCK_MAX_MS: u64 = 20;
/// Tasks polled at most per round before the loop returns to the NIC.
pub(crate) const TASK_POLLS_PER_ROUND: usize = 256;

/// A core's I/O as its backend made it, chosen once when the core starts:
/// what one round does, and what the core waits on when idle.
pub(crate) trait CoreIo {
    /// One round at `now` (the core's clock as read when the round began, see
    /// [`Core::start_round`]): cross-core work, the network, timers, tasks (at
    /// most [`TASK_POLLS_PER_ROUND`] polls). True when anything moved.
    fn round(&mut self, core: &Core, executor: &Executor, stats: &mut LoopStats, now: ix_net::Instant) -> bool;

    /// Whether frames are waiting to be transmitted (the core does not stop
    /// before they are out).
    fn has_unsent(&self) -> bool;

    /// The descriptor that becomes readable when the backend has work
    /// (`None`: only the executor's eventfd and the timers wake the core);
    /// the same for the core's whole life, registered once in its [`IdleWait`].
    fn wait_fd(&self) -> Option<BorrowedFd<'_>>;

    /// Re-arms the backend's wake-up before the core blocks.
    fn prepare_to_block(&mut self);

    /// The queue's counters (zero without a queue).
    fn queue_stats(&self) -> QueueStats;

    /// Once the tasks are gone: transmits what closing their sockets produced
    /// (FIN or RST), best effort.
    fn close(&mut self, core: &Core);
}

/// What asks a core to shut down gracefully: its runtime's
/// [`ShutdownHandle`](crate::ShutdownHandle), and SIGINT or SIGTERM when the
/// runtime handles signals (`signal` is the process-wide flag its handler sets).
#[derive(Clone)]
pub(crate) struct ShutdownRequests {
    pub(crate) handle: Arc<AtomicBool>,
    pub(crate) signal: Option<&'static AtomicBool>,
}

impl ShutdownRequests {
    fn requested(&self) -> bool {
        self.handle.load(Ordering::Relaxed) || self.signal.is_some_and(|s| s.load(Ordering::Relaxed))
    }
}

/// This core's place in the count of cores whose first task has not finished.
/// A core whose own first task finished keeps serving its queue until the
/// count reaches zero: its queue may still receive (and hand over) other
/// cores' traffic. Counted out however the core's thread ends.
pub(crate) struct RunningCore<'a> {
    running: &'a AtomicUsize,
    counted: std::cell::Cell<bool>,
}

impl<'a> RunningCore<'a> {
    pub(crate) fn new(running: &'a AtomicUsize) -> RunningCore<'a> {
        RunningCore { running, counted: std::cell::Cell::new(false) }
    }

    /// This core's first task finished (idempotent).
    fn finish(&self) {
        if !self.counted.replace(true) {
            self.running.fetch_sub(1, Ordering::AcqRel);
        }
    }

    /// Whether every core's first task finished.
    fn all_finished(&self) -> bool {
        self.running.load(Ordering::Acquire) == 0
    }
}

impl Drop for RunningCore<'_> {
    fn drop(&mut self) {
        self.finish();
    }
}

/// One core's loop over its backend's I/O.
pub(crate) struct PollLoop<'a, Io: CoreIo> {
    pub(crate) core: &'a Core,
    pub(crate) executor: &'a Executor,
    pub(crate) io: Io,
    pub(crate) settings: &'a Settings,
    pub(crate) stats: LoopStats,
    /// The core's slot on the board it shares with `ixcp`, when it has one:
    /// its counters go there, and its idle policy follows the mode asked there.
    pub(crate) board: Option<CoreBoardLink>,
    /// What the core sleeps on when it blocks.
    pub(crate) idle_wait: IdleWait,
}

impl<Io: CoreIo> PollLoop<'_, Io> {
    /// Runs rounds until every core's first task finished (and nothing is
    /// left to transmit), or a graceful shutdown drained or timed out.
    pub(crate) fn run<T>(&mut self, root: &JoinHandle<T>, shutdown: &ShutdownRequests, running: &RunningCore<'_>) {
        let mut idle = IdleSpin::new(self.settings.idle);
        let mut drain_deadline = None;
        loop {
            // The round's one clock reading: its I/O, timers and tasks, the
            // board's busy time and the idle policy all use it.
            let now = self.core.start_round();
            if let Some(board) = &mut self.board {
                board.round_began(now, self.core);
            }
            let rx_before = self.stats.rx_packets;
            let worked = self.io.round(self.core, self.executor, &mut self.stats, self.core.round_now());
            if let Some(board) = &mut self.board {
                let received = usize::try_from(self.stats.rx_packets - rx_before).unwrap_or(usize::MAX);
                board.round_ended(worked, received, now, self.core);
            }
            // In a graceful shutdown every task gets the drain timeout, not
            // only the first: the connection handlers a finished accept loop
            // spawned finish their exchanges before the core stops.
            if root.is_finished() && (drain_deadline.is_none() || self.executor.task_count() == 0) {
                running.finish();
                if !self.io.has_unsent() && running.all_finished() {
                    break;
                }
            }
            // The signal flag is process-wide: only runtimes that handle
            // signals heed it, not others that share the process.
            if drain_deadline.is_none() && shutdown.requested() {
                self.core.start_draining();
                drain_deadline = Some(now + self.settings.drain_timeout);
                tracing::info!("graceful shutdown: listeners closed, draining");
            }
            if drain_deadline.is_some_and(|d| now >= d) {
                tracing::warn!("drain timeout reached; stopping the core with tasks still running");
                break;
            }
            if worked {
                idle.worked();
                continue;
            }
            self.stats.empty_rounds += 1;
            // Under ixcp the board says, each empty round, whether the core
            // busy-polls or blocks as configured, unless a burst switched it
            // to polling on its own (see `core_board_link`).
            if let Some(board) = &mut self.board {
                idle.set_policy(board.idle_policy(self.settings.idle, now));
            }
            if idle.should_block(now) {
                self.block();
            }
        }
    }

    /// Makes the loop's and the queue's counters readable from tasks.
    pub(crate) fn publish_stats(&self) {
        self.core.set_loop_stats(self.stats, self.io.queue_stats());
    }

    /// Blocks until the backend or the executor has work, or the next timer.
    fn block(&mut self) {
        self.stats.blocks += 1;
        if let Some(board) = &mut self.board {
            board.blocking(self.core);
        }
        self.io.prepare_to_block();
        let timeout = self
            .core
            .time_to_next_timer()
            .unwrap_or(Duration::from_millis(IDLE_BLOCK_MAX_MS))
            .min(Duration::from_millis(IDLE_BLOCK_MAX_MS));
        self.idle_wait.wait(timeout);
    }
}
