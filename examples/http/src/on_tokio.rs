//! Running the service on tokio, thread per core like IX: each thread has a
//! current-thread runtime, a `LocalSet` and its own `SO_REUSEPORT` listener,
//! with the same `ix_hyper_compat::Server` (tokio's IO, spawn and timer).

use std::future::Future;
use std::io;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use anyhow::Context as _;
use hyper_util::rt::{TokioIo, TokioTimer};
use ix_hyper_compat::{Accept, Server};
use tokio::sync::watch;
use tokio_rustls::TlsAcceptor;

use crate::Args;
use crate::service::{App, FileJob, FileJobResult};
use crate::tls::TlsAccept;

/// Static file reads on tokio's blocking pool.
pub(crate) fn offload(job: FileJob) -> FileJobResult {
    let lookup = tokio::task::spawn_blocking(job);
    Box::pin(async move { lookup.await.ok() })
}

/// hyper's executor on a tokio `LocalSet`: futures need not be `Send`.
#[derive(Debug, Clone, Copy)]
struct LocalSpawn;

impl<F: Future + 'static> hyper::rt::Executor<F> for LocalSpawn {
    fn execute(&self, future: F) {
        drop(tokio::task::spawn_local(async move {
            future.await;
        }));
    }
}

/// A tokio listener that stops when the shutdown flag turns true.
struct Listener {
    listener: tokio::net::TcpListener,
    stop: Pin<Box<dyn Future<Output = ()>>>,
}

impl Accept for Listener {
    type Io = TokioIo<tokio::net::TcpStream>;

    fn poll_accept(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<(Self::Io, SocketAddr)>> {
        if self.stop.as_mut().poll(cx).is_ready() {
            return Poll::Ready(Err(io::Error::new(io::ErrorKind::ConnectionAborted, "shutting down")));
        }
        loop {
            match self.listener.poll_accept(cx) {
                Poll::Ready(Ok((stream, peer))) => {
                    // As IX does by default: no Nagle delay on small responses.
                    let _ = stream.set_nodelay(true);
                    return Poll::Ready(Ok((TokioIo::new(stream), peer)));
                }
                // Out of descriptors, or a connection reset before accept: keep serving.
                Poll::Ready(Err(e)) => tracing::warn!(error = %e, "accept failed"),
                Poll::Pending => return Poll::Pending,
            }
        }
    }
}

/// The guards every kernel-socket runtime shares, then one `SO_REUSEPORT`
/// listener per core on `addr` (or every address) and `--port`, bound up front
/// so that a bad address fails at once.
///
/// # Errors
/// `--metrics` (IX's per-core counters) was asked for, or a bind failed.
pub(crate) fn bind_core_listeners(
    args: &Args,
    addr: Option<(Ipv4Addr, u8)>,
) -> anyhow::Result<(SocketAddrV4, Vec<std::net::TcpListener>)> {
    if args.metrics.is_some() {
        anyhow::bail!("--metrics serves IX's per-core counters: use it with --runtime ix");
    }
    let ip = addr.map_or(Ipv4Addr::UNSPECIFIED, |(ip, _)| ip);
    let bind = SocketAddrV4::new(ip, args.port);
    let listeners = (0..args.cores)
        .map(|_| reuseport_listener(bind, args.backlog))
        .collect::<io::Result<Vec<_>>>()
        .with_context(|| format!("bind {bind}"))?;
    Ok((bind, listeners))
}

/// A future that completes once the shutdown flag turns true (or its sender is gone).
pub(crate) fn stop_requested(mut stop: watch::Receiver<bool>) -> Pin<Box<dyn Future<Output = ()>>> {
    Box::pin(async move {
        let _ = stop.wait_for(|stop| *stop).await;
    })
}

fn reuseport_listener(addr: SocketAddrV4, backlog: usize) -> io::Result<std::net::TcpListener> {
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None)?;
    socket.set_reuse_address(true)?;
    socket.set_reuse_port(true)?;
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    socket.listen(i32::try_from(backlog).unwrap_or(i32::MAX))?;
    Ok(socket.into())
}

pub(crate) fn run(args: &Args, app: App, addr: Option<(Ipv4Addr, u8)>, tls: Option<TlsAcceptor>) -> anyhow::Result<()> {
    let (bind, listeners) = bind_core_listeners(args, addr)?;
    let cores = args.cores;
    let scheme = if tls.is_some() { "https" } else { "http" };
    let banner = format!("listening on {bind} (tokio, kernel, {cores} cores, {scheme})");
    let config = args.server_config();
    run_thread_per_core("tokio", listeners, banner, move |core, std_listener, stop_rx, ready| {
        let (app, config, tls) = (app.clone(), config.clone(), tls.clone());
        let serve = async move {
            let listener = tokio::net::TcpListener::from_std(std_listener)?;
            ready.listening();
            let stop = stop_requested(stop_rx);
            let server = Server::with_runtime(config, LocalSpawn, TokioTimer::new());
            let listener = Listener { listener, stop };
            let counters = match tls {
                None => server.serve_with(listener, |_peer| app.clone()).await,
                Some(tls) => server.serve_with(TlsAccept::new(listener, tls), |_peer| app.clone()).await,
            };
            tracing::info!(core, ?counters, "core stopped serving");
            io::Result::Ok(())
        };
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .and_then(|rt| tokio::task::LocalSet::new().block_on(&rt, serve))
    })
}

/// Counts the cores that listen; the last one prints the banner.
#[derive(Clone)]
pub(crate) struct Readiness {
    started: Arc<AtomicUsize>,
    cores: usize,
    banner: Arc<str>,
}

impl Readiness {
    /// This core listens.
    pub(crate) fn listening(&self) {
        if self.started.fetch_add(1, Ordering::SeqCst) + 1 == self.cores {
            println!("{}", self.banner);
        }
    }
}

/// Runs `serve_core(core, listener, stop, readiness)` on a thread per
/// listener (named `NAME-core-N`), until SIGINT or SIGTERM, or until a core
/// ends on its own (it failed), which stops the others; then reports every
/// core's error.
pub(crate) fn run_thread_per_core<F>(
    name: &str,
    listeners: Vec<std::net::TcpListener>,
    banner: String,
    serve_core: F,
) -> anyhow::Result<()>
where
    F: Fn(usize, std::net::TcpListener, watch::Receiver<bool>, Readiness) -> io::Result<()> + Clone + Send + 'static,
{
    let (stop_tx, stop_rx) = watch::channel(false);
    let (ended_tx, ended_rx) = tokio::sync::mpsc::unbounded_channel::<()>();
    let errors = Arc::new(Mutex::new(Vec::new()));
    let readiness = Readiness { started: Arc::new(AtomicUsize::new(0)), cores: listeners.len(), banner: banner.into() };
    let mut threads = Vec::new();
    for (core, listener) in listeners.into_iter().enumerate() {
        let (serve_core, stop_rx, readiness) = (serve_core.clone(), stop_rx.clone(), readiness.clone());
        let (errors, ended) = (errors.clone(), ended_tx.clone());
        threads.push(std::thread::Builder::new().name(format!("{name}-core-{core}")).spawn(move || {
            if let Err(e) = serve_core(core, listener, stop_rx, readiness) {
                errors.lock().expect("no panics while held").push(format!("core {core}: {e}"));
            }
            let _ = ended.send(());
        })?);
    }
    wait_for_signal(&stop_tx, ended_rx)?;
    for thread in threads {
        let _ = thread.join();
    }
    let errors = errors.lock().expect("no panics while held");
    if !errors.is_empty() {
        anyhow::bail!("{}", errors.join("; "));
    }
    Ok(())
}

/// Blocks until SIGINT or SIGTERM (or a core ended), then tells every core to stop.
fn wait_for_signal(
    stop: &watch::Sender<bool>,
    mut ended: tokio::sync::mpsc::UnboundedReceiver<()>,
) -> anyhow::Result<()> {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    rt.block_on(async {
        use tokio::signal::unix::{SignalKind, signal};
        let mut term = signal(SignalKind::terminate())?;
        let mut int = signal(SignalKind::interrupt())?;
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
            _ = ended.recv() => {}
        }
        io::Result::Ok(())
    })?;
    let _ = stop.send(true);
    Ok(())
}
