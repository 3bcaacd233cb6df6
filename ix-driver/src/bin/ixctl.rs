//! `ixctl`, the operator's view of `ixcp`: `ixctl [--socket PATH] list [--json]`
//! prints the admitted dataplanes (user, address, ports, virtual port, region,
//! the kernel's drop counters of its AF_XDP socket) and the daemon's counters.

use std::path::PathBuf;
use std::process::ExitCode;

use ix_driver::ixcp::{Listing, request_listing};

const DEFAULT_SOCKET: &str = "/run/ixcp.sock";
const USAGE: &str = "usage: ixctl [--socket PATH] list [--json]";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut socket = PathBuf::from(DEFAULT_SOCKET);
    let mut json = false;
    let mut command = None;
    let mut words = args.iter();
    while let Some(word) = words.next() {
        match word.as_str() {
            "--socket" => match words.next() {
                Some(path) => socket = PathBuf::from(path),
                None => return usage(),
            },
            "--json" => json = true,
            "list" if command.is_none() => command = Some("list"),
            _ => return usage(),
        }
    }
    if command.is_none() {
        return usage();
    }
    match request_listing(&socket) {
        Ok(listing) if json => match serde_json::to_string_pretty(&listing) {
            Ok(text) => {
                println!("{text}");
                ExitCode::SUCCESS
            }
            Err(error) => {
                eprintln!("ixctl: {error}");
                ExitCode::FAILURE
            }
        },
        Ok(listing) => {
            print_table(&listing);
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("ixctl: {}: {error}", socket.display());
            ExitCode::FAILURE
        }
    }
}

fn usage() -> ExitCode {
    eprintln!("{USAGE}");
    ExitCode::from(2)
}

fn print_table(listing: &Listing) {
    let stats = listing.stats;
    println!(
        "ixcp: {} admitted, {} refused ({} malformed), {} released",
        stats.admitted, stats.refused, stats.malformed, stats.released
    );
    println!(
        "{:>6} {:<15} {:<12} {:<8} {:>7} {:>10} {:>9} {:>10} {:>10}  ports",
        "uid", "address", "interface", "port", "frames", "rx_dropped", "ring_full", "fill_empty", "tx_invalid"
    );
    for d in &listing.dataplanes {
        let ports: Vec<String> = d.ports.iter().map(u16::to_string).collect();
        println!(
            "{:>6} {:<15} {:<12} {:<8} {:>7} {:>10} {:>9} {:>10} {:>10}  {}",
            d.uid,
            d.addr,
            d.interface,
            d.port_name,
            d.frames_per_queue,
            d.rx_dropped,
            d.rx_ring_full,
            d.rx_fill_ring_empty,
            d.tx_invalid_descs,
            ports.join(",")
        );
    }
}
