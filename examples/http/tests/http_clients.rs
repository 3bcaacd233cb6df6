//! Real clients against `ix-http` on IX (kernel sockets and TAP) and on tokio:
//! curl (HTTP/1.1 keep-alive, chunked upload, HTTP/2 prior knowledge and h2c
//! upgrade), h2load, wrk and hyper's own client; every body checked byte for byte.

mod support;

use std::process::Command;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::Request;
use hyper_util::rt::{TokioExecutor, TokioIo};
use support::{HttpServer, Target, curl, have, pattern, upload};

fn require_tools() {
    for tool in ["curl", "h2load", "wrk"] {
        assert!(have(tool), "{tool} is missing: apt-get install curl nghttp2-client wrk (scripts/test.sh does)");
    }
}

fn check_curl(server: &HttpServer) {
    // Keep-alive: two requests over one connection, both answered in full.
    let out = curl(&["-sv", "-m", "20", &server.url("/"), &server.url("/bytes/100000")]);
    assert!(out.status.success(), "curl: {}", String::from_utf8_lossy(&out.stderr));
    let mut expected = b"Hello, world!".to_vec();
    expected.extend(pattern(100_000));
    assert!(out.stdout == expected, "keep-alive bodies differ ({} bytes)", out.stdout.len());
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(log.contains("Re-using existing connection"), "curl opened a second connection:\n{log}");

    // Chunked upload streamed back by /echo.
    let file = std::env::temp_dir().join(format!("ix-http-upload-{}-{}", std::process::id(), server.port));
    let body = upload(1_500_000);
    std::fs::write(&file, &body).unwrap();
    let data = format!("@{}", file.display());
    let out =
        curl(&["-s", "-m", "30", "-H", "Transfer-Encoding: chunked", "--data-binary", &data, &server.url("/echo")]);
    std::fs::remove_file(&file).unwrap();
    assert!(out.status.success() && out.stdout == body, "chunked echo differs ({} bytes)", out.stdout.len());

    // HTTP/2 with prior knowledge, and by h2c upgrade.
    for mode in ["--http2-prior-knowledge", "--http2"] {
        let out = curl(&["-s", "-m", "20", mode, "-w", "\n%{http_version}", &server.url("/bytes/70000")]);
        let mut expected = pattern(70_000);
        expected.extend_from_slice(b"\n2");
        assert!(out.status.success() && out.stdout == expected, "{mode}: body or version differs");
    }
}

fn check_h2load(server: &HttpServer) {
    let out = Command::new("h2load")
        .args(["-n", "4000", "-c", "8", "-m", "8", &server.url("/")])
        .output()
        .expect("run h2load");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("4000 succeeded, 0 failed, 0 errored"), "h2load:\n{text}");
    assert!(text.contains("4000 2xx"), "h2load:\n{text}");
}

fn check_wrk(server: &HttpServer) {
    let out = Command::new("wrk").args(["-t1", "-c16", "-d2s", &server.url("/")]).output().expect("run wrk");
    let text = String::from_utf8_lossy(&out.stdout);
    let requests: f64 = text
        .lines()
        .find_map(|l| l.strip_prefix("Requests/sec:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("wrk:\n{text}"));
    assert!(requests > 0.0, "wrk:\n{text}");
    assert!(!text.contains("Non-2xx") && !text.contains("Socket errors"), "wrk saw errors:\n{text}");
}

/// hyper's client, HTTP/1.1 and HTTP/2, over tokio.
fn check_hyper_client(server: &HttpServer) {
    let addr = (server.ip, server.port);
    let authority = format!("{}:{}", server.ip, server.port);
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async {
        let io = TokioIo::new(tokio::net::TcpStream::connect(addr).await.unwrap());
        let (mut h1, conn) = hyper::client::conn::http1::handshake(io).await.unwrap();
        tokio::spawn(conn);
        let io = TokioIo::new(tokio::net::TcpStream::connect(addr).await.unwrap());
        let (mut h2, conn) = hyper::client::conn::http2::handshake(TokioExecutor::new(), io).await.unwrap();
        tokio::spawn(conn);
        for round in 0..3 {
            let get = Request::get("/bytes/200000").header("host", &authority).body(Full::new(Bytes::new())).unwrap();
            let body = h1.send_request(get).await.unwrap().into_body().collect().await.unwrap().to_bytes();
            assert!(body == pattern(200_000), "h1 round {round}: /bytes differs");
            let sent = upload(300_000 + round);
            let post =
                Request::post(format!("http://{authority}/echo")).body(Full::new(Bytes::from(sent.clone()))).unwrap();
            let response = h2.send_request(post).await.unwrap();
            assert_eq!(response.version(), hyper::Version::HTTP_2);
            let body = response.into_body().collect().await.unwrap().to_bytes();
            assert!(body == sent, "h2 round {round}: echo differs");
        }
    });
}

fn check_all(target: Target) {
    require_tools();
    let server = HttpServer::start(target, &[]);
    check_curl(&server);
    check_hyper_client(&server);
    check_h2load(&server);
    check_wrk(&server);
    assert!(server.stop().success(), "ix-http did not exit cleanly on SIGTERM");
}

#[test]
fn real_clients_against_ix_on_kernel_sockets() {
    check_all(Target::IxKernel);
}

#[test]
fn real_clients_against_tokio() {
    check_all(Target::Tokio);
}

#[test]
fn real_clients_against_ix_on_tap() {
    if !ix_driver::privilege::require("TAP", ix_driver::privilege::has_net_admin()) {
        return;
    }
    check_all(Target::IxTap { subnet: 1 });
}
