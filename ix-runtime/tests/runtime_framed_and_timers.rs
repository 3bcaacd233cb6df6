//! tokio-util codecs over IX streams (through the `tokio-io` adapters), and
//! the core's timers: sleeps fire in deadline order, timeouts and intervals.

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use ix_runtime::time::{interval, sleep, timeout};
use ix_runtime::{Runtime, spawn_local};

mod runtime_support;
use runtime_support::pair::{Backing, Pair, Report, Signal, accept_single};
use runtime_support::{framed_line_client, framed_line_echo};

/// A one-core runtime on a `mem` wire of its own, for what needs no peer.
fn single_core() -> Runtime {
    Pair::new(Backing::Mem).server().build().unwrap()
}

#[test]
fn a_framed_line_echo_works_over_an_ix_stream() {
    let pair = Pair::new(Backing::Mem);
    let (listening, lines) = (Signal::default(), Report::default());
    let (announced, out) = (listening.clone(), lines.clone());
    pair.run(
        pair.server(),
        move || async move { framed_line_echo(accept_single(Backing::Mem, &listening).await).await },
        pair.client(),
        move || async move {
            let port = announced.wait("the server to listen").await;
            out.put(framed_line_client(Backing::Mem.server_addr(port), 100).await);
        },
    );
    let got = lines.take("the echoed lines");
    assert_eq!(got.len(), 100);
    for (i, line) in got.iter().enumerate() {
        assert_eq!(line, &format!("echo: line {i}"));
    }
}

#[test]
fn sleeps_fire_in_deadline_order_and_timeouts_and_intervals_work() {
    let order = Arc::new(std::sync::Mutex::new(Vec::new()));
    let out = order.clone();
    single_core()
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

    let pair = Pair::new(Backing::Mem);
    let (listening, reads) = (Signal::default(), Report::default());
    let (announced, out) = (listening.clone(), reads.clone());
    let serve = move || async move {
        let stream = accept_single(Backing::Mem, &listening).await;
        stream.send(bytes::Bytes::from_static(b"hello")).await.unwrap();
        stream.shutdown().unwrap();
        while stream.recv().await.is_ok_and(|chunk| chunk.is_some()) {}
    };
    let talk = move || async move {
        let server = Backing::Mem.server_addr(announced.wait("the server to listen").await);
        let mut stream = ix_runtime::net::TcpStream::connect(server).await.unwrap();
        let mut memory = vec![MaybeUninit::<u8>::uninit(); 64 * 1024];
        let mut seen = Vec::new();
        loop {
            let mut buf = ReadBuf::uninit(&mut memory);
            std::future::poll_fn(|cx| std::pin::Pin::new(&mut stream).poll_read(cx, &mut buf)).await.unwrap();
            if buf.filled().is_empty() {
                break;
            }
            seen.push((buf.filled().to_vec(), buf.initialized().len()));
        }
        out.put(seen);
    };
    pair.run(pair.server(), serve, pair.client(), talk);
    let seen = reads.take("the reads");
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

    single_core()
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
