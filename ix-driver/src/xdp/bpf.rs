//! The `bpf(2)` system call, for what the XDP backend needs of it: create and
//! update maps, load a program (with the verifier's log on refusal), attach it
//! to an interface as a BPF link, and run it on a test frame.

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};

use crate::error::DriverError;

const BPF_MAP_CREATE: libc::c_long = 0;
const BPF_MAP_UPDATE_ELEM: libc::c_long = 2;
const BPF_MAP_DELETE_ELEM: libc::c_long = 3;
const BPF_PROG_LOAD: libc::c_long = 5;
const BPF_PROG_TEST_RUN: libc::c_long = 10;
const BPF_LINK_CREATE: libc::c_long = 28;

/// `BPF_PROG_TYPE_XDP`.
const PROG_TYPE_XDP: u32 = 6;
/// `BPF_XDP`, the attach type of an XDP link.
const ATTACH_TYPE_XDP: u32 = 37;
/// Bytes of verifier log asked for when a load fails.
const VERIFIER_LOG_BYTES: usize = 64 * 1024;
/// Lines of the verifier log kept in the error (its end says what failed).
const VERIFIER_LOG_TAIL_LINES: usize = 12;

/// Kinds of BPF map this backend creates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u32)]
pub(crate) enum MapType {
    /// `BPF_MAP_TYPE_HASH`.
    Hash = 1,
    /// `BPF_MAP_TYPE_ARRAY`.
    Array = 2,
    /// `BPF_MAP_TYPE_DEVMAP`: interfaces by index, for `bpf_redirect_map`.
    DevMap = 14,
    /// `BPF_MAP_TYPE_LRU_HASH`: a full map evicts its least recently used entry.
    LruHash = 9,
    /// `BPF_MAP_TYPE_XSKMAP`: AF_XDP sockets by index, for `bpf_redirect_map`.
    XskMap = 17,
}

/// How an XDP program is attached (the `XDP_FLAGS_*` of linux/if_link.h).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u32)]
pub(crate) enum AttachMode {
    /// `XDP_FLAGS_SKB_MODE`: generic XDP, after the kernel built an skb.
    Generic = 1 << 1,
    /// `XDP_FLAGS_DRV_MODE`: native XDP, in the driver's receive path.
    Native = 1 << 2,
}

/// `union bpf_attr` for `BPF_MAP_CREATE` (the fields used).
#[repr(C)]
#[derive(Default)]
struct MapCreateAttr {
    map_type: u32,
    key_size: u32,
    value_size: u32,
    max_entries: u32,
    map_flags: u32,
    inner_map_fd: u32,
    numa_node: u32,
    map_name: [u8; 16],
}

/// `union bpf_attr` for the `BPF_MAP_*_ELEM` commands.
#[repr(C)]
#[derive(Default)]
struct MapElemAttr {
    map_fd: u32,
    _pad: u32,
    key: u64,
    value: u64,
    flags: u64,
}

/// `union bpf_attr` for `BPF_PROG_LOAD` (the fields used).
#[repr(C)]
#[derive(Default)]
struct ProgLoadAttr {
    prog_type: u32,
    insn_cnt: u32,
    insns: u64,
    license: u64,
    log_level: u32,
    log_size: u32,
    log_buf: u64,
    kern_version: u32,
    prog_flags: u32,
    prog_name: [u8; 16],
    prog_ifindex: u32,
    expected_attach_type: u32,
}

/// `union bpf_attr` for `BPF_LINK_CREATE` (the fields used).
#[repr(C)]
#[derive(Default)]
struct LinkCreateAttr {
    prog_fd: u32,
    target_ifindex: u32,
    attach_type: u32,
    flags: u32,
}

/// `union bpf_attr` for `BPF_PROG_TEST_RUN` (the fields used).
#[repr(C)]
#[derive(Default)]
struct TestRunAttr {
    prog_fd: u32,
    retval: u32,
    data_size_in: u32,
    data_size_out: u32,
    data_in: u64,
    data_out: u64,
    repeat: u32,
    duration: u32,
}

/// One `bpf(2)` call with `attr`; the returned value (a descriptor for the
/// commands that create one) or the OS error.
fn bpf<T>(cmd: libc::c_long, attr: &mut T) -> io::Result<libc::c_long> {
    // SAFETY: `attr` is a live, exclusively borrowed `repr(C)` prefix of
    // `union bpf_attr` for `cmd`, and its size is passed, so the kernel reads and
    // writes only inside it; the pointers inside it (keys, values, buffers)
    // point at memory the caller keeps alive for the call.
    let rc = unsafe { libc::syscall(libc::SYS_bpf, cmd, (attr as *mut T).cast::<libc::c_void>(), size_of::<T>()) };
    if rc < 0 { Err(io::Error::last_os_error()) } else { Ok(rc) }
}

/// Takes ownership of a descriptor a `bpf(2)` call returned.
fn owned(rc: libc::c_long) -> OwnedFd {
    // SAFETY: the kernel just returned this descriptor to this process alone.
    unsafe { OwnedFd::from_raw_fd(rc as RawFd) }
}

/// What a refused `bpf(2)` call means to the user.
pub(crate) fn bpf_error(call: &'static str, error: io::Error) -> DriverError {
    match error.raw_os_error() {
        Some(libc::EPERM | libc::EACCES) => privilege_error(),
        Some(libc::ENOSYS) => DriverError::XdpUnsupported {
            iface: "this kernel".into(),
            what: "the bpf system call is not available".into(),
            hint: "use a kernel built with CONFIG_BPF_SYSCALL (Linux 5.10 or later), or --backend tap or kernel",
        },
        _ => DriverError::Os { call, source: error },
    }
}

/// The error for a refused privilege anywhere in the XDP backend.
pub(crate) fn privilege_error() -> DriverError {
    DriverError::Privilege { backend: "xdp", what: "CAP_NET_ADMIN, CAP_NET_RAW and CAP_BPF", alternative: "kernel" }
}

/// A BPF map, closed on drop.
#[derive(Debug)]
pub(crate) struct BpfMap {
    fd: OwnedFd,
    key_size: usize,
    value_size: usize,
}

impl BpfMap {
    /// Creates a map.
    pub(crate) fn create(
        map_type: MapType,
        name: &str,
        key_size: u32,
        value_size: u32,
        max_entries: u32,
    ) -> Result<Self, DriverError> {
        let mut attr =
            MapCreateAttr { map_type: map_type as u32, key_size, value_size, max_entries, ..Default::default() };
        copy_name(&mut attr.map_name, name);
        let rc = bpf(BPF_MAP_CREATE, &mut attr).map_err(|e| bpf_error("bpf(BPF_MAP_CREATE)", e))?;
        Ok(Self { fd: owned(rc), key_size: key_size as usize, value_size: value_size as usize })
    }

    /// Sets `key` to `value` (both exactly the map's sizes).
    ///
    /// # Panics
    /// If a size differs from the map's (a bug in the caller).
    pub(crate) fn update(&self, key: &[u8], value: &[u8]) -> Result<(), DriverError> {
        assert_eq!((key.len(), value.len()), (self.key_size, self.value_size), "BPF map key or value size");
        let mut attr = MapElemAttr {
            map_fd: self.fd.as_raw_fd() as u32,
            key: key.as_ptr() as u64,
            value: value.as_ptr() as u64,
            ..Default::default()
        };
        bpf(BPF_MAP_UPDATE_ELEM, &mut attr).map_err(|e| bpf_error("bpf(BPF_MAP_UPDATE_ELEM)", e))?;
        Ok(())
    }

    /// Removes `key`; a missing key is not an error.
    pub(crate) fn delete(&self, key: &[u8]) -> Result<(), DriverError> {
        assert_eq!(key.len(), self.key_size, "BPF map key size");
        let mut attr =
            MapElemAttr { map_fd: self.fd.as_raw_fd() as u32, key: key.as_ptr() as u64, ..Default::default() };
        match bpf(BPF_MAP_DELETE_ELEM, &mut attr) {
            Ok(_) => Ok(()),
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => Ok(()),
            Err(e) => Err(bpf_error("bpf(BPF_MAP_DELETE_ELEM)", e)),
        }
    }

    /// The map's descriptor, for a program's map references.
    pub(crate) fn fd(&self) -> BorrowedFd<'_> {
        use std::os::fd::AsFd;
        self.fd.as_fd()
    }
}

/// One eBPF instruction (`struct bpf_insn`).
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Insn {
    pub(crate) code: u8,
    /// Destination register in the low nibble, source in the high one.
    pub(crate) regs: u8,
    pub(crate) off: i16,
    pub(crate) imm: i32,
}

/// A loaded program, unloaded when its descriptor and every link to it close.
#[derive(Debug)]
pub(crate) struct BpfProgram {
    fd: OwnedFd,
}

impl BpfProgram {
    /// Loads an XDP program. On refusal, loads it again with the verifier's log
    /// on, to say why.
    pub(crate) fn load_xdp(name: &str, insns: &[Insn], license: &std::ffi::CStr) -> Result<Self, DriverError> {
        match Self::try_load(name, insns, license, None) {
            Ok(fd) => Ok(Self { fd }),
            Err(error) if error.raw_os_error() == Some(libc::EACCES) || error.raw_os_error() == Some(libc::EINVAL) => {
                let mut log = vec![0u8; VERIFIER_LOG_BYTES];
                let again = Self::try_load(name, insns, license, Some(&mut log));
                let text =
                    String::from_utf8_lossy(&log[..log.iter().position(|&b| b == 0).unwrap_or(log.len())]).into_owned();
                if again.is_ok() {
                    tracing::warn!("the XDP program loaded only with the verifier log on");
                }
                match again {
                    Ok(fd) => Ok(Self { fd }),
                    Err(_) if text.trim().is_empty() => Err(bpf_error("bpf(BPF_PROG_LOAD)", error)),
                    Err(_) => Err(DriverError::BpfRejected { source: error, log: log_tail(&text) }),
                }
            }
            Err(error) => Err(bpf_error("bpf(BPF_PROG_LOAD)", error)),
        }
    }

    fn try_load(
        name: &str,
        insns: &[Insn],
        license: &std::ffi::CStr,
        log: Option<&mut Vec<u8>>,
    ) -> io::Result<OwnedFd> {
        let mut attr = ProgLoadAttr {
            prog_type: PROG_TYPE_XDP,
            insn_cnt: insns.len() as u32,
            insns: insns.as_ptr() as u64,
            license: license.as_ptr() as u64,
            expected_attach_type: ATTACH_TYPE_XDP,
            ..Default::default()
        };
        if let Some(log) = log {
            attr.log_level = 1;
            attr.log_size = log.len() as u32;
            attr.log_buf = log.as_mut_ptr() as u64;
        }
        copy_name(&mut attr.prog_name, name);
        bpf(BPF_PROG_LOAD, &mut attr).map(owned)
    }

    /// Attaches the program to interface `ifindex` as a BPF link: the program
    /// stays attached while the returned descriptor is open, and is detached
    /// when it closes, including when the process dies.
    pub(crate) fn attach_xdp(&self, ifindex: u32, mode: AttachMode) -> io::Result<OwnedFd> {
        let mut attr = LinkCreateAttr {
            prog_fd: self.fd.as_raw_fd() as u32,
            target_ifindex: ifindex,
            attach_type: ATTACH_TYPE_XDP,
            flags: mode as u32,
        };
        bpf(BPF_LINK_CREATE, &mut attr).map(owned)
    }

    /// Runs the program once on `frame` (rx queue 0, no device) and returns
    /// its verdict (`XDP_DROP` 1, `XDP_PASS` 2, `XDP_REDIRECT` 4, ...).
    pub(crate) fn test_run(&self, frame: &[u8]) -> Result<u32, DriverError> {
        let mut attr = TestRunAttr {
            prog_fd: self.fd.as_raw_fd() as u32,
            data_size_in: frame.len() as u32,
            data_in: frame.as_ptr() as u64,
            repeat: 1,
            ..Default::default()
        };
        bpf(BPF_PROG_TEST_RUN, &mut attr).map_err(|e| bpf_error("bpf(BPF_PROG_TEST_RUN)", e))?;
        Ok(attr.retval)
    }
}

/// Copies an object name (at most 15 bytes, NUL-terminated by the zeroes left).
fn copy_name(dst: &mut [u8; 16], name: &str) {
    for (d, s) in dst.iter_mut().zip(name.bytes().take(15)) {
        *d = s;
    }
}

/// The last lines of a verifier log, on one line.
fn log_tail(log: &str) -> String {
    let lines: Vec<&str> = log.lines().filter(|l| !l.trim().is_empty()).collect();
    lines[lines.len().saturating_sub(VERIFIER_LOG_TAIL_LINES)..].join(" | ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attribute_layouts_match_the_kernel() {
        // Offsets of union bpf_attr (linux/bpf.h) for the fields used.
        assert_eq!(std::mem::offset_of!(ProgLoadAttr, insns), 8);
        assert_eq!(std::mem::offset_of!(ProgLoadAttr, log_buf), 32);
        assert_eq!(std::mem::offset_of!(ProgLoadAttr, prog_name), 48);
        assert_eq!(std::mem::offset_of!(ProgLoadAttr, expected_attach_type), 68);
        assert_eq!(std::mem::offset_of!(MapElemAttr, key), 8);
        assert_eq!(std::mem::offset_of!(MapElemAttr, flags), 24);
        assert_eq!(std::mem::offset_of!(MapCreateAttr, map_name), 28);
        assert_eq!(std::mem::offset_of!(TestRunAttr, data_in), 16);
        assert_eq!(std::mem::offset_of!(TestRunAttr, repeat), 32);
        assert_eq!(size_of::<Insn>(), 8);
    }

    #[test]
    fn names_are_cut_to_fifteen_bytes() {
        let mut name = [0u8; 16];
        copy_name(&mut name, "a-name-longer-than-sixteen");
        assert_eq!(&name[..15], b"a-name-longer-t");
        assert_eq!(name[15], 0);
    }

    #[test]
    fn log_tail_keeps_the_end() {
        let log: String = (0..40).map(|i| format!("line {i}\n")).collect();
        let tail = log_tail(&log);
        assert!(tail.starts_with("line 28"), "{tail}");
        assert!(tail.ends_with("line 39"), "{tail}");
    }
}
