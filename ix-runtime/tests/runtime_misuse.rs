//! Misuse leaks nothing: detached and aborted tasks, streams, listeners,
//! connects and UDP sockets dropped at awkward moments, pool exhaustion and
//! task panics, on the `mem` wire and on kernel sockets over loopback.

use std::cell::{Cell, RefCell};
use std::io::ErrorKind;
use std::pin::pin;
use std::rc::Rc;
use std::time::Duration;

use bytes::Bytes;
use futures::future::{Either, select};
use futures::{AsyncWriteExt, FutureExt};
use ix_net::RxChunk;
use ix_runtime::net::{TcpStream, UdpSocket};
use ix_runtime::time::{Elapsed, sleep, timeout};
use ix_runtime::{JoinError, spawn_local, stats};

#[macro_use]
mod runtime_support;
use runtime_support::pair::{
    Backing, Pair, Report, Signal, WAIT_LIMIT, accept_one, accept_single, assert_clean, assert_settled, brisk_tcp,
    listen, run_alone, scenario_tcp, settle, until,
};
use runtime_support::{echo, echo_once, pattern, pattern_byte, read_to_end};

on_mem_and_kernel!(
    a_dropped_join_handle_detaches_its_task,
    aborting_tasks_mid_recv_and_mid_send,
    dropping_a_stream_with_unread_data,
    dropping_a_stream_with_unsent_data,
    dropping_a_listener_with_queued_connections,
    dropping_a_connect_future_midway,
    dropping_a_udp_socket_with_queued_datagrams,
    running_out_of_buffers,
    a_panicking_task,
);

/// How a receive ended, comparable in assertions.
fn ending(result: std::io::Result<Option<RxChunk>>) -> Result<Option<usize>, ErrorKind> {
    result.map(|chunk| chunk.map(|c| c.len())).map_err(|e| e.kind())
}

/// Whether `bytes` are [`pattern`] bytes from its start.
fn is_pattern(bytes: &[u8], salt: usize) -> bool {
    bytes.iter().enumerate().all(|(i, &b)| b == pattern_byte(i, salt))
}

/// A dropped `JoinHandle` detaches its task: on each side a detached task runs
/// a whole echo exchange to its end and leaves nothing behind.
fn a_dropped_join_handle_detaches_its_task(backing: Backing) {
    let pair = Pair::new(backing);
    let (listening, finished, exchange) = (Signal::default(), Signal::default(), Report::default());
    let outcome = pair.run(
        pair.server(),
        {
            let (listening, finished) = (listening.clone(), finished.clone());
            move || async move {
                let stream = accept_single(backing, &listening).await;
                drop(spawn_local(echo(stream)));
                finished.wait("the client's exchange").await;
                settle().await;
            }
        },
        pair.client(),
        {
            let exchange = exchange.clone();
            move || async move {
                let server = backing.server_addr(listening.wait("the server to listen").await);
                let result = Rc::new(RefCell::new(None));
                let slot = result.clone();
                drop(spawn_local(async move { *slot.borrow_mut() = Some(echo_once(server, 1, 50_000).await) }));
                until(WAIT_LIMIT, || result.borrow().is_some()).await;
                exchange.put(result.take());
                finished.set();
                settle().await;
            }
        },
    );
    assert_eq!(exchange.take("the exchange"), Some(Ok(())), "the detached client task did not finish its exchange");
    for (side, s) in [("server", &outcome.server), ("client", &outcome.client)] {
        assert_clean(side, s);
        assert_eq!(s.executor.spawned, s.executor.completed, "{side}: a detached task never finished");
    }
}

/// Aborting a task parked in `recv` (holding a chunk) or in `send` drops its
/// stream: the peer reads a clean end of stream after whatever the stream had
/// queued, and neither side keeps a frame or a connection.
fn aborting_tasks_mid_recv_and_mid_send(backing: Backing) {
    // A multiple of the pattern's period, so that repeated sends make one pattern.
    const CHUNK: usize = 251 * 256;
    let pair = Pair::new(backing);
    let (listening, reader_port, aborted) = (Signal::default(), Signal::default(), Signal::default());
    let (aborts, ends) = (Report::default(), Report::default());
    let outcome = pair.run(
        pair.server(),
        {
            let (listening, reader_port, aborted, ends) =
                (listening.clone(), reader_port.clone(), aborted.clone(), ends.clone());
            move || async move {
                let listener = listen(backing, &listening);
                let (first, second) = (accept_one(&listener).await, accept_one(&listener).await);
                drop(listener);
                let port = reader_port.wait("the port of the receiving stream").await;
                let (to_reader, from_sender) =
                    if u64::from(first.peer_addr().port()) == port { (first, second) } else { (second, first) };
                to_reader.send(pattern(100, 2)).await.expect("send to the receiving task");
                aborted.wait("the client's aborts").await;
                let reader_end = read_to_end(&to_reader).await.map(|b| b.len()).map_err(|e| e.kind());
                let sent = read_to_end(&from_sender).await.map(|b| (b.len(), is_pattern(&b, 3))).map_err(|e| e.kind());
                ends.put((reader_end, sent));
                drop((to_reader, from_sender));
                settle().await;
            }
        },
        pair.client(),
        {
            let aborts = aborts.clone();
            move || async move {
                let server = backing.server_addr(listening.wait("the server to listen").await);
                let reader = TcpStream::connect(server).await.expect("connect");
                let sender = TcpStream::connect(server).await.expect("connect");
                reader_port.set_value(reader.local_addr().port().into());
                let (got_first, sent) = (Rc::new(Cell::new(false)), Rc::new(Cell::new(0usize)));
                let receiving = spawn_local({
                    let got_first = got_first.clone();
                    async move {
                        let held = reader.recv().await;
                        got_first.set(true);
                        // Parked here, holding the first chunk, until aborted.
                        let more = reader.recv().await;
                        drop((held, more));
                    }
                });
                let sending = spawn_local({
                    let sent = sent.clone();
                    async move {
                        let chunk = pattern(CHUNK, 3);
                        // The only await is `send`: the task is always parked in it.
                        while sender.send(chunk.clone()).await.is_ok() {
                            sent.set(sent.get() + CHUNK);
                        }
                    }
                });
                until(WAIT_LIMIT, || got_first.get() && sent.get() >= CHUNK).await;
                // Let the send queue and the peer's window fill up.
                sleep(Duration::from_millis(20)).await;
                let parked = got_first.get() && !receiving.is_finished() && !sending.is_finished();
                receiving.abort();
                sending.abort();
                aborts.put((parked, receiving.await.err(), sending.await.err()));
                aborted.set();
                settle().await;
            }
        },
    );
    let (parked, receiving, sending) = aborts.take("the aborts");
    assert!(parked, "a task was not parked in recv/send when aborted");
    assert_eq!(receiving, Some(JoinError::Aborted));
    assert_eq!(sending, Some(JoinError::Aborted));
    let (reader_end, sent) = ends.take("what the server read");
    assert_eq!(reader_end, Ok(0), "the aborted receiver's stream did not end with a FIN");
    let (bytes, intact) = sent.expect("the aborted sender's stream did not end with a FIN after its queued data");
    assert!(
        bytes >= CHUNK && intact,
        "the aborted sender's data arrived cut or damaged: {bytes} bytes, intact {intact}"
    );
    outcome.assert_clean();
}

/// A stream dropped with received data unread is reset (as Linux does); a
/// chunk taken from it before stays readable, and its frame returns to the
/// pool when the chunk goes.
fn dropping_a_stream_with_unread_data(backing: Backing) {
    const SENT: usize = 10_000;
    let pair = Pair::new(backing);
    let (listening, sent, dropped) = (Signal::default(), Signal::default(), Signal::default());
    let (server_end, client_view) = (Report::default(), Report::default());
    let outcome = pair.run(
        pair.server(),
        {
            let (listening, sent, dropped, server_end) =
                (listening.clone(), sent.clone(), dropped.clone(), server_end.clone());
            move || async move {
                let stream = accept_single(backing, &listening).await;
                stream.send(pattern(SENT, 4)).await.expect("send");
                sent.set();
                dropped.wait("the client's drop").await;
                server_end.put(timeout(WAIT_LIMIT, stream.recv()).await.map(ending));
                drop(stream);
                settle().await;
            }
        },
        pair.client(),
        {
            let client_view = client_view.clone();
            move || async move {
                let server = backing.server_addr(listening.wait("the server to listen").await);
                let stream = TcpStream::connect(server).await.expect("connect");
                sent.wait("the server's data").await;
                let chunk =
                    timeout(WAIT_LIMIT, stream.recv()).await.expect("data in time").expect("recv").expect("data");
                let unread = match backing {
                    Backing::Mem => until(WAIT_LIMIT, || stream.info().is_ok_and(|i| i.recv_queued > 0)).await,
                    // Not observable; loopback delivered all SENT bytes within the
                    // server's send, and one recv takes at most one frame (3840 bytes).
                    Backing::Kernel => true,
                };
                drop(stream);
                let held_out = {
                    let s = stats();
                    s.pool_capacity - s.pool_free
                };
                let intact = is_pattern(&chunk, 4);
                drop(chunk);
                client_view.put((unread, held_out, intact));
                dropped.set();
                settle().await;
            }
        },
    );
    let (unread, held_out, intact) = client_view.take("the client's view");
    assert!(unread, "no data was left unread when the stream was dropped");
    assert!(held_out >= 1, "the chunk held past its stream's drop did not keep its frame");
    assert!(intact, "the chunk held past its stream's drop changed");
    assert_eq!(
        server_end.take("the server's end"),
        Ok(Err(ErrorKind::ConnectionReset)),
        "dropping a stream with unread data must reset it"
    );
    outcome.assert_clean();
}

/// A stream dropped with data still queued to send closes gracefully: the data
/// and then a FIN reach the peer, every byte intact.
fn dropping_a_stream_with_unsent_data(backing: Backing) {
    // On the wire the server's receive buffer (16 kB) makes most of the data
    // wait in the client's send queue when the stream is dropped. On loopback
    // the buffers are the kernel's; 48 kB fits its first window, so that
    // `send` returns while the server does not read.
    let len = match backing {
        Backing::Mem => 200_000,
        Backing::Kernel => 48_000,
    };
    let pair = Pair::new(backing);
    let (listening, dropped) = (Signal::default(), Signal::default());
    let (received, queued) = (Report::default(), Report::default());
    let small_window = ix_net::TcpConfig { recv_buffer_bytes: 16 * 1024, ..scenario_tcp() };
    let outcome = pair.run(
        pair.server().tcp(small_window),
        {
            let (listening, dropped, received) = (listening.clone(), dropped.clone(), received.clone());
            move || async move {
                let stream = accept_single(backing, &listening).await;
                dropped.wait("the client's drop").await;
                received.put(read_to_end(&stream).await.map(|b| (b.len(), is_pattern(&b, 5))).map_err(|e| e.kind()));
                drop(stream);
                settle().await;
            }
        },
        pair.client(),
        {
            let queued = queued.clone();
            move || async move {
                let server = backing.server_addr(listening.wait("the server to listen").await);
                let stream = TcpStream::connect(server).await.expect("connect");
                stream.send(pattern(len, 5)).await.expect("send");
                queued.put(stream.info().map(|i| i.send_queued).ok());
                drop(stream);
                dropped.set();
                settle().await;
            }
        },
    );
    if backing == Backing::Mem {
        let queued = queued.take("the send queue").expect("a dataplane stream has info");
        assert!(queued > len / 2, "only {queued} of {len} bytes were queued at the drop: the test exercised little");
    }
    assert_eq!(received.take("what the server read"), Ok((len, true)), "bytes lost or damaged after the drop");
    outcome.assert_clean();
}

/// Dropping a listener resets the connections waiting in its accept queue
/// (with the data they received) and frees everything they held.
fn dropping_a_listener_with_queued_connections(backing: Backing) {
    const QUEUED: usize = 4;
    let pair = Pair::new(backing);
    let (listening, connected, gone) = (Signal::default(), Signal::default(), Signal::default());
    let (queued, ends) = (Report::default(), Report::default());
    let outcome = pair.run(
        pair.server(),
        {
            let (listening, connected, gone, queued) =
                (listening.clone(), connected.clone(), gone.clone(), queued.clone());
            move || async move {
                let listener = listen(backing, &listening);
                connected.wait("the client's connections").await;
                // On the wire, wait until every connection is in the accept
                // queue with its data (one frame each); loopback has queued
                // them within the client's calls.
                let ready = backing == Backing::Kernel
                    || until(WAIT_LIMIT, || {
                        let s = stats();
                        s.stack.tcp.passive_opens_established >= QUEUED as u64
                            && s.pool_capacity - s.pool_free >= QUEUED as u32
                    })
                    .await;
                queued.put(ready);
                drop(listener);
                gone.set();
                settle().await;
            }
        },
        pair.client(),
        {
            let ends = ends.clone();
            move || async move {
                let server = backing.server_addr(listening.wait("the server to listen").await);
                let mut streams = Vec::new();
                for i in 0..QUEUED {
                    let stream = TcpStream::connect(server).await.expect("connect");
                    stream.send(pattern(1000, i)).await.expect("send");
                    streams.push(stream);
                }
                connected.set();
                gone.wait("the listener's drop").await;
                let mut seen = Vec::new();
                for stream in &streams {
                    seen.push(timeout(WAIT_LIMIT, stream.recv()).await.map(ending));
                }
                ends.put(seen);
                drop(streams);
                settle().await;
            }
        },
    );
    assert!(queued.take("the accept queue"), "the connections never all waited in the accept queue");
    assert_eq!(ends.take("the client's ends"), vec![Ok(Err(ErrorKind::ConnectionReset)); QUEUED]);
    outcome.assert_clean();
}

/// Dropping `TcpStream::connect` after its SYN left and before the answer came
/// deletes the connection (RFC 9293 §3.10.4, CLOSE in SYN-SENT): the late
/// SYN-ACK is answered with a RST, and neither side keeps a connection.
fn dropping_a_connect_future_midway(backing: Backing) {
    const ATTEMPTS: usize = 4;
    // On the wire every frame takes 5 ms, so the drop 1 ms after the SYN left
    // surely comes before the SYN-ACK.
    let delayed = ix_driver::mem::FaultConfig { delay_micros: 5_000, ..ix_driver::mem::FaultConfig::NONE };
    let pair = Pair::with_faults(backing, delayed);
    let (listening, abandoned, verdict) = (Signal::default(), Signal::default(), Signal::default());
    let (pending, half_open_cleared) = (Report::default(), Report::default());
    let outcome = pair.run(
        pair.server(),
        {
            let (listening, abandoned, verdict, half_open_cleared) =
                (listening.clone(), abandoned.clone(), verdict.clone(), half_open_cleared.clone());
            move || async move {
                let listener = listen(backing, &listening);
                abandoned.wait("the client's abandoned connects").await;
                // On the wire, once every SYN has arrived, the half-open
                // connections must go by the client's RSTs, with the listener
                // still there.
                let cleared = backing == Backing::Kernel
                    || (until(WAIT_LIMIT, || stats().stack.tcp.passive_opens >= ATTEMPTS as u64).await
                        && until(WAIT_LIMIT, || stats().connections == 0).await);
                half_open_cleared.put(cleared);
                verdict.set();
                drop(listener);
                settle().await;
            }
        },
        pair.client(),
        {
            let pending = pending.clone();
            move || async move {
                let server = backing.server_addr(listening.wait("the server to listen").await);
                let mut still_pending = 0;
                for _ in 0..ATTEMPTS {
                    let mut connect = Box::pin(TcpStream::connect(server));
                    still_pending += usize::from(futures::poll!(connect.as_mut()).is_pending());
                    // Rounds pass: the SYN goes out.
                    sleep(Duration::from_millis(1)).await;
                    drop(connect);
                }
                pending.put(still_pending);
                abandoned.set();
                // Still running, so that the late SYN-ACKs meet this stack.
                verdict.wait("the server's check").await;
                settle().await;
            }
        },
    );
    let (still_pending, cleared) =
        (pending.take("the first polls"), half_open_cleared.take("the half-open connections"));
    if backing == Backing::Mem {
        assert_eq!(still_pending, ATTEMPTS, "a connect completed at its first poll: nothing was abandoned");
        let tcp = outcome.client.stack.tcp;
        assert_eq!((tcp.active_opens, tcp.active_opens_established), (ATTEMPTS as u64, 0), "{tcp:#?}");
        assert!(cleared, "the server's half-open connections were not reset: {:#?}", outcome.server);
        assert_eq!(outcome.server.stack.tcp.passive_opens_established, 0);
    }
    outcome.assert_clean();
}

/// The same on the wire towards an address nobody answers ARP for: the
/// connection goes at once, and the SYN held for the unresolved neighbour
/// returns its frame when ARP gives up (three requests, one second apart).
#[test]
fn dropping_a_connect_future_to_a_silent_host_on_mem() {
    let pair = Pair::new(Backing::Mem);
    let gone = Report::default();
    let report = gone.clone();
    let client = run_alone(pair.client().build().expect("runtime"), move || async move {
        let silent = std::net::SocketAddrV4::new(std::net::Ipv4Addr::new(10, 0, 0, 9), 80);
        let mut connect = Box::pin(TcpStream::connect(silent));
        assert!(futures::poll!(connect.as_mut()).is_pending());
        sleep(Duration::from_millis(1)).await;
        drop(connect);
        // Well before a SYN retransmission (1 s) or ARP's verdict.
        report.put(until(Duration::from_millis(500), || stats().connections == 0).await);
        settle().await;
    });
    assert!(gone.take("the connection's end"), "the abandoned connect kept its connection: {client:#?}");
    assert!(client.stack.link.arp_pending_dropped >= 1, "the SYN was never held for ARP: {client:#?}");
    assert_clean("client", &client);
}

/// A UDP socket dropped with datagrams queued frees their frames; a datagram
/// taken before stays readable until it is dropped.
fn dropping_a_udp_socket_with_queued_datagrams(backing: Backing) {
    // Fewer than the frames ARP holds for one unresolved neighbour (16).
    const DATAGRAMS: usize = 12;
    let pair = Pair::new(backing);
    let (listening, sent, held) = (Signal::default(), Signal::default(), Report::default());
    let outcome = pair.run(
        pair.server(),
        {
            let (listening, sent, held) = (listening.clone(), sent.clone(), held.clone());
            move || async move {
                let socket = UdpSocket::bind(backing.listen_port()).expect("bind");
                listening.set_value(socket.local_port().into());
                sent.wait("the client's datagrams").await;
                let (first, _) = timeout(WAIT_LIMIT, socket.recv_from()).await.expect("in time").expect("recv");
                // On the wire, wait until the rest is queued (loopback queued
                // them within the client's calls).
                let queued = backing == Backing::Kernel
                    || until(WAIT_LIMIT, || stats().stack.udp.in_datagrams >= DATAGRAMS as u64).await;
                // Frames freed by the drop alone: nothing else runs between
                // the two readings (frames in flight stay as they are).
                let free_before = stats().pool_free;
                drop(socket);
                let freed = stats().pool_free - free_before;
                let intact = first.len() == 500 && is_pattern(&first[1..], usize::from(first[0]));
                drop(first);
                held.put((queued, freed, intact));
                settle().await;
            }
        },
        pair.client(),
        move || async move {
            let server = backing.server_addr(listening.wait("the server to listen").await);
            let socket = UdpSocket::bind(backing.second_port()).expect("bind");
            for i in 0..DATAGRAMS {
                let mut datagram = vec![i as u8];
                datagram.extend_from_slice(&pattern(499, i));
                socket.send_to(&datagram, server).await.expect("send");
            }
            sent.set();
            drop(socket);
            settle().await;
        },
    );
    let (queued, freed, intact) = held.take("the server's view");
    assert!(queued, "the datagrams never all arrived: {:#?}", outcome.server);
    // On loopback the kernel held the queued datagrams, not the pool.
    let queued_in_pool = if backing == Backing::Mem { DATAGRAMS as u32 - 1 } else { 0 };
    assert_eq!(freed, queued_in_pool, "dropping the socket did not free exactly its queued datagrams");
    assert!(intact, "the datagram held past its socket's drop changed");
    outcome.assert_clean();
}

/// Connections pushing data to a server whose tiny pool the application tries
/// to hold entirely. On the dataplane the stack stops taking received payload
/// once the pool is critical (counted), so the application cannot take the
/// frames the core needs to keep receiving, and copying writes go to the heap
/// instead of waiting; on the `kernel` backend, where reads need a frame,
/// the application holds it all and reads wait (counted). Nothing panics; once
/// the application lets go, every connection completes with every byte checked.
fn running_out_of_buffers(backing: Backing) {
    const CONNECTIONS: usize = 16;
    let pair = Pair::new(backing);
    let frames = match backing {
        Backing::Mem => 256,
        Backing::Kernel => 32,
    };
    // Should frames be dropped while the server's pool is empty (a full
    // inbox), the clients retransmit soon after the release, not after a
    // backed-off RTO.
    let brisk = brisk_tcp(Duration::from_millis(20), Duration::from_millis(100));
    let listening = Signal::default();
    let (at_exhaustion, server_results, client_results) = (Report::default(), Report::default(), Report::default());
    let outcome = pair.run(
        pair.server().pool_frames(frames),
        {
            let (listening, at_exhaustion, server_results) =
                (listening.clone(), at_exhaustion.clone(), server_results.clone());
            move || async move {
                let listener = listen(backing, &listening);
                let held: Rc<RefCell<Vec<RxChunk>>> = Rc::default();
                let (report_now, reporting) = futures::channel::oneshot::channel::<()>();
                let reporting = reporting.shared();
                let mut tasks = Vec::new();
                for _ in 0..CONNECTIONS {
                    let stream = accept_one(&listener).await;
                    tasks.push(spawn_local(absorb(stream, held.clone(), reporting.clone())));
                }
                drop(listener);
                let exhausted = until(WAIT_LIMIT, || match backing {
                    Backing::Mem => stats().stack.tcp.rx_pool_pressure_drops > 0,
                    Backing::Kernel => stats().pool_free == 0,
                })
                .await;
                let at_most_held = stats();
                // Each connection now writes a report (a copying write).
                let _ = report_now.send(());
                // On the dataplane nothing should wait: a short look suffices.
                let look = if backing == Backing::Kernel { WAIT_LIMIT } else { Duration::from_millis(200) };
                let waited = until(look, || stats().buffer_waits > 0).await;
                at_exhaustion.put((exhausted, waited, at_most_held));
                held.borrow_mut().clear();
                let mut results = Vec::new();
                for task in tasks {
                    results.push(checked(timeout(WAIT_LIMIT, task).await));
                }
                server_results.put(results);
                settle().await;
            }
        },
        pair.client().tcp(brisk),
        {
            let client_results = client_results.clone();
            move || async move {
                let server = backing.server_addr(listening.wait("the server to listen").await);
                let tasks: Vec<_> =
                    (0..CONNECTIONS).map(|id| spawn_local(push_and_check(server, id, BYTES_PUSHED))).collect();
                let mut results = Vec::new();
                for task in tasks {
                    results.push(checked(timeout(WAIT_LIMIT * 3, task).await));
                }
                client_results.put(results);
                settle().await;
            }
        },
    );
    let (exhausted, waited, then) = at_exhaustion.take("the exhaustion");
    assert!(exhausted, "the pool never ran short: {then:#?}");
    match backing {
        Backing::Mem => {
            assert!(then.pool_free > 0, "the application took the core's last frames: {then:#?}");
            assert!(!waited, "a copying write waited for a frame instead of using the heap: {then:#?}");
        }
        Backing::Kernel => assert!(waited, "no read waited for a buffer: {then:#?}"),
    }
    assert_eq!(server_results.take("the server's checks"), vec![Ok(()); CONNECTIONS]);
    assert_eq!(client_results.take("the client's checks"), vec![Ok(()); CONNECTIONS]);
    let s = &outcome.server;
    if backing == Backing::Mem {
        assert_eq!(s.stack.tcp.output_stalled + s.stack.link.tx_pool_exhausted, 0, "the stack lacked a frame: {s:#?}");
    }
    assert_clean("server", s);
    assert_clean("client", &outcome.client);
}

/// What a checking task found, whether it finished, failed or ran late.
fn checked(joined: Result<Result<Result<(), String>, JoinError>, Elapsed>) -> Result<(), String> {
    match joined {
        Ok(Ok(found)) => found,
        Ok(Err(e)) => Err(format!("task: {e}")),
        Err(_) => Err("timed out".into()),
    }
}

/// The server side of [`running_out_of_buffers`]: holds every chunk in `held`
/// until `reporting` fires, then writes an 8-byte progress report (a copying
/// write, which needs a frame), reads the rest, checks every byte and answers
/// with the total.
async fn absorb(
    mut stream: TcpStream,
    held: Rc<RefCell<Vec<RxChunk>>>,
    mut reporting: futures::future::Shared<futures::channel::oneshot::Receiver<()>>,
) -> Result<(), String> {
    let mut got = Vec::new();
    let (mut at_end, mut told) = (false, false);
    while !(at_end || told) {
        // `reporting` first: once it fires nothing more is held (the release
        // follows it), however much data is waiting.
        match select(&mut reporting, pin!(stream.recv())).await {
            Either::Left(_) => told = true,
            Either::Right((Ok(Some(chunk)), _)) => {
                got.extend_from_slice(&chunk);
                held.borrow_mut().push(chunk);
            }
            Either::Right((Ok(None), _)) => at_end = true,
            Either::Right((Err(e), _)) => return Err(format!("recv while holding: {e}")),
        }
    }
    if !told {
        let _ = reporting.await;
    }
    stream.write_all(&(got.len() as u64).to_be_bytes()).await.map_err(|e| format!("progress report: {e}"))?;
    got.extend_from_slice(&read_to_end(&stream).await.map_err(|e| format!("recv: {e}"))?);
    let (id, data) = got.split_at(8.min(got.len()));
    let id = u64::from_be_bytes(id.try_into().map_err(|_| "no connection id".to_string())?) as usize;
    if data.len() != BYTES_PUSHED || !is_pattern(data, id) {
        return Err(format!("connection {id}: {} bytes, damaged or cut", data.len()));
    }
    stream.write_all(&(got.len() as u64).to_be_bytes()).await.map_err(|e| format!("total: {e}"))?;
    stream.shutdown().map_err(|e| format!("shutdown: {e}"))
}

/// Bytes each client connection of [`running_out_of_buffers`] pushes.
const BYTES_PUSHED: usize = 64 * 1024;

/// The client side of [`running_out_of_buffers`]: sends its id and `len`
/// patterned bytes, closes its sending side, and checks the server's two
/// reports (progress while held, then the total).
async fn push_and_check(server: std::net::SocketAddrV4, id: usize, len: usize) -> Result<(), String> {
    let stream = TcpStream::connect(server).await.map_err(|e| format!("connect: {e}"))?;
    let mut message = (id as u64).to_be_bytes().to_vec();
    message.extend_from_slice(&pattern(len, id));
    stream.send(Bytes::from(message)).await.map_err(|e| format!("send: {e}"))?;
    stream.shutdown().map_err(|e| format!("shutdown: {e}"))?;
    let reply = timeout(WAIT_LIMIT * 2, read_to_end(&stream))
        .await
        .map_err(|_| format!("connection {id}: no reply in time"))?
        .map_err(|e| format!("recv: {e}"))?;
    if reply.len() != 16 {
        return Err(format!("connection {id}: a reply of {} bytes", reply.len()));
    }
    let total = 8 + len as u64;
    let progress = u64::from_be_bytes(reply[..8].try_into().expect("8 bytes"));
    let reported = u64::from_be_bytes(reply[8..].try_into().expect("8 bytes"));
    if progress <= total && reported == total {
        Ok(())
    } else {
        Err(format!("connection {id}: reports {progress} then {reported} of {total}"))
    }
}

/// A task that panics while holding a stream and a chunk is contained: its
/// `JoinHandle` says it panicked, the core counts it, its connection closes,
/// and the other connections of the core, old and new, keep working.
fn a_panicking_task(backing: Backing) {
    const CONNECTIONS: usize = 4;
    let pair = Pair::new(backing);
    let listening = Signal::default();
    let (handlers, exchanges) = (Report::default(), Report::default());
    let outcome = pair.run(
        pair.server(),
        {
            let (listening, handlers) = (listening.clone(), handlers.clone());
            move || async move {
                let listener = listen(backing, &listening);
                let mut tasks = Vec::new();
                for _ in 0..CONNECTIONS {
                    tasks.push(spawn_local(echo_or_panic(accept_one(&listener).await)));
                }
                drop(listener);
                let mut results = Vec::new();
                for task in tasks {
                    results.push(timeout(WAIT_LIMIT, task).await.map_err(|_| ()));
                }
                handlers.put(results);
                settle().await;
            }
        },
        pair.client(),
        {
            let exchanges = exchanges.clone();
            move || async move {
                let server = backing.server_addr(listening.wait("the server to listen").await);
                let mut seen = Vec::new();
                let mut streams = Vec::new();
                for _ in 0..CONNECTIONS - 1 {
                    let stream = TcpStream::connect(server).await.expect("connect");
                    seen.push(exchange(&stream, b"hello").await);
                    streams.push(stream);
                }
                streams[0].send(Bytes::from_static(b"boom")).await.expect("send");
                let doomed = streams.remove(0);
                seen.push(match timeout(WAIT_LIMIT, read_to_end(&doomed)).await {
                    Ok(Ok(_)) => Ok(0),
                    Ok(Err(e)) if e.kind() == ErrorKind::ConnectionReset => Ok(0),
                    other => Err(format!("the panicked handler's connection did not close: {other:?}")),
                });
                for stream in &streams {
                    seen.push(exchange(stream, b"again").await);
                }
                let late = TcpStream::connect(server).await.expect("connect after the panic");
                seen.push(exchange(&late, b"late").await);
                exchanges.put(seen);
                drop((streams, late, doomed));
                settle().await;
            }
        },
    );
    let results = handlers.take("the handlers' ends");
    let panicked =
        results.iter().filter(|r| matches!(r, Ok(Err(JoinError::Panicked(m))) if m.contains("asked to panic"))).count();
    let finished = results.iter().filter(|r| matches!(r, Ok(Ok(())))).count();
    assert_eq!((panicked, finished), (1, CONNECTIONS - 1), "{results:?}");
    let seen = exchanges.take("the client's exchanges");
    assert!(seen.iter().all(Result::is_ok), "{seen:?}");
    assert_eq!(outcome.server.executor.panics, 1, "the panic was not counted");
    assert_settled("server", &outcome.server);
    assert_clean("client", &outcome.client);
}

/// Echoes, and panics (holding its stream and the chunk) on `boom`.
async fn echo_or_panic(stream: TcpStream) {
    while let Ok(Some(chunk)) = stream.recv().await {
        if chunk.starts_with(b"boom") {
            panic!("the handler was asked to panic (this panic is expected by the test)");
        }
        if stream.send(Bytes::copy_from_slice(&chunk)).await.is_err() {
            return;
        }
    }
}

/// Sends `message` and reads its echo back.
async fn exchange(stream: &TcpStream, message: &'static [u8]) -> Result<usize, String> {
    stream.send(Bytes::from_static(message)).await.map_err(|e| format!("send: {e}"))?;
    let mut got = Vec::new();
    while got.len() < message.len() {
        match timeout(WAIT_LIMIT, stream.recv()).await {
            Ok(Ok(Some(chunk))) => got.extend_from_slice(&chunk),
            other => return Err(format!("echo of {message:?}: {other:?}")),
        }
    }
    if got == message { Ok(got.len()) } else { Err(format!("echo of {message:?} came back as {got:?}")) }
}
