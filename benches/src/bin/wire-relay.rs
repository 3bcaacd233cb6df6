//! `wire-relay`: joins two interfaces in user space (AF_PACKET) and injects
//! faults on the way: loss, reordering, duplication, a delay that changes.
#![forbid(unsafe_code)]

use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use ix_benches::relay::{FaultPlan, Relay, RelayCounts};
use ix_driver::PacketSocket;

/// Relays every frame that arrives at `--a` out of `--b` and back, each
/// independently lost, held back (reordered) or sent twice with the given
/// probabilities, after a one-way delay that steps through `--delays-ms`.
/// Prints one line of counts per period to stdout.
#[derive(Debug, Parser)]
#[command(name = "wire-relay", version)]
struct Args {
    /// One interface (in this process's network namespace).
    #[arg(long)]
    a: String,
    /// The other interface.
    #[arg(long)]
    b: String,
    /// Percent of frames dropped, each way.
    #[arg(long, default_value_t = 0.0)]
    loss: f64,
    /// Percent of frames held back by `--reorder-ms` beyond the delay.
    #[arg(long, default_value_t = 0.0)]
    reorder: f64,
    /// How long a reordered frame is held beyond the delay (ms).
    #[arg(long, default_value_t = 5)]
    reorder_ms: u64,
    /// Percent of frames sent twice.
    #[arg(long, default_value_t = 0.0)]
    duplicate: f64,
    /// One-way delays (ms), each for `--delay-period-s`, then repeated.
    #[arg(long, value_delimiter = ',', default_value = "0")]
    delays_ms: Vec<u64>,
    /// How long each delay lasts (s).
    #[arg(long, default_value_t = 10.0)]
    delay_period_s: f64,
    /// How long to run (s).
    #[arg(long, default_value_t = 60.0)]
    duration_s: f64,
    /// Seconds between two lines of counts.
    #[arg(long, default_value_t = 10.0)]
    report_s: f64,
    /// Seed of the fault choices.
    #[arg(long, default_value_t = 1)]
    seed: u64,
}

fn seconds(name: &str, s: f64) -> anyhow::Result<Duration> {
    Duration::try_from_secs_f64(s)
        .ok()
        .filter(|d| !d.is_zero())
        .with_context(|| format!("--{name} {s}: not a positive time"))
}

fn line(label: &str, c: &RelayCounts) -> String {
    format!(
        "{label}_in={} {label}_out={} {label}_lost={} {label}_reordered={} {label}_duplicated={} {label}_overflow={}",
        c.frames_in, c.frames_out, c.lost, c.reordered, c.duplicated, c.overflow
    )
}

fn run(args: Args) -> anyhow::Result<()> {
    let plan = FaultPlan {
        loss: args.loss / 100.0,
        reorder: args.reorder / 100.0,
        reorder_hold: Duration::from_millis(args.reorder_ms),
        duplicate: args.duplicate / 100.0,
        delays: args.delays_ms.iter().map(|&ms| Duration::from_millis(ms)).collect(),
        delay_period: seconds("delay-period-s", args.delay_period_s)?,
    };
    plan.validate().map_err(anyhow::Error::msg)?;
    let a = PacketSocket::open(&args.a).with_context(|| format!("--a {}", args.a))?;
    let b = PacketSocket::open(&args.b).with_context(|| format!("--b {}", args.b))?;
    println!("relay {} <-> {} longest_hold_ms={}", args.a, args.b, plan.longest_hold().as_millis());
    let mut relay = Relay::new(a, b, plan, args.seed);
    let duration = seconds("duration-s", args.duration_s)?;
    let report_every = seconds("report-s", args.report_s)?;
    relay.run(duration, report_every, |relay, delay| {
        println!("relay delay_ms={} {} {}", delay.as_millis(), line("ab", &relay.a_to_b), line("ba", &relay.b_to_a));
    })?;
    Ok(())
}

fn main() -> ExitCode {
    ix_benches::init_logging();
    match run(Args::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("wire-relay: {e:#}");
            ExitCode::FAILURE
        }
    }
}
