//! A core's idle block: one epoll instance per core holding the executor's
//! wake-up eventfd and the backend's descriptor, registered once when the core
//! starts, waited on with a nanosecond timeout (`epoll_pwait2`).

#![allow(unsafe_code)] // epoll_create1, epoll_ctl, epoll_pwait2

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::time::Duration;

/// Events read per wait: the loop polls everything after a wake-up, so the
/// events themselves are not used, only the wake.
const EVENTS_PER_WAIT: usize = 2;

/// What a blocking core sleeps on.
///
/// Registered once rather than passed to each `ppoll`: a `ppoll` adds the core
/// to each descriptor's wait queue and removes it again in every call, while
/// an epoll instance keeps its registrations and a wait only checks its ready
/// list (`ix-runtime/benches/idle_wake.rs` times a wake).
#[derive(Debug)]
pub(crate) struct IdleWait {
    epoll: OwnedFd,
}

impl IdleWait {
    /// An epoll instance watching `executor_fd` and, when the backend has
    /// one, `backend_fd` for readability (level-triggered: a descriptor left
    /// readable wakes every wait until the loop drains it).
    ///
    /// # Errors
    /// The `epoll_create1` or `epoll_ctl` error.
    pub(crate) fn new(executor_fd: BorrowedFd<'_>, backend_fd: Option<BorrowedFd<'_>>) -> io::Result<IdleWait> {
        // SAFETY: epoll_create1 takes only flags; it returns a new descriptor or -1.
        let fd = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `fd` was just created and nothing else owns it.
        let epoll = unsafe { OwnedFd::from_raw_fd(fd) };
        let wait = IdleWait { epoll };
        wait.watch(executor_fd)?;
        if let Some(fd) = backend_fd {
            wait.watch(fd)?;
        }
        Ok(wait)
    }

    fn watch(&self, fd: BorrowedFd<'_>) -> io::Result<()> {
        let mut event = libc::epoll_event { events: libc::EPOLLIN as u32, u64: fd.as_raw_fd() as u64 };
        // SAFETY: `event` is a valid epoll_event for the call; the kernel copies it.
        let rc = unsafe { libc::epoll_ctl(self.epoll.as_raw_fd(), libc::EPOLL_CTL_ADD, fd.as_raw_fd(), &mut event) };
        if rc != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    /// Sleeps until a watched descriptor is readable or `timeout` passed
    /// (to the nanosecond, as the timer wheel needs: a timer due in 300 µs
    /// must not sleep a millisecond). Returns how many descriptors were
    /// ready; an interrupted wait returns 0 (the loop runs a round anyway).
    pub(crate) fn wait(&self, timeout: Duration) -> usize {
        let mut events = [libc::epoll_event { events: 0, u64: 0 }; EVENTS_PER_WAIT];
        let wait = libc::timespec { tv_sec: timeout.as_secs() as libc::time_t, tv_nsec: timeout.subsec_nanos().into() };
        // SAFETY: `events` has room for `EVENTS_PER_WAIT` entries, which the
        // kernel fills; `wait` is a valid timespec; a null signal mask leaves
        // the thread's unchanged.
        let n = unsafe {
            libc::epoll_pwait2(
                self.epoll.as_raw_fd(),
                events.as_mut_ptr(),
                EVENTS_PER_WAIT as libc::c_int,
                &wait,
                std::ptr::null(),
            )
        };
        usize::try_from(n).unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd};
    use std::time::{Duration, Instant};

    use super::IdleWait;

    fn eventfd() -> OwnedFd {
        // SAFETY: eventfd takes an initial value and flags; it returns a new descriptor or -1.
        let fd = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC | libc::EFD_NONBLOCK) };
        assert!(fd >= 0, "eventfd: {}", std::io::Error::last_os_error());
        // SAFETY: `fd` was just created and nothing else owns it.
        unsafe { OwnedFd::from_raw_fd(fd) }
    }

    fn raise(fd: &OwnedFd) {
        let one = 1u64.to_ne_bytes();
        // SAFETY: writes 8 bytes from a live buffer to an eventfd.
        let n = unsafe { libc::write(fd.as_raw_fd(), one.as_ptr().cast(), one.len()) };
        assert_eq!(n, 8);
    }

    #[test]
    fn an_idle_wait_sleeps_its_whole_timeout_and_no_more_than_a_bounded_delay() {
        let (executor, backend) = (eventfd(), eventfd());
        let wait = IdleWait::new(executor.as_fd(), Some(backend.as_fd())).expect("epoll");
        let start = Instant::now();
        assert_eq!(wait.wait(Duration::from_micros(300)), 0);
        let slept = start.elapsed();
        assert!(slept >= Duration::from_micros(300), "woke early: {slept:?}");
        assert!(slept < Duration::from_secs(5), "overslept: {slept:?}");
    }

    #[test]
    fn either_descriptor_wakes_it_and_stays_ready_until_drained() {
        let (executor, backend) = (eventfd(), eventfd());
        let wait = IdleWait::new(executor.as_fd(), Some(backend.as_fd())).expect("epoll");
        raise(&backend);
        assert_eq!(wait.wait(Duration::from_secs(5)), 1, "the backend's descriptor wakes it");
        assert_eq!(wait.wait(Duration::from_secs(5)), 1, "level-triggered: still readable");
        raise(&executor);
        assert_eq!(wait.wait(Duration::from_secs(5)), 2, "both ready");
    }

    #[test]
    fn a_wake_from_another_thread_ends_a_long_wait() {
        let executor = eventfd();
        let wait = IdleWait::new(executor.as_fd(), None).expect("epoll without a backend descriptor");
        let remote = executor.try_clone().expect("dup");
        let waker = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(20));
            raise(&remote);
        });
        let start = Instant::now();
        assert_eq!(wait.wait(Duration::from_secs(10)), 1);
        assert!(start.elapsed() < Duration::from_secs(5), "the wake was missed");
        waker.join().expect("waker");
    }
}
