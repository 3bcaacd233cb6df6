//! Helpers shared by the executor tests: run a core until idle, wait on its
//! eventfd with a bound, and a small test-only core loop.

#![allow(dead_code, reason = "each test file uses a different subset")]

use std::os::fd::{AsRawFd, BorrowedFd};
use std::time::{Duration, Instant};

use ix_runtime::executor::{Executor, Handle};

/// Upper bound of every wait in these tests: only reached when something is broken.
pub const HANG_GUARD: Duration = Duration::from_secs(20);

/// A one-core handle and the executor of that core on the calling thread.
pub fn single_core() -> (Handle, Executor) {
    let handle = Handle::new(1).expect("eventfd");
    let executor = Executor::new(0, &handle);
    (handle, executor)
}

/// Polls until the local ready queue is empty; returns the number of polls.
pub fn run_until_idle(executor: &Executor) -> usize {
    let mut polls = 0;
    while executor.has_ready() {
        polls += executor.run_ready(usize::MAX);
    }
    polls
}

/// Whether `fd` becomes readable within `timeout` (poll(2)).
pub fn wait_readable(fd: BorrowedFd<'_>, timeout: Duration) -> bool {
    let mut pollfd = libc::pollfd { fd: fd.as_raw_fd(), events: libc::POLLIN, revents: 0 };
    let timeout_ms = i32::try_from(timeout.as_millis()).unwrap_or(i32::MAX);
    // SAFETY: one valid pollfd on the stack, count 1; the descriptor stays open while borrowed.
    let ready = unsafe { libc::poll(&raw mut pollfd, 1, timeout_ms) };
    ready == 1 && pollfd.revents & libc::POLLIN != 0
}

/// A core loop as the runtime will run it, minus the network: drain remote
/// work, run a batch, and block on the eventfd when idle, until `done()` holds.
///
/// # Panics
/// When `done()` does not hold within [`HANG_GUARD`].
pub fn run_core_until(executor: &Executor, done: impl Fn() -> bool) {
    let started = Instant::now();
    loop {
        executor.drain_remote();
        executor.run_ready(64);
        if done() {
            return;
        }
        assert!(started.elapsed() < HANG_GUARD, "core {} loop did not finish in time", executor.core());
        if !executor.has_ready() {
            wait_readable(executor.wake_fd(), Duration::from_millis(50));
        }
    }
}
