//! `soak-client`: the soak test's load (HTTP/1.1 with churn, HTTP/2, slow
//! readers, memcached), every body checked; prints one line per class.
#![forbid(unsafe_code)]

use std::net::SocketAddrV4;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use ix_benches::soak::{SoakConfig, run};

/// Mixed checked load for a set time. Exits with status 1 when any request
/// failed, timed out or got a wrong body, 0 otherwise.
#[derive(Debug, Parser)]
#[command(name = "soak-client", version)]
struct Args {
    /// `ix-http`'s address, IP:PORT (no HTTP load without it).
    #[arg(long)]
    http: Option<SocketAddrV4>,
    /// `ix-kv`'s address, IP:PORT (no KV load without it).
    #[arg(long)]
    kv: Option<SocketAddrV4>,
    /// HTTP/1.1 connections at a time.
    #[arg(long, default_value_t = 8)]
    http1_conns: usize,
    /// HTTP/2 connections at a time.
    #[arg(long, default_value_t = 2)]
    http2_conns: usize,
    /// Concurrent streams per HTTP/2 connection.
    #[arg(long, default_value_t = 4)]
    http2_streams: usize,
    /// Slow readers at a time.
    #[arg(long, default_value_t = 2)]
    slow_readers: usize,
    /// A slow reader's response body (bytes).
    #[arg(long, default_value_t = 1 << 20)]
    slow_body_bytes: u64,
    /// Bytes a slow reader takes per pause.
    #[arg(long, default_value_t = 4096)]
    slow_read_bytes: usize,
    /// A slow reader's pause (ms).
    #[arg(long, default_value_t = 20)]
    slow_pause_ms: u64,
    /// memcached connections at a time.
    #[arg(long, default_value_t = 4)]
    kv_conns: usize,
    /// Requests per connection before it closes: drawn from 1 to this.
    #[arg(long, default_value_t = 20)]
    requests_per_conn: u32,
    /// Pause between two requests of a connection or stream (ms).
    #[arg(long, default_value_t = 2)]
    think_ms: u64,
    /// Largest body or value (bytes).
    #[arg(long, default_value_t = 64 * 1024)]
    body_max: usize,
    /// Bound on one request (ms); longer is a failure.
    #[arg(long, default_value_t = 20_000)]
    request_timeout_ms: u64,
    /// How long the load runs (s).
    #[arg(long, default_value_t = 60)]
    duration_s: u64,
    /// Seed of every random choice.
    #[arg(long, default_value_t = 1)]
    seed: u64,
}

fn main() -> ExitCode {
    ix_benches::init_logging();
    let args = Args::parse();
    if args.http.is_none() && args.kv.is_none() {
        eprintln!("soak-client: give --http, --kv or both");
        return ExitCode::from(2);
    }
    if args.requests_per_conn == 0 {
        eprintln!("soak-client: --requests-per-conn must be at least 1");
        return ExitCode::from(2);
    }
    let cfg = SoakConfig {
        http: args.http,
        kv: args.kv,
        http1_conns: args.http1_conns,
        http2_conns: args.http2_conns,
        http2_streams: args.http2_streams,
        slow_readers: args.slow_readers,
        slow_body_bytes: args.slow_body_bytes,
        slow_read_bytes: args.slow_read_bytes,
        slow_read_pause: Duration::from_millis(args.slow_pause_ms),
        kv_conns: args.kv_conns,
        requests_per_conn_max: args.requests_per_conn,
        think: Duration::from_millis(args.think_ms),
        body_max_bytes: args.body_max,
        request_timeout: Duration::from_millis(args.request_timeout_ms),
        duration: Duration::from_secs(args.duration_s),
        seed: args.seed,
    };
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("soak-client: cannot start tokio: {e}");
            return ExitCode::FAILURE;
        }
    };
    let stats = runtime.block_on(run(cfg));
    print!("{}", stats.report());
    if stats.failures() == 0 { ExitCode::SUCCESS } else { ExitCode::FAILURE }
}
