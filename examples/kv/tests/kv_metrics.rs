//! `ix-kv --metrics ADDR`: curl scrapes both cores' counters in the Prometheus
//! text format while the server serves; tokio refuses the flag with a reason.

mod support;

use std::io::{Read, Write};
use std::process::Command;
use std::time::{Duration, Instant};

use support::{free_port, start_ix_kernel};

/// The body of `GET /metrics`, by curl.
fn scrape(addr: &str) -> String {
    let out = Command::new("curl").args(["-sf", "-m", "10", &format!("http://{addr}/metrics")]).output().unwrap();
    assert!(out.status.success(), "curl: exit {:?}", out.status.code());
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn both_cores_counters_are_scraped_while_serving() {
    let metrics = format!("127.0.0.1:{}", free_port());
    let server = start_ix_kernel(&["--metrics", &metrics]);
    let mut client = std::net::TcpStream::connect(server.addr).unwrap();
    client.write_all(b"set k 0 0 1\r\nv\r\nget k\r\n").unwrap();
    let mut reply = [0u8; 29];
    client.read_exact(&mut reply).unwrap();
    assert_eq!(&reply, b"STORED\r\nVALUE k 0 1\r\nv\r\nEND\r\n");
    // Each core publishes on its own period: wait until both have.
    let families = ["ix_loop_rounds_total", "ix_executor_polls_total", "ix_connections", "ix_pool_free_frames"];
    let complete = |text: &str| {
        families.iter().all(|family| {
            text.contains(&format!("# TYPE {family} "))
                && ["0", "1"].iter().all(|core| text.contains(&format!("{family}{{core=\"{core}\"}} ")))
        })
    };
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let text = scrape(&metrics);
        if complete(&text) {
            break;
        }
        assert!(Instant::now() < deadline, "both cores' families never published:\n{text}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn metrics_on_tokio_are_refused_with_a_reason() {
    let out = Command::new(env!("CARGO_BIN_EXE_ix-kv"))
        .args(["--runtime", "tokio", "--metrics", "127.0.0.1:1", "-p", &free_port().to_string()])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("--metrics") && stderr.contains("--runtime ix"), "{stderr}");
}
