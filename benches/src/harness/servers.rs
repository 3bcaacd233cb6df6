//! The servers under test: how each is started on the server side (pinned to
//! one CPU), how the harness knows it listens, and how it is stopped.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use ix_runtime::IdlePolicy;
use serde::{Deserialize, Serialize};

use crate::harness::machine::process_tree_cpu_secs;
use crate::harness::network::Network;

/// How long a server gets to start listening.
const START_TIMEOUT: Duration = Duration::from_secs(15);
/// How long a server gets to exit after SIGTERM before SIGKILL.
const STOP_TIMEOUT: Duration = Duration::from_secs(5);
/// The HTTP servers' port.
pub const HTTP_PORT: u16 = 8080;
/// The HTTPS servers' port.
pub const HTTPS_PORT: u16 = 8443;
/// Connections every server is configured to take (the connection
/// scalability experiment goes to 10,000 from one client process; a process
/// here may hold at most 20,000 open files).
pub const CONNECTIONS_MAX: usize = 16_384;
/// The key-value servers' port.
pub const KV_PORT: u16 = 11211;

/// The workloads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum WorkloadKind {
    /// HTTP/1.1 `GET /` answered with "Hello, world!".
    Http,
    /// The same over TLS (rustls on both sides, a fresh self-signed
    /// certificate per server start; the handshake counts in connect time).
    Https,
    /// memcached text protocol, 90% get.
    Kv,
}

impl WorkloadKind {
    /// Every workload, in table order.
    pub const ALL: [WorkloadKind; 3] = [WorkloadKind::Http, WorkloadKind::Https, WorkloadKind::Kv];

    /// `http`, `https` or `kv`.
    pub fn name(self) -> &'static str {
        match self {
            WorkloadKind::Http => "http",
            WorkloadKind::Https => "https",
            WorkloadKind::Kv => "kv",
        }
    }
}

/// Every server the harness knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum ServerKind {
    /// `ix-http --runtime ix`.
    IxHttp,
    /// `ix-http --runtime tokio` (the same hyper service on tokio).
    TokioHttp,
    /// `ix-http --runtime monoio` (the same hyper service on monoio's io_uring
    /// driver: a thread-per-core peer).
    MonoioHttp,
    /// `ix-http --runtime ix` with `--tls-cert`/`--tls-key`.
    IxHttps,
    /// `ix-http --runtime tokio` with `--tls-cert`/`--tls-key`.
    TokioHttps,
    /// nginx, one worker.
    Nginx,
    /// `ix-kv --runtime ix`.
    IxKv,
    /// `ix-kv --runtime tokio`.
    TokioKv,
    /// memcached, one thread.
    Memcached,
}

impl ServerKind {
    /// Every server, in table order.
    pub const ALL: [ServerKind; 9] = [
        ServerKind::IxHttp,
        ServerKind::TokioHttp,
        ServerKind::MonoioHttp,
        ServerKind::Nginx,
        ServerKind::IxHttps,
        ServerKind::TokioHttps,
        ServerKind::IxKv,
        ServerKind::TokioKv,
        ServerKind::Memcached,
    ];

    /// Its name in tables and plots.
    pub fn name(self) -> &'static str {
        match self {
            ServerKind::IxHttp => "ix-http",
            ServerKind::TokioHttp => "tokio-http",
            ServerKind::MonoioHttp => "monoio-http",
            ServerKind::Nginx => "nginx",
            ServerKind::IxHttps => "ix-https",
            ServerKind::TokioHttps => "tokio-https",
            ServerKind::IxKv => "ix-kv",
            ServerKind::TokioKv => "tokio-kv",
            ServerKind::Memcached => "memcached",
        }
    }

    /// The workload it serves.
    pub fn workload(self) -> WorkloadKind {
        match self {
            ServerKind::IxHttp | ServerKind::TokioHttp | ServerKind::MonoioHttp | ServerKind::Nginx => {
                WorkloadKind::Http
            }
            ServerKind::IxHttps | ServerKind::TokioHttps => WorkloadKind::Https,
            ServerKind::IxKv | ServerKind::TokioKv | ServerKind::Memcached => WorkloadKind::Kv,
        }
    }

    /// The tokio server its ratios are taken against.
    pub fn is_tokio_baseline(self) -> bool {
        matches!(self, ServerKind::TokioHttp | ServerKind::TokioHttps | ServerKind::TokioKv)
    }

    /// For the project's own example servers, the `--runtime` they run on
    /// (they print `listening on` once ready); `None` for the others.
    pub fn runtime(self) -> Option<&'static str> {
        match self {
            ServerKind::IxHttp | ServerKind::IxHttps | ServerKind::IxKv => Some("ix"),
            ServerKind::TokioHttp | ServerKind::TokioHttps | ServerKind::TokioKv => Some("tokio"),
            ServerKind::MonoioHttp => Some("monoio"),
            ServerKind::Nginx | ServerKind::Memcached => None,
        }
    }

    /// Whether it runs on the IX runtime (and so takes a backend).
    pub fn is_ix(self) -> bool {
        matches!(self, ServerKind::IxHttp | ServerKind::IxHttps | ServerKind::IxKv)
    }

    /// The preflight check it needs (by name), and what to do when it failed.
    pub fn prerequisite(self) -> (&'static str, &'static str) {
        match self {
            ServerKind::Nginx => ("nginx", "nginx is not installed (apt-get install nginx-light)"),
            ServerKind::Memcached => ("memcached", "memcached is not installed (apt-get install memcached)"),
            ServerKind::IxHttp
            | ServerKind::TokioHttp
            | ServerKind::MonoioHttp
            | ServerKind::IxHttps
            | ServerKind::TokioHttps => ("ix-http", "ix-http is not built"),
            ServerKind::IxKv | ServerKind::TokioKv => ("ix-kv", "ix-kv is not built"),
        }
    }

    /// The port it listens on.
    pub fn port(self) -> u16 {
        match self.workload() {
            WorkloadKind::Http => HTTP_PORT,
            WorkloadKind::Https => HTTPS_PORT,
            WorkloadKind::Kv => KV_PORT,
        }
    }
}

/// Where the harness finds the programs it starts.
#[derive(Debug, Clone)]
pub struct Programs {
    /// The load generator.
    pub ixload: PathBuf,
    /// The HTTP example.
    pub ix_http: PathBuf,
    /// The KV example.
    pub ix_kv: PathBuf,
}

impl Programs {
    /// The workspace's binaries beside the running one (same target profile).
    pub fn beside_current_exe() -> Self {
        let dir = std::env::current_exe().ok().and_then(|p| p.parent().map(Path::to_path_buf)).unwrap_or_default();
        Self { ixload: dir.join("ixload"), ix_http: dir.join("ix-http"), ix_kv: dir.join("ix-kv") }
    }
}

/// Whether this process runs as root (real user id 0).
pub fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| s.lines().find(|l| l.starts_with("Uid:")).map(|l| l.split_whitespace().nth(1) == Some("0")))
        .unwrap_or(false)
}

/// A temporary directory, removed when dropped.
#[derive(Debug)]
pub struct ScratchDir(PathBuf);

impl ScratchDir {
    /// Creates `$TMPDIR/ix-bench-PID-TAG`.
    ///
    /// # Errors
    /// When it cannot be created.
    pub fn new(tag: &str) -> std::io::Result<Self> {
        let dir = std::env::temp_dir().join(format!("ix-bench-{}-{tag}", std::process::id()));
        std::fs::create_dir_all(&dir)?;
        Ok(Self(dir))
    }

    /// Its path.
    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for ScratchDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// How an IX server runs: its backend spec and its cores' idle policy.
#[derive(Debug, Clone, Copy)]
pub struct IxSetup<'a> {
    /// `kernel`, `xdp:IFACE`, ...
    pub backend: &'a str,
    /// What its core does when it finds no work.
    pub idle: IdlePolicy,
}

/// A started server; dropping it stops it (SIGTERM, then SIGKILL).
#[derive(Debug)]
pub struct RunningServer {
    child: Child,
    /// The IX backend it runs on, if it is an IX server.
    pub backend: Option<String>,
    /// For an HTTPS server, its certificate (PEM): the one the load
    /// generator trusts.
    pub tls_trust: Option<PathBuf>,
    _scratch: ScratchDir,
}

impl RunningServer {
    /// Seconds of CPU the server's process and its children have used so far.
    pub fn cpu_secs(&self) -> Option<f64> {
        process_tree_cpu_secs(self.child.id())
    }

    /// The server's process id (its descendants are its workers, if any).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for RunningServer {
    fn drop(&mut self) {
        if let Ok(Some(_)) = self.child.try_wait() {
            return;
        }
        let pid = self.child.id().to_string();
        let _ = Command::new("kill").args(["-TERM", &pid]).stdout(Stdio::null()).stderr(Stdio::null()).status();
        let deadline = Instant::now() + STOP_TIMEOUT;
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        tracing::warn!(pid = self.child.id(), "server ignored SIGTERM; killing it");
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts `kind` on the server side of `net`, pinned to `cpu`; `ix` is how an
/// IX server runs (ignored for the others). Returns once it listens.
///
/// # Errors
/// A one-line reason: the program is missing, exited, or did not listen in time.
pub fn start(
    kind: ServerKind,
    net: &Network,
    cpu: usize,
    programs: &Programs,
    ix: Option<IxSetup<'_>>,
) -> Result<RunningServer, String> {
    let backend = ix.map(|s| s.backend);
    let scratch = ScratchDir::new(kind.name()).map_err(|e| format!("scratch directory: {e}"))?;
    let ip = net.server_ip();
    let addr = format!("{ip}/{}", if ip.is_loopback() { 8 } else { crate::harness::network::NETNS_PREFIX_LEN });
    let port = kind.port().to_string();
    let mut cmd = match kind {
        ServerKind::IxHttp
        | ServerKind::TokioHttp
        | ServerKind::MonoioHttp
        | ServerKind::IxHttps
        | ServerKind::TokioHttps => {
            let mut c = net.server_command(cpu, &programs.ix_http);
            c.args(["--cores", "1", "--addr", &addr, "--port", &port, "--max-conns", &CONNECTIONS_MAX.to_string()]);
            c
        }
        ServerKind::IxKv | ServerKind::TokioKv => {
            let mut c = net.server_command(cpu, &programs.ix_kv);
            c.args(["-t", "1", "--addr", &addr, "-p", &port, "-m", "1024", "-c", &CONNECTIONS_MAX.to_string()]);
            c
        }
        ServerKind::Nginx => {
            let conf = write_nginx_conf(scratch.path(), &ip.to_string(), kind.port())?;
            let mut c = net.server_command(cpu, Path::new("nginx"));
            c.arg("-c").arg(conf).arg("-p").arg(scratch.path());
            c
        }
        ServerKind::Memcached => {
            let mut c = net.server_command(cpu, Path::new("memcached"));
            c.args(["-t", "1", "-U", "0", "-l", &ip.to_string(), "-p", &port, "-m", "1024"]);
            c.args(["-c", &CONNECTIONS_MAX.to_string()]);
            if is_root() {
                // memcached refuses to run as root unless told which user to be.
                c.args(["-u", "root"]);
            }
            c
        }
    };
    if let Some(runtime) = kind.runtime() {
        cmd.args(["--runtime", runtime]);
    }
    let tls_trust = if kind.workload() == WorkloadKind::Https {
        let (cert, key) = self_signed_certificate(scratch.path(), &ip.to_string())?;
        cmd.arg("--tls-cert").arg(&cert).arg("--tls-key").arg(key);
        Some(cert)
    } else {
        None
    };
    if kind.is_ix() {
        cmd.args(["--backend", backend.unwrap_or("kernel")]);
        cmd.args(["--idle", &ix.map_or_else(IdlePolicy::default, |s| s.idle).to_string()]);
    }
    let stderr_path = scratch.path().join("stderr");
    let stderr = std::fs::File::create(&stderr_path).map_err(|e| format!("stderr file: {e}"))?;
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(stderr)
        .spawn()
        .map_err(|e| format!("could not start {}: {e}", kind.name()))?;
    let announced = announce_channel(&mut child);
    let ours = kind.runtime().is_some();
    let server = RunningServer {
        child,
        backend: kind.is_ix().then(|| backend.unwrap_or("kernel").to_string()),
        tls_trust,
        _scratch: scratch,
    };
    wait_until_listening(server, ours, &announced, || net.kernel_listens(kind.port()), &stderr_path)
}

/// Forwards the child's stdout lines into a channel (and drains it, so the
/// server never blocks on a full pipe).
fn announce_channel(child: &mut Child) -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel();
    if let Some(stdout) = child.stdout.take() {
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
    }
    rx
}

/// Our examples print `listening on ...` once every core listens (an IX
/// listener is invisible to `ss`); others are ready when the kernel shows
/// their socket.
fn wait_until_listening(
    mut server: RunningServer,
    announces: bool,
    lines: &mpsc::Receiver<String>,
    kernel_listens: impl Fn() -> bool,
    stderr: &Path,
) -> Result<RunningServer, String> {
    let deadline = Instant::now() + START_TIMEOUT;
    let why = |what: &str| {
        let err = std::fs::read_to_string(stderr).unwrap_or_default();
        let last = err.lines().rev().find(|l| !l.trim().is_empty()).unwrap_or("").trim().to_string();
        if last.is_empty() { what.to_string() } else { format!("{what}: {last}") }
    };
    while Instant::now() < deadline {
        if let Ok(Some(status)) = server.child.try_wait() {
            return Err(why(&format!("exited with {status}")));
        }
        let ready = if announces { lines.try_iter().any(|l| l.starts_with("listening on")) } else { kernel_listens() };
        if ready {
            return Ok(server);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Err(why("did not listen within 15 s"))
}

/// A fresh self-signed certificate for `ip` and its key, as PEM files in
/// `dir`: the HTTPS servers serve it and the load generator trusts only it.
fn self_signed_certificate(dir: &Path, ip: &str) -> Result<(PathBuf, PathBuf), String> {
    let certified = rcgen::generate_simple_self_signed(vec![ip.to_owned()])
        .map_err(|e| format!("making a certificate for {ip}: {e}"))?;
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    std::fs::write(&cert, certified.cert.pem()).map_err(|e| format!("writing {}: {e}", cert.display()))?;
    std::fs::write(&key, certified.key_pair.serialize_pem()).map_err(|e| format!("writing {}: {e}", key.display()))?;
    Ok((cert, key))
}

/// nginx-light with one worker answering every request with "Hello, world!".
fn write_nginx_conf(dir: &Path, ip: &str, port: u16) -> Result<PathBuf, String> {
    let d = dir.display();
    let conf = format!(
        "daemon off;\nmaster_process on;\nworker_processes 1;\npid {d}/nginx.pid;\nerror_log {d}/error.log warn;\n\
         worker_rlimit_nofile {};\nevents {{ worker_connections {CONNECTIONS_MAX}; }}\n\
         http {{\n  access_log off;\n  client_body_temp_path {d}/body;\n  keepalive_requests 100000000;\n  \
         keepalive_timeout 300s;\n  server {{\n    listen {ip}:{port} backlog=4096;\n    \
         location / {{ default_type text/plain; return 200 \"Hello, world!\"; }}\n  }}\n}}\n",
        CONNECTIONS_MAX + 64
    );
    let path = dir.join("nginx.conf");
    std::fs::write(&path, conf).map_err(|e| format!("writing {}: {e}", path.display()))?;
    Ok(path)
}
