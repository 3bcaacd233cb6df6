//! The four single-producer single-consumer rings of an AF_XDP socket, mapped
//! from the kernel: fill and transmit (this process produces), receive and
//! completion (this process consumes), each handled in batches.

use std::os::fd::{AsRawFd, BorrowedFd};
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU32, Ordering};

use crate::error::DriverError;

/// A mapped ring: the shared producer and consumer indexes, the flags word and
/// `size` descriptors of type `D`.
#[derive(Debug)]
pub(crate) struct RingMap<D> {
    area: NonNull<u8>,
    area_len: usize,
    producer: NonNull<AtomicU32>,
    consumer: NonNull<AtomicU32>,
    flags: NonNull<AtomicU32>,
    descs: NonNull<D>,
    size: u32,
}

impl<D> RingMap<D> {
    /// Maps the ring of `size` descriptors at page offset `pgoff` of socket
    /// `fd`, laid out as `offsets` says.
    pub(crate) fn map(
        fd: BorrowedFd<'_>,
        pgoff: u64,
        size: u32,
        offsets: &libc::xdp_ring_offset,
    ) -> Result<Self, DriverError> {
        debug_assert!(size.is_power_of_two());
        let area_len = offsets.desc as usize + size as usize * size_of::<D>();
        // SAFETY: a fresh shared mapping chosen by the kernel (addr = null) of the
        // socket's ring; it affects no existing memory.
        let area = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                area_len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED | libc::MAP_POPULATE,
                fd.as_raw_fd(),
                pgoff as libc::off_t,
            )
        };
        if area == libc::MAP_FAILED {
            return Err(DriverError::os("mmap(AF_XDP ring)"));
        }
        let area = NonNull::new(area.cast::<u8>()).ok_or_else(|| DriverError::os("mmap(AF_XDP ring)"))?;
        // The offsets come from the kernel (XDP_MMAP_OFFSETS) and lie inside the
        // area; the indexes and flags are 4-byte aligned u32s there.
        let at = |offset: u64| area.as_ptr().wrapping_add(offset as usize);
        Ok(Self {
            area,
            area_len,
            producer: NonNull::new(at(offsets.producer).cast()).expect("inside a mapping"),
            consumer: NonNull::new(at(offsets.consumer).cast()).expect("inside a mapping"),
            flags: NonNull::new(at(offsets.flags).cast()).expect("inside a mapping"),
            descs: NonNull::new(at(offsets.desc).cast()).expect("inside a mapping"),
            size,
        })
    }

    fn producer(&self) -> &AtomicU32 {
        // SAFETY: the index lies in the live mapping (see `map`), aligned; the
        // kernel and this process access it only atomically.
        unsafe { self.producer.as_ref() }
    }

    fn consumer(&self) -> &AtomicU32 {
        // SAFETY: as for `producer`.
        unsafe { self.consumer.as_ref() }
    }

    fn flags(&self) -> u32 {
        // SAFETY: as for `producer`.
        unsafe { self.flags.as_ref() }.load(Ordering::Relaxed)
    }

    /// Pointer to the slot of ring position `pos`.
    fn slot(&self, pos: u32) -> *mut D {
        // SAFETY: `pos & (size - 1)` is below `size`, and the mapping holds
        // `size` descriptors from `descs`.
        unsafe { self.descs.as_ptr().add((pos & (self.size - 1)) as usize) }
    }
}

impl<D> Drop for RingMap<D> {
    fn drop(&mut self) {
        // SAFETY: the area was mapped with `area_len` bytes by `map`, and every
        // pointer into it belongs to this value, which is going away.
        unsafe { libc::munmap(self.area.as_ptr().cast(), self.area_len) };
    }
}

/// A ring this process fills and the kernel drains (fill, transmit).
#[derive(Debug)]
pub(crate) struct ProducerRing<D> {
    map: RingMap<D>,
    /// Our next position; published to the kernel by `submit`.
    producer: u32,
    /// The kernel's consumer position as last read.
    cached_consumer: u32,
}

// SAFETY: the ring is plain shared memory owned by this value; moving it to
// another thread moves the only user-space handle on it.
unsafe impl<D: Send> Send for ProducerRing<D> {}

impl<D: Copy> ProducerRing<D> {
    pub(crate) fn new(map: RingMap<D>) -> Self {
        let (producer, cached_consumer) =
            (map.producer().load(Ordering::Relaxed), map.consumer().load(Ordering::Acquire));
        Self { map, producer, cached_consumer }
    }

    /// Slots free for new descriptors.
    pub(crate) fn free(&mut self) -> u32 {
        let free = self.map.size - self.producer.wrapping_sub(self.cached_consumer);
        if free > 0 {
            return free;
        }
        // Acquire: the kernel is done with the slots it consumed.
        self.cached_consumer = self.map.consumer().load(Ordering::Acquire);
        self.map.size - self.producer.wrapping_sub(self.cached_consumer)
    }

    /// Free slots, reading the kernel's position afresh.
    pub(crate) fn free_now(&mut self) -> u32 {
        self.cached_consumer = self.map.consumer().load(Ordering::Acquire);
        self.free()
    }

    /// Writes `desc` in the next slot, not yet visible to the kernel. The
    /// caller checked [`ProducerRing::free`].
    pub(crate) fn push(&mut self, desc: D) {
        debug_assert!(self.producer.wrapping_sub(self.cached_consumer) < self.map.size);
        // SAFETY: the slot is inside the mapping and free (the kernel consumed it
        // or never had it), so the kernel does not read it now.
        unsafe { self.map.slot(self.producer).write(desc) };
        self.producer = self.producer.wrapping_add(1);
    }

    /// Makes every pushed descriptor visible to the kernel.
    pub(crate) fn submit(&self) {
        // Release: the descriptors are written before the index moves.
        self.map.producer().store(self.producer, Ordering::Release);
    }

    /// Descriptors submitted that the kernel has not consumed yet.
    pub(crate) fn outstanding(&mut self) -> u32 {
        self.cached_consumer = self.map.consumer().load(Ordering::Acquire);
        self.producer.wrapping_sub(self.cached_consumer)
    }

    /// Whether the kernel asks to be woken (`XDP_RING_NEED_WAKEUP`).
    pub(crate) fn needs_wakeup(&self) -> bool {
        self.map.flags() & libc::XDP_RING_NEED_WAKEUP != 0
    }
}

/// A ring the kernel fills and this process drains (receive, completion).
#[derive(Debug)]
pub(crate) struct ConsumerRing<D> {
    map: RingMap<D>,
    consumer: u32,
    cached_producer: u32,
}

// SAFETY: as for `ProducerRing`.
unsafe impl<D: Send> Send for ConsumerRing<D> {}

impl<D: Copy> ConsumerRing<D> {
    pub(crate) fn new(map: RingMap<D>) -> Self {
        let (consumer, cached_producer) =
            (map.consumer().load(Ordering::Relaxed), map.producer().load(Ordering::Acquire));
        Self { map, consumer, cached_producer }
    }

    /// Descriptors ready, up to `max`.
    pub(crate) fn available(&mut self, max: u32) -> u32 {
        let mut ready = self.cached_producer.wrapping_sub(self.consumer);
        if ready == 0 {
            // Acquire: the kernel's descriptors are visible once its index is.
            self.cached_producer = self.map.producer().load(Ordering::Acquire);
            ready = self.cached_producer.wrapping_sub(self.consumer);
        }
        ready.min(max)
    }

    /// The `i`-th ready descriptor; `i` below what [`ConsumerRing::available`]
    /// returned.
    pub(crate) fn get(&self, i: u32) -> D {
        // SAFETY: the slot is inside the mapping, and the kernel produced it and
        // will not touch it until `release` hands it back.
        unsafe { self.map.slot(self.consumer.wrapping_add(i)).read() }
    }

    /// Hands `n` consumed slots back to the kernel.
    pub(crate) fn release(&mut self, n: u32) {
        self.consumer = self.consumer.wrapping_add(n);
        // Release: our reads of the slots happen before the kernel reuses them.
        self.map.consumer().store(self.consumer, Ordering::Release);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::{AsFd, FromRawFd, OwnedFd};

    /// A memfd standing in for the socket: the ring arithmetic, with this
    /// process playing the kernel through a second mapping.
    fn fake_socket(len: usize) -> OwnedFd {
        // SAFETY: a NUL-terminated name; memfd_create has no other preconditions.
        let raw = unsafe { libc::memfd_create(c"ring-test".as_ptr(), libc::MFD_CLOEXEC) };
        assert!(raw >= 0);
        // SAFETY: a fresh descriptor we own.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        // SAFETY: ftruncate on our descriptor.
        assert_eq!(unsafe { libc::ftruncate(fd.as_raw_fd(), len as libc::off_t) }, 0);
        fd
    }

    const OFFSETS: libc::xdp_ring_offset = libc::xdp_ring_offset { producer: 0, consumer: 64, flags: 128, desc: 192 };

    #[test]
    fn a_full_producer_ring_accepts_only_what_the_consumer_freed() {
        let fd = fake_socket(4096);
        let mut ring: ProducerRing<u64> = ProducerRing::new(RingMap::map(fd.as_fd(), 0, 8, &OFFSETS).unwrap());
        let mut kernel: ConsumerRing<u64> = ConsumerRing::new(RingMap::map(fd.as_fd(), 0, 8, &OFFSETS).unwrap());
        assert_eq!(ring.free(), 8);
        for i in 0..8 {
            ring.push(i * 4096);
        }
        ring.submit();
        assert_eq!(ring.free(), 0);
        assert_eq!(kernel.available(64), 8);
        assert_eq!(kernel.get(3), 3 * 4096);
        kernel.release(3);
        assert_eq!(ring.free(), 3, "the slots the consumer released are free again");
        assert_eq!(ring.outstanding(), 5);
    }

    #[test]
    fn indexes_wrap_around_the_ring() {
        let fd = fake_socket(4096);
        let mut ring: ProducerRing<u64> = ProducerRing::new(RingMap::map(fd.as_fd(), 0, 4, &OFFSETS).unwrap());
        let mut kernel: ConsumerRing<u64> = ConsumerRing::new(RingMap::map(fd.as_fd(), 0, 4, &OFFSETS).unwrap());
        for round in 0..10u64 {
            let n = ring.free().min(3);
            for i in 0..n {
                ring.push(round * 100 + u64::from(i));
            }
            ring.submit();
            let got = kernel.available(64);
            assert_eq!(got, n);
            for i in 0..got {
                assert_eq!(kernel.get(i), round * 100 + u64::from(i));
            }
            kernel.release(got);
        }
    }
}
