//! Where the servers and the load generator run: two network namespaces
//! joined by a veth pair (made and removed with `scripts/testnet.sh`), or plain
//! loopback when namespaces are not available.

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// The server side's address on the test network (fixed by `testnet.sh`).
pub const NETNS_SERVER_IP: Ipv4Addr = Ipv4Addr::new(10, 77, 0, 1);
/// The client side's address on the test network.
pub const NETNS_CLIENT_IP: Ipv4Addr = Ipv4Addr::new(10, 77, 0, 2);
/// Prefix length of the test network.
pub const NETNS_PREFIX_LEN: u8 = 24;

/// The test network in use. Dropping a namespace network removes it.
#[derive(Debug)]
pub enum Network {
    /// Namespaces `PREFIX-srv` and `PREFIX-cli`, veth `PREFIX-s` / `PREFIX-c`.
    Namespaces {
        /// The prefix given to the script.
        prefix: String,
        /// The script.
        script: PathBuf,
    },
    /// Everything on 127.0.0.1 in the current namespace.
    Loopback,
}

impl Network {
    /// Creates the namespaces with `script up -p PREFIX`.
    ///
    /// # Errors
    /// The script's own message when it fails.
    pub fn namespaces(script: &Path, prefix: &str) -> Result<Self, String> {
        let net = Network::Namespaces { prefix: prefix.to_string(), script: script.to_path_buf() };
        // One queue pair: the server's dataplane runs one core.
        let out = Command::new(script)
            .args(["up", "-p", prefix, "-q", "1"])
            .stdin(Stdio::null())
            .output()
            .map_err(|e| format!("{}: {e}", script.display()))?;
        if !out.status.success() {
            return Err(format!("{} up failed: {}", script.display(), String::from_utf8_lossy(&out.stderr).trim()));
        }
        Ok(net)
    }

    /// The servers' address.
    pub fn server_ip(&self) -> Ipv4Addr {
        match self {
            Network::Namespaces { .. } => NETNS_SERVER_IP,
            Network::Loopback => Ipv4Addr::LOCALHOST,
        }
    }

    /// The server side's interface, for an IX backend that needs one.
    pub fn server_iface(&self) -> Option<String> {
        match self {
            Network::Namespaces { prefix, .. } => Some(format!("{prefix}-s")),
            Network::Loopback => None,
        }
    }

    /// A command that runs `program args` on the server side, pinned to `cpu`.
    pub fn server_command(&self, cpu: usize, program: &Path) -> Command {
        self.command("srv", cpu, program)
    }

    /// A command that runs `program args` on the client side, pinned to `cpu`.
    pub fn client_command(&self, cpu: usize, program: &Path) -> Command {
        self.command("cli", cpu, program)
    }

    fn command(&self, side: &str, cpu: usize, program: &Path) -> Command {
        let mut cmd = match self {
            Network::Namespaces { prefix, .. } => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", &format!("{prefix}-{side}"), "taskset", "-c"]);
                c
            }
            Network::Loopback => {
                let mut c = Command::new("taskset");
                c.arg("-c");
                c
            }
        };
        cmd.arg(cpu.to_string()).arg(program);
        cmd
    }

    /// Whether a kernel socket listens on TCP `port` on the server side.
    pub fn kernel_listens(&self, port: u16) -> bool {
        let filter = format!("sport = :{port}");
        let mut cmd = match self {
            Network::Namespaces { prefix, .. } => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", &format!("{prefix}-srv"), "ss"]);
                c
            }
            Network::Loopback => Command::new("ss"),
        };
        cmd.args(["-Hltn", &filter])
            .stdin(Stdio::null())
            .output()
            .is_ok_and(|o| o.status.success() && !o.stdout.trim_ascii().is_empty())
    }

    /// A one-line description.
    pub fn describe(&self) -> String {
        match self {
            Network::Namespaces { prefix, .. } => format!(
                "namespaces {prefix}-srv ({NETNS_SERVER_IP}) and {prefix}-cli ({NETNS_CLIENT_IP}) joined by veth \
                 {prefix}-s/{prefix}-c, offloads off"
            ),
            Network::Loopback => "loopback (127.0.0.1) in the current namespace".to_string(),
        }
    }
}

impl Drop for Network {
    fn drop(&mut self) {
        if let Network::Namespaces { prefix, script } = self {
            let done = Command::new(&*script).args(["down", "-p", prefix]).stdin(Stdio::null()).output();
            if !done.is_ok_and(|o| o.status.success()) {
                tracing::warn!(prefix = %prefix, "removing the test network failed; run `{} down -p {prefix}`", script.display());
            }
        }
    }
}
