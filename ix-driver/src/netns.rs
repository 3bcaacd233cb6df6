//! Network namespaces for tests and benchmarks: a thread that enters a named
//! namespace (`/run/netns/NAME`), and the test network of `scripts/testnet.sh`
//! as a guard that removes it when dropped.

use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::thread::JoinHandle;

use crate::error::DriverError;

/// Moves the calling thread into the network namespace `name` (created by
/// `ip netns add`). Threads it starts afterwards start there too; other threads
/// of the process stay where they are.
///
/// # Errors
/// [`DriverError::Os`] when `/run/netns/NAME` cannot be opened or entered
/// (missing, or no CAP_SYS_ADMIN).
pub fn enter(name: &str) -> Result<(), DriverError> {
    let path = Path::new("/run/netns").join(name);
    let file =
        std::fs::File::open(&path).map_err(|source| DriverError::Os { call: "open(/run/netns/NAME)", source })?;
    // SAFETY: `setns` takes a descriptor we keep open for the call and a
    // constant; it changes only the calling thread's namespace.
    if unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
        return Err(DriverError::os("setns(CLONE_NEWNET)"));
    }
    Ok(())
}

/// Runs `f` on a new thread inside the network namespace `name`.
///
/// # Panics
/// The thread panics (seen by `join`) when the namespace cannot be entered.
pub fn spawn_in<F, T>(name: &str, f: F) -> JoinHandle<T>
where
    F: FnOnce() -> T + Send + 'static,
    T: Send + 'static,
{
    let name = name.to_owned();
    std::thread::spawn(move || {
        enter(&name).unwrap_or_else(|e| panic!("cannot enter network namespace {name}: {e}"));
        f()
    })
}

/// The network of `scripts/testnet.sh` (namespaces `PREFIX-srv` and
/// `PREFIX-cli`, veth `PREFIX-s` 10.77.0.1/24 and `PREFIX-c` 10.77.0.2/24),
/// removed when this value drops, even when a test fails.
#[derive(Debug)]
pub struct TestNetwork {
    script: PathBuf,
    prefix: String,
}

/// Distinguishes the networks one process creates.
static NEXT_NETWORK: AtomicU32 = AtomicU32::new(0);

impl TestNetwork {
    /// The server-side address.
    pub const SERVER_ADDR: std::net::Ipv4Addr = std::net::Ipv4Addr::new(10, 77, 0, 1);
    /// The client-side address.
    pub const CLIENT_ADDR: std::net::Ipv4Addr = std::net::Ipv4Addr::new(10, 77, 0, 2);

    /// Runs `script up` with a prefix unique to this process and call, and
    /// `queues` queues per veth end.
    ///
    /// # Errors
    /// [`DriverError::Config`] with the script's output when it fails.
    pub fn up(script: impl Into<PathBuf>, tag: &str, queues: u16) -> Result<Self, DriverError> {
        let n = NEXT_NETWORK.fetch_add(1, Ordering::Relaxed);
        // At most 13 bytes: the script's limit, so that PREFIX-s fits a name.
        let prefix: String = format!("{tag}{}{n}", std::process::id() % 10_000).chars().take(13).collect();
        let network = Self { script: script.into(), prefix };
        network.run(&["up", "-p", &network.prefix, "-q", &queues.to_string()])?;
        Ok(network)
    }

    /// The server namespace.
    pub fn server_ns(&self) -> String {
        format!("{}-srv", self.prefix)
    }

    /// The client namespace.
    pub fn client_ns(&self) -> String {
        format!("{}-cli", self.prefix)
    }

    /// The server-side veth (in the server namespace).
    pub fn server_if(&self) -> String {
        format!("{}-s", self.prefix)
    }

    /// The client-side veth (in the client namespace).
    pub fn client_if(&self) -> String {
        format!("{}-c", self.prefix)
    }

    /// Drops `percent` of the frames at random on the client end, both ways
    /// (`scripts/testnet.sh loss`: nftables on its ingress and egress hooks), and
    /// caps `gso_max_segs` at 1 on both ends so that the rate applies per TCP
    /// segment; 0 removes the loss.
    ///
    /// # Errors
    /// [`DriverError::Config`] with the script's output when it fails (for
    /// example when `nft` is missing or `percent` is over 100).
    pub fn set_loss(&self, percent: u8) -> Result<(), DriverError> {
        self.run(&["loss", "-p", &self.prefix, "-l", &percent.to_string()])
    }

    /// Runs a command in the namespace `ns` (`ip netns exec`) and returns its
    /// status and output.
    pub fn exec(&self, ns: &str, argv: &[&str]) -> std::io::Result<std::process::Output> {
        Command::new("ip").args(["netns", "exec", ns]).args(argv).stdin(Stdio::null()).output()
    }

    fn run(&self, args: &[&str]) -> Result<(), DriverError> {
        let output = Command::new(&self.script)
            .args(args)
            .stdin(Stdio::null())
            .output()
            .map_err(|source| DriverError::Os { call: "run scripts/testnet.sh", source })?;
        if output.status.success() {
            return Ok(());
        }
        Err(DriverError::Config(format!(
            "{} {}: {}{}",
            self.script.display(),
            args.join(" "),
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        )))
    }
}

impl Drop for TestNetwork {
    fn drop(&mut self) {
        if let Err(error) = self.run(&["down", "-p", &self.prefix]) {
            tracing::warn!(prefix = %self.prefix, %error, "removing the test network failed");
        }
    }
}
