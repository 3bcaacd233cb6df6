//! The runtime on the `kernel` backend over loopback: the same socket API
//! over ordinary kernel sockets, unprivileged. Echo with many connections
//! spread over two cores by `SO_REUSEPORT`, a tokio-util `Framed` line echo,
//! UDP, and the counters a task can read.

use std::net::{Ipv4Addr, SocketAddrV4};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use ix_runtime::net::{TcpListener, TcpStream, UdpSocket};
use ix_runtime::time::timeout;
use ix_runtime::{Backend, CoreStats, ShutdownHandle, spawn_local};

mod runtime_support;
use runtime_support::{echo, echo_clients, framed_line_client, framed_line_echo, kernel_runtime};

const LOOPBACK: Ipv4Addr = Ipv4Addr::LOCALHOST;

/// A port free on loopback now (the kernel picks it; the listener is dropped
/// so that every core can bind it with `SO_REUSEPORT`).
fn free_port() -> u16 {
    std::net::TcpListener::bind((LOOPBACK, 0)).unwrap().local_addr().unwrap().port()
}

/// Runs `serve(listener)` on every core of a kernel runtime on `port` and
/// returns once every core listens. Each core counts its accepted
/// connections in `accepted[core]`.
fn start_server<F, Fut>(
    cores: usize,
    port: u16,
    accepted: Arc<Vec<AtomicUsize>>,
    serve: F,
) -> (std::thread::JoinHandle<Vec<CoreStats>>, ShutdownHandle)
where
    F: Fn(TcpStream) -> Fut + Send + Sync + Copy + 'static,
    Fut: std::future::Future<Output = ()> + 'static,
{
    let rt = kernel_runtime(cores);
    let shutdown = rt.shutdown_handle();
    let listening = Arc::new(AtomicUsize::new(0));
    let bound = listening.clone();
    let thread = std::thread::spawn(move || {
        rt.run(move |core| {
            let (bound, accepted) = (bound.clone(), accepted.clone());
            async move {
                let listener = TcpListener::bind(port).unwrap();
                assert_eq!(listener.port(), port);
                bound.fetch_add(1, Ordering::SeqCst);
                while let Ok((stream, _)) = listener.accept().await {
                    accepted[core].fetch_add(1, Ordering::Relaxed);
                    spawn_local(serve(stream));
                }
            }
        })
        .unwrap()
    });
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while listening.load(Ordering::SeqCst) < cores {
        assert!(std::time::Instant::now() < deadline, "the server cores did not start listening");
        std::thread::sleep(Duration::from_millis(1));
    }
    (thread, shutdown)
}

#[test]
fn a_thousand_concurrent_connections_echo_every_byte_over_kernel_sockets_on_two_cores() {
    const CONNECTIONS: usize = 1000;
    const BYTES: usize = 20_000;
    let port = free_port();
    let accepted = Arc::new((0..2).map(|_| AtomicUsize::new(0)).collect::<Vec<_>>());
    let (server, shutdown) = start_server(2, port, accepted.clone(), echo);
    let done = Arc::new(AtomicUsize::new(0));
    let failures = Arc::new(Mutex::new(Vec::new()));
    let (d, f) = (done.clone(), failures.clone());
    kernel_runtime(2)
        .run(move |core| {
            let (done, failures) = (d.clone(), f.clone());
            async move {
                let server = SocketAddrV4::new(LOOPBACK, port);
                let (n, errors) = echo_clients(server, core, CONNECTIONS / 2, BYTES, Duration::from_secs(60)).await;
                done.fetch_add(n, Ordering::Relaxed);
                failures.lock().unwrap().extend(errors);
            }
        })
        .unwrap();
    shutdown.shutdown();
    let stats = server.join().unwrap();
    let failures = failures.lock().unwrap();
    assert!(failures.is_empty(), "{} failures, first: {:?}", failures.len(), failures.first());
    assert_eq!(done.load(Ordering::Relaxed), CONNECTIONS);
    let per_core: Vec<usize> = accepted.iter().map(|a| a.load(Ordering::Relaxed)).collect();
    assert_eq!(per_core.iter().sum::<usize>(), CONNECTIONS);
    assert!(per_core.iter().all(|&n| n > 0), "SO_REUSEPORT did not spread connections: {per_core:?}");
    for s in &stats {
        assert!(s.reactor.events > 0 && s.executor.polls > 0, "core {} did no work: {s:?}", s.core);
        assert_eq!(s.pool_free, s.pool_capacity, "core {} lost receive frames", s.core);
    }
}

#[test]
fn a_framed_line_echo_works_over_the_kernel_backend() {
    let port = free_port();
    let accepted = Arc::new(vec![AtomicUsize::new(0)]);
    let (server, shutdown) = start_server(1, port, accepted, framed_line_echo);
    let got = Arc::new(Mutex::new(Vec::new()));
    let out = got.clone();
    kernel_runtime(1)
        .run(move |_| {
            let out = out.clone();
            async move {
                *out.lock().unwrap() = framed_line_client(SocketAddrV4::new(LOOPBACK, port), 100).await;
            }
        })
        .unwrap();
    shutdown.shutdown();
    server.join().unwrap();
    let got = got.lock().unwrap();
    let want: Vec<String> = (0..100).map(|i| format!("echo: line {i}")).collect();
    assert_eq!(*got, want);
}

#[test]
fn a_kernel_client_talks_to_a_plain_std_server_and_reads_its_counters() {
    let server = std::net::TcpListener::bind((LOOPBACK, 0)).unwrap();
    let port = server.local_addr().unwrap().port();
    let peer = std::thread::spawn(move || {
        use std::io::{Read, Write};
        let (mut conn, _) = server.accept().unwrap();
        let mut request = [0u8; 5];
        conn.read_exact(&mut request).unwrap();
        assert_eq!(&request, b"hello");
        conn.write_all(b"world").unwrap();
    });
    let seen = Arc::new(Mutex::new(None));
    let out = seen.clone();
    kernel_runtime(1)
        .run(move |_| {
            let out = out.clone();
            async move {
                let stream = TcpStream::connect(SocketAddrV4::new(LOOPBACK, port)).await.unwrap();
                assert_eq!(stream.peer_addr().port(), port);
                stream.send(Bytes::from_static(b"hello")).await.unwrap();
                let mut reply = Vec::new();
                while let Some(chunk) = stream.recv().await.unwrap() {
                    reply.extend_from_slice(&chunk);
                }
                let stats = ix_runtime::stats();
                assert!(stream.info().is_err(), "the kernel's connections have no dataplane snapshot");
                *out.lock().unwrap() = Some((reply, stats));
            }
        })
        .unwrap();
    peer.join().unwrap();
    let (reply, stats) = seen.lock().unwrap().take().unwrap();
    assert_eq!(reply, b"world");
    assert_eq!(stats.connections, 1, "one socket open while the task read its counters");
    assert!(stats.r#loop.rounds > 0, "counters as of the current round: {stats:?}");
    assert!(stats.reactor.registered >= 1);
}

#[test]
fn connecting_to_a_closed_port_is_refused() {
    let port = free_port();
    let result = Arc::new(Mutex::new(None));
    let out = result.clone();
    kernel_runtime(1)
        .run(move |_| {
            let out = out.clone();
            async move {
                let err = TcpStream::connect(SocketAddrV4::new(LOOPBACK, port)).await.unwrap_err();
                *out.lock().unwrap() = Some(err.kind());
            }
        })
        .unwrap();
    assert_eq!(result.lock().unwrap().take(), Some(std::io::ErrorKind::ConnectionRefused));
}

#[test]
fn udp_datagrams_round_trip_on_the_kernel_backend() {
    let peer = std::net::UdpSocket::bind((LOOPBACK, 0)).unwrap();
    let peer_addr = match peer.local_addr().unwrap() {
        std::net::SocketAddr::V4(a) => a,
        other => panic!("IPv4 expected, got {other}"),
    };
    let echo = std::thread::spawn(move || {
        peer.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let mut buf = [0u8; 2048];
        for _ in 0..10 {
            let (n, from) = peer.recv_from(&mut buf).unwrap();
            peer.send_to(&buf[..n], from).unwrap();
        }
    });
    let got = Arc::new(Mutex::new(Vec::new()));
    let out = got.clone();
    kernel_runtime(1)
        .run(move |_| {
            let out = out.clone();
            async move {
                let socket = UdpSocket::bind(0).unwrap();
                assert_ne!(socket.local_port(), 0);
                for i in 0..10u8 {
                    let datagram = vec![i; 100 + usize::from(i)];
                    socket.send_to(&datagram, peer_addr).await.unwrap();
                    let (reply, from) = timeout(Duration::from_secs(10), socket.recv_from()).await.unwrap().unwrap();
                    assert_eq!(from, peer_addr);
                    out.lock().unwrap().push(reply.to_vec() == datagram);
                }
            }
        })
        .unwrap();
    echo.join().unwrap();
    assert_eq!(*got.lock().unwrap(), vec![true; 10]);
}

#[test]
fn backends_parse_from_their_spelling() {
    assert!(matches!("kernel".parse::<Backend>(), Ok(Backend::Kernel)));
    assert!(matches!("tap:ix0".parse::<Backend>(), Ok(Backend::Tap { name }) if name == "ix0"));
    let Ok(Backend::Nic(nic)) = "igb:00:05.0,queues=2".parse::<Backend>() else {
        panic!("igb: parses to Backend::Nic")
    };
    assert_eq!((nic.family, nic.address.as_str(), nic.queues), (ix_driver::NicFamily::Igb, "0000:00:05.0", Some(2)));
    assert!(
        matches!("ixgbe:0000:03:00.1".parse::<Backend>(), Ok(Backend::Nic(n)) if n.family == ix_driver::NicFamily::Ixgbe)
    );
    for bad in ["", "tap:", "tap:a-name-far-too-long", "kernel:x", "xdpx", "mem", "igb:", "igb:00:05.0,queues=x"] {
        let err = bad.parse::<Backend>().unwrap_err();
        assert!(err.to_string().contains(bad), "`{bad}` error does not name it: {err}");
    }
}
