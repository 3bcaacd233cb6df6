//! A TCP echo server on any backend, one listener per core, that reports at
//! exit which core served how many connections and bytes, with each core's
//! queue counters: the igb end-to-end test reads this to see flows served by
//! the core that owns their queue.
//!
//! usage: echo_server --backend SPEC --addr IP/PREFIX [--cores N] [--port P]
//! (stops on SIGINT or SIGTERM and prints one `core ...` line per core).
#![forbid(unsafe_code)]

use std::net::Ipv4Addr;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use ix_runtime::net::TcpListener;
use ix_runtime::{Backend, Runtime, spawn_local};

/// Per-core tallies, written by that core only.
#[derive(Default)]
struct Served {
    connections: AtomicU64,
    bytes: AtomicU64,
}

struct Options {
    backend: String,
    addr: (Ipv4Addr, u8),
    cores: usize,
    port: u16,
}

fn parse_options() -> Result<Options, String> {
    let mut args = std::env::args().skip(1);
    let (mut backend, mut addr, mut cores, mut port) = (None, None, 1, 7);
    while let Some(flag) = args.next() {
        let value = args.next().ok_or_else(|| format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--backend" => backend = Some(value),
            "--addr" => {
                let (ip, len) = value.split_once('/').ok_or("--addr is IP/PREFIX")?;
                let ip = ip.parse().map_err(|_| format!("--addr {value}: not an IPv4 address"))?;
                let len = len.parse().ok().filter(|l| *l <= 32).ok_or(format!("--addr {value}: bad prefix"))?;
                addr = Some((ip, len));
            }
            "--cores" => cores = value.parse().map_err(|_| "--cores takes a number")?,
            "--port" => port = value.parse().map_err(|_| "--port takes a port number")?,
            _ => return Err(format!("unknown option {flag}")),
        }
    }
    Ok(Options {
        backend: backend.ok_or("--backend is required")?,
        addr: addr.ok_or("--addr is required")?,
        cores,
        port,
    })
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()))
        .with_writer(std::io::stderr)
        .init();
    let options = match parse_options() {
        Ok(options) => options,
        Err(e) => {
            eprintln!("echo_server: {e}");
            return ExitCode::from(2);
        }
    };
    match serve(&options) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("echo_server: {e}");
            ExitCode::from(1)
        }
    }
}

fn serve(options: &Options) -> Result<(), String> {
    let backend: Backend = options.backend.parse().map_err(|e| format!("--backend {}: {e}", options.backend))?;
    let runtime = Runtime::builder()
        .cores(options.cores)
        .backend(backend)
        .ipv4(options.addr.0, options.addr.1)
        .build()
        .map_err(|e| e.to_string())?;
    let served: Arc<Vec<Served>> = Arc::new((0..options.cores).map(|_| Served::default()).collect());
    let tallies = served.clone();
    let port = options.port;
    println!("echo_server: listening on {}:{port} ({}, {} cores)", options.addr.0, options.backend, options.cores);
    let stats = runtime
        .run(move |core| {
            let served = tallies.clone();
            async move {
                let listener = match TcpListener::bind(port) {
                    Ok(listener) => listener,
                    Err(e) => return eprintln!("echo_server: core {core}: port {port}: {e}"),
                };
                while let Ok((stream, _peer)) = listener.accept().await {
                    served[core].connections.fetch_add(1, Ordering::Relaxed);
                    let served = served.clone();
                    spawn_local(async move {
                        while let Ok(Some(chunk)) = stream.recv().await {
                            served[core].bytes.fetch_add(chunk.len() as u64, Ordering::Relaxed);
                            if stream.send(Bytes::copy_from_slice(&chunk)).await.is_err() {
                                break;
                            }
                        }
                        let _ = stream.shutdown();
                    });
                }
            }
        })
        .map_err(|e| e.to_string())?;
    for core in &stats {
        let tally = &served[core.core];
        println!(
            "core {} connections {} bytes {} queue_rx_packets {} queue_rx_drops {} queue_tx_packets {} handed_over {} \
             queue_hw_rx_packets {} queue_hw_tx_packets {}",
            core.core,
            tally.connections.load(Ordering::Relaxed),
            tally.bytes.load(Ordering::Relaxed),
            core.queue.rx_packets,
            core.queue.rx_drops,
            core.queue.tx_packets,
            core.r#loop.handed_over,
            core.queue.hw_rx_packets,
            core.queue.hw_tx_packets,
        );
    }
    Ok(())
}
