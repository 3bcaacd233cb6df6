//! Where the servers and the load generator run: two network namespaces
//! joined by a veth pair (made, steered and removed with `scripts/testnet.sh`),
//! or plain loopback when namespaces are not available.

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
        net.run_script("up", &["-q", "1"])?;
        Ok(net)
    }

    /// Makes each side's receive work run on its own CPU (`script steer`, whose
    /// header says how): frames for the server side on `server_cpu`, frames
    /// for the client side on `client_cpu`. Run it again after a server
    /// attaches an XDP program: veth then makes a new NAPI thread to pin.
    /// Returns the script's account, one line per device; on loopback there
    /// is nothing to steer and it says so.
    ///
    /// # Errors
    /// The script's own message when it fails.
    pub fn steer(&self, server_cpu: usize, client_cpu: usize) -> Result<String, String> {
        match self {
            Network::Namespaces { .. } => {
                self.run_script("steer", &["-s", &server_cpu.to_string(), "-c", &client_cpu.to_string()])
            }
            Network::Loopback => Ok("loopback: nothing to steer".into()),
        }
    }

    /// Undoes [`Network::steer`]: receive work runs where veth sends it again,
    /// in the sender's context.
    ///
    /// # Errors
    /// The script's own message when it fails.
    pub fn unsteer(&self) -> Result<String, String> {
        match self {
            Network::Namespaces { .. } => self.run_script("unsteer", &[]),
            Network::Loopback => Ok("loopback: nothing to steer".into()),
        }
    }

    /// Runs `script ACTION -p PREFIX ARGS` and returns its standard output.
    fn run_script(&self, action: &str, args: &[&str]) -> Result<String, String> {
        let Network::Namespaces { prefix, script } = self else {
            return Err(format!("testnet.sh {action}: not on the namespace network"));
        };
        let out = Command::new(script)
            .args([action, "-p", prefix])
            .args(args)
            .stdin(Stdio::null())
            .output()
            .map_err(|e| format!("{}: {e}", script.display()))?;
        if !out.status.success() {
            return Err(format!(
                "{} {action} failed: {}",
                script.display(),
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
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

    /// The client side's interface.
    pub fn client_iface(&self) -> Option<String> {
        match self {
            Network::Namespaces { prefix, .. } => Some(format!("{prefix}-c")),
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
        let Network::Namespaces { prefix, script } = &*self else { return };
        if let Err(e) = self.run_script("down", &[]) {
            tracing::warn!(prefix = %prefix, "removing the test network failed ({e}); run `{} down -p {prefix}`", script.display());
        }
    }
}
