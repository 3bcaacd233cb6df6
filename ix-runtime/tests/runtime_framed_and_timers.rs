//! tokio-util codecs over IX streams (through the `tokio-io` adapters), and
//! the core's timers: sleeps fire in deadline order, timeouts and intervals.

use std::cell::RefCell;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use ix_driver::mem::{MemWire, MemWireConfig};
use ix_runtime::net::TcpListener;
use ix_runtime::time::{interval, sleep, timeout};
use ix_runtime::{Backend, Runtime, spawn_local};

mod runtime_support;
use runtime_support::{framed_line_client, framed_line_echo};

fn single_core(wire: &Arc<MemWire>, port: u16, addr: Ipv4Addr) -> Runtime {
    Runtime::builder()
        .backend(Backend::Mem { wire: wire.clone(), port })
        .ipv4(addr, 24)
        .pool_frames(4096)
        .handle_signals(false)
        .build()
        .unwrap()
}

#[test]
fn a_framed_line_echo_works_over_an_ix_stream() {
    let wire = MemWire::new(MemWireConfig::default()).unwrap();
    let server_rt = single_core(&wire, 0, Ipv4Addr::new(10, 0, 0, 1));
    let shutdown = server_rt.shutdown_handle();
    let (bound_tx, bound_rx) = std::sync::mpsc::channel();
    let server = std::thread::spawn(move || {
        server_rt
            .run(move |_| {
                let bound_tx = bound_tx.clone();
                async move {
                    let listener = TcpListener::bind(4000).unwrap();
                    bound_tx.send(()).unwrap();
                    while let Ok((stream, _)) = listener.accept().await {
                        spawn_local(framed_line_echo(stream));
                    }
                }
            })
            .unwrap()
    });
    bound_rx.recv_timeout(Duration::from_secs(10)).expect("the server did not start listening");
    let got = Arc::new(std::sync::Mutex::new(Vec::new()));
    let out = got.clone();
    single_core(&wire, 1, Ipv4Addr::new(10, 0, 0, 2))
        .run(move |_| {
            let out = out.clone();
            async move {
                let server = SocketAddrV4::new(Ipv4Addr::new(10, 0, 0, 1), 4000);
                *out.lock().unwrap() = framed_line_client(server, 100).await;
            }
        })
        .unwrap();
    shutdown.shutdown();
    server.join().unwrap();
    let got = got.lock().unwrap();
    assert_eq!(got.len(), 100);
    for (i, line) in got.iter().enumerate() {
        assert_eq!(line, &format!("echo: line {i}"));
    }
}

#[test]
fn sleeps_fire_in_deadline_order_and_timeouts_and_intervals_work() {
    let wire = MemWire::new(MemWireConfig::default()).unwrap();
    let order = Arc::new(std::sync::Mutex::new(Vec::new()));
    let out = order.clone();
    single_core(&wire, 0, Ipv4Addr::new(10, 0, 0, 1))
        .run(move |_| {
            let out = out.clone();
            async move {
                let fired = Rc::new(RefCell::new(Vec::new()));
                // Spawned in scrambled order; deadlines 1..=20 ms apart by 1 ms,
                // several per 16 µs wheel tick boundary would be too close to
                // observe on a loaded machine, so the spacing is 1 ms.
                let tasks: Vec<_> = [7u64, 3, 19, 1, 12, 5, 20, 2, 15, 9, 4, 18, 6, 11, 8, 17, 10, 14, 13, 16]
                    .into_iter()
                    .map(|ms| {
                        let fired = fired.clone();
                        spawn_local(async move {
                            sleep(Duration::from_millis(ms)).await;
                            fired.borrow_mut().push(ms);
                        })
                    })
                    .collect();
                for t in tasks {
                    t.await.unwrap();
                }
                let never = std::future::pending::<()>();
                let timed_out = timeout(Duration::from_millis(5), never).await.is_err();
                let mut ticker = interval(Duration::from_millis(2));
                let first = ticker.tick().await;
                let second = ticker.tick().await;
                out.lock().unwrap().push((fired.borrow().clone(), timed_out, second.saturating_duration_since(first)));
            }
        })
        .unwrap();
    let (fired, timed_out, gap) = order.lock().unwrap()[0].clone();
    assert_eq!(fired, (1..=20).collect::<Vec<u64>>(), "sleeps fired out of deadline order");
    assert!(timed_out, "a pending future was not cut off by its timeout");
    assert!(gap >= Duration::from_millis(2), "interval ticks {gap:?} apart");
}

/// tokio-util's codecs read into the uninitialised spare capacity of a
/// `BytesMut` (8 KiB and more) on every read: the dataplane must copy the bytes
/// it has into it, not zero all of it first (which cost the KV server as many
/// instructions per request as everything else, see `docs/runtime-benchmarks.md`).
#[test]
fn a_tokio_read_initialises_only_the_bytes_it_copies() {
    use std::mem::MaybeUninit;
    use tokio::io::{AsyncRead, ReadBuf};

    let wire = MemWire::new(MemWireConfig::default()).unwrap();
    let server_rt = single_core(&wire, 0, Ipv4Addr::new(10, 0, 0, 1));
    let (bound_tx, bound_rx) = std::sync::mpsc::channel();
    let server = std::thread::spawn(move || {
        server_rt
            .run(move |_| {
                let bound_tx = bound_tx.clone();
                async move {
                    let listener = TcpListener::bind(4000).unwrap();
                    bound_tx.send(()).unwrap();
                    let (stream, _) = listener.accept().await.unwrap();
                    stream.send(bytes::Bytes::from_static(b"hello")).await.unwrap();
                    stream.shutdown().unwrap();
                    while stream.recv().await.is_ok_and(|chunk| chunk.is_some()) {}
                }
            })
            .unwrap()
    });
    bound_rx.recv_timeout(Duration::from_secs(10)).expect("the server did not start listening");
    let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
    let out = seen.clone();
    single_core(&wire, 1, Ipv4Addr::new(10, 0, 0, 2))
        .run(move |_| {
            let out = out.clone();
            async move {
                let server = SocketAddrV4::new(Ipv4Addr::new(10, 0, 0, 1), 4000);
                let mut stream = ix_runtime::net::TcpStream::connect(server).await.unwrap();
                let mut memory = vec![MaybeUninit::<u8>::uninit(); 64 * 1024];
                loop {
                    let mut buf = ReadBuf::uninit(&mut memory);
                    std::future::poll_fn(|cx| std::pin::Pin::new(&mut stream).poll_read(cx, &mut buf)).await.unwrap();
                    if buf.filled().is_empty() {
                        break;
                    }
                    out.lock().unwrap().push((buf.filled().to_vec(), buf.initialized().len()));
                }
            }
        })
        .unwrap();
    server.join().unwrap();
    let seen = seen.lock().unwrap();
    let bytes: Vec<u8> = seen.iter().flat_map(|(filled, _)| filled.clone()).collect();
    assert_eq!(bytes, b"hello");
    for (filled, initialised) in seen.iter() {
        assert_eq!(*initialised, filled.len(), "a read initialised more than it filled");
    }
}

/// The round's clock is read once per round: constant while a task runs,
/// never ahead of the true time, and fresh in the next round.
#[test]
fn the_round_clock_holds_still_within_a_round_and_moves_between_rounds() {
    use ix_runtime::time::round_instant;

    let wire = MemWire::new(MemWireConfig::default()).unwrap();
    single_core(&wire, 0, Ipv4Addr::new(10, 0, 0, 1))
        .run(|_| async {
            let first = round_instant();
            // Blocks the core: the round lasts at least this long.
            std::thread::sleep(Duration::from_millis(3));
            assert_eq!(round_instant(), first, "the clock moved within a round");
            assert!(first <= std::time::Instant::now());
            sleep(Duration::from_millis(1)).await;
            let later = round_instant();
            assert!(later >= first + Duration::from_millis(4), "a later round saw {:?}", later - first);
            assert!(later <= std::time::Instant::now());
        })
        .unwrap();
}
