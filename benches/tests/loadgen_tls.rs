//! HTTPS load (`TlsNet`): against a loopback TLS server whose self-signed
//! certificate the generator trusts, requests complete with no error; a
//! generator that trusts another certificate connects to nothing.

use std::io::{BufRead, BufReader, Write};
use std::net::{Ipv4Addr, SocketAddrV4, TcpListener, TcpStream};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use ix_benches::loadgen::{self, ConnectionUse, KernelNet, LoadConfig, Mode, TlsNet, Workload};

const HELLO: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Length: 13\r\n\r\nHello, world!";

/// A self-signed certificate for 127.0.0.1, its PEM in a file of its own.
struct Pem {
    dir: PathBuf,
    cert: PathBuf,
    certified: rcgen::CertifiedKey,
}

impl Pem {
    fn new(tag: &str) -> Pem {
        let dir = std::env::temp_dir().join(format!("ixload-tls-{tag}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let certified = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_owned()]).unwrap();
        let cert = dir.join("cert.pem");
        std::fs::write(&cert, certified.cert.pem()).unwrap();
        Pem { dir, cert, certified }
    }
}

impl Drop for Pem {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A blocking rustls server on loopback, one thread per connection, answering
/// every HTTP/1.1 request head with [`HELLO`]; it lives as long as the test.
fn start_tls_server(pem: &Pem) -> SocketAddrV4 {
    let key = rustls::pki_types::PrivateKeyDer::Pkcs8(pem.certified.key_pair.serialize_der().into());
    let config = rustls::ServerConfig::builder()
        .with_no_client_auth()
        .with_single_cert(vec![pem.certified.cert.der().clone()], key)
        .unwrap();
    let config = Arc::new(config);
    let listener = TcpListener::bind(SocketAddrV4::new(Ipv4Addr::LOCALHOST, 0)).unwrap();
    let addr = match listener.local_addr().unwrap() {
        std::net::SocketAddr::V4(a) => a,
        other => panic!("not IPv4: {other}"),
    };
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let config = config.clone();
            std::thread::spawn(move || serve(stream, config));
        }
    });
    addr
}

fn serve(stream: TcpStream, config: Arc<rustls::ServerConfig>) {
    let Ok(session) = rustls::ServerConnection::new(config) else { return };
    let mut tls = BufReader::new(rustls::StreamOwned::new(session, stream));
    let mut line = String::new();
    loop {
        line.clear();
        match tls.read_line(&mut line) {
            Ok(0) | Err(_) => return,
            Ok(_) if line == "\r\n" => {
                if tls.get_mut().write_all(HELLO).is_err() {
                    return;
                }
            }
            Ok(_) => {}
        }
    }
}

fn https(target: SocketAddrV4) -> LoadConfig {
    LoadConfig {
        target,
        connections: 4,
        mode: Mode::Closed,
        workload: Workload::Http { host: target.to_string(), path: "/".into() },
        warmup: Duration::from_millis(200),
        duration: Duration::from_millis(800),
        drain: Duration::from_millis(500),
        connect_timeout: Duration::from_secs(2),
        connect_rate: None,
        seed: 7,
        timeline: false,
        connection_use: ConnectionUse::KeepAlive,
    }
}

#[test]
fn requests_over_tls_complete_and_a_wrong_trust_anchor_connects_to_nothing() {
    let served = Pem::new("served");
    let target = start_tls_server(&served);
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();

    let net = TlsNet::new(KernelNet::default(), &served.cert, "127.0.0.1").unwrap();
    let report = rt.block_on(loadgen::run(&net, &https(target))).expect("the run starts");
    eprintln!("{}", report.summary());
    assert_eq!(report.errors.total(), 0, "{:?}", report.errors);
    assert!(report.completed > 100, "completed {}", report.completed);

    let other = Pem::new("other");
    let net = TlsNet::new(KernelNet::default(), &other.cert, "127.0.0.1").unwrap();
    let err = rt.block_on(loadgen::run(&net, &https(target))).unwrap_err();
    assert!(err.to_string().contains("could not connect"), "{err}");

    let empty = other.dir.join("empty.pem");
    std::fs::write(&empty, "").unwrap();
    let refused = TlsNet::new(KernelNet::default(), &empty, "127.0.0.1").unwrap_err();
    assert!(refused.to_string().contains("no certificate"), "{refused}");
}
