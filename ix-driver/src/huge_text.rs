//! Backing the executable's code with 2 MiB transparent huge pages: the
//! 2 MiB-aligned part of the text segment is copied to anonymous memory that
//! asks for huge pages, then moved over the original in one `mremap`.

use std::io;
use std::ops::Range;

use crate::DriverError;

/// The size of a PMD-mapped transparent huge page on x86-64.
const HUGE_PAGE_BYTES: usize = 2 << 20;

/// What [`back_text_with_huge_pages`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HugeText {
    /// The executable's text mapping.
    pub text: Range<usize>,
    /// The 2 MiB-aligned part of it now on anonymous memory (empty: none).
    pub moved: Range<usize>,
    /// Of which the kernel backs this much with huge pages (`AnonHugePages`).
    pub huge_bytes: usize,
}

/// The executable's first executable mapping in `maps` (the text of
/// `/proc/self/maps`), whose file is `exe`.
fn text_mapping(maps: &str, exe: &str) -> Option<Range<usize>> {
    maps.lines().find_map(|line| {
        let mut fields = line.split_whitespace();
        let (range, perms) = (fields.next()?, fields.next()?);
        let path = fields.nth(3)?;
        if !perms.starts_with("r-x") || path != exe {
            return None;
        }
        let (start, end) = range.split_once('-')?;
        Some(usize::from_str_radix(start, 16).ok()?..usize::from_str_radix(end, 16).ok()?)
    })
}

/// The whole huge pages inside `text`.
fn aligned_inside(text: &Range<usize>) -> Range<usize> {
    let start = text.start.next_multiple_of(HUGE_PAGE_BYTES);
    let end = text.end / HUGE_PAGE_BYTES * HUGE_PAGE_BYTES;
    if start < end { start..end } else { start..start }
}

/// Whether a line of `smaps` begins a mapping's entry (`START-END perms ...`).
fn is_mapping_header(line: &str) -> bool {
    let hex = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_hexdigit());
    line.split_whitespace().next().and_then(|range| range.split_once('-')).is_some_and(|(a, b)| hex(a) && hex(b))
}

/// The `AnonHugePages` of the mapping starting at `start` in `smaps`.
fn anon_huge_bytes(smaps: &str, start: usize) -> usize {
    let header = format!("{start:x}-");
    smaps
        .lines()
        .skip_while(|line| !line.starts_with(&header))
        .skip(1)
        .take_while(|line| !is_mapping_header(line))
        .find_map(|line| line.strip_prefix("AnonHugePages:"))
        .and_then(|kb| kb.trim().trim_end_matches("kB").trim().parse::<usize>().ok())
        .map_or(0, |kb| kb * 1024)
}

/// Moves the 2 MiB-aligned part of this process's text segment onto
/// anonymous memory marked `MADV_HUGEPAGE`, so that the code is mapped by a
/// few 2 MiB TLB entries instead of hundreds of 4 KiB ones. The kernel here
/// has no `CONFIG_READ_ONLY_THP_FOR_FS`, so `MADV_HUGEPAGE` or
/// `MADV_COLLAPSE` on the file-backed text itself does nothing.
///
/// Call it before other threads start. The code keeps its addresses and
/// bytes; what changes: the text is no longer shared with other processes
/// running the same binary, and profilers that map samples through the
/// file (perf) see anonymous memory there.
///
/// # Errors
/// [`DriverError::Os`] when `/proc/self` cannot be read or a memory call
/// fails; the text is unchanged unless the final `mremap` succeeded.
pub fn back_text_with_huge_pages() -> Result<HugeText, DriverError> {
    let read =
        |path| std::fs::read_to_string(path).map_err(|source| DriverError::Os { call: "read /proc/self", source });
    let exe = std::fs::read_link("/proc/self/exe")
        .map_err(|source| DriverError::Os { call: "readlink /proc/self/exe", source })?;
    let maps = read("/proc/self/maps")?;
    let text = text_mapping(&maps, &exe.to_string_lossy()).ok_or_else(|| DriverError::Os {
        call: "find the text mapping in /proc/self/maps",
        source: io::Error::from(io::ErrorKind::NotFound),
    })?;
    let moved = aligned_inside(&text);
    if !moved.is_empty() {
        move_to_huge_pages(moved.clone())?;
    }
    let huge_bytes = if moved.is_empty() { 0 } else { anon_huge_bytes(&read("/proc/self/smaps")?, moved.start) };
    Ok(HugeText { text, moved, huge_bytes })
}

/// Copies `range` (2 MiB-aligned, mapped read and execute) to a fresh
/// anonymous mapping at the same offset within a huge page, asks for huge
/// pages there, and moves that mapping over `range`.
fn move_to_huge_pages(range: Range<usize>) -> Result<(), DriverError> {
    let len = range.len();
    // Room for an aligned copy: `len` plus a huge page of slack.
    let room = len + HUGE_PAGE_BYTES;
    // SAFETY: an anonymous private mapping at an address the kernel picks.
    let base = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            room,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
            -1,
            0,
        )
    };
    if base == libc::MAP_FAILED {
        return Err(DriverError::os("mmap (text copy)"));
    }
    let copy = (base as usize).next_multiple_of(HUGE_PAGE_BYTES);
    let unmap_slack = |copy_len: usize| {
        let (head, tail) = (copy - base as usize, base as usize + room - (copy + copy_len));
        // SAFETY: the slack before and after the copy lies inside the mapping
        // made above, which nothing else uses.
        unsafe {
            if head > 0 {
                libc::munmap(base, head);
            }
            if tail > 0 {
                libc::munmap((copy + copy_len) as *mut libc::c_void, tail);
            }
        }
    };
    // SAFETY: `copy..copy + len` lies inside the mapping made above.
    if unsafe { libc::madvise(copy as *mut libc::c_void, len, libc::MADV_HUGEPAGE) } != 0 {
        let error = DriverError::os("madvise(MADV_HUGEPAGE) on the text copy");
        // SAFETY: the whole mapping made above, unused.
        unsafe { libc::munmap(base, room) };
        return Err(error);
    }
    // SAFETY: `range` is mapped readable (the text), `copy..copy + len` is
    // writable and disjoint from it.
    unsafe { std::ptr::copy_nonoverlapping(range.start as *const u8, copy as *mut u8, len) };
    // SAFETY: `copy..copy + len` lies inside the mapping made above.
    if unsafe { libc::mprotect(copy as *mut libc::c_void, len, libc::PROT_READ | libc::PROT_EXEC) } != 0 {
        let error = DriverError::os("mprotect the text copy");
        // SAFETY: the whole mapping made above, unused.
        unsafe { libc::munmap(base, room) };
        return Err(error);
    }
    unmap_slack(len);
    // SAFETY: moves the copy, byte for byte the text it replaces, over the
    // text in one call: the kernel swaps the mappings under its lock, so
    // code running from `range` (this function's caller, or this function)
    // finds the same instructions at the same addresses after it. Both ends
    // are 2 MiB-aligned, so the huge pages move whole.
    let moved = unsafe {
        libc::mremap(
            copy as *mut libc::c_void,
            len,
            len,
            libc::MREMAP_MAYMOVE | libc::MREMAP_FIXED,
            range.start as *mut libc::c_void,
        )
    };
    if moved == libc::MAP_FAILED {
        let error = DriverError::os("mremap the text copy over the text");
        // SAFETY: the copy, which nothing uses.
        unsafe { libc::munmap(copy as *mut libc::c_void, len) };
        return Err(error);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAPS: &str = "\
55d0c0000000-55d0c01a5000 r--p 00000000 fe:01 123 /usr/bin/ix-http
55d0c01a5000-55d0c05b2000 r-xp 001a4000 fe:01 123 /usr/bin/ix-http
7f0000000000-7f0000100000 r-xp 00000000 fe:01 456 /usr/lib/libc.so.6
";

    #[test]
    fn the_text_is_the_executables_executable_mapping() {
        assert_eq!(text_mapping(MAPS, "/usr/bin/ix-http"), Some(0x55d0c01a5000..0x55d0c05b2000));
        assert_eq!(text_mapping(MAPS, "/usr/bin/other"), None);
        assert_eq!(text_mapping("garbage\n-\nzz-yy r-xp 0 0 0 /x\n", "/x"), None);
    }

    #[test]
    fn only_whole_huge_pages_inside_the_text_move() {
        assert_eq!(aligned_inside(&(0x55d0c01a5000..0x55d0c05b2000)), 0x55d0c0200000..0x55d0c0400000);
        assert!(aligned_inside(&(0x1000..0x1ff000)).is_empty());
        assert!(aligned_inside(&(0x201000..0x3ff000)).is_empty());
        assert_eq!(aligned_inside(&(0x200000..0x400000)), 0x200000..0x400000);
    }

    #[test]
    fn anon_huge_pages_are_read_from_the_mappings_smaps_entry() {
        let smaps = "\
55d0c0000000-55d0c0200000 r-xp 00000000 00:00 0
Size:               2048 kB
55d0c0200000-55d0c0400000 r-xp 00000000 00:00 0
Size:               2048 kB
AnonHugePages:      2048 kB
VmFlags: rd ex mr mw me hg
";
        assert_eq!(anon_huge_bytes(smaps, 0x55d0c0200000), 2 << 20);
        assert_eq!(anon_huge_bytes(smaps, 0x55d0c0000000), 0);
        assert_eq!(anon_huge_bytes(smaps, 0x1234), 0);
    }
}
