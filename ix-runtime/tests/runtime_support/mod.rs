//! Shared by the runtime's end-to-end tests: an echo service, a checked echo
//! client, a `Framed` line client, and (`pair`) two runtimes that talk.

#![allow(dead_code)]

pub mod pair;

/// Makes a scenario `fn(Backing)` two tests: `SCENARIO::on_mem` and
/// `SCENARIO::on_kernel`.
#[allow(unused_macros)]
macro_rules! on_mem_and_kernel {
    ($($scenario:ident),* $(,)?) => {$(
        mod $scenario {
            #[test]
            fn on_mem() {
                super::$scenario(super::Backing::Mem)
            }

            #[test]
            fn on_kernel() {
                super::$scenario(super::Backing::Kernel)
            }
        }
    )*};
}

use std::net::SocketAddrV4;
use std::time::Duration;

use bytes::Bytes;
use futures::{SinkExt, StreamExt};
use ix_runtime::net::TcpStream;
use ix_runtime::time::timeout;
use ix_runtime::{Backend, Runtime};
use tokio_util::codec::{Framed, LinesCodec};

/// A runtime of `cores` cores on the `kernel` backend over loopback, unpinned,
/// leaving signals alone (tests run side by side).
pub fn kernel_runtime(cores: usize) -> Runtime {
    Runtime::builder()
        .cores(cores)
        .backend(Backend::Kernel)
        .ipv4(std::net::Ipv4Addr::LOCALHOST, 8)
        .pool_frames(8 * 1024)
        .pin_threads(false)
        .handle_signals(false)
        .build()
        .unwrap()
}

/// Deterministic bytes that differ per connection (`salt`).
pub fn pattern(len: usize, salt: usize) -> Bytes {
    (0..len).map(|i| pattern_byte(i, salt)).collect::<Vec<_>>().into()
}

/// Byte `i` of [`pattern`]; the pattern repeats every 251 bytes, so a
/// [`pattern`] whose length is a multiple of 251 sent again and again makes
/// one long pattern.
pub fn pattern_byte(i: usize, salt: usize) -> u8 {
    ((i * 31 + salt * 7) % 251) as u8
}

/// Echoes what it receives until the peer closes, then closes.
pub async fn echo(stream: TcpStream) {
    while let Ok(Some(chunk)) = stream.recv().await {
        if stream.send(Bytes::copy_from_slice(&chunk)).await.is_err() {
            return;
        }
    }
    let _ = stream.shutdown();
}

/// One client connection: send `len` patterned bytes, close the sending
/// side, read the echo to the end, compare.
pub async fn echo_once(server: SocketAddrV4, salt: usize, len: usize) -> Result<(), String> {
    let stream = TcpStream::connect(server).await.map_err(|e| format!("connect: {e}"))?;
    let data = pattern(len, salt);
    stream.send(data.clone()).await.map_err(|e| format!("send: {e}"))?;
    stream.shutdown().map_err(|e| format!("shutdown: {e}"))?;
    let got = read_to_end(&stream).await.map_err(|e| format!("recv: {e}"))?;
    if got != data[..] {
        return Err(format!("connection {salt}: echo differs ({} of {len} bytes back)", got.len()));
    }
    Ok(())
}

/// Everything the peer sends until it closes.
pub async fn read_to_end(stream: &TcpStream) -> std::io::Result<Vec<u8>> {
    let mut got = Vec::new();
    while let Some(chunk) = stream.recv().await? {
        got.extend_from_slice(&chunk);
    }
    Ok(got)
}

/// Serves `echo: LINE` for every line, through tokio-util's `Framed`.
pub async fn framed_line_echo(stream: TcpStream) {
    let mut lines = Framed::new(stream, LinesCodec::new());
    while let Some(Ok(line)) = lines.next().await {
        if lines.send(format!("echo: {line}")).await.is_err() {
            break;
        }
    }
}

/// Sends `count` lines through `Framed` and returns the replies.
pub async fn framed_line_client(server: SocketAddrV4, count: usize) -> Vec<String> {
    let stream = TcpStream::connect(server).await.unwrap();
    let mut lines = Framed::new(stream, LinesCodec::new());
    let mut replies = Vec::with_capacity(count);
    for i in 0..count {
        lines.send(format!("line {i}")).await.unwrap();
        replies.push(timeout(Duration::from_secs(10), lines.next()).await.unwrap().unwrap().unwrap());
    }
    replies
}

/// Runs `count` checked echo clients at once on the current core (salts
/// distinct per core), each given `limit` to finish; returns how many passed
/// and what went wrong with the others.
pub async fn echo_clients(
    server: SocketAddrV4,
    core: usize,
    count: usize,
    len: usize,
    limit: Duration,
) -> (usize, Vec<String>) {
    let tasks: Vec<_> =
        (0..count).map(|i| ix_runtime::spawn_local(echo_once(server, core * 1_000_000 + i, len))).collect();
    let (mut done, mut failures) = (0, Vec::new());
    for task in tasks {
        match timeout(limit, task).await {
            Ok(Ok(Ok(()))) => done += 1,
            Ok(Ok(Err(e))) => failures.push(e),
            Ok(Err(e)) => failures.push(format!("task: {e}")),
            Err(_) => failures.push("timed out".into()),
        }
    }
    (done, failures)
}
