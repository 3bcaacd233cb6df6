//! Replays, on stable Rust, every input kept under `fuzz/`: each target's corpus (`fuzz/corpus/TARGET/`) and
//! the inputs that once broke it (`fuzz/regressions/TARGET/`), through the same entry points the cargo-fuzz
//! targets call.

use std::fs;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};

use ix_fuzz::TARGETS;

fn fuzz_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz")
}

/// The files of `dir`, sorted (none if it does not exist).
fn inputs(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = fs::read_dir(dir) else { return Vec::new() };
    let mut files: Vec<PathBuf> = entries.map(|e| e.expect("directory entry").path()).filter(|p| p.is_file()).collect();
    files.sort();
    files
}

/// Runs every file of `fuzz/KIND/TARGET/` (for each `kind`) through its target; the files that fail, and how
/// many ran.
fn replay(kinds: &[&str]) -> (Vec<String>, usize) {
    let mut failures = Vec::new();
    let mut total = 0;
    for target in TARGETS {
        for kind in kinds {
            for file in inputs(&fuzz_dir().join(kind).join(target.name)) {
                let data = fs::read(&file).expect("readable input");
                total += 1;
                if catch_unwind(AssertUnwindSafe(|| (target.run)(&data))).is_err() {
                    failures.push(file.display().to_string());
                }
            }
        }
    }
    (failures, total)
}

#[test]
fn every_corpus_and_regression_input_passes() {
    for target in TARGETS {
        let corpus = inputs(&fuzz_dir().join("corpus").join(target.name));
        assert!(!corpus.is_empty(), "target {} has no corpus under fuzz/corpus/{}", target.name, target.name);
    }
    let (failures, total) = replay(&["corpus", "regressions"]);
    assert!(failures.is_empty(), "{} of {total} inputs fail: {failures:#?}", failures.len());
    println!("replayed {total} inputs over {} targets", TARGETS.len());
}

#[test]
fn every_target_has_a_cargo_fuzz_binary() {
    let manifest = fs::read_to_string(fuzz_dir().join("Cargo.toml")).expect("fuzz/Cargo.toml");
    for target in TARGETS {
        let script = fuzz_dir().join("fuzz_targets").join(format!("{}.rs", target.name));
        assert!(script.is_file(), "no {}", script.display());
        assert!(manifest.contains(&format!("name = \"{}\"", target.name)), "fuzz/Cargo.toml lacks {}", target.name);
    }
}
