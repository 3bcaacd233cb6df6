//! The soak client's memcached traffic against `ix-kv`: each worker owns its
//! keys, remembers what it stored, and checks every `get` against it.

use std::collections::HashMap;
use std::net::SocketAddrV4;
use std::sync::Arc;
use std::time::Instant;

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

use super::{Class, Outcome, SoakConfig, SoakStats, body, connect, local_port, timed};

/// Keys per worker (few enough that the store never evicts one).
const KEYS_PER_WORKER: u32 = 64;
/// Largest value stored (memcached's items are small; the store's limit is 1 MiB).
const VALUE_MAX_BYTES: usize = 16 * 1024;

/// One connection's reader and writer.
struct KvConn {
    reader: BufReader<tokio::net::tcp::OwnedReadHalf>,
    writer: tokio::net::tcp::OwnedWriteHalf,
}

impl KvConn {
    fn new(stream: TcpStream) -> Self {
        let (read, writer) = stream.into_split();
        Self { reader: BufReader::new(read), writer }
    }

    async fn line(&mut self) -> std::io::Result<String> {
        let mut line = String::new();
        if self.reader.read_line(&mut line).await? == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        Ok(line)
    }

    /// `set key 0 0 len` with `value`; `STORED` expected.
    async fn set(&mut self, key: &str, value: &[u8]) -> Outcome {
        let mut request = format!("set {key} 0 0 {}\r\n", value.len()).into_bytes();
        request.extend_from_slice(value);
        request.extend_from_slice(b"\r\n");
        if let Err(e) = self.writer.write_all(&request).await {
            return Outcome::Error(format!("set {key}: {e}"));
        }
        match self.line().await {
            Ok(line) if line == "STORED\r\n" => Outcome::Ok(0),
            Ok(line) => Outcome::Mismatch(format!("set {key}: {line:?}")),
            Err(e) => Outcome::Error(format!("set {key}: {e}")),
        }
    }

    /// `get key`; the value must be `expected`.
    async fn get(&mut self, key: &str, expected: &[u8]) -> Outcome {
        if let Err(e) = self.writer.write_all(format!("get {key}\r\n").as_bytes()).await {
            return Outcome::Error(format!("get {key}: {e}"));
        }
        match self.read_value(key).await {
            Ok(Some(value)) if value == expected => Outcome::Ok(value.len() as u64),
            Ok(Some(value)) => {
                Outcome::Mismatch(format!("get {key}: {} bytes differ from the {} stored", value.len(), expected.len()))
            }
            Ok(None) => Outcome::Mismatch(format!("get {key}: miss of a stored key")),
            Err(e) => Outcome::Error(format!("get {key}: {e}")),
        }
    }

    /// `VALUE key flags len`, the data, `END`; or `END` alone (a miss).
    async fn read_value(&mut self, key: &str) -> std::io::Result<Option<Vec<u8>>> {
        let bad = |what: String| std::io::Error::new(std::io::ErrorKind::InvalidData, what);
        let header = self.line().await?;
        if header == "END\r\n" {
            return Ok(None);
        }
        let fields: Vec<&str> = header.trim_end().split(' ').collect();
        let len = match fields.as_slice() {
            ["VALUE", k, _flags, len] if *k == key => len.parse::<usize>().map_err(|_| bad(header.clone()))?,
            _ => return Err(bad(format!("header {header:?}"))),
        };
        if len > VALUE_MAX_BYTES {
            return Err(bad(format!("value of {len} bytes")));
        }
        let mut data = vec![0u8; len + 2];
        self.reader.read_exact(&mut data).await?;
        if !data.ends_with(b"\r\n") {
            return Err(bad("value not ended by CRLF".into()));
        }
        data.truncate(len);
        match self.line().await? {
            end if end == "END\r\n" => Ok(Some(data)),
            other => Err(bad(format!("after the value: {other:?}"))),
        }
    }
}

/// Connections one after the other until `end`, each making 1 to
/// `requests_per_conn_max` `set`s and `get`s of the worker's own keys.
pub async fn kv_worker(
    target: SocketAddrV4,
    cfg: Arc<SoakConfig>,
    stats: SoakStats,
    end: Instant,
    worker: usize,
    seed: u64,
) {
    let mut rng = SmallRng::seed_from_u64(seed);
    // key number -> the seed and length of the value stored under it.
    let mut stored: HashMap<u32, (u64, usize)> = HashMap::new();
    let value_max = cfg.body_max_bytes.clamp(1, VALUE_MAX_BYTES);
    while Instant::now() < end {
        let Some(stream) = connect(target, &cfg, &stats, Class::Kv, None).await else { continue };
        let port = local_port(&stream);
        let mut conn = KvConn::new(stream);
        for _ in 0..rng.random_range(1..=cfg.requests_per_conn_max) {
            if Instant::now() >= end {
                break;
            }
            let k = rng.random_range(0..KEYS_PER_WORKER);
            let key = format!("soak{worker}k{k}");
            let known = stored.get(&k).copied();
            let failed = match known {
                Some((value_seed, len)) if rng.random_bool(0.6) => {
                    let expected = body(value_seed, len);
                    !timed(&stats, Class::Kv, port, cfg.request_timeout, conn.get(&key, &expected)).await
                }
                _ => {
                    let (value_seed, len) = (rng.random(), rng.random_range(1..=value_max));
                    // Unknown until the server says STORED.
                    stored.remove(&k);
                    let failed =
                        !timed(&stats, Class::Kv, port, cfg.request_timeout, conn.set(&key, &body(value_seed, len)))
                            .await;
                    if !failed {
                        stored.insert(k, (value_seed, len));
                    }
                    failed
                }
            };
            if failed {
                // The connection's state is unknown: start a new one.
                break;
            }
            tokio::time::sleep(cfg.think).await;
        }
    }
}
