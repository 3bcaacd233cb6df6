//! Running the service on IX: one core per thread, each with its own listener
//! and `ix_hyper_compat::Server`.

use std::net::Ipv4Addr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use anyhow::Context as _;
use ix_hyper_compat::Server;
use ix_runtime::net::TcpListener;
use ix_runtime::{Backend, Runtime};

use crate::Args;
use crate::service::App;

pub(crate) fn run(args: &Args, app: App, addr: Option<(Ipv4Addr, u8)>) -> anyhow::Result<()> {
    let backend: Backend = args.backend.parse().with_context(|| format!("--backend {}", args.backend))?;
    let mut builder = Runtime::builder().cores(args.cores).backend(backend);
    if let Some((ip, len)) = addr {
        builder = builder.ipv4(ip, len);
    }
    let runtime = builder.build()?;
    let shutdown = runtime.shutdown_handle();
    let (cores, port, config) = (args.cores, args.port, args.server_config());
    let shown = addr.map_or(Ipv4Addr::UNSPECIFIED, |(ip, _)| ip);
    let banner = format!("listening on {shown}:{port} (ix, {}, {cores} cores)", args.backend);
    let listening = Arc::new(AtomicUsize::new(0));
    let failed = Arc::new(AtomicUsize::new(0));
    let failures = failed.clone();
    runtime.run(move |core| {
        let (app, config, banner) = (app.clone(), config.clone(), banner.clone());
        let (listening, failed, shutdown) = (listening.clone(), failed.clone(), shutdown.clone());
        async move {
            let listener = match TcpListener::bind(port) {
                Ok(listener) => listener,
                Err(e) => {
                    eprintln!("ix-http: core {core}: port {port}: {e}");
                    failed.fetch_add(1, Ordering::SeqCst);
                    shutdown.shutdown();
                    return;
                }
            };
            if listening.fetch_add(1, Ordering::SeqCst) + 1 == cores {
                println!("{banner}");
            }
            let server = Server::new(config);
            let counters = server.serve(&listener, |_peer| app.clone()).await;
            tracing::info!(core, ?counters, "core stopped serving");
        }
    })?;
    if failures.load(Ordering::SeqCst) > 0 {
        anyhow::bail!("a core could not listen");
    }
    Ok(())
}
