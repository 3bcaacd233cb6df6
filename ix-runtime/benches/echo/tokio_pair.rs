//! tokio's side: an echo server and a client over loopback, on
//! current_thread runtimes pinned like IX's cores or on unpinned
//! multi_thread runtimes.

use std::net::Ipv4Addr;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::measure::{
    Load, Recorder, Sample, Timing, check_echo, merge_connections, request, sample_process_cpu, stalled, task_failed,
};
use crate::{CLIENT_CPU, MESSAGE_BYTES, SERVER_CPU, TOKIO_WORKER_THREADS};

#[derive(Debug, Clone, Copy)]
pub enum Flavor {
    CurrentThread,
    MultiThread,
}

impl Flavor {
    /// A runtime for a thread meant for `cpu`: current_thread runs on the
    /// calling thread, which is pinned; multi_thread workers are left to the
    /// scheduler (two runtimes of two workers share the two CPUs).
    fn runtime(self, cpu: usize) -> Result<tokio::runtime::Runtime, String> {
        let built = match self {
            Flavor::CurrentThread => {
                // As the IX runtime does: the `cpu`-th CPU the process may
                // use; a failure is reported, and the thread runs where the
                // kernel puts it.
                if let Err(e) = ix_runtime::pin_current_thread(cpu) {
                    eprintln!("echo bench: could not pin a tokio thread to CPU {cpu}: {e}");
                }
                tokio::runtime::Builder::new_current_thread().enable_all().build()
            }
            Flavor::MultiThread => {
                tokio::runtime::Builder::new_multi_thread().worker_threads(TOKIO_WORKER_THREADS).enable_all().build()
            }
        };
        built.map_err(|e| format!("tokio runtime: {e}"))
    }
}

async fn tokio_echo(mut stream: tokio::net::TcpStream) {
    let mut buf = [0u8; 4096];
    while let Ok(n @ 1..) = stream.read(&mut buf).await {
        if stream.write_all(&buf[..n]).await.is_err() {
            return;
        }
    }
}

async fn tokio_echo_client(
    mut stream: tokio::net::TcpStream,
    mut recorder: Recorder,
    request: [u8; MESSAGE_BYTES],
) -> Result<Recorder, String> {
    let mut reply = [0u8; MESSAGE_BYTES];
    while let Some(started) = recorder.begin() {
        stream.write_all(&request).await.map_err(|e| format!("send: {e}"))?;
        stream.read_exact(&mut reply).await.map_err(|e| format!("recv: {e}"))?;
        check_echo(&request, &reply)?;
        recorder.end(started);
    }
    Ok(recorder)
}

/// Connects every connection, then runs them all through one window, which
/// it publishes.
async fn tokio_client(server: std::net::SocketAddr, load: Load) -> Result<Recorder, String> {
    let mut streams = Vec::with_capacity(load.connections);
    for _ in 0..load.connections {
        let stream = tokio::net::TcpStream::connect(server).await.map_err(|e| format!("connect to {server}: {e}"))?;
        stream.set_nodelay(true).map_err(|e| format!("nodelay: {e}"))?;
        streams.push(stream);
    }
    let window = load.open_window();
    let tasks: Vec<_> = streams
        .into_iter()
        .enumerate()
        .map(|(id, stream)| tokio::spawn(tokio_echo_client(stream, Recorder::new(window), request(id))))
        .collect();
    let outcomes = tasks.into_iter().map(|task| async move {
        tokio::time::timeout(window.time_left(), task).await.map_err(stalled)?.map_err(task_failed)?
    });
    merge_connections(window, outcomes).await
}

/// Accepts and echoes until `stop` fires; an accept error ends it early and
/// is returned.
async fn tokio_server(listener: std::net::TcpListener, stop: tokio::sync::oneshot::Receiver<()>) -> Result<(), String> {
    let listener = tokio::net::TcpListener::from_std(listener).map_err(|e| format!("tokio listener: {e}"))?;
    let accept = tokio::spawn(async move {
        loop {
            let (stream, _) = listener.accept().await?;
            stream.set_nodelay(true)?;
            tokio::spawn(tokio_echo(stream));
        }
    });
    let _ = stop.await;
    if accept.is_finished() {
        let ended: std::io::Result<()> = accept.await.map_err(|e| format!("accept task: {e}"))?;
        return ended.map_err(|e| format!("accept: {e}"));
    }
    accept.abort();
    Ok(())
}

/// One repetition of a tokio echo server and a tokio client over loopback.
pub fn run_tokio(flavor: Flavor, connections: usize, timing: Timing) -> Result<Sample, String> {
    let listener = std::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).map_err(|e| format!("loopback: {e}"))?;
    listener.set_nonblocking(true).map_err(|e| format!("loopback: {e}"))?;
    let addr = listener.local_addr().map_err(|e| format!("loopback: {e}"))?;
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel();
    let server = std::thread::spawn(move || flavor.runtime(SERVER_CPU)?.block_on(tokio_server(listener, stop_rx)));
    let load = Load::new(connections, timing);
    let cpu = sample_process_cpu(load.window.clone());
    let client = std::thread::spawn(move || flavor.runtime(CLIENT_CPU)?.block_on(tokio_client(addr, load)))
        .join()
        .map_err(|_| "the tokio client thread panicked".to_string())
        .and_then(|r| r);
    let _ = stop_tx.send(());
    server.join().map_err(|_| "the tokio server thread panicked")??;
    let recorded = client?;
    Ok(Sample { recorded, process_cpu: cpu.join().ok().flatten(), cores: None })
}
