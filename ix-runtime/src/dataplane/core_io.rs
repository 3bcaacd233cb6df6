//! The dataplane's side of a core's loop: its NIC queue and stack in one
//! round (receive a bounded batch, run the stack to completion, wake and run
//! tasks, transmit once, run timers), its wake-up descriptor, its last flush.

use std::os::fd::BorrowedFd;
use std::rc::Rc;

use ix_driver::{NetQueue, PacketBuf, QueueStats};
use ix_net::Instant;

use crate::core::Core;
use crate::dataplane::DataplaneNet;
use crate::dataplane::handover::hand_over;
use crate::executor::Executor;
use crate::poll_loop::{CoreIo, TASK_POLLS_PER_ROUND};
use crate::stats::LoopStats;

/// Attempts at transmitting the frames left when a core stops.
const FINAL_TX_ATTEMPTS: usize = 4;

/// A dataplane core's queue, stack and batches.
pub(crate) struct DataplaneIo {
    queue: Box<dyn NetQueue>,
    net: Rc<DataplaneNet>,
    /// Receive batch bound (IX's B).
    batch: usize,
    rx: Vec<PacketBuf>,
    tx: Vec<PacketBuf>,
    /// Frames to hand over to other cores, gathered each round.
    handover: Vec<(usize, PacketBuf)>,
}

impl DataplaneIo {
    pub(crate) fn new(queue: Box<dyn NetQueue>, net: Rc<DataplaneNet>, batch: usize) -> DataplaneIo {
        DataplaneIo {
            queue,
            net,
            batch,
            rx: Vec::with_capacity(batch),
            tx: Vec::with_capacity(4 * batch),
            handover: Vec::new(),
        }
    }
}

impl CoreIo for DataplaneIo {
    fn round(&mut self, core: &Core, executor: &Executor, stats: &mut LoopStats, now: Instant) -> bool {
        stats.rounds += 1;
        let remote = executor.drain_remote();
        let received = self.queue.rx_burst(&mut self.rx, self.batch);
        if received > 0 {
            stats.batches += 1;
            stats.rx_packets += received as u64;
            self.net.stack(|s| {
                for frame in self.rx.drain(..) {
                    s.ingress(frame, now);
                }
                s.take_handover(&mut self.handover);
            });
            if !self.handover.is_empty() {
                hand_over(&mut self.handover, executor, stats);
            }
        }
        let fired = core.fire_sleeps(now);
        self.net.stack(|s| s.on_timers(now));
        let events = self.net.dispatch_events();
        core.set_loop_stats(*stats, self.queue.stats());
        let polled = executor.run_ready(TASK_POLLS_PER_ROUND);
        stats.tasks_polled += polled as u64;
        let buffers = core.wake_buffer_waiters();
        // The round's clock, not a fresh reading: segments are stamped (and
        // their retransmission timers armed) up to the round's length early,
        // which an RTO of at least 200 ms does not notice.
        self.net.stack(|s| s.egress(now, &mut self.tx));
        let events = events + self.net.dispatch_events();
        let queued = self.tx.len();
        if queued > 0 {
            let sent = self.queue.tx_burst(&mut self.tx);
            stats.tx_packets += sent as u64;
        }
        received > 0
            || remote > 0
            || fired > 0
            || events > 0
            || polled > 0
            || buffers > 0
            || queued > 0
            || executor.has_ready()
    }

    fn has_unsent(&self) -> bool {
        !self.tx.is_empty()
    }

    fn wait_fd(&self) -> Option<BorrowedFd<'_>> {
        self.queue.wait_fd()
    }

    fn prepare_to_block(&mut self) {
        self.queue.ack_wakeup();
    }

    fn queue_stats(&self) -> QueueStats {
        self.queue.stats()
    }

    /// Transmits the FIN or RST of every connection a dropped task held, so
    /// that its peer learns the connection is over rather than waiting on it.
    /// Nothing is retransmitted after the core stops.
    fn close(&mut self, core: &Core) {
        let mut tx = Vec::new();
        self.net.stack(|s| s.egress(core.now(), &mut tx));
        for _ in 0..FINAL_TX_ATTEMPTS {
            if tx.is_empty() {
                break;
            }
            self.queue.tx_burst(&mut tx);
        }
    }
}
