//! The workspace the end-to-end tests drive: its root folder, and its release
//! binaries built before a test starts the harness or a script that runs them.

use std::path::{Path, PathBuf};
use std::process::Command;

/// The workspace's root folder (`benches/` is one of its members).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("benches/ is in the workspace").to_path_buf()
}

/// Builds the release binaries of the harness, the load generator, the soak
/// tools and the example servers, which `ix-bench` and the scripts start from
/// beside their own (`target/release`); returns the workspace's root.
///
/// # Panics
/// When cargo cannot be run or the build fails.
pub fn build_release_binaries() -> PathBuf {
    let root = workspace_root();
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let built = Command::new(cargo)
        .current_dir(&root)
        .args(["build", "--release", "--bins", "-p", "ix-benches", "-p", "ix-example-http", "-p", "ix-example-kv"])
        .status()
        .expect("cargo runs");
    assert!(built.success(), "building the release binaries (ix-benches, ix-http, ix-kv) failed");
    root
}
