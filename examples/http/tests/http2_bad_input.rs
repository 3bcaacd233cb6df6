//! Hostile HTTP/2 against `ix-http` on IX (kernel sockets; and TAP as root): malformed frames and prefaces, a
//! flood of SETTINGS, of PING and of HEADERS + RST_STREAM ("rapid reset"), a stream window kept at zero, and
//! more streams than allowed, from a small raw-frame client, while h2load and curl keep being served. Each
//! hostile connection ends with a GOAWAY or a close (or, for refused streams, a RST_STREAM), protocol errors
//! are counted, and the server's memory stays bounded.

mod support;

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use support::{HttpServer, Target, curl, free_port, have};

const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
const DATA: u8 = 0x0;
const HEADERS: u8 = 0x1;
const RST_STREAM: u8 = 0x3;
const SETTINGS: u8 = 0x4;
const PING: u8 = 0x6;
const GOAWAY: u8 = 0x7;
const WINDOW_UPDATE: u8 = 0x8;
const END_STREAM: u8 = 0x1;
const END_HEADERS: u8 = 0x4;
const SETTINGS_INITIAL_WINDOW_SIZE: u16 = 0x4;
const REFUSED_STREAM: u32 = 0x7;
const CANCEL: u32 = 0x8;
/// Short limits so that stalled connections end quickly.
const LIMITS: [&str; 3] = ["--idle-timeout-ms=3000", "--write-timeout-ms=3000", "--header-timeout-ms=3000"];
/// Longest a hostile connection may stay open after its attack (the limits above, plus slack).
const END_WITHIN: Duration = Duration::from_secs(15);
/// Frames in each flood.
const FLOOD_FRAMES: usize = 100_000;
/// Streams opened past the server's limit of 200.
const STREAMS: u32 = 1_000;

fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let len = payload.len() as u32;
    let mut out = vec![(len >> 16) as u8, (len >> 8) as u8, len as u8, kind, flags];
    out.extend_from_slice(&stream.to_be_bytes());
    out.extend_from_slice(payload);
    out
}

/// An HPACK block for `GET path` (static-table method and scheme, literal authority and path).
fn get_block(path: &str) -> Vec<u8> {
    let mut block = vec![0x82, 0x86, 0x41, 9];
    block.extend_from_slice(b"localhost");
    block.extend_from_slice(&[0x44, path.len() as u8]);
    block.extend_from_slice(path.as_bytes());
    block
}

fn get(stream: u32, path: &str) -> Vec<u8> {
    frame(HEADERS, END_STREAM | END_HEADERS, stream, &get_block(path))
}

/// What the server sent on a connection before it ended (or the wait did).
#[derive(Debug, Default)]
struct Seen {
    /// (type, flags, stream, payload) of each whole frame.
    frames: Vec<(u8, u8, u32, Vec<u8>)>,
    /// The server closed (or reset) the connection.
    closed: bool,
}

impl Seen {
    fn goaway(&self) -> Option<u32> {
        self.frames
            .iter()
            .find(|f| f.0 == GOAWAY && f.3.len() >= 8)
            .map(|f| u32::from_be_bytes(f.3[4..8].try_into().unwrap()))
    }

    fn resets(&self, code: u32) -> usize {
        self.frames.iter().filter(|f| f.0 == RST_STREAM && f.3.get(..4) == Some(&code.to_be_bytes()[..])).count()
    }

    fn ended(&self) -> bool {
        self.closed || self.goaway().is_some()
    }
}

/// A client that speaks HTTP/2 frame by frame.
struct RawClient {
    stream: TcpStream,
    buf: Vec<u8>,
    raw: Vec<u8>,
}

impl RawClient {
    /// Connects and sends `opening` (the preface and SETTINGS, or something else).
    fn connect(server: &HttpServer, opening: &[u8]) -> RawClient {
        let stream = TcpStream::connect((server.ip, server.port)).expect("connect");
        stream.set_write_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut client = RawClient { stream, buf: Vec::new(), raw: Vec::new() };
        client.send(opening);
        client
    }

    fn h2(server: &HttpServer) -> RawClient {
        let mut opening = PREFACE.to_vec();
        opening.extend(frame(SETTINGS, 0, 0, &[]));
        RawClient::connect(server, &opening)
    }

    /// Sends, ignoring a server that has already closed (that is one of the outcomes under test).
    fn send(&mut self, bytes: &[u8]) -> bool {
        self.stream.write_all(bytes).is_ok()
    }

    /// Reads frames until the connection ends, `stop` says so, or `wait` passes.
    fn read(&mut self, wait: Duration, stop: impl Fn(&Seen) -> bool) -> Seen {
        let deadline = Instant::now() + wait;
        let mut seen = Seen::default();
        let mut chunk = [0u8; 16 * 1024];
        while Instant::now() < deadline && !stop(&seen) {
            self.stream.set_read_timeout(Some(Duration::from_millis(200))).unwrap();
            match self.stream.read(&mut chunk) {
                Ok(0) => seen.closed = true,
                Ok(n) => {
                    self.raw.extend_from_slice(&chunk[..n]);
                    self.buf.extend_from_slice(&chunk[..n]);
                    self.parse(&mut seen);
                }
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => continue,
                Err(_) => seen.closed = true,
            }
            if seen.closed {
                break;
            }
        }
        seen
    }

    fn parse(&mut self, seen: &mut Seen) {
        while self.buf.len() >= 9 {
            let len = usize::from(self.buf[0]) << 16 | usize::from(self.buf[1]) << 8 | usize::from(self.buf[2]);
            if self.buf.len() < 9 + len {
                return;
            }
            let stream = u32::from_be_bytes(self.buf[5..9].try_into().unwrap()) & 0x7fff_ffff;
            seen.frames.push((self.buf[3], self.buf[4], stream, self.buf[9..9 + len].to_vec()));
            self.buf.drain(..9 + len);
        }
    }
}

/// A well-behaved HTTP/2 client still gets its answer.
fn assert_served(server: &HttpServer) {
    let out = curl(&["-s", "-m", "5", "--http2-prior-knowledge", &server.url("/")]);
    assert!(out.status.success() && out.stdout == b"Hello, world!", "an HTTP/2 client was not served");
}

fn malformed_frames_get_goaway_or_close(server: &HttpServer) {
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("SETTINGS of 5 bytes", frame(SETTINGS, 0, 0, &[0; 5])),
        ("HEADERS on stream 0", frame(HEADERS, END_STREAM | END_HEADERS, 0, &get_block("/"))),
        ("WINDOW_UPDATE of 0", frame(WINDOW_UPDATE, 0, 0, &[0; 4])),
        ("PING of 7 bytes", frame(PING, 0, 0, &[0; 7])),
        ("DATA beyond the frame size", frame(DATA, 0, 1, &vec![0; 16_385])),
        ("undecodable HPACK", frame(HEADERS, END_STREAM | END_HEADERS, 1, &[0x80, 0xff, 0xff, 0xff, 0xff, 0x0f])),
        ("DATA on an idle stream", frame(DATA, 0, 3, b"hello")),
        ("even stream from the client", frame(HEADERS, END_STREAM | END_HEADERS, 2, &get_block("/"))),
        ("stream depending on itself", {
            let mut payload = 1u32.to_be_bytes().to_vec();
            payload.push(16);
            payload.extend(get_block("/"));
            frame(HEADERS, END_STREAM | END_HEADERS | 0x20, 1, &payload)
        }),
    ];
    for (name, bytes) in cases {
        let mut client = RawClient::h2(server);
        client.send(&bytes);
        let seen = client.read(END_WITHIN, Seen::ended);
        assert!(seen.ended(), "{name}: the connection neither got a GOAWAY nor was closed: {seen:?}");
        eprintln!("{name}: GOAWAY {:?}, closed {}", seen.goaway(), seen.closed);
    }
    let mut bad_preface = RawClient::connect(server, b"PRI * HTTP/2.0\r\n\r\nXX\r\n\r\n");
    let seen = bad_preface.read(END_WITHIN, |s| s.closed);
    assert!(seen.closed, "a broken preface left the connection open");
    assert!(
        bad_preface.raw.is_empty() || bad_preface.raw.starts_with(b"HTTP/1.1 400"),
        "a broken preface got {:?}",
        String::from_utf8_lossy(&bad_preface.raw)
    );
}

/// Writes `flood` without reading, then reads: the connection must end (GOAWAY, or a close once the server's
/// writes stall on a client that does not read) or, if the server kept up, still answer a request.
fn flood_is_bounded(server: &HttpServer, name: &str, one: impl Fn(usize) -> Vec<u8>) {
    let mut client = RawClient::h2(server);
    let mut sent = 0;
    let batch: usize = 1_000;
    while sent < FLOOD_FRAMES {
        let bytes: Vec<u8> = (sent..sent + batch).flat_map(&one).collect();
        if !client.send(&bytes) {
            break;
        }
        sent += batch;
    }
    let seen = client.read(END_WITHIN, Seen::ended);
    if seen.ended() {
        eprintln!("{name} flood: ended after {sent} frames sent: GOAWAY {:?}, closed {}", seen.goaway(), seen.closed);
        return;
    }
    // Still open: then it must still work.
    client.send(&get(1_000_001, "/"));
    let answered = client.read(END_WITHIN, |s| s.frames.iter().any(|f| f.0 == DATA && f.2 == 1_000_001));
    assert!(answered.frames.iter().any(|f| f.0 == DATA && f.2 == 1_000_001), "{name} flood: open but deaf");
    eprintln!("{name} flood: {sent} frames absorbed, connection still served");
}

fn window_kept_at_zero_ends(server: &HttpServer) {
    let mut opening = PREFACE.to_vec();
    let mut settings = SETTINGS_INITIAL_WINDOW_SIZE.to_be_bytes().to_vec();
    settings.extend_from_slice(&0u32.to_be_bytes());
    opening.extend(frame(SETTINGS, 0, 0, &settings));
    opening.extend(get(1, "/bytes/1000000"));
    let started = Instant::now();
    let mut client = RawClient::connect(server, &opening);
    let seen = client.read(END_WITHIN, Seen::ended);
    let data: usize = seen.frames.iter().filter(|f| f.0 == DATA).map(|f| f.3.len()).sum();
    assert_eq!(data, 0, "DATA sent into a zero window");
    assert!(seen.ended(), "a stream held at a zero window kept its connection open: {:?}", seen.frames.len());
    eprintln!(
        "window at zero: ended after {:?} (GOAWAY {:?}, closed {})",
        started.elapsed(),
        seen.goaway(),
        seen.closed
    );
}

fn too_many_streams_are_refused(server: &HttpServer) {
    let mut client = RawClient::h2(server);
    let requests: Vec<u8> = (0..STREAMS).flat_map(|i| get(1 + 2 * i, "/bytes/100000")).collect();
    client.send(&requests);
    let seen = client.read(END_WITHIN, |s| s.ended() || s.resets(REFUSED_STREAM) > 0);
    assert!(
        seen.resets(REFUSED_STREAM) > 0 || seen.ended(),
        "{STREAMS} concurrent streams neither refused nor ended: {} frames",
        seen.frames.len()
    );
    eprintln!("too many streams: {} refused, GOAWAY {:?}", seen.resets(REFUSED_STREAM), seen.goaway());
    // The client never opens the window: the server gives up on it.
    let rest = client.read(END_WITHIN, Seen::ended);
    assert!(seen.ended() || rest.ended(), "a connection stalled at its window stayed open");
}

/// h2load for `seconds` over 4 connections: everything it sends must succeed.
fn start_h2load(server: &HttpServer, seconds: u64) -> Child {
    Command::new("h2load")
        .args(["-D", &seconds.to_string(), "-c", "4", "-m", "4", &server.url("/")])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("run h2load")
}

fn metric(metrics: &str, name: &str) -> f64 {
    let out = curl(&["-s", "-m", "5", &format!("http://{metrics}/metrics")]);
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| l.starts_with(name))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

fn hostile_http2(target: Target) {
    assert!(have("h2load") && have("curl"), "h2load and curl are needed: apt-get install nghttp2-client curl");
    let metrics = format!("127.0.0.1:{}", free_port());
    let mut args = LIMITS.to_vec();
    let metrics_arg = format!("--metrics={metrics}");
    args.push(&metrics_arg);
    let server = HttpServer::start(target, &args);
    assert_served(&server);
    let rss_before = server.rss_kib();
    let h2load = start_h2load(&server, 25);

    malformed_frames_get_goaway_or_close(&server);
    assert_served(&server);
    flood_is_bounded(&server, "SETTINGS", |_| frame(SETTINGS, 0, 0, &[]));
    flood_is_bounded(&server, "PING", |i| frame(PING, 0, 0, &(i as u64).to_be_bytes()));
    flood_is_bounded(&server, "HEADERS + RST_STREAM", |i| {
        let stream = 1 + 2 * i as u32;
        let mut bytes = get(stream, "/");
        bytes.extend(frame(RST_STREAM, 0, stream, &CANCEL.to_be_bytes()));
        bytes
    });
    assert_served(&server);
    window_kept_at_zero_ends(&server);
    too_many_streams_are_refused(&server);
    assert_served(&server);

    let out = h2load.wait_with_output().expect("h2load");
    let text = String::from_utf8_lossy(&out.stdout);
    let succeeded = text
        .lines()
        .find(|l| l.starts_with("requests:"))
        .and_then(|l| l.split(", ").find_map(|p| p.strip_suffix(" succeeded")?.parse::<u64>().ok()))
        .unwrap_or(0);
    assert!(succeeded > 0 && text.contains(" 0 failed, 0 errored"), "h2load beside the attacks:\n{text}");
    let errors = metric(&metrics, "ix_http_protocol_errors_total");
    // Eight malformed-frame connections end in a GOAWAY with an error, the broken preface in a 400.
    assert!(errors >= 9.0, "protocol errors counted: {errors}");
    let rss_after = server.rss_kib();
    eprintln!(
        "{target:?}: h2load {succeeded} requests beside the attacks; {errors} protocol errors counted; RSS {rss_before} -> {rss_after} KiB"
    );
    assert!(rss_after < rss_before + 64 * 1024, "memory grew from {rss_before} to {rss_after} KiB");
    assert!(server.stop().success());
}

#[test]
fn hostile_http2_against_ix_on_kernel_sockets() {
    hostile_http2(Target::IxKernel);
}

#[test]
fn hostile_http2_against_ix_on_tap() {
    if !ix_driver::privilege::require("TAP", ix_driver::privilege::has_net_admin()) {
        return;
    }
    hostile_http2(Target::IxTap { subnet: 7 });
}
