//! Real memcached clients against `ix-kv` on tokio, on IX's kernel-socket
//! backend, and on IX's dataplane over a TAP device the test creates and removes: pymemcache exercising every command and error
//! path, and libmemcached-tools (`memccp`, `memccat`, `memcrm`, `memcaslap`).

mod support;

use std::net::SocketAddrV4;
use std::process::Command;

use ix_driver::privilege;
use support::{ServerProcess, have_command, require_tool, start_ix_kernel, start_ix_on_tap, start_tokio};

const PY_CLIENT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/py/pymemcache_client.py");

fn pymemcache_available() -> bool {
    Command::new("python3").args(["-c", "import pymemcache"]).status().is_ok_and(|s| s.success())
}

fn run_pymemcache(addr: SocketAddrV4) {
    let out = Command::new("python3")
        .args([PY_CLIENT, &addr.ip().to_string(), &addr.port().to_string()])
        .output()
        .expect("run python3");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "pymemcache against {addr}:\n{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains(" passed, 0 failed"), "{stdout}");
}

fn tool(program: &str, args: &[&str]) -> std::process::Output {
    Command::new(program).args(args).output().unwrap_or_else(|e| panic!("run {program}: {e}"))
}

fn run_libmemcached_tools(addr: SocketAddrV4) {
    let servers = format!("--servers={addr}");
    let dir = std::env::temp_dir().join(format!("ixkv-tools-{}-{}", std::process::id(), addr.port()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("payload.bin");
    let payload: Vec<u8> = (0..100_000u32).map(|i| (i * 7 % 251) as u8).collect();
    std::fs::write(&file, &payload).unwrap();

    assert!(tool("memccp", &[&servers, file.to_str().unwrap()]).status.success(), "memccp");
    let cat = tool("memccat", &[&servers, "payload.bin"]);
    assert!(cat.status.success(), "memccat");
    // memccat prints the value and a newline.
    assert!(
        cat.stdout.len() == payload.len() + 1 && cat.stdout.starts_with(&payload),
        "memccat returns what memccp stored"
    );
    assert!(tool("memcrm", &[&servers, "payload.bin"]).status.success(), "memcrm");
    assert!(!tool("memccat", &[&servers, "payload.bin"]).status.success(), "memccat after memcrm finds nothing");
    let _ = std::fs::remove_dir_all(&dir);

    let server = addr.to_string();
    let slap = tool("memcaslap", &["-s", &server, "-x", "20000", "-T", "1", "-c", "16"]);
    let text = String::from_utf8_lossy(&slap.stdout);
    assert!(slap.status.success(), "memcaslap: {text}");
    assert!(text.contains("Run time:"), "memcaslap ran: {text}");
}

fn tools_available() -> bool {
    ["memccp", "memccat", "memcrm", "memcaslap"].iter().all(|p| have_command(p))
}

#[test]
fn pymemcache_on_tokio() {
    if !require_tool("pymemcache (python3)", pymemcache_available()) {
        return;
    }
    let server = start_tokio(&[]);
    run_pymemcache(server.addr);
}

#[test]
fn libmemcached_tools_on_tokio() {
    if !require_tool("libmemcached-tools", tools_available()) {
        return;
    }
    let server = start_tokio(&[]);
    run_libmemcached_tools(server.addr);
}

#[test]
fn pymemcache_on_ix_kernel_backend() {
    if !require_tool("pymemcache (python3)", pymemcache_available()) {
        return;
    }
    let server = start_ix_kernel(&[]);
    run_pymemcache(server.addr);
}

#[test]
fn libmemcached_tools_on_ix_kernel_backend() {
    if !require_tool("libmemcached-tools", tools_available()) {
        return;
    }
    let server = start_ix_kernel(&[]);
    run_libmemcached_tools(server.addr);
}

fn ix_server(tag: &str, subnet: u8) -> Option<(ServerProcess, support::LinkGuard)> {
    privilege::require("TAP", privilege::has_net_admin()).then(|| start_ix_on_tap(tag, subnet, &[]))
}

#[test]
fn pymemcache_on_ix_tap() {
    if !require_tool("pymemcache (python3)", pymemcache_available()) {
        return;
    }
    let Some((mut server, _link)) = ix_server("p", 1) else { return };
    run_pymemcache(server.addr);
    assert!(server.terminate(std::time::Duration::from_secs(15)), "ix-kv exits cleanly on SIGTERM");
}

#[test]
fn libmemcached_tools_on_ix_tap() {
    if !require_tool("libmemcached-tools", tools_available()) {
        return;
    }
    let Some((server, _link)) = ix_server("t", 2) else { return };
    run_libmemcached_tools(server.addr);
}
