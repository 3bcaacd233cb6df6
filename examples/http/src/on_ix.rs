//! Running the service on IX: one core per thread, each with its own listener
//! and `ix_hyper_compat::Server`.

use std::net::Ipv4Addr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use anyhow::Context as _;
use ix_hyper_compat::Server;
use ix_runtime::blocking::BlockingConfig;
use ix_runtime::metrics::{PUBLISH_PERIOD_DEFAULT, serve_metrics};
use ix_runtime::net::TcpListener;
use ix_runtime::{Backend, Runtime};
use tokio_rustls::TlsAcceptor;

use crate::Args;
use crate::tls::TlsAccept;
use ix_http::service::App;

/// How long the runtime's graceful shutdown waits after the server's grace
/// period, for the connections closed at its end to send their FINs.
const DRAIN_AFTER_GRACE: Duration = Duration::from_secs(1);

pub(crate) fn run(args: &Args, app: App, addr: Option<(Ipv4Addr, u8)>, tls: Option<TlsAcceptor>) -> anyhow::Result<()> {
    let backend: Backend = args.backend.parse().with_context(|| format!("--backend {}", args.backend))?;
    // The runtime's drain bound is the last resort: the server closes what
    // is left at the grace period, and needs a moment to send the FINs.
    let drain = Duration::from_millis(args.grace_ms) + DRAIN_AFTER_GRACE;
    let blocking = BlockingConfig { max_threads: args.blocking_threads, ..BlockingConfig::default() };
    let mut builder = Runtime::builder()
        .cores(args.cores)
        .backend(backend)
        .pool_frames(args.pool_frames)
        .blocking_pool(blocking)
        .drain_timeout(drain)
        .idle(args.idle);
    if let Some((ip, len)) = addr {
        builder = builder.ipv4(ip, len);
    }
    if let Some(gateway) = args.gateway {
        builder = builder.gateway(gateway);
    }
    let runtime = builder.build()?;
    let board = args.metrics.map(|a| serve_metrics(a).with_context(|| format!("--metrics {a}"))).transpose()?;
    let shutdown = runtime.shutdown_handle();
    let (cores, port, config, stats_every_ms) = (args.cores, args.port, args.server_config(), args.stats_every_ms);
    let backlog = args.backlog;
    let shown = addr.map_or(Ipv4Addr::UNSPECIFIED, |(ip, _)| ip);
    let scheme = if tls.is_some() { "https" } else { "http" };
    let banner = format!("listening on {shown}:{port} (ix, {}, {cores} cores, {scheme})", args.backend);
    let listening = Arc::new(AtomicUsize::new(0));
    let failed = Arc::new(AtomicUsize::new(0));
    let failures = failed.clone();
    runtime.run(move |core| {
        let (app, config, banner, tls) = (app.clone(), config.clone(), banner.clone(), tls.clone());
        let (listening, failed, shutdown, board) = (listening.clone(), failed.clone(), shutdown.clone(), board.clone());
        async move {
            let listener = match TcpListener::bind_with_backlog(port, backlog) {
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
            if stats_every_ms > 0 {
                ix_runtime::spawn_local(print_stats(Duration::from_millis(stats_every_ms)));
            }
            let server = Server::new(config);
            let serving = async {
                match tls {
                    None => server.serve(&listener, |_peer| app.clone()).await,
                    Some(tls) => server.serve_with(TlsAccept::new(&listener, tls), |_peer| app.clone()).await,
                }
            };
            let counters = match &board {
                None => serving.await,
                Some(board) => {
                    board.publish_while(PUBLISH_PERIOD_DEFAULT, || server.counters().metrics(), serving).await
                }
            };
            tracing::info!(core, ?counters, "core stopped serving");
        }
    })?;
    if failures.load(Ordering::SeqCst) > 0 {
        anyhow::bail!("a core could not listen");
    }
    Ok(())
}

/// Prints the core's counters every `every`, one line, until the core stops.
async fn print_stats(every: Duration) {
    loop {
        ix_runtime::time::sleep(every).await;
        let s = ix_runtime::stats();
        let tcp = &s.stack.tcp;
        eprintln!(
            "stats core={} conns={} pool_free={}/{} pool_exhausted={} buffer_waits={} rx={} tx={} \
             passive_opens={} syncookies_sent={} syncookies_recv={} syncookies_failed={} listen_overflows={} \
             resets_sent={} retransmits={} syn_retransmits={} fast_retransmits={} rack_lost_marks={} tlp_probes={} \
             tlp_spurious={} rtos={} spurious_rtos_undone={} dsacks_received={} timeouts={} window_probes={} \
             fin_wait_2_timeouts={} missing_timer_rearms={} abort_on_data={} pool_pressure_drops={} packed_chunks={}",
            s.core,
            s.connections,
            s.pool_free,
            s.pool_capacity,
            s.queue.pool_exhausted,
            s.buffer_waits,
            s.queue.rx_packets,
            s.queue.tx_packets,
            tcp.passive_opens,
            tcp.syncookies_sent,
            tcp.syncookies_recv,
            tcp.syncookies_failed,
            tcp.listen_overflows,
            tcp.resets_sent,
            tcp.retransmitted_segments,
            tcp.syn_retransmits,
            tcp.fast_retransmits,
            tcp.rack_lost_marks,
            tcp.tlp_probes,
            tcp.tlp_spurious,
            tcp.retransmit_timeouts,
            tcp.spurious_timeouts_undone,
            tcp.dsacks_received,
            tcp.timeouts,
            tcp.window_probes,
            tcp.fin_wait_2_timeouts,
            tcp.missing_timer_rearms,
            tcp.abort_on_data,
            tcp.rx_pool_pressure_drops,
            tcp.rx_packed_chunks,
        );
    }
}
