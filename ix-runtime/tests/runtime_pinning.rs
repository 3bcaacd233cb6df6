//! Where the runtime's cores run: `Builder::first_cpu` moves a runtime's cores
//! to other CPUs, and `pin_current_thread` pins any thread, as read back from
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

#[test]
fn first_cpu_pins_core_zero_to_that_cpu() {
    if cpus() < 2 {
        eprintln!("skipped: one CPU, nothing to move the core to");
        return;
    }
    let seen = Arc::new(Mutex::new(Vec::new()));
    let out = seen.clone();
    Runtime::builder()
        .cores(2)
        .backend(Backend::Kernel)
        .first_cpu(1)
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
    // Core 0 on CPU 1, core 1 wraps around to CPU 0.
    assert_eq!(seen, vec![(0, "1".to_string()), (1, (2 % cpus()).to_string())]);
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
