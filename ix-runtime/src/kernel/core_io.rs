//! The `kernel` backend's side of a core's loop: one round (cross-core work,
//! timers, epoll readiness, tasks) and the epoll descriptor it blocks on.

use std::os::fd::BorrowedFd;
use std::rc::Rc;
use std::time::Duration;

use ix_driver::QueueStats;
use ix_net::Instant;

use crate::core::Core;
use crate::executor::Executor;
use crate::kernel::KernelNet;
use crate::poll_loop::{CoreIo, TASK_POLLS_PER_ROUND};
use crate::stats::LoopStats;

/// A `kernel` core's reactor, as its loop drives it.
pub(crate) struct KernelIo {
    net: Rc<KernelNet>,
}

impl KernelIo {
    pub(crate) fn new(net: Rc<KernelNet>) -> KernelIo {
        KernelIo { net }
    }
}

impl CoreIo for KernelIo {
    fn round(&mut self, core: &Core, executor: &Executor, stats: &mut LoopStats, now: Instant) -> bool {
        stats.rounds += 1;
        let remote = executor.drain_remote();
        let fired = core.fire_sleeps(now);
        let events = self.net.reactor.poll(Duration::ZERO).unwrap_or_else(|e| {
            tracing::error!(error = %e, "epoll_wait failed");
            0
        });
        core.set_loop_stats(*stats, QueueStats::default());
        let polled = executor.run_ready(TASK_POLLS_PER_ROUND);
        stats.tasks_polled += polled as u64;
        let buffers = core.wake_buffer_waiters();
        remote > 0 || fired > 0 || events > 0 || polled > 0 || buffers > 0 || executor.has_ready()
    }

    fn has_unsent(&self) -> bool {
        false
    }

    fn wait_fd(&self) -> Option<BorrowedFd<'_>> {
        Some(self.net.reactor.fd())
    }

    /// Nothing to re-arm: the reactor's epoll descriptor is readable while
    /// any registered socket has an event.
    fn prepare_to_block(&mut self) {}

    fn queue_stats(&self) -> QueueStats {
        QueueStats::default()
    }

    /// Nothing to flush: the kernel sends the FIN or RST of closed sockets.
    fn close(&mut self, _core: &Core) {}
}
