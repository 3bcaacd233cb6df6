//! Where a runtime's core threads run: core `i` on one of the CPUs the thread
//! that built the runtime may use (the process's, as `taskset` set them), never
//! on a CPU outside them.

use std::io;

use ix_driver::ixcp::core_board::current_thread_id;
use ix_driver::ixcp::thread_placement::{allowed_cpus, move_thread};

/// Where each core of a runtime runs, decided once when the runtime is built.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum CorePlacement {
    /// Cores run where the scheduler puts them, within the mask they inherit.
    Unpinned,
    /// Core `i` is pinned to `cpus[i % cpus.len()]` (never empty).
    Pinned {
        /// The CPUs in the order the cores take them.
        cpus: Vec<usize>,
    },
}

impl CorePlacement {
    /// Core `i` on the `(first + i)`-th of the CPUs the calling thread may run
    /// on, counting modulo their number: with every CPU allowed, core `i` on
    /// CPU `first + i`; under `taskset -c 2,3`, core 0 on CPU 2 and core 1 on
    /// CPU 3 (for `first` 0).
    ///
    /// # Errors
    /// The OS error of reading the calling thread's affinity mask.
    pub(crate) fn of_calling_thread(first: usize) -> io::Result<Self> {
        let mut cpus = allowed_cpus()?;
        if cpus.is_empty() {
            return Err(io::Error::other("the calling thread may run on no CPU"));
        }
        let len = cpus.len();
        cpus.rotate_left(first % len);
        Ok(Self::Pinned { cpus })
    }

    /// The CPU core `core` is pinned to, `None` when unpinned.
    pub(crate) fn cpu_of(&self, core: usize) -> Option<usize> {
        match self {
            Self::Unpinned => None,
            Self::Pinned { cpus } => Some(cpus[core % cpus.len()]),
        }
    }

    /// Pins the calling thread, core `core`'s, to its CPU (nothing when
    /// unpinned).
    ///
    /// # Errors
    /// The OS error of `sched_setaffinity` (for example, a CPU taken offline
    /// since the runtime was built).
    pub(crate) fn pin_calling_thread(&self, core: usize) -> io::Result<()> {
        match self.cpu_of(core) {
            None => Ok(()),
            Some(cpu) => move_thread(current_thread_id(), &[cpu]),
        }
    }
}

/// Pins the calling thread to the `cpu`-th (modulo their number) of the CPUs
/// it may run on, as the runtime places its core `cpu` by default; for threads
/// that live beside a runtime, such as another runtime's workers in a
/// benchmark. On a thread free to run anywhere, this is CPU `cpu`; a thread
/// already pinned stays where it is.
///
/// # Errors
/// The OS error of `sched_getaffinity` or `sched_setaffinity`.
pub fn pin_current_thread(cpu: usize) -> io::Result<()> {
    CorePlacement::of_calling_thread(cpu)?.pin_calling_thread(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cores_take_the_allowed_cpus_in_turn_from_the_first() {
        let placement = CorePlacement::Pinned { cpus: vec![3, 5, 1] };
        let cpus: Vec<_> = (0..4).map(|core| placement.cpu_of(core)).collect();
        assert_eq!(cpus, vec![Some(3), Some(5), Some(1), Some(3)]);
        assert_eq!(CorePlacement::Unpinned.cpu_of(0), None);
        assert!(CorePlacement::Unpinned.pin_calling_thread(7).is_ok(), "unpinned: nothing to do");
    }

    #[test]
    fn the_first_cpu_counts_among_the_allowed_ones() {
        let allowed = allowed_cpus().unwrap();
        for first in 0..allowed.len() + 2 {
            let placement = CorePlacement::of_calling_thread(first).unwrap();
            assert_eq!(placement.cpu_of(0), Some(allowed[first % allowed.len()]), "first {first}");
            assert_eq!(placement.cpu_of(allowed.len()), placement.cpu_of(0), "wraps after the last");
        }
    }
}
