//! Graceful shutdown with requests in flight: on SIGTERM, an upload under
//! way is answered in full, an idle keep-alive connection is closed, a new
//! connection is refused, a request that never completes is cut off at the
//! grace period, and the server exits within it.

mod support;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use support::{HttpServer, Target, have, upload};

/// `--grace-ms` of the server under test.
const GRACE: Duration = Duration::from_secs(5);
/// The upload in flight: sent at `UPLOAD_RATE` by curl, so it lasts about
/// 3 s and SIGTERM lands in its middle.
const UPLOAD_BYTES: usize = 60_000;
const UPLOAD_RATE: &str = "20k";
/// When SIGTERM is sent, after the upload started.
const SIGNAL_AFTER: Duration = Duration::from_secs(1);
/// What the server may take beyond the grace period to exit (the runtime's
/// last resort is one second later; the rest is process exit on a loaded
/// machine).
const EXIT_SLACK: Duration = Duration::from_secs(3);

fn connect(server: &HttpServer) -> std::io::Result<TcpStream> {
    let addr = SocketAddr::from((server.ip, server.port));
    let stream = TcpStream::connect_timeout(&addr, Duration::from_secs(2))?;
    stream.set_read_timeout(Some(Duration::from_secs(15)))?;
    Ok(stream)
}

/// Reads until the peer closes (or resets); returns what arrived and whether
/// the end was a clean EOF.
fn read_to_close(stream: &mut TcpStream) -> (Vec<u8>, bool) {
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => return (got, true),
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(_) => return (got, false),
        }
    }
}

fn in_flight_requests_finish_and_new_connections_are_refused(target: Target) {
    assert!(have("curl"), "curl is missing (apt-get install curl)");
    let grace_ms = format!("--grace-ms={}", GRACE.as_millis());
    let mut server = HttpServer::start(target, &[&grace_ms]);

    // An idle keep-alive connection that was served once.
    let mut idle = connect(&server).expect("connect the idle client");
    idle.write_all(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n").unwrap();
    let mut first = [0u8; 512];
    let n = idle.read(&mut first).expect("first response");
    assert!(first[..n].starts_with(b"HTTP/1.1 200"), "{:?}", String::from_utf8_lossy(&first[..n]));

    // A request whose body never completes.
    let mut stuck = connect(&server).expect("connect the stuck client");
    stuck.write_all(b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 1000\r\n\r\nonly ten b").unwrap();

    // An upload in flight, by curl at a limited rate.
    let body = upload(UPLOAD_BYTES);
    let dir = std::env::temp_dir().join(format!("ix-graceful-{}-{}", std::process::id(), server.port));
    std::fs::create_dir_all(&dir).unwrap();
    let (body_path, out_path) = (dir.join("body"), dir.join("out"));
    std::fs::write(&body_path, &body).unwrap();
    let uploading = Command::new("curl")
        .args(["-s", "-o"])
        .arg(&out_path)
        .args(["-w", "%{http_code}", "-H", "Expect:", "--limit-rate", UPLOAD_RATE, "--data-binary"])
        .arg(format!("@{}", body_path.display()))
        .arg(server.url("/echo"))
        .stdout(Stdio::piped())
        .spawn()
        .expect("run curl");
    std::thread::sleep(SIGNAL_AFTER);

    let signalled = Instant::now();
    server.signal_term();
    std::thread::sleep(Duration::from_millis(300));

    // New connections are refused while the others drain.
    let refused = connect(&server);
    assert!(refused.is_err(), "a connection made during the drain was accepted");

    // The idle connection is closed cleanly, long before the grace period.
    let (rest, clean) = read_to_close(&mut idle);
    assert!(rest.is_empty() && clean, "idle connection: {} bytes, clean close {clean}", rest.len());
    assert!(signalled.elapsed() < GRACE, "the idle connection was closed only after {:?}", signalled.elapsed());

    // The upload in flight is answered in full.
    let upload_result = uploading.wait_with_output().expect("curl ran");
    let status = String::from_utf8_lossy(&upload_result.stdout).into_owned();
    assert_eq!(status, "200", "the upload in flight was not answered");
    assert_eq!(std::fs::read(&out_path).unwrap(), body, "the echoed upload differs");
    let _ = std::fs::remove_dir_all(&dir);

    // The stuck request is cut off at the grace period, and the server exits.
    let exit = server.wait_exit(GRACE + EXIT_SLACK).expect("the server did not exit within the grace period");
    let took = signalled.elapsed();
    assert!(exit.success(), "ix-http exited with {exit}");
    assert!(took >= GRACE - Duration::from_millis(500), "exited after {took:?}, before the grace period");
    // Its echo started (the head and the ten bytes), and was cut short.
    let (answer, _) = read_to_close(&mut stuck);
    assert!(answer.len() < 1000, "the incomplete request got {} bytes", answer.len());
    println!("{target:?}: exited {took:?} after SIGTERM (grace {GRACE:?})");
}

#[test]
fn graceful_shutdown_on_ix_on_tap() {
    if !ix_driver::privilege::require("TAP", ix_driver::privilege::has_net_admin()) {
        return;
    }
    in_flight_requests_finish_and_new_connections_are_refused(Target::IxTap { subnet: 7 });
}

#[test]
fn graceful_shutdown_on_tokio() {
    in_flight_requests_finish_and_new_connections_are_refused(Target::Tokio);
}

#[test]
fn graceful_shutdown_on_ix_on_kernel_sockets() {
    in_flight_requests_finish_and_new_connections_are_refused(Target::IxKernel);
}
