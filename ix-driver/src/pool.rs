//! The per-core packet buffer pool: fixed-size frames carved from one region, a
//! free list with no lock and no allocation, and the two handles over a frame:
//! [`PacketBuf`] (shared, read-only) and [`TxBuf`] (unique, writable).

use std::cell::{Cell, RefCell};
use std::fmt;
use std::ops::{Bound, Deref, DerefMut, RangeBounds};
use std::rc::Rc;

use crate::error::{DriverError, FrameFull, PoolExhausted};
use crate::region::{HugePages, Region};

/// Distance between the starts of two frames. A power of two so that AF_XDP can
/// use the pool as an aligned UMEM.
pub const FRAME_STRIDE_BYTES: u32 = 4096;
/// Room kept in front of the data of a fresh frame, for headers prepended later
/// and for the kernel's XDP headroom.
pub const FRAME_HEADROOM_BYTES: u32 = 256;
/// Bytes of data a fresh frame can hold after its headroom: 2 KiB and more.
pub const FRAME_DATA_BYTES: u32 = FRAME_STRIDE_BYTES - FRAME_HEADROOM_BYTES;
/// Frames in a pool unless configured otherwise (32 MiB of region).
pub const DEFAULT_POOL_FRAMES: u32 = 8192;

/// A pool is under pressure once at most this share (1/N) of its frames is
/// free: the stack stops opening receive windows of connections that hold
/// frames, and packs small unread data into shared frames.
pub const POOL_TIGHT_FREE_DIVISOR: u32 = 4;
/// A pool is critical once at most this share (1/N) of its frames is free: the
/// stack drops received payload (acknowledgements are still processed) and
/// copying writes use heap memory, so that what is left keeps the receive path
/// and transmission going.
pub const POOL_CRITICAL_FREE_DIVISOR: u32 = 16;

/// How scarce free frames are (see [`PacketPool::pressure`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum PoolPressure {
    /// More than 1/[`POOL_TIGHT_FREE_DIVISOR`] of the frames are free.
    Normal,
    /// At most 1/[`POOL_TIGHT_FREE_DIVISOR`] are free.
    Tight,
    /// At most 1/[`POOL_CRITICAL_FREE_DIVISOR`] are free.
    Critical,
}

/// How to build a pool.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoolConfig {
    /// Number of frames; the region is `frames * FRAME_STRIDE_BYTES`.
    pub frames: u32,
    /// Whether to back the region with huge pages.
    pub huge_pages: HugePages,
}

impl Default for PoolConfig {
    fn default() -> Self {
        Self { frames: DEFAULT_POOL_FRAMES, huge_pages: HugePages::Auto }
    }
}

/// A snapshot of a pool's use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PoolStats {
    /// Frames in the pool.
    pub capacity: u32,
    /// Frames free now.
    pub available: u32,
    /// The fewest frames that were ever free at once.
    pub min_available: u32,
    /// Allocations refused because no frame was free.
    pub exhausted: u64,
}

struct PoolInner {
    region: Region,
    frames: u32,
    /// Handles per frame; 0 means the frame is on the free list.
    refs: Box<[Cell<u32>]>,
    free: RefCell<Vec<u32>>,
    min_available: Cell<u32>,
    exhausted: Cell<u64>,
}

impl PoolInner {
    fn frame_offset(&self, idx: u32) -> usize {
        idx as usize * FRAME_STRIDE_BYTES as usize
    }

    fn pop_free(&self) -> Option<u32> {
        let mut free = self.free.borrow_mut();
        let idx = free.pop()?;
        let left = free.len() as u32;
        if left < self.min_available.get() {
            self.min_available.set(left);
        }
        debug_assert_eq!(self.refs[idx as usize].get(), 0, "frame {idx} on free list twice");
        self.refs[idx as usize].set(1);
        Some(idx)
    }

    fn retain(&self, idx: u32) {
        let refs = &self.refs[idx as usize];
        let n = refs.get();
        debug_assert!(n > 0, "retain of free frame {idx}");
        if n == u32::MAX {
            // As `Rc` does: an overflowing count would lead to a use after free.
            std::process::abort();
        }
        refs.set(n + 1);
    }

    fn release(&self, idx: u32) {
        let refs = &self.refs[idx as usize];
        let n = refs.get();
        debug_assert!(n > 0, "release of free frame {idx}");
        refs.set(n - 1);
        if n == 1 {
            // The vector was allocated with room for every frame: never grows.
            self.free.borrow_mut().push(idx);
        }
    }
}

/// A per-core pool of packet frames. Cloning is cheap and shares the pool.
///
/// The pool is `!Send`: each core owns its own, as in IX, so taking and returning
/// a frame needs no lock and no atomic operation.
#[derive(Clone)]
pub struct PacketPool {
    inner: Rc<PoolInner>,
}

impl fmt::Debug for PacketPool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PacketPool")
            .field("stats", &self.stats())
            .field("huge_pages", &self.inner.region.is_huge())
            .finish()
    }
}

impl PacketPool {
    /// Maps a region and puts every frame on the free list.
    ///
    /// # Errors
    /// [`DriverError::Config`] for zero frames or a region over the address
    /// space; the region's errors otherwise (see [`Region::new`]).
    pub fn new(config: PoolConfig) -> Result<Self, DriverError> {
        if config.frames == 0 {
            return Err(DriverError::Config("a pool needs at least one frame".into()));
        }
        let bytes = (config.frames as usize)
            .checked_mul(FRAME_STRIDE_BYTES as usize)
            .ok_or_else(|| DriverError::Config(format!("{} frames is too many", config.frames)))?;
        Ok(Self::over(Region::new(bytes, config.huge_pages)?, config.frames))
    }

    /// A pool of `frames` frames over the region in `memfd`, made by another
    /// process (`ixcp`) and handed over.
    ///
    /// # Errors
    /// As [`Region::from_memfd`], and [`DriverError::Config`] for zero frames.
    pub fn from_memfd(memfd: std::os::fd::OwnedFd, frames: u32) -> Result<Self, DriverError> {
        if frames == 0 {
            return Err(DriverError::Config("a pool needs at least one frame".into()));
        }
        let bytes = (frames as usize)
            .checked_mul(FRAME_STRIDE_BYTES as usize)
            .ok_or_else(|| DriverError::Config(format!("{frames} frames is too many")))?;
        Ok(Self::over(Region::from_memfd(memfd, bytes)?, frames))
    }

    fn over(region: Region, frames: u32) -> Self {
        // Hand out low indexes first: they were touched most recently.
        let free: Vec<u32> = (0..frames).rev().collect();
        let refs = (0..frames).map(|_| Cell::new(0)).collect();
        Self {
            inner: Rc::new(PoolInner {
                region,
                frames,
                refs,
                free: RefCell::new(free),
                min_available: Cell::new(frames),
                exhausted: Cell::new(0),
            }),
        }
    }

    /// Takes a free frame as an empty writable buffer whose data starts after
    /// [`FRAME_HEADROOM_BYTES`].
    ///
    /// # Errors
    /// [`PoolExhausted`] when every frame is in use; counted in
    /// [`PoolStats::exhausted`].
    pub fn alloc(&self) -> Result<TxBuf, PoolExhausted> {
        match self.inner.pop_free() {
            Some(idx) => Ok(TxBuf {
                buf: PacketBuf {
                    pool: self.inner.clone(),
                    idx,
                    start: FRAME_HEADROOM_BYTES,
                    end: FRAME_HEADROOM_BYTES,
                },
            }),
            None => {
                self.inner.exhausted.set(self.inner.exhausted.get() + 1);
                Err(PoolExhausted { capacity: self.inner.frames })
            }
        }
    }

    /// Frames in the pool.
    pub fn capacity(&self) -> u32 {
        self.inner.frames
    }

    /// Frames free now.
    #[inline]
    pub fn available(&self) -> u32 {
        self.inner.free.borrow().len() as u32
    }

    /// How scarce free frames are now: what holders of frames that can wait
    /// (received data, application writes) check before taking more. Inlined
    /// across crates: the stack asks for every received segment.
    #[inline]
    pub fn pressure(&self) -> PoolPressure {
        let (free, frames) = (self.available(), self.inner.frames);
        if free <= frames / POOL_CRITICAL_FREE_DIVISOR {
            PoolPressure::Critical
        } else if free <= frames / POOL_TIGHT_FREE_DIVISOR {
            PoolPressure::Tight
        } else {
            PoolPressure::Normal
        }
    }

    /// A snapshot of the pool's counters.
    pub fn stats(&self) -> PoolStats {
        PoolStats {
            capacity: self.inner.frames,
            available: self.available(),
            min_available: self.inner.min_available.get(),
            exhausted: self.inner.exhausted.get(),
        }
    }

    /// The region the frames live in (for backends that register it with the
    /// kernel).
    pub fn region(&self) -> &Region {
        &self.inner.region
    }

    /// Whether two handles belong to the same pool.
    pub fn same_pool(&self, buf: &PacketBuf) -> bool {
        Rc::ptr_eq(&self.inner, &buf.pool)
    }
}

/// A shared, read-only view of bytes in one frame.
///
/// Cloning shares the frame (a reference count in the pool's side table, no
/// allocation); the frame returns to its pool when the last handle drops. The
/// bytes are read through the region's read-only mapping.
pub struct PacketBuf {
    pool: Rc<PoolInner>,
    idx: u32,
    start: u32,
    end: u32,
}

impl PacketBuf {
    /// Length of the view in bytes.
    pub fn len(&self) -> usize {
        (self.end - self.start) as usize
    }

    /// Whether the view is empty.
    pub fn is_empty(&self) -> bool {
        self.end == self.start
    }

    /// A new handle on a sub-range of this view, sharing the frame.
    ///
    /// # Panics
    /// If the range is out of bounds or decreasing, as slicing does.
    pub fn slice(&self, range: impl RangeBounds<usize>) -> PacketBuf {
        let (lo, hi) = resolve(range, self.len());
        let mut out = self.clone();
        out.end = out.start + hi as u32;
        out.start += lo as u32;
        out
    }

    /// Drops the first `n` bytes from this view.
    ///
    /// # Panics
    /// If `n` is greater than the length.
    pub fn advance(&mut self, n: usize) {
        assert!(n <= self.len(), "advance {n} past the end of a {}-byte view", self.len());
        self.start += n as u32;
    }

    /// Shortens the view to `len` bytes; a longer `len` leaves it as is.
    pub fn truncate(&mut self, len: usize) {
        if len < self.len() {
            self.end = self.start + len as u32;
        }
    }

    /// Turns the view back into a writable buffer when it is the only handle on
    /// its frame, keeping the window; otherwise gives it back unchanged.
    ///
    /// # Errors
    /// Returns `self` when another handle shares the frame.
    pub fn try_into_mut(self) -> Result<TxBuf, PacketBuf> {
        if self.pool.refs[self.idx as usize].get() == 1 { Ok(TxBuf { buf: self }) } else { Err(self) }
    }

    /// Index of the frame in its pool.
    pub fn frame_index(&self) -> u32 {
        self.idx
    }

    /// Offset of the first byte of the view from the start of the pool's region
    /// (what an AF_XDP descriptor carries).
    pub fn region_offset(&self) -> usize {
        self.pool.frame_offset(self.idx) + self.start as usize
    }

    /// Handles currently sharing this frame (this one included).
    pub fn frame_refs(&self) -> u32 {
        self.pool.refs[self.idx as usize].get()
    }
}

impl Deref for PacketBuf {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        let offset = self.pool.frame_offset(self.idx) + self.start as usize;
        // SAFETY: `offset + len` lies inside this frame, which lies inside the
        // region (checked when the window was set). The frame is kept alive by this
        // handle's reference, and while any `PacketBuf` exists no `TxBuf` (the only
        // writer) exists for the frame, so the bytes do not change under the slice.
        unsafe { std::slice::from_raw_parts(self.pool.region.ro_base().as_ptr().add(offset), self.len()) }
    }
}

impl AsRef<[u8]> for PacketBuf {
    fn as_ref(&self) -> &[u8] {
        self
    }
}

impl Clone for PacketBuf {
    fn clone(&self) -> Self {
        self.pool.retain(self.idx);
        Self { pool: self.pool.clone(), idx: self.idx, start: self.start, end: self.end }
    }
}

impl Drop for PacketBuf {
    fn drop(&mut self) {
        self.pool.release(self.idx);
    }
}

impl fmt::Debug for PacketBuf {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PacketBuf")
            .field("frame", &self.idx)
            .field("start", &self.start)
            .field("len", &self.len())
            .finish()
    }
}

impl PartialEq for PacketBuf {
    fn eq(&self, other: &Self) -> bool {
        **self == **other
    }
}

impl Eq for PacketBuf {}

/// A writable buffer over one frame that no other handle shares.
///
/// Data sits in a window that can grow at both ends: [`TxBuf::append`] at the
/// back for payload, [`TxBuf::prepend`] at the front for headers.
pub struct TxBuf {
    buf: PacketBuf,
}

impl TxBuf {
    /// Length of the data in bytes.
    pub fn len(&self) -> usize {
        self.buf.len()
    }

    /// Whether the buffer holds no data.
    pub fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }

    /// Bytes that can still be prepended.
    pub fn headroom(&self) -> usize {
        self.buf.start as usize
    }

    /// Bytes that can still be appended.
    pub fn tailroom(&self) -> usize {
        (FRAME_STRIDE_BYTES - self.buf.end) as usize
    }

    /// Grows the data by `n` bytes at the back and returns them (their contents
    /// are whatever the frame held before).
    ///
    /// # Errors
    /// [`FrameFull`] when fewer than `n` bytes of tailroom are left.
    pub fn append(&mut self, n: usize) -> Result<&mut [u8], FrameFull> {
        let available = self.tailroom();
        if n > available {
            return Err(FrameFull { requested: n, available });
        }
        let old = self.len();
        self.buf.end += n as u32;
        Ok(&mut self[old..])
    }

    /// Appends a copy of `data`.
    ///
    /// # Errors
    /// [`FrameFull`] when `data` does not fit; nothing is written then.
    pub fn extend_from_slice(&mut self, data: &[u8]) -> Result<(), FrameFull> {
        self.append(data.len())?.copy_from_slice(data);
        Ok(())
    }

    /// Grows the data by `n` bytes at the front and returns them.
    ///
    /// # Errors
    /// [`FrameFull`] when fewer than `n` bytes of headroom are left.
    pub fn prepend(&mut self, n: usize) -> Result<&mut [u8], FrameFull> {
        let available = self.headroom();
        if n > available {
            return Err(FrameFull { requested: n, available });
        }
        self.buf.start -= n as u32;
        Ok(&mut self[..n])
    }

    /// Shortens the data to `len` bytes; a longer `len` leaves it as is.
    pub fn truncate(&mut self, len: usize) {
        self.buf.truncate(len);
    }

    /// Drops the first `n` bytes of data (they become headroom again).
    ///
    /// # Panics
    /// If `n` is greater than the length.
    pub fn advance(&mut self, n: usize) {
        self.buf.advance(n);
    }

    /// Empties the buffer, with the data starting after the standard headroom.
    pub fn clear(&mut self) {
        self.buf.start = FRAME_HEADROOM_BYTES;
        self.buf.end = FRAME_HEADROOM_BYTES;
    }

    /// The whole tailroom, to be filled by a read; follow with [`TxBuf::commit`].
    pub fn spare_mut(&mut self) -> &mut [u8] {
        let n = self.tailroom();
        let offset = self.buf.pool.frame_offset(self.buf.idx) + self.buf.end as usize;
        // SAFETY: `offset + n` ends at the frame's end, inside the region; this
        // handle is the only one on the frame (type invariant), so the mutable
        // slice aliases nothing; its lifetime is tied to `&mut self`.
        unsafe { std::slice::from_raw_parts_mut(self.buf.pool.region.rw_base().as_ptr().add(offset), n) }
    }

    /// Adds `n` bytes written into [`TxBuf::spare_mut`] to the data.
    ///
    /// # Panics
    /// If `n` is greater than the tailroom.
    pub fn commit(&mut self, n: usize) {
        assert!(n <= self.tailroom(), "commit {n} beyond the frame's {} spare bytes", self.tailroom());
        self.buf.end += n as u32;
    }

    /// Sets the data window to bytes `start..end` of the frame: where a device
    /// that wrote into the frame put the data.
    ///
    /// # Panics
    /// If `start > end` or `end` is past the frame.
    pub(crate) fn set_window(&mut self, start: u32, end: u32) {
        assert!(start <= end && end <= FRAME_STRIDE_BYTES, "window {start}..{end} outside a frame");
        self.buf.start = start;
        self.buf.end = end;
    }

    /// Ends writing: the buffer becomes a shareable read-only view.
    pub fn freeze(self) -> PacketBuf {
        self.buf
    }

    /// Index of the frame in its pool.
    pub fn frame_index(&self) -> u32 {
        self.buf.idx
    }
}

impl Deref for TxBuf {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        let offset = self.buf.pool.frame_offset(self.buf.idx) + self.buf.start as usize;
        // SAFETY: in bounds as for `PacketBuf`; reading through the writable
        // mapping keeps reads and writes of this unique frame on one address.
        unsafe { std::slice::from_raw_parts(self.buf.pool.region.rw_base().as_ptr().add(offset), self.len()) }
    }
}

impl DerefMut for TxBuf {
    fn deref_mut(&mut self) -> &mut [u8] {
        let offset = self.buf.pool.frame_offset(self.buf.idx) + self.buf.start as usize;
        // SAFETY: in bounds as above; this handle is the only one on the frame, so
        // the mutable slice (tied to `&mut self`) aliases nothing.
        unsafe { std::slice::from_raw_parts_mut(self.buf.pool.region.rw_base().as_ptr().add(offset), self.len()) }
    }
}

impl fmt::Debug for TxBuf {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TxBuf")
            .field("frame", &self.buf.idx)
            .field("headroom", &self.headroom())
            .field("len", &self.len())
            .finish()
    }
}

fn resolve(range: impl RangeBounds<usize>, len: usize) -> (usize, usize) {
    let lo = match range.start_bound() {
        Bound::Included(&n) => n,
        Bound::Excluded(&n) => n + 1,
        Bound::Unbounded => 0,
    };
    let hi = match range.end_bound() {
        Bound::Included(&n) => n + 1,
        Bound::Excluded(&n) => n,
        Bound::Unbounded => len,
    };
    assert!(lo <= hi && hi <= len, "range {lo}..{hi} out of bounds for a {len}-byte view");
    (lo, hi)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pool(frames: u32) -> PacketPool {
        PacketPool::new(PoolConfig { frames, huge_pages: HugePages::Never }).unwrap()
    }

    #[test]
    fn frame_returns_to_pool_when_last_handle_drops() {
        let pool = pool(2);
        let mut tx = pool.alloc().unwrap();
        tx.extend_from_slice(b"hello").unwrap();
        let rx = tx.freeze();
        let tail = rx.slice(1..);
        assert_eq!(pool.available(), 1);
        drop(rx);
        assert_eq!(pool.available(), 1, "a slice still holds the frame");
        assert_eq!(&*tail, b"ello");
        drop(tail);
        assert_eq!(pool.available(), 2);
    }

    #[test]
    fn pressure_follows_the_share_of_free_frames() {
        let pool = pool(64);
        let mut held = Vec::new();
        let mut seen = Vec::new();
        while let Ok(buf) = pool.alloc() {
            held.push(buf);
            seen.push((pool.available(), pool.pressure()));
        }
        assert!(seen.iter().all(|&(free, p)| (free > 16) == (p == PoolPressure::Normal)));
        assert!(seen.iter().all(|&(free, p)| (free <= 4) == (p == PoolPressure::Critical)));
        assert_eq!(pool.pressure(), PoolPressure::Critical);
        held.truncate(40);
        assert_eq!(pool.pressure(), PoolPressure::Normal);
    }

    #[test]
    fn exhaustion_is_an_error_and_counted() {
        let pool = pool(1);
        let held = pool.alloc().unwrap();
        assert_eq!(pool.alloc().unwrap_err(), PoolExhausted { capacity: 1 });
        assert_eq!(pool.stats().exhausted, 1);
        assert_eq!(pool.stats().min_available, 0);
        drop(held);
        assert!(pool.alloc().is_ok());
    }

    #[test]
    fn headers_prepend_in_front_of_payload() {
        let pool = pool(1);
        let mut tx = pool.alloc().unwrap();
        tx.extend_from_slice(b"payload").unwrap();
        tx.prepend(3).unwrap().copy_from_slice(b"hdr");
        assert_eq!(&*tx, b"hdrpayload");
        assert_eq!(tx.headroom(), FRAME_HEADROOM_BYTES as usize - 3);
        let err = tx.prepend(FRAME_HEADROOM_BYTES as usize).unwrap_err();
        assert_eq!(err.available, FRAME_HEADROOM_BYTES as usize - 3);
        assert!(tx.append(FRAME_DATA_BYTES as usize).is_err());
        assert!(tx.append(FRAME_DATA_BYTES as usize - 7).is_ok());
    }

    #[test]
    fn a_fresh_frame_holds_2_kib_and_more() {
        const { assert!(FRAME_DATA_BYTES >= 2048) };
        let pool = pool(1);
        let mut tx = pool.alloc().unwrap();
        assert_eq!(tx.spare_mut().len(), FRAME_DATA_BYTES as usize);
        tx.spare_mut()[..4].copy_from_slice(b"abcd");
        tx.commit(4);
        assert_eq!(&*tx, b"abcd");
    }

    #[test]
    fn only_a_unique_view_becomes_writable_again() {
        let pool = pool(1);
        let mut tx = pool.alloc().unwrap();
        tx.extend_from_slice(b"xyz").unwrap();
        let rx = tx.freeze();
        let other = rx.clone();
        let rx = rx.try_into_mut().unwrap_err();
        drop(other);
        let mut tx = rx.try_into_mut().unwrap();
        tx[0] = b'X';
        assert_eq!(&*tx.freeze(), b"Xyz");
    }

    #[test]
    fn views_report_their_place_in_the_region() {
        let pool = pool(3);
        let _a = pool.alloc().unwrap();
        let mut b = pool.alloc().unwrap();
        b.extend_from_slice(&[1, 2, 3, 4]).unwrap();
        let b = b.freeze().slice(2..);
        assert_eq!(
            b.region_offset(),
            b.frame_index() as usize * FRAME_STRIDE_BYTES as usize + FRAME_HEADROOM_BYTES as usize + 2
        );
        assert_eq!(&*b, &[3, 4]);
    }
}
