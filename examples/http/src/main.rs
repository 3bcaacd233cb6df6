//! `ix-http`: the example hyper server. The same service (`service.rs`) runs
//! on IX (`--runtime ix --backend ...`), on tokio (`--runtime tokio`) or on
//! monoio (`--runtime monoio`), with the same limits, from `ix-hyper-compat`'s server.
#![forbid(unsafe_code)]

mod on_ix;
mod on_monoio;
mod on_tokio;
mod tls;

use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, ValueEnum};
use ix_http::service;
use ix_hyper_compat::ServerConfig;
use tokio_rustls::TlsAcceptor;

/// Which runtime serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum RuntimeKind {
    /// IX: a thread per core on the dataplane (or on kernel sockets with `--backend kernel`).
    Ix,
    /// tokio: a current-thread runtime per core, kernel sockets with SO_REUSEPORT.
    Tokio,
    /// monoio: an io_uring runtime per core, kernel sockets with SO_REUSEPORT
    /// (plain HTTP only).
    Monoio,
}

/// hyper HTTP/1.1 + HTTP/2 server on IX, tokio or monoio, plain or over TLS: `GET /`,
/// `GET /bytes/N`, `POST /echo`, static files.
#[derive(Debug, Parser)]
#[command(name = "ix-http", version)]
struct Args {
    /// Runtime.
    #[arg(long, value_enum, default_value = "ix")]
    runtime: RuntimeKind,
    /// IX backend: `kernel`, `tap:NAME` (and `xdp:IFACE,...` where built).
    #[arg(long, default_value = "kernel")]
    backend: String,
    /// Cores (threads, each with its own listener).
    #[arg(long, default_value_t = 1)]
    cores: usize,
    /// Address: the dataplane's IPv4 address and prefix on IX, the address to
    /// bind on tokio and on the kernel backend (prefix ignored). Default 0.0.0.0/0
    /// (not valid for the dataplane backends).
    #[arg(long)]
    addr: Option<String>,
    /// IX dataplane backends: the default gateway, the next hop for
    /// destinations outside `--addr`'s subnet (without it, they get nothing:
    /// not even a SYN-ACK). The kernel routes for tokio and `kernel`.
    #[arg(long, value_name = "IP")]
    gateway: Option<Ipv4Addr>,
    /// TCP port.
    #[arg(long, default_value_t = 8080)]
    port: u16,
    /// Serve files from this directory for GET paths no route takes.
    #[arg(long)]
    static_dir: Option<PathBuf>,
    /// Request head deadline, from accept or from a request's first byte (ms).
    #[arg(long, default_value_t = 10_000)]
    header_timeout_ms: u64,
    /// Keep-alive idle timeout (ms).
    #[arg(long, default_value_t = 60_000)]
    idle_timeout_ms: u64,
    /// Close a connection whose client stops reading for this long (ms).
    #[arg(long, default_value_t = 30_000)]
    write_timeout_ms: u64,
    /// Largest request head in bytes (431 beyond it).
    #[arg(long, default_value_t = 16 * 1024)]
    max_header_bytes: usize,
    /// Graceful shutdown (SIGTERM, SIGINT): listeners close at once (new
    /// connections are refused), requests in flight get this long to be
    /// answered, then the connections still open are closed (ms).
    #[arg(long, default_value_t = 5_000)]
    grace_ms: u64,
    /// Live connections per core (more are closed at once).
    #[arg(long, default_value_t = 10_000)]
    max_conns: usize,
    /// Serve the per-core counters in the Prometheus text format at
    /// `http://ADDR/metrics`, from a kernel socket (IX only).
    #[arg(long, value_name = "ADDR")]
    metrics: Option<std::net::SocketAddr>,
    /// Serve HTTPS (HTTP/1.1 and HTTP/2 by ALPN) with this PEM certificate chain.
    #[arg(long, requires = "tls_key", value_name = "PEM")]
    tls_cert: Option<PathBuf>,
    /// The PEM private key of `--tls-cert`.
    #[arg(long, requires = "tls_cert", value_name = "PEM")]
    tls_key: Option<PathBuf>,
    /// IX: frames in each core's packet pool (4 KiB each; the pool bounds the
    /// data that connections can hold unread).
    #[arg(long, default_value_t = ix_runtime::DEFAULT_POOL_FRAMES)]
    pool_frames: u32,
    /// Accept queue per core's listener (connections established and not yet
    /// accepted; beyond it the handshake's last ACK waits, SYN cookies answer).
    #[arg(long, default_value_t = ix_runtime::net::tcp::DEFAULT_BACKLOG)]
    backlog: usize,
    /// IX: what a core does when it finds no work: `busy` (poll without
    /// pause), `adaptive` or `adaptive:US` (poll for US microseconds, then
    /// block), `block` (block at once, as tokio).
    #[arg(long, default_value_t = ix_runtime::IdlePolicy::default(), value_name = "POLICY")]
    idle: ix_runtime::IdlePolicy,
    /// IX: most threads of the blocking pool that reads static files (tokio's
    /// max_blocking_threads; the pool is one per process).
    #[arg(long, default_value_t = ix_runtime::blocking::BLOCKING_THREADS_DEFAULT)]
    blocking_threads: usize,
    /// IX: print each core's counters (connections, pool, queue, SYN cookies)
    /// to stderr every this many milliseconds (0: never).
    #[arg(long, default_value_t = 0)]
    stats_every_ms: u64,
}

impl Args {
    fn server_config(&self) -> ServerConfig {
        ServerConfig {
            header_read_timeout: Duration::from_millis(self.header_timeout_ms),
            idle_timeout: Duration::from_millis(self.idle_timeout_ms),
            write_timeout: Duration::from_millis(self.write_timeout_ms),
            max_header_bytes: self.max_header_bytes,
            max_connections_per_core: self.max_conns,
            graceful_timeout: Duration::from_millis(self.grace_ms),
            ..ServerConfig::default()
        }
    }

    /// `--addr` as an address and prefix length.
    fn ipv4(&self) -> anyhow::Result<Option<(Ipv4Addr, u8)>> {
        let Some(spec) = &self.addr else { return Ok(None) };
        let (ip, len) = spec.split_once('/').unwrap_or((spec, "32"));
        let ip: Ipv4Addr = ip.parse().map_err(|_| anyhow::anyhow!("--addr {spec}: not an IPv4 address"))?;
        let len: u8 =
            len.parse().ok().filter(|l| *l <= 32).ok_or_else(|| anyhow::anyhow!("--addr {spec}: bad prefix"))?;
        Ok(Some((ip, len)))
    }
}

/// Serves `App` on one runtime until shut down.
type Serve = fn(&Args, service::App, Option<(Ipv4Addr, u8)>, Option<TlsAcceptor>) -> anyhow::Result<()>;

fn main() -> ExitCode {
    let args = Args::parse();
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()))
        .with_writer(std::io::stderr)
        .init();
    // The runtime is chosen here, once: how it serves, and how it runs blocking file reads.
    let (serve, offload): (Serve, service::Offload) = match args.runtime {
        RuntimeKind::Ix => (on_ix::run, ix_http::offload_on_ix),
        RuntimeKind::Tokio => (on_tokio::run, on_tokio::offload),
        RuntimeKind::Monoio => (on_monoio::run, on_monoio::offload),
    };
    let setup = (|| -> anyhow::Result<_> {
        if args.cores == 0 {
            anyhow::bail!("--cores must be at least 1");
        }
        let app = service::App::new(args.static_dir.as_deref(), offload).map_err(|e| {
            anyhow::anyhow!("--static-dir {}: {e}", args.static_dir.as_deref().unwrap_or_else(|| "".as_ref()).display())
        })?;
        let tls = match (&args.tls_cert, &args.tls_key) {
            (Some(cert), Some(key)) => Some(tls::acceptor(cert, key)?),
            _ => None,
        };
        Ok((app, args.ipv4()?, tls))
    })();
    let (app, addr, tls) = match setup {
        Ok(v) => v,
        Err(e) => {
            eprintln!("ix-http: {e}");
            return ExitCode::from(2);
        }
    };
    match serve(&args, app, addr, tls) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("ix-http: {e:#}");
            ExitCode::from(1)
        }
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::Args;

    /// clap reads `{n}` in a doc comment as a line break, which once cut the
    /// first line of `--help` in the middle of a route.
    #[test]
    fn help_starts_with_the_whole_description() {
        let help = Args::command().render_help().to_string();
        let first_paragraph = help.split("\n\n").next().unwrap_or_default();
        let words: Vec<&str> = first_paragraph.split_whitespace().collect();
        assert_eq!(
            words.join(" "),
            "hyper HTTP/1.1 + HTTP/2 server on IX, tokio or monoio, plain or over TLS: `GET /`, `GET /bytes/N`, `POST /echo`, static files"
        );
    }
}
