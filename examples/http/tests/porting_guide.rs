//! `docs/porting.md` shows diffs between files that compile (the hyper
//! example's and the axum example's): each diff in the guide must be what
//! `diff -u` gives for those files now.

use std::path::Path;
use std::process::Command;

/// `diff -u before after` without its two header lines, as the guide shows it.
fn unified_diff(before: &str, after: &str) -> String {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let out = Command::new("diff").arg("-u").arg(root.join(before)).arg(root.join(after)).output().expect("run diff");
    assert_eq!(out.status.code(), Some(1), "the files differ");
    let text = String::from_utf8(out.stdout).unwrap();
    text.lines().skip(2).map(|line| format!("{line}\n")).collect()
}

fn guide() -> String {
    std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/porting.md")).unwrap()
}

#[test]
fn the_hyper_diff_in_the_guide_is_the_examples_diff() {
    let diff = unified_diff("examples/porting_tokio.rs", "examples/porting_ix.rs");
    assert!(guide().contains(&diff), "docs/porting.md's hyper diff is stale; it should read:\n{diff}");
}

#[test]
fn the_axum_diff_in_the_guide_is_the_binaries_diff_and_stays_within_ten_lines() {
    let diff = unified_diff("src/bin/axum_tokio.rs", "src/bin/axum_ix.rs");
    assert!(guide().contains(&diff), "docs/porting.md's axum diff is stale; it should read:\n{diff}");
    // Changed lines, the files' own doc comment (line 1) aside.
    let changed = diff.lines().filter(|l| (l.starts_with('-') || l.starts_with('+')) && !l[1..].starts_with("//!"));
    assert!(changed.count() <= 10, "the axum port changes more than 10 lines:\n{diff}");
}
