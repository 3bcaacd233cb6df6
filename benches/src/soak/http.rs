//! The soak client's HTTP traffic against `ix-http`: HTTP/1.1 connections that
//! churn, HTTP/2 connections with concurrent streams, and slow readers; every
//! body is checked against what the route must return.

use std::net::SocketAddrV4;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

use super::{Class, Outcome, SoakConfig, SoakStats, body, connect, local_port, timed};

/// Receive buffer of a slow reader's socket, small so that the server's send
/// side backs up at once.
const SLOW_READER_RCVBUF_BYTES: u32 = 16 * 1024;

/// The body a request must get back.
#[derive(Debug)]
enum Expected {
    /// `GET /`.
    Hello,
    /// `GET /bytes/N`: `b'a' + i % 26` for each byte `i`.
    Pattern(usize),
    /// `POST /echo`: the request's own body.
    Echo(Bytes),
}

/// `GET /`'s body.
const HELLO: &[u8] = b"Hello, world!";

/// A random request of the three routes, and what it must return.
fn random_request(rng: &mut SmallRng, cfg: &SoakConfig) -> (Request<Full<Bytes>>, Expected) {
    let builder = Request::builder().header("host", "soak");
    match rng.random_range(0..3) {
        0 => (builder.uri("/").body(Full::default()).expect("valid request"), Expected::Hello),
        1 => {
            let n = rng.random_range(0..=cfg.body_max_bytes);
            let request = builder.uri(format!("/bytes/{n}")).body(Full::default()).expect("valid request");
            (request, Expected::Pattern(n))
        }
        _ => {
            let bytes = Bytes::from(body(rng.random(), rng.random_range(1..=cfg.body_max_bytes)));
            let request = builder.method("POST").uri("/echo").body(Full::new(bytes.clone())).expect("valid request");
            (request, Expected::Echo(bytes))
        }
    }
}

/// Reads the whole response and compares it with `expected`.
async fn check(response: Response<Incoming>, expected: &Expected) -> Outcome {
    if response.status() != StatusCode::OK {
        return Outcome::Mismatch(format!("status {}", response.status()));
    }
    let bytes = match response.into_body().collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(e) => return Outcome::Error(format!("body: {e}")),
    };
    let ok = match expected {
        Expected::Hello => bytes == HELLO,
        Expected::Pattern(n) => bytes.len() == *n && bytes.iter().enumerate().all(|(i, &b)| b == b'a' + (i % 26) as u8),
        Expected::Echo(sent) => bytes == *sent,
    };
    if ok {
        Outcome::Ok(bytes.len() as u64)
    } else {
        Outcome::Mismatch(format!("body of {} bytes for {expected:?}", bytes.len()))
    }
}

/// Sends one request over HTTP/1.1 and checks its answer.
async fn exchange_h1(
    sender: &mut hyper::client::conn::http1::SendRequest<Full<Bytes>>,
    request: Request<Full<Bytes>>,
    expected: &Expected,
) -> Outcome {
    match sender.send_request(request).await {
        Ok(response) => check(response, expected).await,
        Err(e) => Outcome::Error(format!("http1: {e}")),
    }
}

/// Sends one request over HTTP/2 and checks its answer.
async fn exchange_h2(
    mut sender: hyper::client::conn::http2::SendRequest<Full<Bytes>>,
    request: Request<Full<Bytes>>,
    expected: &Expected,
) -> Outcome {
    match sender.send_request(request).await {
        Ok(response) => check(response, expected).await,
        Err(e) => Outcome::Error(format!("http2: {e}")),
    }
}

/// HTTP/1.1 connections one after the other until `end`, each making 1 to
/// `requests_per_conn_max` requests, then closing.
pub async fn http1_worker(target: SocketAddrV4, cfg: Arc<SoakConfig>, stats: SoakStats, end: Instant, seed: u64) {
    let mut rng = SmallRng::seed_from_u64(seed);
    while Instant::now() < end {
        let Some(stream) = connect(target, &cfg, &stats, Class::Http1, None).await else { continue };
        let port = local_port(&stream);
        let (mut sender, conn) = match hyper::client::conn::http1::handshake(TokioIo::new(stream)).await {
            Ok(pair) => pair,
            Err(e) => {
                stats.request(Class::Http1, Some(Duration::ZERO), Outcome::Error(format!("handshake: {e}")));
                continue;
            }
        };
        let conn = tokio::spawn(conn);
        for _ in 0..rng.random_range(1..=cfg.requests_per_conn_max) {
            if Instant::now() >= end {
                break;
            }
            let (request, expected) = random_request(&mut rng, &cfg);
            let exchange = exchange_h1(&mut sender, request, &expected);
            if !timed(&stats, Class::Http1, port, cfg.request_timeout, exchange).await || sender.is_closed() {
                break;
            }
            tokio::time::sleep(cfg.think).await;
        }
        drop(sender);
        let _ = conn.await;
    }
}

/// HTTP/2 connections one after the other until `end`, each with
/// `http2_streams` concurrent request loops of 1 to `requests_per_conn_max`
/// requests.
pub async fn http2_worker(target: SocketAddrV4, cfg: Arc<SoakConfig>, stats: SoakStats, end: Instant, seed: u64) {
    let mut rng = SmallRng::seed_from_u64(seed);
    while Instant::now() < end {
        let Some(stream) = connect(target, &cfg, &stats, Class::Http2, None).await else { continue };
        let port = local_port(&stream);
        let (sender, conn) =
            match hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream)).await {
                Ok(pair) => pair,
                Err(e) => {
                    stats.request(Class::Http2, Some(Duration::ZERO), Outcome::Error(format!("handshake: {e}")));
                    continue;
                }
            };
        let conn = tokio::spawn(conn);
        let streams: Vec<_> = (0..cfg.http2_streams)
            .map(|_| {
                let (sender, cfg, stats) = (sender.clone(), cfg.clone(), stats.clone());
                let mut rng = SmallRng::seed_from_u64(rng.random());
                tokio::spawn(async move {
                    for _ in 0..rng.random_range(1..=cfg.requests_per_conn_max) {
                        if Instant::now() >= end || sender.is_closed() {
                            break;
                        }
                        let (request, expected) = random_request(&mut rng, &cfg);
                        let exchange = exchange_h2(sender.clone(), request, &expected);
                        timed(&stats, Class::Http2, port, cfg.request_timeout, exchange).await;
                        tokio::time::sleep(cfg.think).await;
                    }
                })
            })
            .collect();
        for stream in streams {
            let _ = stream.await;
        }
        drop(sender);
        let _ = conn.await;
    }
}

/// Large responses read `slow_read_bytes` at a time with a pause between,
/// over a socket with a small receive buffer, until `end`.
pub async fn slow_reader(target: SocketAddrV4, cfg: Arc<SoakConfig>, stats: SoakStats, end: Instant) {
    while Instant::now() < end {
        let Some(stream) = connect(target, &cfg, &stats, Class::SlowReader, Some(SLOW_READER_RCVBUF_BYTES)).await
        else {
            continue;
        };
        let port = local_port(&stream);
        let (mut sender, conn) = match hyper::client::conn::http1::handshake(TokioIo::new(stream)).await {
            Ok(pair) => pair,
            Err(e) => {
                stats.request(Class::SlowReader, Some(Duration::ZERO), Outcome::Error(format!("handshake: {e}")));
                continue;
            }
        };
        let conn = tokio::spawn(conn);
        let n = cfg.slow_body_bytes;
        let request = Request::builder()
            .uri(format!("/bytes/{n}"))
            .header("host", "soak")
            .body(Full::<Bytes>::default())
            .expect("valid");
        // The read takes n / slow_read_bytes pauses; twice that, plus the
        // request timeout, is its bound.
        let reads = n.div_ceil(cfg.slow_read_bytes.max(1) as u64) as u32;
        let bound = cfg.slow_read_pause * reads * 2 + cfg.request_timeout;
        let read = async {
            match sender.send_request(request).await {
                Ok(response) => read_slowly(response, n, &cfg).await,
                Err(e) => Outcome::Error(format!("slow reader: {e}")),
            }
        };
        timed(&stats, Class::SlowReader, port, bound, read).await;
        drop(sender);
        let _ = conn.await;
    }
}

/// Reads the pattern body frame by frame, pausing in proportion to each
/// frame's size, and checks every byte.
async fn read_slowly(response: Response<Incoming>, n: u64, cfg: &SoakConfig) -> Outcome {
    if response.status() != StatusCode::OK {
        return Outcome::Mismatch(format!("status {}", response.status()));
    }
    let mut body = response.into_body();
    let mut offset = 0u64;
    while let Some(frame) = body.frame().await {
        let frame = match frame {
            Ok(frame) => frame,
            Err(e) => return Outcome::Error(format!("slow body at {offset}: {e}")),
        };
        let Some(data) = frame.data_ref() else { continue };
        if let Some(i) = data.iter().enumerate().position(|(i, &b)| b != b'a' + ((offset + i as u64) % 26) as u8) {
            return Outcome::Mismatch(format!("slow body byte {}", offset + i as u64));
        }
        offset += data.len() as u64;
        let pauses = data.len() as f64 / cfg.slow_read_bytes.max(1) as f64;
        tokio::time::sleep(cfg.slow_read_pause.mul_f64(pauses)).await;
    }
    if offset == n { Outcome::Ok(n) } else { Outcome::Mismatch(format!("slow body of {offset} bytes, not {n}")) }
}
