//! Hostile clients against `ix-http` on IX (kernel sockets and TAP): malformed
//! request lines, oversized headers, slowloris, a client that never reads,
//! and 10k connections opened and abandoned. Each gets hyper's error or a
//! timeout, other clients keep being served, and memory stops growing.

mod support;

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use support::{HttpServer, Target, curl, pattern};

/// Short limits so the test is quick: 1 s for a head, 1 s of write stall.
const LIMITS: [&str; 4] =
    ["--header-timeout-ms=1000", "--write-timeout-ms=1000", "--idle-timeout-ms=3000", "--max-header-bytes=16384"];

fn connect(server: &HttpServer) -> TcpStream {
    let stream = TcpStream::connect_timeout(&(server.ip, server.port).into(), Duration::from_secs(10)).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    stream
}

/// Sends `request` and reads until the server closes; returns what came.
fn exchange(server: &HttpServer, request: &[u8]) -> Vec<u8> {
    let mut stream = connect(server);
    stream.write_all(request).unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => return got,
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == ErrorKind::ConnectionReset => return got,
            Err(e) => panic!("read: {e} after {} bytes", got.len()),
        }
    }
}

/// A well-behaved client still gets its answer.
fn assert_served(server: &HttpServer) {
    let out = curl(&["-s", "-m", "5", &server.url("/bytes/5000")]);
    assert!(out.status.success() && out.stdout == pattern(5000), "a normal client was not served");
}

fn malformed_requests_get_400(server: &HttpServer) {
    for request in [
        &b"GARBAGE\r\n\r\n"[..],
        b"GET / HTTP/1.1\r\nHost: a\r\nNo colon here\r\n\r\n",
        b"GET /\x01 HTTP/1.1\r\nHost: a\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nContent-Length: 7\r\n\r\nhello",
    ] {
        let got = exchange(server, request);
        assert!(
            got.starts_with(b"HTTP/1.1 400"),
            "{:?} got {:?}",
            String::from_utf8_lossy(request),
            String::from_utf8_lossy(&got)
        );
    }
}

fn oversized_headers_get_431(server: &HttpServer) {
    let mut request = b"GET / HTTP/1.1\r\nHost: a\r\nX-Big: ".to_vec();
    request.extend(std::iter::repeat_n(b'a', 20_000));
    request.extend_from_slice(b"\r\n\r\n");
    let got = exchange(server, &request);
    assert!(got.starts_with(b"HTTP/1.1 431"), "got {:?}", String::from_utf8_lossy(&got[..got.len().min(200)]));
}

/// Headers trickled a byte a second: the connection is closed after the
/// 1 s header timeout, with no response, while others are served.
fn slowloris_is_cut_off(server: &HttpServer) {
    let mut stream = connect(server);
    let start = Instant::now();
    let head = b"GET / HTTP/1.1\r\nHost: slow\r\n\r\n";
    let mut closed_after = None;
    for &byte in head.iter() {
        if stream.write_all(&[byte]).is_err() {
            closed_after = Some(start.elapsed());
            break;
        }
        stream.set_read_timeout(Some(Duration::from_secs(1))).unwrap();
        let mut buf = [0u8; 64];
        match stream.read(&mut buf) {
            Ok(0) | Err(_) if start.elapsed() < Duration::from_millis(900) => panic!("closed before the timeout"),
            Ok(0) => {
                closed_after = Some(start.elapsed());
                break;
            }
            Ok(n) => panic!("slowloris got an answer: {:?}", String::from_utf8_lossy(&buf[..n])),
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(_) => {
                closed_after = Some(start.elapsed());
                break;
            }
        }
        assert_served(server);
    }
    let after = closed_after.expect("the slow client was never cut off");
    assert!(after < Duration::from_secs(5), "cut off only after {after:?}");
}

/// A client asks for 200 MB and never reads: after the 1 s write timeout the
/// server drops the connection; what the client finds later is a prefix of
/// the body, then the end.
fn non_reader_is_dropped(server: &HttpServer) {
    let mut stream = connect(server);
    stream.write_all(b"GET /bytes/200000000 HTTP/1.1\r\nHost: a\r\n\r\n").unwrap();
    std::thread::sleep(Duration::from_secs(3));
    assert_served(server);
    let mut total = 0usize;
    let mut buf = vec![0u8; 1 << 16];
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        assert!(Instant::now() < deadline, "the stalled connection was never closed ({total} bytes read)");
        match stream.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => total += n,
            Err(e) if e.kind() == ErrorKind::ConnectionReset => break,
            Err(e) => panic!("read: {e}"),
        }
    }
    assert!(total < 200_000_000, "the whole body arrived: the stall was not detected");
}

/// `count` connections: half opened and held silent (the header timeout
/// closes them), half opened and dropped at once.
fn abandon_connections(server: &HttpServer, count: usize) {
    let mut held = Vec::with_capacity(count / 2);
    for i in 0..count {
        let stream = TcpStream::connect_timeout(&(server.ip, server.port).into(), Duration::from_secs(10))
            .unwrap_or_else(|e| panic!("connection {i}: {e}"));
        if i % 2 == 0 {
            held.push(stream);
        }
    }
    assert_served(server);
    // Every held connection is closed by the server within the header timeout.
    let deadline = Instant::now() + Duration::from_secs(30);
    for mut stream in held {
        let left = deadline.saturating_duration_since(Instant::now()).max(Duration::from_millis(1));
        stream.set_read_timeout(Some(left)).unwrap();
        let mut buf = [0u8; 16];
        match stream.read(&mut buf) {
            Ok(0) => {}
            Err(e) if e.kind() == ErrorKind::ConnectionReset => {}
            other => panic!("an abandoned connection was not closed: {other:?}"),
        }
    }
}

/// Whether the server's memory is expected to level off across rounds of
/// abandoned connections: on kernel sockets the kernel keeps the TIME-WAIT
/// state; on the dataplane the server's own stack keeps each connection it
/// closed for 2·MSL (60 s), so its memory falls back only after that.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum MemoryCheck {
    Plateau,
    Report,
}

fn hostile_clients(target: Target, memory: MemoryCheck) {
    let server = HttpServer::start(target, &LIMITS);
    malformed_requests_get_400(&server);
    oversized_headers_get_431(&server);
    slowloris_is_cut_off(&server);
    non_reader_is_dropped(&server);
    assert_served(&server);

    // 10k connections abandoned, then smaller rounds (the client's own
    // TIME-WAIT ports bound how many a test may open in a minute).
    let before = server.rss_kib();
    let rss: Vec<u64> = [10_000, 4_000, 4_000, 4_000]
        .into_iter()
        .map(|count| {
            abandon_connections(&server, count);
            server.rss_kib()
        })
        .collect();
    eprintln!("ix-http on {target:?}: RSS {before} KiB, then after each round of abandoned connections {rss:?} KiB");
    if memory == MemoryCheck::Plateau {
        // The allocator keeps part of the first rounds' peak; later rounds must not climb above it.
        let plateau = rss[0].max(rss[1]);
        assert!(rss[3] <= plateau + 8 * 1024, "memory grows with abandoned connections: {rss:?} KiB");
    }
    assert_served(&server);
    assert!(server.stop().success());
}

#[test]
fn hostile_clients_against_ix_on_kernel_sockets() {
    hostile_clients(Target::IxKernel, MemoryCheck::Plateau);
}

#[test]
fn hostile_clients_against_ix_on_tap() {
    if !ix_driver::privilege::require("TAP", ix_driver::privilege::has_net_admin()) {
        return;
    }
    hostile_clients(Target::IxTap { subnet: 2 }, MemoryCheck::Report);
}
