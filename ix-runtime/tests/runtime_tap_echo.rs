//! The runtime on the TAP backend: Linux's TCP, from the kernel side of a
//! multi-queue TAP device, talks to a 2-core IX echo server; every byte checked.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddrV4, TcpStream};
use std::process::Command;
use std::time::{Duration, Instant};

use bytes::Bytes;
use ix_driver::privilege;
use ix_runtime::net::TcpListener;
use ix_runtime::{Backend, Runtime, spawn_local};

const KERNEL: Ipv4Addr = Ipv4Addr::new(10, 98, 0, 1);
const IX: Ipv4Addr = Ipv4Addr::new(10, 98, 0, 2);
const PORT: u16 = 7000;

fn ip(args: &[&str]) -> bool {
    Command::new("ip").args(args).status().is_ok_and(|s| s.success())
}

/// Deletes the device if the runtime left it behind.
struct LinkGuard(String);

impl Drop for LinkGuard {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["link", "del", &self.0]).output();
    }
}

fn pattern(len: usize, salt: usize) -> Vec<u8> {
    (0..len).map(|i| ((i * 13 + salt) % 253) as u8).collect()
}

#[test]
fn kernel_clients_echo_through_a_two_core_runtime_on_tap() {
    if !privilege::require("TAP", privilege::has_net_admin()) {
        return;
    }
    let name = format!("ixrt{}", std::process::id() % 100_000);
    let _guard = LinkGuard(name.clone());
    let rt = Runtime::builder()
        .cores(2)
        .backend(Backend::Tap { name: name.clone() })
        .ipv4(IX, 24)
        .handle_signals(false)
        .build()
        .unwrap();
    let shutdown = rt.shutdown_handle();
    let listening = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let bound = listening.clone();
    let server = std::thread::spawn(move || {
        rt.run(move |_| {
            let bound = bound.clone();
            async move {
                let listener = TcpListener::bind(PORT).unwrap();
                bound.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                while let Ok((stream, _)) = listener.accept().await {
                    drop(spawn_local(async move {
                        while let Ok(Some(chunk)) = stream.recv().await {
                            if stream.send(Bytes::copy_from_slice(&chunk)).await.is_err() {
                                return;
                            }
                        }
                        let _ = stream.shutdown();
                    }));
                }
            }
        })
    });
    // The runtime creates the device; configure the kernel side once it exists.
    let deadline = Instant::now() + Duration::from_secs(10);
    while !ip(&["link", "show", &name]) {
        assert!(Instant::now() < deadline, "the runtime did not create {name}");
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(ip(&["addr", "add", &format!("{KERNEL}/24"), "dev", &name]));
    assert!(ip(&["link", "set", &name, "up"]));
    while listening.load(std::sync::atomic::Ordering::SeqCst) < 2 {
        assert!(Instant::now() < deadline, "the runtime's cores did not start listening");
        std::thread::sleep(Duration::from_millis(1));
    }

    let clients: Vec<_> = (0..40)
        .map(|i| {
            std::thread::spawn(move || -> Result<(), String> {
                let addr = SocketAddrV4::new(IX, PORT);
                let mut stream = TcpStream::connect_timeout(&addr.into(), Duration::from_secs(10))
                    .map_err(|e| format!("{i}: {e}"))?;
                stream.set_read_timeout(Some(Duration::from_secs(20))).map_err(|e| e.to_string())?;
                let data = pattern(100_000, i);
                let mut reader = stream.try_clone().map_err(|e| e.to_string())?;
                let writer = std::thread::spawn(move || {
                    stream.write_all(&data).and_then(|_| stream.shutdown(std::net::Shutdown::Write))
                });
                let mut got = Vec::new();
                reader.read_to_end(&mut got).map_err(|e| format!("{i}: read: {e}"))?;
                writer.join().unwrap().map_err(|e| format!("{i}: write: {e}"))?;
                if got != pattern(100_000, i) {
                    return Err(format!("{i}: echo differs ({} bytes back)", got.len()));
                }
                Ok(())
            })
        })
        .collect();
    let results: Vec<_> = clients.into_iter().map(|c| c.join().unwrap()).collect();
    shutdown.shutdown();
    let stats = server.join().unwrap().unwrap();
    let failures: Vec<_> = results.into_iter().filter_map(Result::err).collect();
    assert!(failures.is_empty(), "{} failures: {failures:?}", failures.len());
    let accepted: u64 = stats.iter().map(|s| s.stack.tcp.passive_opens).sum();
    assert_eq!(accepted, 40);
    assert!(stats.iter().all(|s| s.stack.tcp.in_csum_errors == 0));
}
