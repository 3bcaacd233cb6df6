//! `ix-kv`: the memcached-compatible server. Parses memcached's flags, then
//! serves on the IX runtime (one pinned thread per core, any backend) or on
//! tokio (one current-thread runtime per core with SO_REUSEPORT listeners).
//! The only file with runtime-specific code.
#![forbid(unsafe_code)]

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use anyhow::{Context, bail};
use clap::{Parser, ValueEnum};
use ix_kv::{ClientAddrs, Server, Settings, StoreConfig, serve_client};
use ix_runtime::metrics::{PUBLISH_PERIOD_DEFAULT, serve_metrics};

/// How long a shutdown lets open connections finish.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(2);

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum RuntimeKind {
    /// The IX dataplane runtime.
    Ix,
    /// tokio on kernel sockets.
    Tokio,
}

impl RuntimeKind {
    fn name(self) -> &'static str {
        match self {
            RuntimeKind::Ix => "ix",
            RuntimeKind::Tokio => "tokio",
        }
    }
}

/// A memcached-compatible key-value server on IX or tokio.
#[derive(Debug, Parser)]
#[command(name = "ix-kv", version)]
struct Args {
    /// TCP port.
    #[arg(short = 'p', long = "port", default_value_t = 11211)]
    port: u16,
    /// UDP port: only 0 (off) is supported.
    #[arg(short = 'U', long = "udp-port", default_value_t = 0)]
    udp_port: u16,
    /// Cores (serving threads).
    #[arg(short = 't', long = "threads")]
    threads: Option<usize>,
    /// Memory for items, in MiB.
    #[arg(short = 'm', long = "memory-limit", default_value_t = 64)]
    memory_mib: usize,
    /// Largest item, in bytes, or with a k or m suffix.
    #[arg(short = 'I', long = "max-item-size", default_value = "1m", value_parser = parse_size)]
    item_size_max: usize,
    /// Most simultaneous connections.
    #[arg(short = 'c', long = "conn-limit", default_value_t = 1024)]
    max_connections: usize,
    /// Runtime.
    #[arg(long, value_enum, default_value_t = RuntimeKind::Ix)]
    runtime: RuntimeKind,
    /// IX backend: `kernel`, `tap:NAME` or `xdp:IFACE[,options]`.
    #[arg(long, default_value = "kernel")]
    backend: String,
    /// Address: the dataplane's IP/LEN on the IX dataplane backends (required
    /// there); the IP to listen on for tokio and the kernel backend (default
    /// 0.0.0.0).
    #[arg(long)]
    addr: Option<String>,
    /// Serve the per-core counters in the Prometheus text format at
    /// `http://ADDR/metrics`, from a kernel socket (IX only).
    #[arg(long, value_name = "ADDR")]
    metrics: Option<SocketAddr>,
    /// IX: what a core does when it finds no work: `busy` (poll without
    /// pause), `adaptive` or `adaptive:US` (poll for US microseconds, then
    /// block), `block` (block at once, as tokio).
    #[arg(long, default_value_t = ix_runtime::IdlePolicy::default(), value_name = "POLICY")]
    idle: ix_runtime::IdlePolicy,
}

/// Parses `1048576`, `1024k`, `1m`.
fn parse_size(text: &str) -> Result<usize, String> {
    let (digits, unit) = match text.as_bytes().last() {
        Some(b'k' | b'K') => (&text[..text.len() - 1], 1024),
        Some(b'm' | b'M') => (&text[..text.len() - 1], 1024 * 1024),
        _ => (text, 1),
    };
    let n: usize = digits.parse().map_err(|_| format!("not a size: {text}"))?;
    n.checked_mul(unit).ok_or_else(|| format!("too large: {text}"))
}

fn parse_addr(text: &str) -> anyhow::Result<(Ipv4Addr, u8)> {
    let (ip, len) = text.split_once('/').unwrap_or((text, "32"));
    let ip = ip.parse().with_context(|| format!("--addr {text}: not an IPv4 address"))?;
    let len: u8 = len.parse().ok().filter(|l| *l <= 32).with_context(|| format!("--addr {text}: bad prefix length"))?;
    Ok((ip, len))
}

fn main() -> ExitCode {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into());
    tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).init();
    let args = Args::parse();
    match run(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("ix-kv: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: Args) -> anyhow::Result<()> {
    if args.udp_port != 0 {
        bail!("-U {}: UDP is not supported; use -U 0", args.udp_port);
    }
    if args.item_size_max < 1024 {
        bail!("-I {}: the item size limit must be at least 1k", args.item_size_max);
    }
    let memory = args.memory_mib.checked_mul(1024 * 1024).context("-m: too large")?;
    if memory < args.item_size_max {
        bail!("-m {} MiB is smaller than the item size limit -I {}", args.memory_mib, args.item_size_max);
    }
    let threads = args.threads.unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    if threads == 0 {
        bail!("-t 0: at least one core");
    }
    let listen_ip = args.addr.as_deref().map(parse_addr).transpose()?.map(|(ip, _)| ip);
    let settings = Settings {
        port: args.port,
        listen_ip,
        max_connections: args.max_connections,
        threads,
        store: StoreConfig::new(memory, args.item_size_max, threads),
    };
    let server = Server::new(settings);
    match args.runtime {
        RuntimeKind::Ix => run_ix(&args, server),
        RuntimeKind::Tokio => run_tokio(&args, server),
    }
}

fn announce(ip: Ipv4Addr, port: u16, runtime: RuntimeKind, backend: &str, cores: usize) {
    println!("listening on {ip}:{port} ({}, {backend}, {cores} cores)", runtime.name());
}

fn run_ix(args: &Args, server: Arc<Server>) -> anyhow::Result<()> {
    let spec = args.backend.clone();
    let backend: ix_runtime::Backend = spec.parse().with_context(|| format!("--backend {spec}"))?;
    let addr = args.addr.as_deref().map(parse_addr).transpose()?;
    let cores = server.settings().threads;
    let port = args.port;
    let listening = Arc::new(AtomicUsize::new(0));
    let mut builder = ix_runtime::Runtime::builder().cores(cores).backend(backend).idle(args.idle);
    if let Some((ip, prefix)) = addr {
        builder = builder.ipv4(ip, prefix);
    }
    let runtime = builder.build()?;
    let board = args.metrics.map(|a| serve_metrics(a).with_context(|| format!("--metrics {a}"))).transpose()?;
    let ip = addr.map_or(Ipv4Addr::UNSPECIFIED, |(ip, _)| ip);
    runtime.run(move |core| {
        let (server, listening, spec, board) = (server.clone(), listening.clone(), spec.clone(), board.clone());
        async move {
            let listener = match ix_runtime::net::TcpListener::bind(port) {
                Ok(l) => l,
                Err(e) => {
                    tracing::error!(core, error = %e, "cannot listen on port {port}");
                    return;
                }
            };
            if listening.fetch_add(1, Ordering::SeqCst) + 1 == cores {
                announce(ip, port, RuntimeKind::Ix, &spec, cores);
            }
            let serving = ix_kv::on_ix::accept_loop(server, &listener);
            match &board {
                None => serving.await,
                Some(board) => board.publish_while(PUBLISH_PERIOD_DEFAULT, Vec::new, serving).await,
            }
        }
    })?;
    Ok(())
}

fn run_tokio(args: &Args, server: Arc<Server>) -> anyhow::Result<()> {
    if args.metrics.is_some() {
        bail!("--metrics serves IX's per-core counters: use it with --runtime ix");
    }
    let ip = match args.addr.as_deref() {
        Some(a) => parse_addr(a)?.0,
        None => Ipv4Addr::UNSPECIFIED,
    };
    let addr = SocketAddrV4::new(ip, args.port);
    let cores = server.settings().threads;
    // Bind every core's listener before announcing, so a bind error is reported once.
    let listeners = (0..cores).map(|_| reuseport_listener(addr)).collect::<anyhow::Result<Vec<_>>>()?;
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let threads = listeners
        .into_iter()
        .enumerate()
        .map(|(core, listener)| {
            let (server, stop) = (server.clone(), stop_rx.clone());
            std::thread::Builder::new()
                .name(format!("kv-core-{core}"))
                .spawn(move || tokio_core(listener, server, stop))
                .context("spawning a core thread")
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    announce(ip, args.port, RuntimeKind::Tokio, "kernel", cores);
    let signals = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    signals.block_on(async {
        use tokio::signal::unix::{SignalKind, signal};
        let mut term = signal(SignalKind::terminate())?;
        let mut int = signal(SignalKind::interrupt())?;
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
        }
        anyhow::Ok(())
    })?;
    let _ = stop_tx.send(true);
    for thread in threads {
        thread.join().map_err(|_| anyhow::anyhow!("a core thread panicked"))??;
    }
    Ok(())
}

fn reuseport_listener(addr: SocketAddrV4) -> anyhow::Result<std::net::TcpListener> {
    use socket2::{Domain, Protocol, Socket, Type};
    let socket = Socket::new(Domain::IPV4, Type::STREAM, Some(Protocol::TCP))?;
    socket.set_reuse_address(true)?;
    socket.set_reuse_port(true)?;
    socket.set_nonblocking(true)?;
    socket.bind(&SocketAddr::V4(addr).into()).with_context(|| format!("cannot listen on {addr}"))?;
    socket.listen(1024)?;
    Ok(socket.into())
}

/// One core: a current-thread runtime accepting on its own SO_REUSEPORT listener.
fn tokio_core(
    listener: std::net::TcpListener,
    server: Arc<Server>,
    mut stop: tokio::sync::watch::Receiver<bool>,
) -> anyhow::Result<()> {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    rt.block_on(async move {
        let listener = tokio::net::TcpListener::from_std(listener)?;
        let mut connections = tokio::task::JoinSet::new();
        loop {
            tokio::select! {
                accepted = listener.accept() => {
                    let Ok((stream, _peer)) = accepted else {
                        // Out of descriptors or similar: back off instead of spinning.
                        tokio::time::sleep(Duration::from_millis(10)).await;
                        continue;
                    };
                    let _ = stream.set_nodelay(true);
                    let addrs = match (stream.peer_addr(), stream.local_addr()) {
                        (Ok(peer), Ok(local)) => Some(ClientAddrs { peer, local }),
                        _ => None,
                    };
                    connections.spawn(serve_client(server.clone(), stream, addrs));
                }
                Some(_) = connections.join_next(), if !connections.is_empty() => {}
                _ = stop.changed() => break,
            }
        }
        drop(listener);
        let drained = tokio::time::timeout(DRAIN_TIMEOUT, async { while connections.join_next().await.is_some() {} });
        if drained.await.is_err() {
            tracing::info!(open = connections.len(), "drain timeout: closing the remaining connections");
        }
        anyhow::Ok(())
    })
}
