//! Where `ix-http`'s cores run: started under `taskset`, every core's thread
//! stays on the CPU `taskset` named, read back from `/proc/PID/task`.

mod support;

use std::net::Ipv4Addr;
use std::process::Command;

use ix_driver::ixcp::thread_placement::allowed_cpus;
use ix_driver::privilege::require_command;
use support::{HttpServer, free_port};

/// The allowed CPUs (`Cpus_allowed_list`) of each `ix-core-N` thread of
/// process `pid`, by thread name.
fn allowed_cpus_of_cores(pid: u32) -> Vec<(String, String)> {
    let mut cores = Vec::new();
    for task in std::fs::read_dir(format!("/proc/{pid}/task")).unwrap() {
        let dir = task.unwrap().path();
        let name = std::fs::read_to_string(dir.join("comm")).unwrap_or_default().trim().to_string();
        if !name.starts_with("ix-core-") {
            continue;
        }
        let status = std::fs::read_to_string(dir.join("status")).unwrap();
        let allowed = status.lines().find_map(|l| l.strip_prefix("Cpus_allowed_list:")).unwrap();
        cores.push((name, allowed.trim().to_string()));
    }
    cores.sort();
    cores
}

#[test]
fn taskset_places_every_core_on_the_cpu_it_names() {
    if !require_command("taskset", "util-linux") {
        return;
    }
    let allowed = allowed_cpus().unwrap();
    if allowed.len() < 2 {
        eprintln!("skipped: this process may use one CPU only, so every core is on it anyway");
        return;
    }
    // The last CPU, not the first: a core pinned to CPU 0 whatever `taskset`
    // said (as `taskset -c 1 ix-http` once was) shows.
    let cpu = allowed.last().unwrap().to_string();
    let port = free_port();
    let mut command = Command::new("taskset");
    command.args(["-c", &cpu, env!("CARGO_BIN_EXE_ix-http")]).args([
        "--runtime=ix",
        "--backend=kernel",
        "--addr=127.0.0.1",
        &format!("--port={port}"),
        "--cores=2",
    ]);
    // `taskset` execs: the child's pid is the server's.
    let server = HttpServer::spawn(command, Ipv4Addr::LOCALHOST, port, None);
    let cores = allowed_cpus_of_cores(server.pid());
    assert_eq!(cores, vec![("ix-core-0".to_string(), cpu.clone()), ("ix-core-1".to_string(), cpu)]);
}
