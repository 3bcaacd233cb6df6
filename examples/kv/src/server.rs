//! The server: shared state (store, counters, settings, connection count) and
//! the connection loop, generic over any `tokio::io` stream, so the same code
//! serves IX streams and tokio's kernel sockets.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

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
    /// Connection limit (memcached's `-c`).
    pub max_connections: usize,
    /// Serving threads (memcached's `-t`, here cores).
    pub threads: usize,
    /// The store.
    pub store: StoreConfig,
}

/// Everything the connections of every core share.
#[derive(Debug)]
pub struct Server {
    store: Store,
    counters: Counters,
    settings: Settings,
    connections: AtomicUsize,
}

impl Server {
    /// A server with a new store on the system clock.
    pub fn new(settings: Settings) -> Arc<Self> {
        Self::with_store(settings, Store::new(settings.store))
    }

    /// A server over a given store (tests pass one on a manual clock).
    pub fn with_store(settings: Settings, store: Store) -> Arc<Self> {
        Arc::new(Self { store, counters: Counters::new(settings.threads), settings, connections: AtomicUsize::new(0) })
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

/// Holds one place under the connection limit.
struct Admission<'a>(&'a AtomicUsize);

impl Drop for Admission<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Serves one client connection until it quits, closes, fails or sends an
/// overlong line. A connection over the limit gets memcached's
/// `ERROR Too many open connections` and is closed.
///
/// # Errors
/// The stream's I/O errors; an overlong line ([`ProtocolError::LineTooLong`]).
pub async fn serve_connection<S>(server: Arc<Server>, mut stream: S) -> Result<(), ProtocolError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let open = server.connections.fetch_add(1, Ordering::Relaxed) + 1;
    let _admission = Admission(&server.connections);
    if open > server.settings.max_connections {
        server.counters.incr(Counter::RejectedConnections);
        stream.write_all(TOO_MANY_CONNECTIONS).await?;
        let _ = stream.shutdown().await;
        return Ok(());
    }
    server.counters.incr(Counter::TotalConnections);
    let result = command_loop(&server, &mut stream).await;
    if let Err(ProtocolError::LineTooLong(limit)) = &result {
        server.counters.incr(Counter::ProtocolErrors);
        tracing::debug!(limit, "closing a connection that sent an overlong line");
    }
    let _ = stream.shutdown().await;
    result
}

async fn command_loop<S>(server: &Server, stream: &mut S) -> Result<(), ProtocolError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let mut decoder = server.decoder();
    let mut input = BytesMut::with_capacity(READ_CHUNK_BYTES);
    let mut output = BytesMut::with_capacity(READ_CHUNK_BYTES);
    loop {
        // Run every complete command buffered, then reply in one write.
        while let Some(cmd) = decoder.decode(&mut input)? {
            if execute(server, cmd, &mut output) == Flow::Close {
                flush(server, stream, &mut output).await?;
                return Ok(());
            }
            if output.len() >= OUTPUT_FLUSH_BYTES {
                flush(server, stream, &mut output).await?;
            }
        }
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
