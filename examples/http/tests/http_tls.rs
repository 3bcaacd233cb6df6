//! `ix-http --tls-cert --tls-key` on IX over kernel sockets and on tokio: a
//! certificate made here with rcgen; curl (`--cacert`) and a rustls client
//! verify it and speak HTTP/1.1 and HTTP/2 as ALPN chose, every body checked.

mod support;

use std::path::PathBuf;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::Request;
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::pki_types::ServerName;
use rustls::pki_types::pem::PemObject;
use support::{HttpServer, Target, curl, have, pattern, upload};

/// A self-signed certificate for 127.0.0.1 and localhost, its files removed on drop.
struct TestCert {
    dir: PathBuf,
    cert: PathBuf,
    key: PathBuf,
}

impl TestCert {
    fn new(tag: &str) -> TestCert {
        let dir = std::env::temp_dir().join(format!("ix-http-tls-{tag}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let names = vec!["127.0.0.1".to_owned(), "localhost".to_owned()];
        let certified = rcgen::generate_simple_self_signed(names).unwrap();
        let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
        std::fs::write(&cert, certified.cert.pem()).unwrap();
        std::fs::write(&key, certified.key_pair.serialize_pem()).unwrap();
        TestCert { dir, cert, key }
    }

    fn server_args(&self) -> [String; 2] {
        [format!("--tls-cert={}", self.cert.display()), format!("--tls-key={}", self.key.display())]
    }
}

impl Drop for TestCert {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn https_url(server: &HttpServer, path: &str) -> String {
    format!("https://{}:{}{path}", server.ip, server.port)
}

fn check_curl(server: &HttpServer, cert: &TestCert) {
    let cacert = cert.cert.to_str().unwrap();
    for (mode, version) in [("--http1.1", "1.1"), ("--http2", "2")] {
        let url = https_url(server, "/bytes/100000");
        let out = curl(&["-s", "-m", "20", "--cacert", cacert, mode, "-w", "\n%{http_version}", &url]);
        assert!(out.status.success(), "curl {mode}: exit {:?}", out.status.code());
        let mut expected = pattern(100_000);
        expected.extend_from_slice(format!("\n{version}").as_bytes());
        assert!(out.stdout == expected, "curl {mode}: body or version differs ({} bytes)", out.stdout.len());
    }
    // Without the certificate, curl refuses the server (60: peer certificate cannot be authenticated).
    let untrusted = curl(&["-s", "-m", "20", &https_url(server, "/")]);
    assert_eq!(untrusted.status.code(), Some(60));
    // Plain HTTP to the TLS port fails, and the server keeps serving.
    let plain = curl(&["-s", "-m", "5", &server.url("/")]);
    assert!(plain.stdout.is_empty() || !plain.stdout.starts_with(b"Hello"), "plain HTTP answered over TLS");
    let again = curl(&["-s", "-m", "20", "--cacert", cacert, &https_url(server, "/")]);
    assert_eq!(again.stdout, b"Hello, world!");
}

/// rustls's client, trusting only the test certificate, with both ALPN
/// protocols offered and each forced in turn.
fn check_rustls_client(server: &HttpServer, cert: &TestCert) {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(rustls::pki_types::CertificateDer::from_pem_file(&cert.cert).unwrap()).unwrap();
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    for (offered, expected) in
        [(vec![b"h2".to_vec(), b"http/1.1".to_vec()], "h2"), (vec![b"http/1.1".to_vec()], "http/1.1")]
    {
        let mut config = rustls::ClientConfig::builder().with_root_certificates(roots.clone()).with_no_client_auth();
        config.alpn_protocols = offered;
        let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
        rt.block_on(async {
            let tcp = tokio::net::TcpStream::connect((server.ip, server.port)).await.unwrap();
            let name = ServerName::try_from(server.ip.to_string()).unwrap();
            let tls = connector.connect(name, tcp).await.expect("the handshake verifies the certificate");
            let alpn = tls.get_ref().1.alpn_protocol().map(|p| String::from_utf8_lossy(p).into_owned());
            assert_eq!(alpn.as_deref(), Some(expected));
            let io = TokioIo::new(tls);
            let authority = format!("{}:{}", server.ip, server.port);
            let body = upload(300_000);
            let request = Request::post(format!("https://{authority}/echo"))
                .header("host", &authority)
                .body(Full::new(Bytes::from(body.clone())))
                .unwrap();
            let response = if expected == "h2" {
                let (mut sender, conn) = hyper::client::conn::http2::handshake(TokioExecutor::new(), io).await.unwrap();
                tokio::spawn(conn);
                sender.send_request(request).await.unwrap()
            } else {
                let (mut sender, conn) = hyper::client::conn::http1::handshake(io).await.unwrap();
                tokio::spawn(conn);
                sender.send_request(request).await.unwrap()
            };
            assert_eq!(response.status(), 200);
            let echoed = response.into_body().collect().await.unwrap().to_bytes();
            assert!(echoed == body, "{expected}: the echo differs ({} bytes)", echoed.len());
        });
    }
}

fn check(target: Target, tag: &str) {
    assert!(have("curl"), "curl is missing: apt-get install curl (scripts/test.sh does)");
    let cert = TestCert::new(tag);
    let [cert_arg, key_arg] = cert.server_args();
    let server = HttpServer::start(target, &[&cert_arg, &key_arg]);
    check_curl(&server, &cert);
    check_rustls_client(&server, &cert);
    assert!(server.stop().success());
}

#[test]
fn https_on_ix_over_kernel_sockets() {
    check(Target::IxKernel, "ix");
}

#[test]
fn https_on_tokio() {
    check(Target::Tokio, "tokio");
}

#[test]
fn a_key_that_does_not_match_is_refused_at_start() {
    let (one, other) = (TestCert::new("one"), TestCert::new("other"));
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_ix-http"))
        .args([format!("--tls-cert={}", one.cert.display()), format!("--tls-key={}", other.key.display())])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("do not make a usable pair"), "{stderr}");
}
