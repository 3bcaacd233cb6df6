//! Running the service on monoio (io_uring), thread per core like IX: each
//! thread has a monoio runtime on the io_uring driver and its own
//! `SO_REUSEPORT` listener, with the same `ix_hyper_compat::Server`
//! (monoio-compat's IO adapter, executor and timer).

use std::future::Future;
use std::io;
use std::net::{Ipv4Addr, SocketAddr};
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll};

use hyper_util::rt::TokioIo;
use ix_hyper_compat::{Accept, Server};
use monoio_compat::TcpStreamCompat;
use monoio_compat::hyper::{MonoioExecutor, MonoioTimer};
use tokio_rustls::TlsAcceptor;

use crate::Args;
use crate::on_tokio::{bind_core_listeners, run_thread_per_core, stop_requested};
use crate::service::{App, FileJob, FileJobResult};

/// Static file reads on a thread of their own (monoio has no blocking pool
/// enabled here); the request's task awaits the answer on its core.
pub(crate) fn offload(job: FileJob) -> FileJobResult {
    let (tx, rx) = tokio::sync::oneshot::channel();
    std::thread::spawn(move || {
        let _ = tx.send(job());
    });
    Box::pin(async move { rx.await.ok() })
}

/// One accept in flight on a shared listener.
type Accepting = Pin<Box<dyn Future<Output = io::Result<(monoio::net::TcpStream, SocketAddr)>>>>;

/// A monoio listener that stops when the shutdown flag turns true.
struct Listener {
    listener: Rc<monoio::net::TcpListener>,
    accepting: Option<Accepting>,
    stop: Pin<Box<dyn Future<Output = ()>>>,
}

impl Accept for Listener {
    type Io = TokioIo<TcpStreamCompat>;

    fn poll_accept(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<(Self::Io, SocketAddr)>> {
        if self.stop.as_mut().poll(cx).is_ready() {
            return Poll::Ready(Err(io::Error::new(io::ErrorKind::ConnectionAborted, "shutting down")));
        }
        loop {
            let listener = self.listener.clone();
            let accepting = self.accepting.get_or_insert_with(|| Box::pin(async move { listener.accept().await }));
            let accepted = std::task::ready!(accepting.as_mut().poll(cx));
            self.accepting = None;
            match accepted {
                Ok((stream, peer)) => {
                    // As IX does by default: no Nagle delay on small responses.
                    let _ = stream.set_nodelay(true);
                    return Poll::Ready(Ok((TokioIo::new(TcpStreamCompat::new(stream)), peer)));
                }
                // Out of descriptors, or a connection reset before accept: keep serving.
                Err(e) => tracing::warn!(error = %e, "accept failed"),
            }
        }
    }
}

pub(crate) fn run(args: &Args, app: App, addr: Option<(Ipv4Addr, u8)>, tls: Option<TlsAcceptor>) -> anyhow::Result<()> {
    if tls.is_some() {
        anyhow::bail!("--runtime monoio serves plain HTTP only");
    }
    let (bind, listeners) = bind_core_listeners(args, addr)?;
    let banner = format!("listening on {bind} (monoio, io_uring, {} cores, http)", args.cores);
    let config = args.server_config();
    run_thread_per_core("monoio", listeners, banner, move |core, std_listener, stop_rx, ready| {
        let (app, config) = (app.clone(), config.clone());
        let serve = async move {
            let listener = monoio::net::TcpListener::from_std(std_listener)?;
            ready.listening();
            let stop = stop_requested(stop_rx);
            let server = Server::with_runtime(config, MonoioExecutor, MonoioTimer);
            let listener = Listener { listener: Rc::new(listener), accepting: None, stop };
            let counters = server.serve_with(listener, |_peer| app.clone()).await;
            tracing::info!(core, ?counters, "core stopped serving");
            io::Result::Ok(())
        };
        monoio::RuntimeBuilder::<monoio::IoUringDriver>::new()
            .enable_timer()
            .build()
            .and_then(|mut rt| rt.block_on(serve))
    })
}
