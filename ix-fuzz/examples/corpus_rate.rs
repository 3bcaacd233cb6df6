//! How fast each harness runs its committed corpus (no sanitizer, no coverage): executions per second of wall
//! clock and per CPU second (this process's), per target, to find the slow harnesses.
//! `cargo run --release -p ix-fuzz --example corpus_rate [-- TARGET...]`.

use std::path::Path;
use std::time::{Duration, Instant};

use ix_benches::harness::machine::process_cpu_secs;
use ix_fuzz::TARGETS;

/// Each target runs its corpus again until this much time has passed.
const MEASURE_FOR: Duration = Duration::from_secs(3);

fn main() {
    let wanted: Vec<String> = std::env::args().skip(1).collect();
    let corpus_root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/corpus");
    for target in TARGETS.iter().filter(|t| wanted.is_empty() || wanted.iter().any(|w| w == t.name)) {
        let dir = corpus_root.join(target.name);
        let Ok(entries) = std::fs::read_dir(&dir) else {
            eprintln!("{}: no corpus at {}", target.name, dir.display());
            continue;
        };
        let inputs: Vec<Vec<u8>> = entries.filter_map(|e| std::fs::read(e.ok()?.path()).ok()).collect();
        if inputs.is_empty() {
            eprintln!("{}: empty corpus", target.name);
            continue;
        }
        let cpu = || process_cpu_secs(std::process::id()).unwrap_or(f64::NAN);
        let (started, cpu_started) = (Instant::now(), cpu());
        let mut executions = 0u64;
        for input in inputs.iter().cycle() {
            if started.elapsed() >= MEASURE_FOR {
                break;
            }
            (target.run)(input);
            executions += 1;
        }
        let (secs, cpu_secs) = (started.elapsed().as_secs_f64(), cpu() - cpu_started);
        println!(
            "{:<12} {:>6} inputs {:>10} execs {:>7.2} s {:>12.0} exec/s {:>7.2} CPU s {:>12.0} exec/CPU s",
            target.name,
            inputs.len(),
            executions,
            secs,
            executions as f64 / secs,
            cpu_secs,
            executions as f64 / cpu_secs
        );
    }
}
