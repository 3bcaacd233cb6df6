//! The `kernel` backend's reactor: one edge-triggered epoll instance per core
//! that wakes the tasks waiting on ordinary kernel sockets.
//!
//! Sockets are tried first and registered only when the kernel says
//! `EWOULDBLOCK`; an edge after that wakes the registered waker. Everything
//! runs on the core's thread, so no edge can slip between the failed call and
//! the registration: events are only read by the core's loop.

#![allow(unsafe_code)] // epoll_create1, epoll_ctl, epoll_wait

use std::cell::RefCell;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::task::Waker;
use std::time::Duration;

use slab::Slab;

use crate::readiness::{Interest, WaiterSlot};

/// Events read per `epoll_wait`.
const EVENTS_PER_WAIT: usize = 256;

/// A socket's place in the reactor; dropping it unregisters the socket.
#[derive(Debug)]
pub(crate) struct Registration {
    token: usize,
}

/// Counters of one reactor.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ReactorStats {
    /// `epoll_wait` calls.
    pub waits: u64,
    /// Readiness events read.
    pub events: u64,
    /// Sockets registered since the core started.
    pub registered: u64,
}

/// One core's epoll instance and the wakers waiting on its sockets.
#[derive(Debug)]
pub(crate) struct Reactor {
    epoll: OwnedFd,
    waiters: RefCell<Slab<WaiterSlot>>,
    events: RefCell<Vec<libc::epoll_event>>,
    /// Wakers taken from `waiters` in one poll, woken once no borrow is held.
    woken: RefCell<Vec<Waker>>,
    stats: RefCell<ReactorStats>,
}

impl Reactor {
    pub(crate) fn new() -> io::Result<Reactor> {
        // SAFETY: epoll_create1 takes only flags; it returns a new descriptor or -1.
        let fd = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `fd` was just created and nothing else owns it.
        let epoll = unsafe { OwnedFd::from_raw_fd(fd) };
        let events = vec![libc::epoll_event { events: 0, u64: 0 }; EVENTS_PER_WAIT];
        Ok(Reactor {
            epoll,
            waiters: RefCell::new(Slab::new()),
            events: RefCell::new(events),
            woken: RefCell::new(Vec::new()),
            stats: RefCell::new(ReactorStats::default()),
        })
    }

    /// The epoll descriptor: readable when any registered socket has an event,
    /// so the core's idle block can wait on it with the executor's eventfd.
    pub(crate) fn fd(&self) -> BorrowedFd<'_> {
        self.epoll.as_fd()
    }

    /// Sockets registered now.
    pub(crate) fn open(&self) -> usize {
        self.waiters.borrow().len()
    }

    pub(crate) fn stats(&self) -> ReactorStats {
        *self.stats.borrow()
    }

    /// Registers `fd` for edge-triggered read and write readiness.
    pub(crate) fn register(&self, fd: RawFd) -> io::Result<Registration> {
        let token = self.waiters.borrow_mut().insert(WaiterSlot::default());
        let mut event = libc::epoll_event {
            events: (libc::EPOLLIN | libc::EPOLLOUT | libc::EPOLLRDHUP | libc::EPOLLET) as u32,
            u64: token as u64,
        };
        // SAFETY: `event` is a valid epoll_event for the call; the kernel copies it.
        let rc = unsafe { libc::epoll_ctl(self.epoll.as_raw_fd(), libc::EPOLL_CTL_ADD, fd, &mut event) };
        if rc != 0 {
            self.waiters.borrow_mut().remove(token);
            return Err(io::Error::last_os_error());
        }
        self.stats.borrow_mut().registered += 1;
        Ok(Registration { token })
    }

    /// Unregisters a socket about to be closed (closing it removes it from
    /// the epoll set; this forgets its wakers).
    pub(crate) fn deregister(&self, registration: &Registration, fd: RawFd) {
        // SAFETY: removing an fd from the set reads no memory (the event
        // argument may be null for EPOLL_CTL_DEL since Linux 2.6.9).
        unsafe { libc::epoll_ctl(self.epoll.as_raw_fd(), libc::EPOLL_CTL_DEL, fd, std::ptr::null_mut()) };
        self.waiters.borrow_mut().try_remove(registration.token);
    }

    /// Makes `waker` the one woken at the socket's next `interest` edge.
    pub(crate) fn wait(&self, registration: &Registration, interest: Interest, waker: &Waker) {
        let mut waiters = self.waiters.borrow_mut();
        if let Some(slot) = waiters.get_mut(registration.token) {
            slot.register(interest, waker);
        }
    }

    /// Wakes every waiting task (graceful shutdown: listeners must see it).
    pub(crate) fn wake_all(&self) {
        let wakers: Vec<Waker> = self.waiters.borrow_mut().iter_mut().flat_map(|(_, w)| w.take_all()).collect();
        wakers.into_iter().for_each(Waker::wake);
    }

    /// Reads ready events, waiting up to `timeout` (zero: do not wait), and
    /// wakes their tasks. Returns how many events there were.
    pub(crate) fn poll(&self, timeout: Duration) -> io::Result<usize> {
        let mut events = self.events.borrow_mut();
        let ms = timeout.as_micros().div_ceil(1000).min(i32::MAX as u128) as libc::c_int;
        // SAFETY: `events` has room for `events.len()` entries, which the kernel fills.
        let n =
            unsafe { libc::epoll_wait(self.epoll.as_raw_fd(), events.as_mut_ptr(), events.len() as libc::c_int, ms) };
        if n < 0 {
            let err = io::Error::last_os_error();
            return if err.kind() == io::ErrorKind::Interrupted { Ok(0) } else { Err(err) };
        }
        let n = n as usize;
        {
            let mut stats = self.stats.borrow_mut();
            stats.waits += 1;
            stats.events += n as u64;
        }
        let mut woken = std::mem::take(&mut *self.woken.borrow_mut());
        {
            let mut waiters = self.waiters.borrow_mut();
            for event in &events[..n] {
                let bits = event.events;
                let token = event.u64 as usize;
                let Some(slot) = waiters.get_mut(token) else { continue };
                let failed = bits & (libc::EPOLLERR | libc::EPOLLHUP) as u32 != 0;
                let read = failed || bits & (libc::EPOLLIN | libc::EPOLLRDHUP) as u32 != 0;
                let write = failed || bits & libc::EPOLLOUT as u32 != 0;
                woken.extend(slot.take(read, write));
            }
        }
        drop(events);
        woken.drain(..).for_each(Waker::wake);
        *self.woken.borrow_mut() = woken;
        Ok(n)
    }
}
