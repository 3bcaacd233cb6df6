//! Where the runtime's cores run: within the CPUs the building thread may use
//! (as `taskset` sets them), `Builder::first_cpu` moves a runtime's cores to
//! other CPUs, and `pin_current_thread` pins any thread, as read back from
//! `/proc/thread-self/status`.

use std::sync::{Arc, Mutex};

use ix_runtime::{Backend, Runtime, pin_current_thread};

/// The calling thread's allowed CPUs, as the kernel lists them (`0-1`, `1`).
fn allowed_cpus() -> String {
    let status = std::fs::read_to_string("/proc/thread-self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with("Cpus_allowed_list:")).unwrap();
    line.split_once(':').unwrap().1.trim().to_string()
}

fn cpus() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// Builds (on the calling thread) and runs a two-core runtime on the kernel
/// backend with `first_cpu`; returns each core's allowed CPUs, by core.
fn where_two_cores_run(first_cpu: usize) -> Vec<(usize, String)> {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let out = seen.clone();
    Runtime::builder()
        .cores(2)
        .backend(Backend::Kernel)
        .first_cpu(first_cpu)
        .handle_signals(false)
        .build()
        .unwrap()
        .run(move |core| {
            let out = out.clone();
            async move { out.lock().unwrap().push((core, allowed_cpus())) }
        })
        .unwrap();
    let mut seen = seen.lock().unwrap().clone();
    seen.sort();
    seen
}

#[test]
fn first_cpu_pins_core_zero_to_that_cpu() {
    if cpus() < 2 {
        eprintln!("skipped: one CPU, nothing to move the core to");
        return;
    }
    // Core 0 on CPU 1, core 1 wraps around to CPU 0.
    assert_eq!(where_two_cores_run(1), vec![(0, "1".to_string()), (1, (2 % cpus()).to_string())]);
}

#[test]
fn cores_stay_on_the_cpus_the_process_may_use() {
    if cpus() < 2 {
        eprintln!("skipped: one CPU, so every core is on the one the process may use");
        return;
    }
    // As `taskset -c LAST ix-http`: the thread that builds the runtime may run
    // on the last CPU only (`taskset -c 1 ix-http` once got its core on CPU 0).
    let last = cpus() - 1;
    let (allowed, seen) = std::thread::spawn(move || {
        pin_current_thread(last).unwrap();
        (allowed_cpus(), where_two_cores_run(0))
    })
    .join()
    .unwrap();
    assert_ne!(allowed, "0", "the building thread is on the last CPU, not the first");
    assert_eq!(seen, vec![(0, allowed.clone()), (1, allowed)], "both cores on the one CPU allowed");
}

#[test]
fn pin_current_thread_pins_the_caller_only() {
    let before = allowed_cpus();
    let last = cpus() - 1;
    let pinned = std::thread::spawn(move || {
        pin_current_thread(last).unwrap();
        allowed_cpus()
    })
    .join()
    .unwrap();
    assert_eq!(pinned, last.to_string());
    assert_eq!(allowed_cpus(), before, "the calling thread of the test was not touched");
}
