//! The server side: the real `ix-http` service (hyper through
//! `ix-hyper-compat`, as the binary serves it) or the real `ix-kv` server, on
//! a one-core IX runtime on port 0 of the `mem` wire, on its own thread.

use std::net::Ipv4Addr;
use std::sync::{Arc, mpsc};
use std::time::Duration;

use ix_driver::mem::MemWire;
use ix_hyper_compat::{Server as HttpServer, ServerConfig};
use ix_kv::{Server as KvServer, Settings, StoreConfig};
use ix_runtime::net::TcpListener;
use ix_runtime::{Backend, CoreStats, IdlePolicy, Runtime, RuntimeError, ShutdownHandle};

use crate::Protocol;

/// The server's address on the wire, and the client's.
pub const SERVER_IP: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 1);
pub const CLIENT_IP: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 2);
/// The wire's subnet prefix length.
pub const PREFIX_LEN: u8 = 24;
/// The server's CPU (the client takes the next one).
pub const SERVER_CPU: usize = 0;
/// `ix-kv`'s defaults (`-m 64 -I 1m -c 1024`), one core.
const KV_MEMORY_BYTES: usize = 64 << 20;
const KV_ITEM_SIZE_MAX_BYTES: usize = 1 << 20;
const KV_MAX_CONNECTIONS: usize = 1024;
/// How long the server may take to start listening.
const START_LIMIT: Duration = Duration::from_secs(10);
/// The runtime's drain bound at shutdown (the client has closed by then).
const DRAIN_LIMIT: Duration = Duration::from_secs(2);

impl Protocol {
    /// The port each server listens on (the binaries' defaults).
    pub fn port(self) -> u16 {
        match self {
            Protocol::Http => 8080,
            Protocol::Kv | Protocol::KvEtc => 11211,
        }
    }
}

/// A server running on its own thread.
#[derive(Debug)]
pub struct RunningServer {
    thread: std::thread::JoinHandle<Result<Vec<CoreStats>, RuntimeError>>,
    shutdown: ShutdownHandle,
    /// The server core's thread id (for its CPU time in `/proc`).
    pub tid: u32,
}

impl RunningServer {
    /// Starts `protocol`'s server on port 0 of `wire` (pinned to
    /// [`SERVER_CPU`] when `pin`) and returns once it listens.
    pub fn start(protocol: Protocol, wire: Arc<MemWire>, idle: IdlePolicy, pin: bool) -> Result<RunningServer, String> {
        let runtime = Runtime::builder()
            .cores(1)
            .backend(Backend::Mem { wire, port: 0 })
            .ipv4(SERVER_IP, PREFIX_LEN)
            .idle(idle)
            .first_cpu(SERVER_CPU)
            .pin_threads(pin)
            .handle_signals(false)
            .drain_timeout(DRAIN_LIMIT)
            .build()
            .map_err(|e| format!("server runtime: {e}"))?;
        let shutdown = runtime.shutdown_handle();
        let service = Service::of(protocol)?;
        let (ready_tx, ready_rx) = mpsc::channel::<Result<u32, String>>();
        let thread = std::thread::spawn(move || {
            runtime.run(move |_core| {
                let (ready, service) = (ready_tx.clone(), service.clone());
                async move {
                    let listener = match TcpListener::bind(protocol.port()) {
                        Ok(listener) => listener,
                        Err(e) => {
                            let _ = ready.send(Err(format!("bind port {}: {e}", protocol.port())));
                            return;
                        }
                    };
                    let _ = ready.send(own_thread_id());
                    service.serve(&listener).await;
                }
            })
        });
        let started =
            ready_rx.recv_timeout(START_LIMIT).unwrap_or_else(|_| Err("the server did not start listening".into()));
        let server = RunningServer { thread, shutdown, tid: 0 };
        match started {
            Ok(tid) => Ok(RunningServer { tid, ..server }),
            Err(e) => {
                let _ = server.finish();
                Err(e)
            }
        }
    }

    /// Shuts the server down and waits for its thread.
    pub fn finish(self) -> Result<(), String> {
        self.shutdown.shutdown();
        self.thread.join().map_err(|_| "the server thread panicked")?.map_err(|e| format!("server: {e}"))?;
        Ok(())
    }
}

/// What a server serves, made before its runtime starts.
#[derive(Debug, Clone)]
enum Service {
    Http(ix_http::service::App),
    Kv(Arc<KvServer>),
}

impl Service {
    fn of(protocol: Protocol) -> Result<Service, String> {
        Ok(match protocol {
            // No static directory: `App::new` has nothing to resolve.
            Protocol::Http => Service::Http(
                ix_http::service::App::new(None, ix_http::offload_on_ix).map_err(|e| format!("ix-http: {e}"))?,
            ),
            Protocol::Kv | Protocol::KvEtc => Service::Kv(KvServer::new(Settings {
                port: protocol.port(),
                listen_ip: None,
                max_connections: KV_MAX_CONNECTIONS,
                threads: 1,
                store: StoreConfig::new(KV_MEMORY_BYTES, KV_ITEM_SIZE_MAX_BYTES, 1),
            })),
        })
    }

    /// Serves on `listener` until the runtime shuts down, as the binaries do
    /// (`ix-http` with its default limits, which are `ServerConfig`'s).
    async fn serve(self, listener: &TcpListener) {
        match self {
            Service::Http(app) => {
                let counters = HttpServer::new(ServerConfig::default()).serve(listener, |_peer| app.clone()).await;
                tracing::debug!(?counters, "the HTTP server stopped");
            }
            Service::Kv(server) => ix_kv::on_ix::accept_loop(server, listener).await,
        }
    }
}

/// This thread's id, from the `/proc/thread-self` link (`PID/task/TID`).
fn own_thread_id() -> Result<u32, String> {
    let link = std::fs::read_link("/proc/thread-self").map_err(|e| format!("/proc/thread-self: {e}"))?;
    link.file_name()
        .and_then(|name| name.to_str()?.parse().ok())
        .ok_or_else(|| format!("/proc/thread-self points at {}", link.display()))
}
