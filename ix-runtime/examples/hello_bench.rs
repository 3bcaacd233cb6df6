//! A minimal keep-alive HTTP/1.1 "Hello, world!" server on IX (any backend) or
//! on tokio's current-thread runtime, one core each: the first XDP-versus-tokio
//! figures in `docs/xdp-results.md` come from it.
//!
//! ```text
//! hello_bench ix XDP_SPEC IP/LEN PORT      e.g. ix ixt-s,ports=8080 10.77.0.1/24 8080
//! hello_bench tokio - IP PORT
//! ```
#![forbid(unsafe_code)]

use std::net::Ipv4Addr;
use std::process::ExitCode;

use bytes::Bytes;

const RESPONSE: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Length: 13\r\nContent-Type: text/plain\r\n\r\nHello, world!";

/// Counts the complete requests (header blocks) in `pending` and drops them.
fn take_requests(pending: &mut Vec<u8>) -> usize {
    let mut count = 0;
    while let Some(end) = pending.windows(4).position(|w| w == b"\r\n\r\n") {
        pending.drain(..end + 4);
        count += 1;
    }
    count
}

fn run_ix(spec: &str, addr: &str, port: u16) -> Result<(), String> {
    let config = spec.parse().map_err(|e| format!("{e}"))?;
    let (ip, len) = addr.split_once('/').ok_or("address is IP/LEN")?;
    let ip: Ipv4Addr = ip.parse().map_err(|e| format!("{ip}: {e}"))?;
    let len: u8 = len.parse().map_err(|e| format!("{len}: {e}"))?;
    let rt = ix_runtime::Runtime::builder()
        .cores(1)
        .backend(ix_runtime::Backend::Xdp(config))
        .ipv4(ip, len)
        .build()
        .map_err(|e| e.to_string())?;
    let spec = spec.to_owned();
    rt.run(move |_| {
        let spec = spec.clone();
        async move {
            let listener = ix_runtime::net::TcpListener::bind(port).expect("bind");
            println!("listening on {ip}:{port} (ix, xdp:{spec}, 1 cores)");
            while let Ok((stream, _)) = listener.accept().await {
                drop(ix_runtime::spawn_local(async move {
                    let mut pending = Vec::new();
                    while let Ok(Some(chunk)) = stream.recv().await {
                        pending.extend_from_slice(&chunk);
                        for _ in 0..take_requests(&mut pending) {
                            if stream.send(Bytes::from_static(RESPONSE)).await.is_err() {
                                return;
                            }
                        }
                    }
                }));
            }
        }
    })
    .map(drop)
    .map_err(|e| e.to_string())
}

fn run_tokio(addr: &str, port: u16) -> Result<(), String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().map_err(|e| e.to_string())?;
    rt.block_on(async move {
        let listener = tokio::net::TcpListener::bind((addr, port)).await.map_err(|e| e.to_string())?;
        println!("listening on {addr}:{port} (tokio, kernel, 1 cores)");
        loop {
            let (mut stream, _) = listener.accept().await.map_err(|e| e.to_string())?;
            tokio::spawn(async move {
                let _ = stream.set_nodelay(true);
                let mut pending = Vec::new();
                let mut buf = vec![0u8; 4096];
                while let Ok(n) = stream.read(&mut buf).await {
                    if n == 0 {
                        return;
                    }
                    pending.extend_from_slice(&buf[..n]);
                    for _ in 0..take_requests(&mut pending) {
                        if stream.write_all(RESPONSE).await.is_err() {
                            return;
                        }
                    }
                }
            });
        }
    })
}

fn main() -> ExitCode {
    tracing_subscriber::fmt().with_env_filter(tracing_subscriber::EnvFilter::from_default_env()).init();
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [runtime, spec, addr, port] = args.as_slice() else {
        eprintln!("usage: hello_bench ix|tokio XDP_SPEC|- IP[/LEN] PORT");
        return ExitCode::from(2);
    };
    let Ok(port) = port.parse::<u16>() else {
        eprintln!("hello_bench: port {port:?} is not a number");
        return ExitCode::from(2);
    };
    let result = match runtime.as_str() {
        "ix" => run_ix(spec, addr, port),
        "tokio" => run_tokio(addr, port),
        other => Err(format!("runtime {other:?} is ix or tokio")),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("hello_bench: {error}");
            ExitCode::FAILURE
        }
    }
}
