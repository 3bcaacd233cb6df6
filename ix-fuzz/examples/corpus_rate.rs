//! How fast each harness runs its committed corpus (no sanitizer, no coverage): executions per second of wall
//! clock and per CPU second (this process's), per target, and optionally its slowest inputs, to find the slow
//! harnesses and the inputs that make them slow. With `--once` it runs every input exactly once and prints
//! nothing else: a fixed amount of work to count with `valgrind --tool=callgrind` (deterministic, where a
//! timed loop is not).
//! `cargo run --release -p ix-fuzz --example corpus_rate [-- [--slowest N | --once] TARGET...]`.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use ix_benches::harness::machine::process_cpu_secs;
use ix_fuzz::{TARGETS, Target};

/// Each target runs its corpus again until this much time has passed.
const MEASURE_FOR: Duration = Duration::from_secs(3);
/// Runs of one input whose fastest is its time in the slowest-inputs list (the fastest of a few is the least
/// disturbed by the other work on a shared machine).
const SLOWEST_REPEATS: usize = 3;

fn main() {
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    let slowest = match args.iter().position(|a| a == "--slowest") {
        Some(at) => {
            let count = args.get(at + 1).and_then(|n| n.parse::<usize>().ok());
            let Some(count) = count else {
                eprintln!("--slowest needs a count");
                std::process::exit(2);
            };
            args.drain(at..at + 2);
            count
        }
        None => 0,
    };
    let once = args.iter().position(|a| a == "--once").map(|at| args.remove(at)).is_some();
    let corpus_root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/corpus");
    for target in TARGETS.iter().filter(|t| args.is_empty() || args.iter().any(|w| w == t.name)) {
        let dir = corpus_root.join(target.name);
        let Ok(entries) = std::fs::read_dir(&dir) else {
            eprintln!("{}: no corpus at {}", target.name, dir.display());
            continue;
        };
        let inputs: Vec<(PathBuf, Vec<u8>)> = entries
            .filter_map(|e| {
                let path = e.ok()?.path();
                let bytes = std::fs::read(&path).ok()?;
                Some((path, bytes))
            })
            .collect();
        if inputs.is_empty() {
            eprintln!("{}: empty corpus", target.name);
            continue;
        }
        if once {
            inputs.iter().for_each(|(_, input)| (target.run)(input));
            println!("{}: {} inputs run once", target.name, inputs.len());
            continue;
        }
        print_rate(target, &inputs);
        if slowest > 0 {
            print_slowest(target, &inputs, slowest);
        }
    }
}

/// Runs the corpus round and round for [`MEASURE_FOR`] and prints the executions per second.
fn print_rate(target: &Target, inputs: &[(PathBuf, Vec<u8>)]) {
    let cpu = || process_cpu_secs(std::process::id()).unwrap_or(f64::NAN);
    let (started, cpu_started) = (Instant::now(), cpu());
    let mut executions = 0u64;
    for (_, input) in inputs.iter().cycle() {
        if started.elapsed() >= MEASURE_FOR {
            break;
        }
        (target.run)(input);
        executions += 1;
    }
    let (secs, cpu_secs) = (started.elapsed().as_secs_f64(), cpu() - cpu_started);
    let bytes: usize = inputs.iter().map(|(_, input)| input.len()).sum();
    println!(
        "{:<12} {:>6} inputs {:>8} mean bytes {:>10} execs {:>7.2} s {:>12.0} exec/s {:>7.2} CPU s {:>12.0} exec/CPU s",
        target.name,
        inputs.len(),
        bytes / inputs.len(),
        executions,
        secs,
        executions as f64 / secs,
        cpu_secs,
        executions as f64 / cpu_secs
    );
}

/// Times every input (the fastest of [`SLOWEST_REPEATS`] runs) and prints the `count` slowest, with their
/// length and time per byte: an input far above the others per byte points at a path that grows faster than
/// its input.
fn print_slowest(target: &Target, inputs: &[(PathBuf, Vec<u8>)], count: usize) {
    let mut timed: Vec<(Duration, &Path, usize)> = inputs
        .iter()
        .map(|(path, input)| {
            let fastest = (0..SLOWEST_REPEATS)
                .map(|_| {
                    let started = Instant::now();
                    (target.run)(input);
                    started.elapsed()
                })
                .min()
                .unwrap_or_default();
            (fastest, path.as_path(), input.len())
        })
        .collect();
    timed.sort_by_key(|t| std::cmp::Reverse(t.0));
    let total: Duration = timed.iter().map(|t| t.0).sum();
    println!("  {} slowest of {} inputs ({:.1} ms for all):", count.min(timed.len()), timed.len(), ms(total));
    for (took, path, len) in timed.iter().take(count) {
        let name = path.file_name().map_or_else(String::new, |n| n.to_string_lossy().into_owned());
        let per_byte_ns = took.as_nanos() as f64 / (*len).max(1) as f64;
        println!("  {:>10.3} ms {:>6} bytes {:>9.0} ns/byte  {name}", ms(*took), len, per_byte_ns);
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}
