//! One contiguous packet-buffer region, backed by a memfd mapped twice: read-write
//! for the driver, read-only for the views handed to applications.

use std::ffi::CStr;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::ptr::NonNull;
use std::sync::Once;

use crate::error::DriverError;

/// Size of one huge page on x86-64 Linux.
pub const HUGE_PAGE_BYTES: usize = 2 * 1024 * 1024;

/// Whether the region should be backed by 2 MiB huge pages.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum HugePages {
    /// Use huge pages when the machine has enough free; ordinary pages otherwise
    /// (logged once per process).
    #[default]
    Auto,
    /// Ordinary pages only.
    Never,
    /// Huge pages or an error.
    Require,
}

/// A memory region shared by a pool's frames.
///
/// The same memory is mapped twice: `rw` is used by the driver to fill and build
/// frames, `ro` is the only address handed out to readers of received data, so a
/// write through a received buffer faults even if a caller casts away `const`.
#[derive(Debug)]
pub struct Region {
    rw: NonNull<u8>,
    ro: NonNull<u8>,
    len: usize,
    huge: bool,
    fd: OwnedFd,
}

// SAFETY: the region is plain memory owned by this value; the pointers are never
// aliased mutably by the region itself. Synchronising access to the bytes is the
// job of the owner (the pool hands out unique writable frames).
unsafe impl Send for Region {}
// SAFETY: as above; `&Region` only exposes raw pointers and lengths.
unsafe impl Sync for Region {}

static HUGE_FALLBACK_LOGGED: Once = Once::new();

impl Region {
    /// Maps a region of at least `len` bytes.
    ///
    /// # Errors
    /// [`DriverError::HugePagesUnavailable`] when `huge` is `Require` and the
    /// machine has too few free huge pages; [`DriverError::Os`] when the memfd or
    /// a mapping cannot be made.
    pub fn new(len: usize, huge: HugePages) -> Result<Self, DriverError> {
        if len == 0 {
            return Err(DriverError::Config("a region needs at least one byte".into()));
        }
        if huge != HugePages::Never {
            let huge_len = len.next_multiple_of(HUGE_PAGE_BYTES);
            match Self::map(huge_len, true) {
                Ok(region) => return Ok(region),
                Err(err) if huge == HugePages::Require => {
                    return Err(DriverError::HugePagesUnavailable { bytes: huge_len, detail: err.to_string() });
                }
                Err(err) => HUGE_FALLBACK_LOGGED.call_once(|| {
                    tracing::info!(
                        bytes = huge_len,
                        error = %err,
                        "no free 2 MiB huge pages for packet buffers; using ordinary pages \
                         (raise /proc/sys/vm/nr_hugepages to use huge pages)"
                    );
                }),
            }
        }
        let page = page_size();
        Self::map(len.next_multiple_of(page), false)
    }

    fn map(len: usize, huge: bool) -> Result<Self, DriverError> {
        let name: &CStr = c"ix-packet-region";
        let mut flags = libc::MFD_CLOEXEC | libc::MFD_ALLOW_SEALING;
        if huge {
            flags |= libc::MFD_HUGETLB | libc::MFD_HUGE_2MB;
        }
        // SAFETY: `name` is a valid NUL-terminated string; memfd_create has no
        // other memory-safety preconditions.
        let raw = unsafe { libc::memfd_create(name.as_ptr(), flags) };
        if raw < 0 {
            return Err(DriverError::os("memfd_create"));
        }
        // SAFETY: `raw` is a fresh descriptor that nothing else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        let size = libc::off_t::try_from(len)
            .map_err(|_| DriverError::Config(format!("region of {len} bytes is too large")))?;
        // SAFETY: ftruncate on a descriptor we own.
        if unsafe { libc::ftruncate(fd.as_raw_fd(), size) } != 0 {
            return Err(DriverError::os("ftruncate(memfd)"));
        }
        let (rw, ro) = map_twice(&fd, len)?;
        Ok(Self { rw, ro, len, huge, fd })
    }

    /// Maps a region another process made (`ixcp`), of `len` bytes, from its
    /// memfd: read-write for the driver, read-only for received data, as
    /// [`Region::new`] does.
    ///
    /// # Errors
    /// [`DriverError::Config`] when the memfd holds fewer than `len` bytes;
    /// [`DriverError::Os`] when it cannot be read or mapped.
    pub fn from_memfd(fd: OwnedFd, len: usize) -> Result<Self, DriverError> {
        // SAFETY: plain data; all zero is a valid value.
        let mut stat: libc::stat = unsafe { std::mem::zeroed() };
        // SAFETY: `stat` is a live buffer for fstat to fill; the descriptor is ours.
        if unsafe { libc::fstat(fd.as_raw_fd(), &mut stat) } != 0 {
            return Err(DriverError::os("fstat(packet region memfd)"));
        }
        if len == 0 || (stat.st_size as u64) < len as u64 {
            return Err(DriverError::Config(format!(
                "the packet region handed over holds {} bytes, not the {len} granted",
                stat.st_size
            )));
        }
        let (rw, ro) = map_twice(&fd, len)?;
        Ok(Self { rw, ro, len, huge: stat.st_blksize as usize == HUGE_PAGE_BYTES, fd })
    }

    /// Seals the memfd's size, so that no holder of the descriptor can shrink
    /// the region under the mappings of another (`ixcp` does this before
    /// handing a region to a dataplane).
    ///
    /// # Errors
    /// [`DriverError::Os`] when the kernel refuses the seals.
    pub fn seal_size(&self) -> Result<(), DriverError> {
        let seals = libc::F_SEAL_SHRINK | libc::F_SEAL_GROW | libc::F_SEAL_SEAL;
        // SAFETY: fcntl on a descriptor we own, with an integer argument.
        if unsafe { libc::fcntl(self.fd.as_raw_fd(), libc::F_ADD_SEALS, seals) } != 0 {
            return Err(DriverError::os("fcntl(F_ADD_SEALS)"));
        }
        Ok(())
    }

    /// Length in bytes (a multiple of the page size in use).
    pub fn len(&self) -> usize {
        self.len
    }

    /// Always false: a region has at least one page.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Whether the region sits on 2 MiB huge pages.
    pub fn is_huge(&self) -> bool {
        self.huge
    }

    /// Base of the writable mapping (for backends that register the region with
    /// the kernel, such as AF_XDP's UMEM).
    pub fn rw_base(&self) -> NonNull<u8> {
        self.rw
    }

    /// Base of the read-only mapping.
    pub fn ro_base(&self) -> NonNull<u8> {
        self.ro
    }

    /// The memfd behind both mappings.
    pub fn fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

impl Drop for Region {
    fn drop(&mut self) {
        // SAFETY: both mappings were made with `self.len` bytes and every borrow of
        // them is tied to the lifetime of the pool that owns this region.
        unsafe {
            libc::munmap(self.rw.as_ptr().cast(), self.len);
            libc::munmap(self.ro.as_ptr().cast(), self.len);
        }
    }
}

/// Maps `len` bytes of `fd` read-write (populated) and read-only.
fn map_twice(fd: &OwnedFd, len: usize) -> Result<(NonNull<u8>, NonNull<u8>), DriverError> {
    let rw = mmap_shared(fd, len, libc::PROT_READ | libc::PROT_WRITE, true)?;
    let ro = match mmap_shared(fd, len, libc::PROT_READ, false) {
        Ok(ro) => ro,
        Err(err) => {
            // SAFETY: `rw` was mapped above with length `len` and is not used
            // after this point.
            unsafe { libc::munmap(rw.as_ptr().cast(), len) };
            return Err(err);
        }
    };
    Ok((rw, ro))
}

fn mmap_shared(fd: &OwnedFd, len: usize, prot: libc::c_int, populate: bool) -> Result<NonNull<u8>, DriverError> {
    let mut flags = libc::MAP_SHARED;
    if populate {
        // Fault every page in now rather than on the packet path.
        flags |= libc::MAP_POPULATE;
    }
    // SAFETY: a fresh mapping chosen by the kernel (addr = null) of a descriptor we
    // own; no existing memory is affected.
    let ptr = unsafe { libc::mmap(std::ptr::null_mut(), len, prot, flags, fd.as_raw_fd(), 0) };
    if ptr == libc::MAP_FAILED {
        return Err(DriverError::os("mmap(packet region)"));
    }
    NonNull::new(ptr.cast()).ok_or_else(|| DriverError::os("mmap returned null"))
}

/// The base page size of this machine.
pub fn page_size() -> usize {
    // SAFETY: sysconf has no preconditions.
    let size = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    usize::try_from(size).unwrap_or(4096).max(4096)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_mappings_see_the_same_bytes() {
        let region = Region::new(10_000, HugePages::Never).unwrap();
        assert!(region.len() >= 10_000);
        assert_eq!(region.len() % page_size(), 0);
        // SAFETY: offset 123 is inside the region; nothing else uses it.
        unsafe {
            region.rw_base().as_ptr().add(123).write(0xAB);
            assert_eq!(region.ro_base().as_ptr().add(123).read(), 0xAB);
        }
    }

    #[test]
    fn huge_pages_required_or_explained() {
        match Region::new(HUGE_PAGE_BYTES, HugePages::Require) {
            Ok(region) => assert!(region.is_huge()),
            Err(DriverError::HugePagesUnavailable { bytes, .. }) => {
                assert_eq!(bytes, HUGE_PAGE_BYTES);
            }
            Err(other) => panic!("unexpected error: {other}"),
        }
    }

    #[test]
    fn auto_always_gets_memory() {
        let region = Region::new(3 * HUGE_PAGE_BYTES / 2, HugePages::Auto).unwrap();
        assert!(region.len() >= 3 * HUGE_PAGE_BYTES / 2);
    }
}
