//! Moving threads between CPUs: the CPUs a thread may run on, checking that a
//! thread id a dataplane published is one of its own threads, and setting a
//! thread's affinity (for `ixcp`, and for a runtime placing its cores).

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

    #[test]
    fn a_thread_can_be_moved_and_empty_sets_are_refused() {
        let tid = current_thread_id();
        move_thread(tid, &all_cpus()).unwrap();
        assert!(move_thread(tid, &[]).is_err());
        assert!(move_thread(0, &[0]).is_err());
    }
}
