//! Shared by the ix-http tests: start the binary on a runtime and backend, wait
//! for its `listening on` line, give it a TAP network when asked, stop it on
//! drop (SIGTERM, then SIGKILL), and drive real clients.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::net::Ipv4Addr;
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// Where the server under test runs.
#[derive(Debug, Clone, Copy)]
pub enum Target {
    /// IX on kernel sockets, on loopback.
    IxKernel,
    /// tokio, on loopback.
    Tokio,
    /// IX on a TAP device in subnet `10.96.{subnet}.0/24` (server `.2`, kernel `.1`).
    IxTap { subnet: u8 },
}

/// A running `ix-http`.
pub struct HttpServer {
    child: Child,
    pub ip: Ipv4Addr,
    pub port: u16,
    tap: Option<String>,
}

/// A port free on loopback right now.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

impl HttpServer {
    /// Starts `ix-http` for `target` with `extra` arguments and waits until it listens.
    pub fn start(target: Target, extra: &[&str]) -> HttpServer {
        let (mut args, ip, tap): (Vec<String>, Ipv4Addr, Option<String>) = match target {
            Target::IxKernel => (vec!["--runtime=ix".into(), "--backend=kernel".into()], Ipv4Addr::LOCALHOST, None),
            Target::Tokio => (vec!["--runtime=tokio".into()], Ipv4Addr::LOCALHOST, None),
            Target::IxTap { subnet } => {
                let name = format!("ixh{}s{subnet}", std::process::id() % 100_000);
                let backend = format!("--backend=tap:{name}");
                (vec!["--runtime=ix".into(), backend], Ipv4Addr::new(10, 96, subnet, 2), Some(name))
            }
        };
        let port = if tap.is_some() { 8080 } else { free_port() };
        let prefix = if tap.is_some() { "/24" } else { "" };
        args.extend([format!("--addr={ip}{prefix}"), format!("--port={port}"), "--cores=2".into()]);
        args.extend(extra.iter().map(|s| s.to_string()));
        let mut command = Command::new(env!("CARGO_BIN_EXE_ix-http"));
        command.args(&args);
        let server = Self::spawn(command, ip, port, tap);
        if let (Some(name), Target::IxTap { subnet }) = (&server.tap, target) {
            let kernel = format!("10.96.{subnet}.1/24");
            assert!(ip_cmd(&["addr", "add", &kernel, "dev", name]), "address the kernel side of {name}");
            assert!(ip_cmd(&["link", "set", name, "up"]));
            server.wait_reachable(b"Hello, world!");
        }
        server
    }

    /// Runs `command` (an `ix-http`, perhaps behind `ip netns exec`, which
    /// keeps its process id) serving `ip:port`, and waits for its `listening
    /// on` line.
    pub fn spawn(mut command: Command, ip: Ipv4Addr, port: u16, tap: Option<String>) -> HttpServer {
        let mut child = command.stdout(Stdio::piped()).stderr(Stdio::inherit()).spawn().expect("start ix-http");
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        let server = HttpServer { child, ip, port, tap };
        let line = rx.recv_timeout(Duration::from_secs(30)).expect("ix-http printed no line within 30 s");
        assert!(line.starts_with("listening on "), "unexpected first line: {line}");
        server
    }

    /// Starts an axum example binary (`ix-axum` or `ix-axum-tokio`) on a free
    /// loopback port and waits until `GET /` answers.
    pub fn start_axum(binary: &str) -> HttpServer {
        let port = free_port();
        let child = Command::new(binary)
            .env("PORT", port.to_string())
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start the axum example");
        let server = HttpServer { child, ip: Ipv4Addr::LOCALHOST, port, tap: None };
        server.wait_reachable(b"Hello from axum");
        server
    }

    /// `http://IP:PORT`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}:{}{path}", self.ip, self.port)
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Resident memory of the server, in KiB.
    pub fn rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).unwrap();
        let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
        line.split_whitespace().nth(1).unwrap().parse().unwrap()
    }

    /// Waits until `GET /` answers `body` (a TAP link, or a listener, takes a moment).
    fn wait_reachable(&self, body: &[u8]) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            let out = curl(&["-s", "-m", "2", &self.url("/")]);
            if out.status.success() && out.stdout == body {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("the server on port {} did not answer (TAP: {:?})", self.port, self.tap);
    }

    /// Stops the server with SIGTERM and waits (up to 15 s) for a clean exit.
    pub fn stop(mut self) -> std::process::ExitStatus {
        self.terminate().expect("ix-http did not exit within 15 s of SIGTERM")
    }

    /// Sends SIGTERM (a graceful shutdown) and returns at once.
    pub fn signal_term(&self) {
        let _ = Command::new("kill").args(["-TERM", &self.child.id().to_string()]).status();
    }

    /// Waits up to `limit` for the server to exit.
    pub fn wait_exit(&mut self, limit: Duration) -> Option<std::process::ExitStatus> {
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }

    fn terminate(&mut self) -> Option<std::process::ExitStatus> {
        self.signal_term();
        self.wait_exit(Duration::from_secs(15))
    }
}

impl Drop for HttpServer {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() && self.terminate().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        if let Some(name) = &self.tap {
            let _ = Command::new("ip").args(["link", "del", name]).output();
        }
    }
}

pub fn ip_cmd(args: &[&str]) -> bool {
    Command::new("ip").args(args).status().is_ok_and(|s| s.success())
}

pub fn curl(args: &[&str]) -> Output {
    Command::new("curl").args(args).output().expect("run curl")
}

/// Whether a command is on PATH (the test says what is missing otherwise).
pub fn have(cmd: &str) -> bool {
    Command::new("sh").args(["-c", &format!("command -v {cmd}")]).output().is_ok_and(|o| o.status.success())
}

/// The `/bytes/{n}` content.
pub fn pattern(n: usize) -> Vec<u8> {
    (0..n).map(|i| b'a' + (i % 26) as u8).collect()
}

/// Deterministic bytes that are not the pattern (for uploads).
pub fn upload(n: usize) -> Vec<u8> {
    let mut x = 0x9e37_79b9_u32;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x as u8
        })
        .collect()
}

/// A response as curl received it.
#[derive(Debug)]
pub struct CurlResponse {
    pub status: u16,
    /// The response head, as sent.
    pub head: String,
    pub body: Vec<u8>,
}

impl CurlResponse {
    /// A header's value (the name compared case-insensitively).
    pub fn header(&self, name: &str) -> Option<String> {
        self.head.lines().find_map(|line| {
            let (key, value) = line.split_once(':')?;
            key.eq_ignore_ascii_case(name).then(|| value.trim().to_owned())
        })
    }
}

/// Runs curl with `args` (the URL among them) and splits its answer.
pub fn curl_response(args: &[&str]) -> CurlResponse {
    let mut all = vec!["-s", "-m", "20", "--path-as-is", "-D", "-"];
    all.extend_from_slice(args);
    let out = curl(&all);
    assert!(out.status.success(), "curl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    let split = out.stdout.windows(4).position(|w| w == b"\r\n\r\n").expect("a response head");
    let head = String::from_utf8_lossy(&out.stdout[..split]).to_string();
    let status = head.split_whitespace().nth(1).and_then(|s| s.parse().ok()).expect("a status code");
    CurlResponse { status, head, body: out.stdout[split + 4..].to_vec() }
}
