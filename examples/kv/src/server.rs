//! The server: shared state (store, counters, settings, connection count) and
//! the connection loop, generic over any `tokio::io` stream, so the same code
//! serves IX streams and tokio's kernel sockets.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use bytes::{BufMut, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio_util::codec::Decoder;

use crate::handler::{Flow, execute};
use crate::protocol::{CommandDecoder, DecoderLimits, ProtocolError};
use crate::stats::{Counter, Counters};
use crate::store::{Store, StoreConfig};

/// Bytes asked of the stream per read between commands (small: IX's copying
/// adapter zeroes the space it is offered).
const READ_CHUNK_BYTES: usize = 4096;
/// Bytes asked per read while a data block is arriving.
const DATA_READ_CHUNK_BYTES: usize = 64 * 1024;
/// Replies are written once this much is queued, even mid-batch, so a client
/// pipelining many gets never makes the server buffer without bound.
const OUTPUT_FLUSH_BYTES: usize = 64 * 1024;
/// The reply to a connection over the limit (memcached's words).
const TOO_MANY_CONNECTIONS: &[u8] = b"ERROR Too many open connections\r\n";

/// Settings that outlive the store's.
#[derive(Debug, Clone, Copy)]
pub struct Settings {
    /// TCP port (for `stats settings`).
    pub port: u16,
    /// The address listened on, when not every address (for `stats settings`).
    pub listen_ip: Option<std::net::Ipv4Addr>,
    /// Connection limit (memcached's `-c`).
    pub max_connections: usize,
    /// Serving threads (memcached's `-t`, here cores).
    pub threads: usize,
    /// The store.
    pub store: StoreConfig,
}

/// Settings the administration commands change, reported by `stats
/// settings`. This server has no slab mover, no segmented LRU and no crawler:
/// it keeps what the client set and reports it, and nothing else reads it
/// (see `docs/kv.md`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Tunables {
    /// `verbosity`.
    pub verbosity: u32,
    /// `slabs automove`.
    pub slab_automove: u32,
    /// `slabs automove ratio`.
    pub slab_automove_ratio: f64,
    /// `lru tune` hot percentage.
    pub hot_lru_pct: u32,
    /// `lru tune` warm percentage.
    pub warm_lru_pct: u32,
    /// `lru tune` hot age factor.
    pub hot_max_factor: f64,
    /// `lru tune` warm age factor.
    pub warm_max_factor: f64,
    /// `lru_crawler sleep`.
    pub lru_crawler_sleep: u32,
    /// `lru_crawler tocrawl`.
    pub lru_crawler_tocrawl: u32,
}

impl Default for Tunables {
    /// memcached 1.6.18's defaults.
    fn default() -> Self {
        Self {
            verbosity: 0,
            slab_automove: 1,
            slab_automove_ratio: 0.8,
            hot_lru_pct: 20,
            warm_lru_pct: 40,
            hot_max_factor: 0.2,
            warm_max_factor: 2.0,
            lru_crawler_sleep: 100,
            lru_crawler_tocrawl: 0,
        }
    }
}

/// A client's addresses, for `stats conns`.
#[derive(Debug, Clone, Copy)]
pub struct ClientAddrs {
    /// The client's address.
    pub peer: SocketAddr,
    /// The server address it connected to.
    pub local: SocketAddr,
}

/// One open connection as `stats conns` reports it.
#[derive(Debug)]
pub struct ConnectionEntry {
    /// Its addresses, when the runtime gave them.
    pub addrs: Option<ClientAddrs>,
    /// Clock reading of its last command batch.
    last_command: AtomicU32,
    /// Whether it is running commands now (else waiting for input).
    busy: AtomicBool,
    /// Whether it is in the middle of a data block.
    mid_command: AtomicBool,
}

impl ConnectionEntry {
    /// Clock reading of its last command batch.
    pub fn last_command(&self) -> u32 {
        self.last_command.load(Ordering::Relaxed)
    }

    /// memcached's name for its state: `conn_parse_cmd` while it runs
    /// commands, `conn_nread` mid data block, else `conn_waiting`.
    pub fn state(&self) -> &'static str {
        if self.busy.load(Ordering::Relaxed) {
            "conn_parse_cmd"
        } else if self.mid_command.load(Ordering::Relaxed) {
            "conn_nread"
        } else {
            "conn_waiting"
        }
    }
}

/// Everything the connections of every core share.
#[derive(Debug)]
pub struct Server {
    store: Store,
    counters: Counters,
    settings: Settings,
    connections: AtomicUsize,
    tunables: Mutex<Tunables>,
    registry: Mutex<BTreeMap<u64, Arc<ConnectionEntry>>>,
    next_connection_id: AtomicU64,
}

impl Server {
    /// A server with a new store on the system clock.
    pub fn new(settings: Settings) -> Arc<Self> {
        Self::with_store(settings, Store::new(settings.store))
    }

    /// A server over a given store (tests pass one on a manual clock).
    pub fn with_store(settings: Settings, store: Store) -> Arc<Self> {
        Arc::new(Self {
            store,
            counters: Counters::new(settings.threads),
            settings,
            connections: AtomicUsize::new(0),
            tunables: Mutex::new(Tunables::default()),
            registry: Mutex::new(BTreeMap::new()),
            // Below come the listeners, one per core.
            next_connection_id: AtomicU64::new(settings.threads as u64),
        })
    }

    /// The settings the administration commands changed.
    pub fn tunables(&self) -> Tunables {
        *self.tunables.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Changes the tunable settings.
    pub fn tune(&self, change: impl FnOnce(&mut Tunables)) {
        change(&mut self.tunables.lock().unwrap_or_else(|p| p.into_inner()));
    }

    /// The open connections by id (ids below `threads` are the listeners').
    pub fn connection_entries(&self) -> Vec<(u64, Arc<ConnectionEntry>)> {
        let registry = self.registry.lock().unwrap_or_else(|p| p.into_inner());
        registry.iter().map(|(id, entry)| (*id, entry.clone())).collect()
    }

    fn register(&self, addrs: Option<ClientAddrs>) -> (u64, Arc<ConnectionEntry>) {
        let id = self.next_connection_id.fetch_add(1, Ordering::Relaxed);
        let entry = Arc::new(ConnectionEntry {
            addrs,
            last_command: AtomicU32::new(self.store.clock().now()),
            busy: AtomicBool::new(false),
            mid_command: AtomicBool::new(false),
        });
        self.registry.lock().unwrap_or_else(|p| p.into_inner()).insert(id, entry.clone());
        (id, entry)
    }

    fn unregister(&self, id: u64) {
        self.registry.lock().unwrap_or_else(|p| p.into_inner()).remove(&id);
    }

    /// The store.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// The command counters.
    pub fn counters(&self) -> &Counters {
        &self.counters
    }

    /// The settings.
    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    /// Connections open now.
    pub fn current_connections(&self) -> usize {
        self.connections.load(Ordering::Relaxed)
    }

    fn decoder(&self) -> CommandDecoder {
        CommandDecoder::new(DecoderLimits { item_size_max: self.settings.store.item_size_max })
    }
}

/// Holds one place under the connection limit, and the connection's entry
/// for `stats conns` once admitted.
struct Admission<'a> {
    server: &'a Server,
    registered: Option<u64>,
}

impl Drop for Admission<'_> {
    fn drop(&mut self) {
        if let Some(id) = self.registered {
            self.server.unregister(id);
        }
        self.server.connections.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Serves one client connection until it quits, closes, fails or sends an
/// overlong line. A connection over the limit gets memcached's
/// `ERROR Too many open connections` and is closed.
///
/// # Errors
/// The stream's I/O errors; an overlong line ([`ProtocolError::LineTooLong`]).
///
/// # Cancel safety
/// Not cancel safe: dropping the future drops the connection, with any
/// command it was in the middle of.
pub async fn serve_connection<S>(server: Arc<Server>, stream: S) -> Result<(), ProtocolError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    serve_client(server, stream, None).await
}

/// [`serve_connection`] for a client whose addresses are known (`stats
/// conns` lists them).
///
/// # Errors
/// As [`serve_connection`].
///
/// # Cancel safety
/// As [`serve_connection`].
pub async fn serve_client<S>(
    server: Arc<Server>,
    mut stream: S,
    addrs: Option<ClientAddrs>,
) -> Result<(), ProtocolError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let open = server.connections.fetch_add(1, Ordering::Relaxed) + 1;
    let mut admission = Admission { server: &server, registered: None };
    if open > server.settings.max_connections {
        server.counters.incr(Counter::RejectedConnections);
        stream.write_all(TOO_MANY_CONNECTIONS).await?;
        let _ = stream.shutdown().await;
        return Ok(());
    }
    server.counters.incr(Counter::TotalConnections);
    let (id, entry) = server.register(addrs);
    admission.registered = Some(id);
    let result = command_loop(&server, &mut stream, &entry).await;
    if let Err(ProtocolError::LineTooLong(limit)) = &result {
        server.counters.incr(Counter::ProtocolErrors);
        tracing::debug!(limit, "closing a connection that sent an overlong line");
    }
    let _ = stream.shutdown().await;
    result
}

async fn command_loop<S>(server: &Server, stream: &mut S, entry: &ConnectionEntry) -> Result<(), ProtocolError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let mut decoder = server.decoder();
    let mut input = BytesMut::with_capacity(READ_CHUNK_BYTES);
    let mut output = BytesMut::with_capacity(READ_CHUNK_BYTES);
    loop {
        // Run every complete command buffered, then reply in one write.
        entry.busy.store(true, Ordering::Relaxed);
        entry.last_command.store(server.store.clock().now(), Ordering::Relaxed);
        while let Some(cmd) = decoder.decode(&mut input)? {
            if execute(server, cmd, &mut output) == Flow::Close {
                flush(server, stream, &mut output).await?;
                return Ok(());
            }
            if output.len() >= OUTPUT_FLUSH_BYTES {
                flush(server, stream, &mut output).await?;
            }
        }
        entry.busy.store(false, Ordering::Relaxed);
        entry.mid_command.store(decoder.mid_command(), Ordering::Relaxed);
        flush(server, stream, &mut output).await?;
        let chunk = if decoder.mid_command() { DATA_READ_CHUNK_BYTES } else { READ_CHUNK_BYTES };
        input.reserve(chunk);
        let n = stream.read_buf(&mut (&mut input).limit(chunk)).await?;
        if n == 0 {
            // A command the client cut short by closing is dropped.
            return Ok(());
        }
        server.counters.add(Counter::BytesRead, n as u64);
    }
}

async fn flush<S>(server: &Server, stream: &mut S, output: &mut BytesMut) -> Result<(), ProtocolError>
where
    S: AsyncWrite + Unpin,
{
    if output.is_empty() {
        return Ok(());
    }
    stream.write_all(output).await?;
    stream.flush().await?;
    server.counters.add(Counter::BytesWritten, output.len() as u64);
    output.clear();
    Ok(())
}
