//! Pool pressure on the `mem` wire: thousands of connections holding unread
//! data cannot starve the core. New connections and active ones keep working
//! while they hold, and every held byte arrives once the application reads.

use std::net::SocketAddrV4;
use std::time::Duration;

use bytes::Bytes;
use futures::FutureExt;
use ix_runtime::net::{TcpListener, TcpStream};
use ix_runtime::time::timeout;
use ix_runtime::{spawn_local, stats};

#[macro_use]
mod runtime_support;
use runtime_support::pair::{
    Backing, Pair, Report, Signal, WAIT_LIMIT, assert_clean, brisk_tcp, listen, settle, until,
};
use runtime_support::{echo, echo_once, pattern, read_to_end};

/// Connections that send and are not read until the end (the 10k).
const HOLDERS: usize = 10_000;
/// Bytes each holder sends (after its 8-byte id): small, so each chunk would
/// pin a 4 KiB frame of its own; 10k of them need more frames than the pool has.
const HELD_BYTES: usize = 500;
/// Frames in each side's pool: the runtime's default.
const POOL_FRAMES: u32 = ix_driver::pool::DEFAULT_POOL_FRAMES;
/// Connections opened before the holders that exchange data while they hold.
const ACTIVE: usize = 4;
/// Connections opened while the holders hold.
const NEW: usize = 16;
/// Bytes of each echo exchange.
const ECHO_BYTES: usize = 16 * 1024;
/// Bound of each phase with ten thousand connections (opening them, releasing them).
const PHASE_LIMIT: Duration = Duration::from_secs(60);

#[test]
fn connections_holding_unread_data_cannot_starve_the_core() {
    let pair = Pair::new(Backing::Mem);
    // Payload dropped under pressure (and frames a full inbox of the wire
    // drops) are resent on the retransmission timer: keep it short on both
    // sides, so that the test does not wait on backed-off timers.
    let brisk = brisk_tcp_default();
    let (listening, holding, release) = (Signal::default(), Signal::default(), Signal::default());
    let (server_checks, under_pressure) = (Report::default(), Report::default());
    let (client_checks, exchanges) = (Report::default(), Report::default());
    let outcome = pair.run(
        pair.server().pool_frames(POOL_FRAMES).tcp(brisk.clone()),
        {
            let (listening, holding, release) = (listening.clone(), holding.clone(), release.clone());
            let (server_checks, under_pressure) = (server_checks.clone(), under_pressure.clone());
            move || async move {
                let holders = listen(Backing::Mem, &listening);
                let echoes = TcpListener::bind(Backing::Mem.second_port()).expect("second port");
                let echo_loop = spawn_local(async move {
                    while let Ok((stream, _)) = echoes.accept().await {
                        spawn_local(echo(stream));
                    }
                });
                let (release_holders, released) = futures::channel::oneshot::channel::<()>();
                let released = released.shared();
                let mut tasks = Vec::with_capacity(HOLDERS);
                while tasks.len() < HOLDERS {
                    let Ok(accepted) = timeout(WAIT_LIMIT, holders.accept()).await else { break };
                    let (stream, _) = accepted.expect("accept");
                    tasks.push(spawn_local(hold_then_check(stream, released.clone())));
                }
                drop(holders);
                let packed = until(WAIT_LIMIT, || stats().stack.tcp.rx_packed_chunks > 0).await;
                under_pressure.put((packed, tasks.len(), stats()));
                holding.set();
                until(PHASE_LIMIT, || release.get().is_some()).await;
                let _ = release_holders.send(());
                let results = outcomes(tasks).await;
                server_checks.put(results);
                echo_loop.abort();
                settle().await;
            }
        },
        pair.client().pool_frames(POOL_FRAMES).tcp(brisk),
        {
            let (client_checks, exchanges) = (client_checks.clone(), exchanges.clone());
            move || async move {
                let server = Backing::Mem.server_addr(listening.wait("the server to listen").await);
                let echo_server = SocketAddrV4::new(*server.ip(), Backing::Mem.second_port());
                let mut active = Vec::new();
                for _ in 0..ACTIVE {
                    active.push(TcpStream::connect(echo_server).await.expect("an active connection"));
                }
                let holders: Vec<_> = (0..HOLDERS).map(|id| spawn_local(send_and_check(server, id))).collect();
                until(PHASE_LIMIT, || holding.get().is_some()).await;
                let mut seen = Vec::new();
                for (salt, stream) in active.iter().enumerate() {
                    seen.push(
                        timeout(WAIT_LIMIT, exchange(stream, salt)).await.unwrap_or_else(|_| Err("timed out".into())),
                    );
                }
                for salt in 0..NEW {
                    let fresh = echo_once(echo_server, ACTIVE + salt, ECHO_BYTES);
                    seen.push(timeout(WAIT_LIMIT, fresh).await.unwrap_or_else(|_| Err("timed out".into())));
                }
                exchanges.put(seen);
                release.set();
                let results = outcomes(holders).await;
                client_checks.put(results);
                drop(active);
                settle().await;
            }
        },
    );
    let (packed, accepted, then) = under_pressure.take("the pressure");
    let client_results = client_checks.take("the client's checks");
    assert_eq!(
        accepted,
        HOLDERS,
        "holders not accepted; the first failures: {:?}; server: {:#?}",
        failed(client_results.clone()),
        then.stack.tcp
    );
    assert!(packed, "the pool never came under pressure: {then:#?}");
    let exchanges = exchanges.take("the exchanges while holding");
    assert!(exchanges.iter().all(Result::is_ok), "active or new connections failed while others held: {exchanges:?}");
    assert_eq!(failed(server_checks.take("the server's checks")), Vec::<String>::new());
    assert_eq!(failed(client_results), Vec::<String>::new());
    let s = &outcome.server;
    assert_eq!(s.queue.pool_exhausted, 0, "the server's pool ran dry: receiving stopped: {s:#?}");
    assert_clean("server", s);
    assert_clean("client", &outcome.client);
}

/// The first few failures.
fn failed(results: Vec<Result<(), String>>) -> Vec<String> {
    results.into_iter().filter_map(Result::err).take(5).collect()
}

/// What each checking task found, in order ([`PHASE_LIMIT`] for all of them).
async fn outcomes(tasks: Vec<ix_runtime::JoinHandle<Result<(), String>>>) -> Vec<Result<(), String>> {
    let deadline = std::time::Instant::now() + PHASE_LIMIT;
    let mut results = Vec::with_capacity(tasks.len());
    for task in tasks {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        results.push(match timeout(left, task).await {
            Ok(Ok(found)) => found,
            Ok(Err(e)) => Err(format!("task: {e}")),
            Err(_) => Err("timed out".into()),
        });
    }
    results
}

/// Fires when the holders may read.
type Released = futures::future::Shared<futures::channel::oneshot::Receiver<()>>;

/// Holds the connection unread until `release`, then reads it to the end,
/// checks the id and the pattern, and answers with the byte count.
async fn hold_then_check(stream: TcpStream, release: Released) -> Result<(), String> {
    let _ = release.await;
    let got = read_to_end(&stream).await.map_err(|e| format!("recv: {e}"))?;
    let (id, data) = got.split_at(8.min(got.len()));
    let id = u64::from_be_bytes(id.try_into().map_err(|_| "no connection id".to_string())?) as usize;
    if data != &pattern(HELD_BYTES, id)[..] {
        return Err(format!("holder {id}: {} bytes, damaged or cut", data.len()));
    }
    stream.send(Bytes::copy_from_slice(&(got.len() as u64).to_be_bytes())).await.map_err(|e| format!("send: {e}"))?;
    stream.shutdown().map_err(|e| format!("shutdown: {e}"))
}

/// A holder's client: sends its id and [`HELD_BYTES`] patterned bytes, closes
/// its sending side, and checks the count the server answers once released.
async fn send_and_check(server: SocketAddrV4, id: usize) -> Result<(), String> {
    let stream = TcpStream::connect(server).await.map_err(|e| format!("holder {id}: connect: {e}"))?;
    let mut message = (id as u64).to_be_bytes().to_vec();
    message.extend_from_slice(&pattern(HELD_BYTES, id));
    stream.send(Bytes::from(message)).await.map_err(|e| format!("holder {id}: send: {e}"))?;
    stream.shutdown().map_err(|e| format!("holder {id}: shutdown: {e}"))?;
    let reply = read_to_end(&stream).await.map_err(|e| format!("holder {id}: recv: {e}"))?;
    match <[u8; 8]>::try_from(&reply[..]) {
        Ok(count) if u64::from_be_bytes(count) == 8 + HELD_BYTES as u64 => Ok(()),
        _ => Err(format!("holder {id}: answered {reply:?}")),
    }
}

/// Sends [`ECHO_BYTES`] patterned bytes on an open echo connection and checks
/// they come back.
async fn exchange(stream: &TcpStream, salt: usize) -> Result<(), String> {
    let data = pattern(ECHO_BYTES, salt);
    stream.send(data.clone()).await.map_err(|e| format!("send: {e}"))?;
    let mut got = Vec::with_capacity(ECHO_BYTES);
    while got.len() < ECHO_BYTES {
        match stream.recv().await {
            Ok(Some(chunk)) => got.extend_from_slice(&chunk),
            other => return Err(format!("active {salt}: {other:?} after {} bytes", got.len())),
        }
    }
    if got == data[..] { Ok(()) } else { Err(format!("active {salt}: the echo differs")) }
}

/// Connections the server closes before their client's request arrives.
const CLOSED_EARLY: usize = 3_000;
/// The server's pool in that test: fewer frames than connections, as the
/// default pool of 8,192 was against the 15-20k connections that collapsed it.
const SMALL_POOL_FRAMES: u32 = 1_024;
/// How long a client waits after connecting before it sends: the server has
/// closed by then.
const SEND_AFTER_CLOSE: Duration = Duration::from_millis(50);

/// The collapse of issue #20 at ~15-20k connections, scaled down: the server
/// closes connections (as `ix-http` does at its header timeout) while their
/// clients still send requests. Data that arrives after close must not pin
/// frames (it pinned them through TIME-WAIT, a minute, until the pool ran dry
/// and the core stopped receiving): new connections keep being served and the
/// pool never runs out.
#[test]
fn requests_sent_after_the_server_closed_cannot_pin_the_pool() {
    let pair = Pair::new(Backing::Mem);
    // The server keeps the default TIME-WAIT (60 s), where the frames were pinned.
    let server_tcp = ix_net::TcpConfig { time_wait: ix_net::TcpConfig::default().time_wait, ..brisk_tcp_default() };
    let (listening, finished) = (Signal::default(), Signal::default());
    let (accepted_report, fresh_report, client_report) = (Report::default(), Report::default(), Report::default());
    let outcome = pair.run(
        pair.server().pool_frames(SMALL_POOL_FRAMES).tcp(server_tcp),
        {
            let (listening, finished, accepted_report) = (listening.clone(), finished.clone(), accepted_report.clone());
            move || async move {
                let closing = listen(Backing::Mem, &listening);
                let echoes = TcpListener::bind(Backing::Mem.second_port()).expect("second port");
                let echo_loop = spawn_local(async move {
                    while let Ok((stream, _)) = echoes.accept().await {
                        spawn_local(echo(stream));
                    }
                });
                let mut accepted = 0;
                while accepted < CLOSED_EARLY {
                    let Ok(Ok((stream, _))) = timeout(WAIT_LIMIT, closing.accept()).await else { break };
                    accepted += 1;
                    drop(stream);
                }
                accepted_report.put(accepted);
                until(PHASE_LIMIT, || finished.get().is_some()).await;
                echo_loop.abort();
                settle().await;
            }
        },
        pair.client().tcp(brisk_tcp_default()),
        {
            let (fresh_report, client_report) = (fresh_report.clone(), client_report.clone());
            move || async move {
                let server = Backing::Mem.server_addr(listening.wait("the server to listen").await);
                let echo_server = SocketAddrV4::new(*server.ip(), Backing::Mem.second_port());
                let senders: Vec<_> = (0..CLOSED_EARLY).map(|id| spawn_local(send_after_close(server, id))).collect();
                client_report.put(outcomes(senders).await);
                let mut fresh = Vec::new();
                for salt in 0..NEW {
                    let exchange = echo_once(echo_server, salt, ECHO_BYTES);
                    fresh.push(timeout(WAIT_LIMIT, exchange).await.unwrap_or_else(|_| Err("timed out".into())));
                }
                fresh_report.put(fresh);
                finished.set();
                settle().await;
            }
        },
    );
    assert_eq!(accepted_report.take("the accepted count"), CLOSED_EARLY);
    assert_eq!(failed(client_report.take("the senders")), Vec::<String>::new());
    let fresh = fresh_report.take("the new connections");
    assert!(fresh.iter().all(Result::is_ok), "new connections failed after the early closes: {fresh:?}");
    let s = &outcome.server;
    assert_eq!(s.queue.pool_exhausted, 0, "the server's pool ran dry: receiving stopped: {s:#?}");
    assert!(s.stack.tcp.abort_on_data > 0, "no request arrived after close: the test did not test: {s:#?}");
}

/// [`brisk_tcp`] with the timeouts of the pool-pressure tests.
fn brisk_tcp_default() -> ix_net::TcpConfig {
    brisk_tcp(Duration::from_millis(50), Duration::from_millis(500))
}

/// Connects, waits until the server has closed, sends a request, and expects
/// the connection to end (reset or closed), not to hang.
async fn send_after_close(server: SocketAddrV4, id: usize) -> Result<(), String> {
    let stream = TcpStream::connect(server).await.map_err(|e| format!("client {id}: connect: {e}"))?;
    ix_runtime::time::sleep(SEND_AFTER_CLOSE).await;
    // The send may already fail: the server's FIN or reset came first.
    let _ = stream.send(pattern(HELD_BYTES, id)).await;
    match timeout(WAIT_LIMIT, read_to_end(&stream)).await {
        Ok(_) => Ok(()),
        Err(_) => Err(format!("client {id}: the connection neither closed nor reset")),
    }
}
