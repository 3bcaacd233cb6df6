//! `ixctl`, the operator's view of `ixcp`: the admitted dataplanes and their
//! cores (`list`, `--json`), a live view refreshing like `top` (`top`), and a
//! dataplane's CPU share changed at run time (`set-share`).

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use ix_driver::ixcp::{CoreEntry, CoreMode, Listing, request_listing, request_share};

const DEFAULT_SOCKET: &str = "/run/ixcp.sock";
const USAGE: &str = "usage: ixctl [--socket PATH] list [--json]\n       \
                     ixctl [--socket PATH] top [--interval MS] [--count N]\n       \
                     ixctl [--socket PATH] set-share DATAPLANE CPUS   (DATAPLANE: its virtual port, as listed)";
const TOP_INTERVAL_DEFAULT_MS: u64 = 1000;

enum Command {
    List { json: bool },
    Top { interval: Duration, count: Option<u64> },
    SetShare { port_name: String, share: u16 },
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some((socket, command)) = parse(&args) else {
        eprintln!("{USAGE}");
        return ExitCode::from(2);
    };
    let result = match command {
        Command::List { json } => request_listing(&socket).map_err(|e| e.to_string()).and_then(|listing| {
            if json {
                let text = serde_json::to_string_pretty(&listing).map_err(|e| e.to_string())?;
                println!("{text}");
            } else {
                print_table(&listing);
            }
            Ok(())
        }),
        Command::Top { interval, count } => top(&socket, interval, count),
        Command::SetShare { port_name, share } => request_share(&socket, &port_name, share)
            .map(|set| println!("{}: share set to {} CPUs", set.port_name, set.share))
            .map_err(|e| e.to_string()),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("ixctl: {}: {error}", socket.display());
            ExitCode::FAILURE
        }
    }
}

fn parse(args: &[String]) -> Option<(PathBuf, Command)> {
    let mut socket = PathBuf::from(DEFAULT_SOCKET);
    let mut words = args.iter().map(String::as_str).peekable();
    if words.peek() == Some(&"--socket") {
        words.next();
        socket = PathBuf::from(words.next()?);
    }
    let command = match (words.next()?, words.collect::<Vec<_>>().as_slice()) {
        ("list", []) => Command::List { json: false },
        ("list", ["--json"]) => Command::List { json: true },
        ("top", options) => {
            let (mut interval_ms, mut count) = (TOP_INTERVAL_DEFAULT_MS, None);
            for pair in options.chunks(2) {
                match pair {
                    ["--interval", ms] => interval_ms = ms.parse().ok().filter(|&ms| ms > 0)?,
                    ["--count", n] => count = Some(n.parse().ok()?),
                    _ => return None,
                }
            }
            Command::Top { interval: Duration::from_millis(interval_ms), count }
        }
        ("set-share", [port_name, share]) => {
            Command::SetShare { port_name: (*port_name).to_owned(), share: share.parse().ok()? }
        }
        _ => return None,
    };
    Some((socket, command))
}

fn print_table(listing: &Listing) {
    let stats = listing.stats;
    println!(
        "ixcp: {} admitted, {} refused ({} malformed), {} released; {} to polling, {} to blocking, {} threads refused; \
         self-polls {} kept, {} ended",
        stats.admitted,
        stats.refused,
        stats.malformed,
        stats.released,
        stats.to_polling,
        stats.to_blocking,
        stats.threads_refused,
        stats.self_polls_kept,
        stats.self_polls_ended
    );
    println!(
        "{:>6} {:<15} {:<12} {:<8} {:>7} {:>10} {:>9} {:>10} {:>10} {:>5}  ports",
        "uid", "address", "interface", "port", "frames", "rx_dropped", "ring_full", "fill_empty", "tx_invalid", "share"
    );
    for d in &listing.dataplanes {
        let ports: Vec<String> = d.ports.iter().map(u16::to_string).collect();
        println!(
            "{:>6} {:<15} {:<12} {:<8} {:>7} {:>10} {:>9} {:>10} {:>10} {:>5}  {}",
            d.uid,
            d.addr,
            d.interface,
            d.port_name,
            d.frames_per_queue,
            d.rx_dropped,
            d.rx_ring_full,
            d.rx_fill_ring_empty,
            d.tx_invalid_descs,
            format!("{}/{}", d.share, d.max_share),
            ports.join(",")
        );
        for core in &d.cores {
            println!(
                "        core {} {} cpu {} load {:.1}% thread {} to_polling {} to_blocking {} \
                 self_polls {} (kept {}, ended {})",
                core.core,
                mode_name(core),
                cpu_name(core),
                f64::from(core.load_permille) / 10.0,
                core.sample.thread_id,
                core.to_polling,
                core.to_blocking,
                core.sample.self_polls,
                core.self_polls_kept,
                core.self_polls_ended
            );
        }
    }
}

fn mode_name(core: &CoreEntry) -> &'static str {
    match (core.mode, core.sample.mode_in_effect) {
        (CoreMode::BusyPoll, CoreMode::BusyPoll) => "poll",
        (CoreMode::Block, CoreMode::Block) => "block",
        (CoreMode::BusyPoll, CoreMode::Block) => "->poll",
        (CoreMode::Block, CoreMode::BusyPoll) => "->block",
    }
}

fn cpu_name(core: &CoreEntry) -> String {
    core.cpu.map_or_else(|| "shared".to_owned(), |cpu| cpu.to_string())
}

/// Lists every `interval` and prints each core's rates over the interval,
/// `count` times (forever without).
fn top(socket: &std::path::Path, interval: Duration, count: Option<u64>) -> Result<(), String> {
    let mut previous: HashMap<(String, u16), CoreEntry> = HashMap::new();
    let mut previous_at = Instant::now();
    let mut shown = 0u64;
    loop {
        let listing = request_listing(socket).map_err(|e| e.to_string())?;
        let now = Instant::now();
        let seconds = now.duration_since(previous_at).as_secs_f64().max(1e-3);
        // Clear the screen and home the cursor, as top does.
        print!("\x1b[H\x1b[2J");
        let s = listing.stats;
        println!(
            "ixcp: {} dataplanes; decisions: {} to polling, {} to blocking; self-polls {} kept, {} ended; \
             {} threads refused; every {} ms",
            listing.dataplanes.len(),
            s.to_polling,
            s.to_blocking,
            s.self_polls_kept,
            s.self_polls_ended,
            s.threads_refused,
            interval.as_millis()
        );
        println!(
            "{:<8} {:>5} {:>4} {:>7} {:>6} {:>6} {:>10} {:>10} {:>7} {:>7} {:>7} {:>11} {:>9} {:>10}",
            "port",
            "share",
            "core",
            "mode",
            "cpu",
            "load%",
            "rx/s",
            "tx/s",
            "batch",
            "conns",
            "drops",
            "pool used",
            "blocks/s",
            "self-polls"
        );
        let mut next = HashMap::new();
        for d in &listing.dataplanes {
            for core in &d.cores {
                let key = (d.port_name.clone(), core.core);
                let before = previous.get(&key).map_or(core.sample, |c: &CoreEntry| c.sample);
                let after = core.sample;
                let rate = |a: u64, b: u64| a.saturating_sub(b) as f64 / seconds;
                let batches = after.batches.saturating_sub(before.batches);
                let batch = if batches == 0 {
                    0.0
                } else {
                    after.rx_packets.saturating_sub(before.rx_packets) as f64 / batches as f64
                };
                println!(
                    "{:<8} {:>5} {:>4} {:>7} {:>6} {:>6.1} {:>10.0} {:>10.0} {:>7.1} {:>7} {:>7} {:>11} {:>9.0} {:>10}",
                    d.port_name,
                    format!("{}/{}", d.share, d.max_share),
                    core.core,
                    mode_name(core),
                    cpu_name(core),
                    f64::from(core.load_permille) / 10.0,
                    rate(after.rx_packets, before.rx_packets),
                    rate(after.tx_packets, before.tx_packets),
                    batch,
                    after.connections,
                    after.drops,
                    format!("{}/{}", after.pool_capacity.saturating_sub(after.pool_free), after.pool_capacity),
                    rate(after.blocks, before.blocks),
                    after.self_polls,
                );
                next.insert(key, *core);
            }
        }
        previous = next;
        previous_at = now;
        shown += 1;
        if count.is_some_and(|count| shown >= count) {
            return Ok(());
        }
        std::thread::sleep(interval);
    }
}
