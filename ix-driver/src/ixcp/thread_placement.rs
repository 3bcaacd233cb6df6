//! Moving threads between CPUs: the CPUs a thread may run on, checking that a
//! thread id a dataplane published is one of its own threads, setting a
//! thread's affinity (for `ixcp`, and for a runtime placing its cores) and its
//! scheduler slice (for `ixcp`).

use std::io;

/// Whether thread `tid` belongs to process `pid` (it is listed under
/// `/proc/PID/task`). A dataplane writes its thread ids on its core board, so
/// without this check it could make `ixcp` move any thread of the host.
pub fn is_thread_of(pid: i32, tid: u64) -> bool {
    pid > 0
        && tid > 0
        && i32::try_from(tid).is_ok()
        && std::path::Path::new(&format!("/proc/{pid}/task/{tid}")).exists()
}

/// Every CPU of this machine that is online, by number: not only those the
/// calling thread may run on (`ixcp` itself may be pinned).
pub fn all_cpus() -> Vec<usize> {
    // SAFETY: sysconf has no preconditions.
    let online = unsafe { libc::sysconf(libc::_SC_NPROCESSORS_ONLN) };
    (0..usize::try_from(online).unwrap_or(1).max(1)).collect()
}

/// The CPUs the calling thread may run on, by number, in increasing order: its
/// affinity mask, which a new thread inherits from the thread that made it (so
/// for a program's main thread, the mask `taskset` gave the process).
///
/// # Errors
/// The OS error of `sched_getaffinity`.
pub fn allowed_cpus() -> io::Result<Vec<usize>> {
    // SAFETY: plain data; all zero is a valid, empty CPU set.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    // SAFETY: `set` is a live cpu_set_t of the size given; the call only writes it.
    let rc = unsafe { libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set) };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    let cpus = (0..libc::CPU_SETSIZE as usize)
        // SAFETY: `cpu` < CPU_SETSIZE: the bit is inside `set`.
        .filter(|&cpu| unsafe { libc::CPU_ISSET(cpu, &set) })
        .collect();
    Ok(cpus)
}

/// Lets thread `tid` run on `cpus` only.
///
/// # Errors
/// The OS error of `sched_setaffinity` (`ESRCH`: the thread is gone; `EINVAL`:
/// none of `cpus` is usable), or `InvalidInput` for an empty set or a thread id
/// out of range.
pub fn move_thread(tid: u64, cpus: &[usize]) -> io::Result<()> {
    let tid = libc::pid_t::try_from(tid).map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "thread id"))?;
    if cpus.is_empty() || tid <= 0 {
        return Err(io::Error::new(io::ErrorKind::InvalidInput, "no CPU or no thread"));
    }
    // SAFETY: plain data; all zero is a valid, empty CPU set.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    for &cpu in cpus {
        if cpu >= libc::CPU_SETSIZE as usize {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, "CPU number out of range"));
        }
        // SAFETY: `cpu` < CPU_SETSIZE (checked): the bit is inside `set`.
        unsafe { libc::CPU_SET(cpu, &mut set) };
    }
    // SAFETY: `set` is a live cpu_set_t of the size given; the call only reads it.
    let rc = unsafe { libc::sched_setaffinity(tid, std::mem::size_of::<libc::cpu_set_t>(), &set) };
    if rc == 0 { Ok(()) } else { Err(io::Error::last_os_error()) }
}

/// The fields of `struct sched_attr` up to `sched_period`
/// (`SCHED_ATTR_SIZE_VER0`, 48 bytes), as `sched_setattr(2)` takes them.
#[repr(C)]
struct SchedAttr {
    size: u32,
    policy: u32,
    flags: u64,
    nice: i32,
    priority: u32,
    runtime_ns: u64,
    deadline_ns: u64,
    period_ns: u64,
}

/// Sets the slice of thread `tid`, an ordinary (`SCHED_OTHER`) thread, to
/// `slice` (the kernel clamps it to 0.1-100 ms), keeping its nice value: the
/// time it may run before another task of its CPU's queue is due, and, when
/// it is shorter than the running task's, what lets it preempt that task as
/// soon as it wakes (EEVDF, Linux 6.12 and later; earlier kernels ignore
/// it). A `Duration::ZERO` gives the kernel's default slice back.
///
/// # Errors
/// The OS error of `getpriority` or `sched_setattr` (`ESRCH`: the thread is
/// gone; `EPERM`: not ours to change), or `InvalidInput` for a thread id out
/// of range.
pub fn set_slice(tid: u64, slice: std::time::Duration) -> io::Result<()> {
    let tid = libc::pid_t::try_from(tid).map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "thread id"))?;
    if tid <= 0 {
        return Err(io::Error::new(io::ErrorKind::InvalidInput, "no thread"));
    }
    // getpriority returns -1 for nice -1 too: errno tells an error apart.
    // SAFETY: errno is this thread's; writing it has no other effect.
    unsafe { *libc::__errno_location() = 0 };
    // SAFETY: plain system call on a thread id; no memory is passed.
    let nice = unsafe { libc::getpriority(libc::PRIO_PROCESS, tid as libc::id_t) };
    if nice == -1 && io::Error::last_os_error().raw_os_error() != Some(0) {
        return Err(io::Error::last_os_error());
    }
    let attr = SchedAttr {
        size: std::mem::size_of::<SchedAttr>() as u32,
        policy: libc::SCHED_OTHER as u32,
        flags: 0,
        nice,
        priority: 0,
        runtime_ns: u64::try_from(slice.as_nanos()).unwrap_or(u64::MAX),
        deadline_ns: 0,
        period_ns: 0,
    };
    // SAFETY: `attr` is a live sched_attr whose size field is its size; the
    // call only reads it.
    let rc = unsafe { libc::syscall(libc::SYS_sched_setattr, tid, &attr as *const SchedAttr, 0u32) };
    if rc == 0 { Ok(()) } else { Err(io::Error::last_os_error()) }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ixcp::core_board::current_thread_id;

    #[test]
    fn only_the_processes_own_threads_are_its_own() {
        let me = std::process::id() as i32;
        let tid = current_thread_id();
        assert!(is_thread_of(me, tid));
        assert!(!is_thread_of(me, 0));
        assert!(!is_thread_of(me, u64::MAX));
        assert!(!is_thread_of(1, tid), "pid 1 does not own the test's thread");
        assert!(!is_thread_of(0, tid));
    }

    #[test]
    fn a_pinned_caller_still_sees_every_cpu() {
        let every = all_cpus();
        let seen = std::thread::spawn(|| {
            move_thread(current_thread_id(), &[0]).unwrap();
            all_cpus()
        })
        .join()
        .unwrap();
        assert_eq!(seen, every, "the CPUs of the machine, not of the caller's affinity");
    }

    #[test]
    fn a_moved_thread_is_allowed_the_cpus_it_was_moved_to() {
        let before = allowed_cpus().unwrap();
        assert!(!before.is_empty() && before.windows(2).all(|w| w[0] < w[1]), "{before:?}");
        let last = *before.last().unwrap();
        let seen = std::thread::spawn(move || {
            move_thread(current_thread_id(), &[last]).unwrap();
            allowed_cpus().unwrap()
        })
        .join()
        .unwrap();
        assert_eq!(seen, vec![last]);
        assert_eq!(allowed_cpus().unwrap(), before, "only the moved thread changed");
    }

    /// The slice the kernel reports for thread `tid` of this process, in
    /// nanoseconds (`se.slice` of its `sched` file).
    fn slice_of(tid: u64) -> u64 {
        let sched = std::fs::read_to_string(format!("/proc/self/task/{tid}/sched")).unwrap();
        let line = sched.lines().find(|l| l.starts_with("se.slice")).expect("a kernel with EEVDF slices");
        line.rsplit(':').next().unwrap().trim().parse().unwrap()
    }

    #[test]
    fn a_slice_is_set_and_given_back_with_the_nice_value_kept() {
        std::thread::spawn(|| {
            let tid = current_thread_id();
            let default = slice_of(tid);
            // SAFETY: plain system calls on this thread.
            let nice = |_: ()| unsafe { libc::getpriority(libc::PRIO_PROCESS, tid as libc::id_t) };
            // SAFETY: raising one's own nice value needs no privilege.
            assert_eq!(unsafe { libc::setpriority(libc::PRIO_PROCESS, tid as libc::id_t, 5) }, 0);
            set_slice(tid, std::time::Duration::from_micros(300)).unwrap();
            assert_eq!(slice_of(tid), 300_000);
            assert_eq!(nice(()), 5, "the nice value is kept");
            set_slice(tid, std::time::Duration::ZERO).unwrap();
            assert_eq!(slice_of(tid), default, "zero gives the kernel's slice back");
            set_slice(tid, std::time::Duration::from_nanos(1)).unwrap();
            assert_eq!(slice_of(tid), 100_000, "clamped to the kernel's shortest, 0.1 ms");
        })
        .join()
        .unwrap();
        assert!(set_slice(0, std::time::Duration::ZERO).is_err());
        assert!(set_slice(u64::MAX, std::time::Duration::ZERO).is_err());
    }

    #[test]
    fn a_thread_can_be_moved_and_empty_sets_are_refused() {
        let tid = current_thread_id();
        move_thread(tid, &all_cpus()).unwrap();
        assert!(move_thread(tid, &[]).is_err());
        assert!(move_thread(0, &[0]).is_err());
    }
}
