//! TCP echo round trips in one run, side by side: IX on the `mem` wire and on
//! kernel sockets, tokio current_thread and multi_thread over loopback; 64-byte
//! requests, N connections each with one request in flight.

#![forbid(unsafe_code)]

mod ix_pair;
mod measure;
mod report;
mod tokio_pair;

use std::process::ExitCode;
use std::time::{Duration, Instant};

use ix_runtime::IdlePolicy;

use measure::{CpuTicks, Sample, Timing, load_average};
use report::{CaseResult, print_table};
use tokio_pair::Flavor;

/// Bytes of each request and of each response.
const MESSAGE_BYTES: usize = 64;
/// The server's CPU and the client's (the machine has two).
const SERVER_CPU: usize = 0;
const CLIENT_CPU: usize = 1;
/// tokio multi_thread workers, per runtime (server and client each).
const TOKIO_WORKER_THREADS: usize = 2;
/// How long a connection may go past the end of its window before the run is
/// declared stalled (a lost reply, a hung server).
const STALL_LIMIT: Duration = Duration::from_secs(10);

/// One server + client pairing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum System {
    IxMem(IdleMode),
    IxKernel(IdleMode),
    TokioCurrentThread,
    TokioMultiThread,
}

/// The IX cores' idle policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum IdleMode {
    /// `IdlePolicy::BusyPoll`: never block.
    BusyPoll,
    /// `IdlePolicy::default()`: spin for its time budget, then block.
    Adaptive,
    /// Block at the first empty round, as tokio does: isolates what the
    /// adaptive policy's spinning buys.
    Block,
}

impl IdleMode {
    fn policy(self) -> IdlePolicy {
        match self {
            IdleMode::BusyPoll => IdlePolicy::BusyPoll,
            IdleMode::Adaptive => IdlePolicy::default(),
            IdleMode::Block => IdlePolicy::Block,
        }
    }
}

impl System {
    const ALL: [System; 7] = [
        System::IxMem(IdleMode::BusyPoll),
        System::IxMem(IdleMode::Adaptive),
        System::IxKernel(IdleMode::BusyPoll),
        System::IxKernel(IdleMode::Adaptive),
        System::IxKernel(IdleMode::Block),
        System::TokioCurrentThread,
        System::TokioMultiThread,
    ];

    fn name(self) -> &'static str {
        match self {
            System::IxMem(IdleMode::BusyPoll) => "ix-mem-busy",
            System::IxMem(IdleMode::Adaptive) => "ix-mem-adaptive",
            System::IxKernel(IdleMode::BusyPoll) => "ix-kernel-busy",
            System::IxKernel(IdleMode::Adaptive) => "ix-kernel-adaptive",
            System::IxKernel(IdleMode::Block) => "ix-kernel-block",
            System::IxMem(IdleMode::Block) => "ix-mem-block",
            System::TokioCurrentThread => "tokio-current-thread",
            System::TokioMultiThread => "tokio-multi-thread",
        }
    }

    fn is_ix(self) -> bool {
        matches!(self, System::IxMem(_) | System::IxKernel(_))
    }
}

/// The command line.
#[derive(Debug)]
struct Options {
    timing: Timing,
    reps: usize,
    connections: Vec<usize>,
    only: Option<String>,
    /// A repetition during which other processes took more CPU than this is
    /// run again (up to [`DISTURBED_RETRIES`] times).
    max_others_cpu: f64,
}

/// How many times a disturbed repetition is run again before it is kept.
const DISTURBED_RETRIES: usize = 3;

const USAGE: &str = "\
usage: cargo bench -p ix-runtime --bench echo -- [--quick] [--duration-ms MS] [--warmup-ms MS]
                                                  [--reps N] [--connections N,N,..] [--only NAME]
                                                  [--max-others CPUS]
  --quick           one repetition of 200 ms per case (a smoke run of a few seconds)
  --duration-ms MS  measured time per case and repetition (default 2000)
  --warmup-ms MS    unmeasured round trips before each measurement (default 200)
  --reps N          repetitions; the table shows the median and min..max (default 5)
  --connections     connections per case, each with one request in flight (default 1,64)
  --only NAME       run only the systems whose name contains NAME
  --max-others CPUS run a repetition again (up to 3 times) when other processes took more
                    than CPUS of the machine meanwhile (default 0.1; 2 turns it off)
systems: ix-mem-busy, ix-mem-adaptive, ix-kernel-busy, ix-kernel-adaptive, ix-kernel-block,
         tokio-current-thread, tokio-multi-thread
IX idle policies: busy = IdlePolicy::BusyPoll; adaptive = IdlePolicy::default() (spin for
IdlePolicy::DEFAULT_SPIN_US, then block); block = IdlePolicy::Block (as tokio)";

impl Options {
    fn parse(mut args: impl Iterator<Item = String>) -> Result<Options, String> {
        let mut options = Options {
            timing: Timing { warmup: Duration::from_millis(200), measure: Duration::from_millis(2000) },
            reps: 5,
            connections: vec![1, 64],
            only: None,
            max_others_cpu: 0.1,
        };
        while let Some(arg) = args.next() {
            let mut value = |name: &str| args.next().ok_or_else(|| format!("{name} needs a value"));
            match arg.as_str() {
                // cargo bench passes --bench to every bench binary.
                "--bench" => {}
                "--quick" => {
                    options.timing = Timing { warmup: Duration::from_millis(50), measure: Duration::from_millis(200) };
                    options.reps = 1;
                }
                "--duration-ms" => options.timing.measure = Duration::from_millis(number(&value(&arg)?, &arg)?),
                "--warmup-ms" => options.timing.warmup = Duration::from_millis(number(&value(&arg)?, &arg)?),
                "--reps" => options.reps = number(&value(&arg)?, &arg)?.max(1) as usize,
                "--connections" => {
                    options.connections = value(&arg)?
                        .split(',')
                        .map(|n| number(n, &arg).map(|n| n as usize))
                        .collect::<Result<_, _>>()?;
                    if options.connections.contains(&0) {
                        return Err("--connections: at least one connection per case".into());
                    }
                }
                "--only" => options.only = Some(value(&arg)?),
                "--max-others" => {
                    let text = value(&arg)?;
                    options.max_others_cpu =
                        text.parse().map_err(|_| format!("--max-others: `{text}` is not a number of CPUs"))?;
                }
                "--help" | "-h" => return Err(String::new()),
                other => return Err(format!("unknown argument `{other}`")),
            }
        }
        if options.timing.measure.is_zero() {
            return Err("--duration-ms: the measurement needs some time".into());
        }
        Ok(options)
    }

    fn systems(&self) -> Vec<System> {
        System::ALL.into_iter().filter(|s| self.only.as_ref().is_none_or(|only| s.name().contains(only))).collect()
    }
}

fn number(text: &str, flag: &str) -> Result<u64, String> {
    text.trim().parse().map_err(|_| format!("{flag}: `{text}` is not a whole number"))
}

fn run(options: &Options) -> Result<Vec<CaseResult>, String> {
    let systems = options.systems();
    if systems.is_empty() {
        return Err(format!("--only {:?} matches no system", options.only.as_deref().unwrap_or("")));
    }
    let mut results: Vec<CaseResult> =
        options.connections.iter().flat_map(|&n| systems.iter().map(move |&s| CaseResult::new(s, n))).collect();
    // Repetitions on the outside: a burst of load from elsewhere on the
    // machine then touches every case, not one case's every repetition.
    for rep in 1..=options.reps {
        eprintln!("repetition {rep} of {} (load {})", options.reps, load_average());
        for case in &mut results {
            let (sample, others, reruns) = run_undisturbed(case.system, case.connections, options)?;
            case.add(&sample, options.timing);
            case.others_cpu.extend(others);
            case.reruns += reruns;
        }
    }
    Ok(results)
}

/// One repetition of one case, run again while other processes took more
/// than `--max-others` of the machine (the last try is kept), with the CPU
/// they took and how many times it was run again.
fn run_undisturbed(
    system: System,
    connections: usize,
    options: &Options,
) -> Result<(Sample, Option<f64>, usize), String> {
    let context = |e: String| format!("{} with {connections} connection(s): {e}", system.name());
    let mut tries = 0;
    loop {
        let before = CpuTicks::now();
        let sample = match system {
            System::TokioCurrentThread => tokio_pair::run_tokio(Flavor::CurrentThread, connections, options.timing),
            System::TokioMultiThread => tokio_pair::run_tokio(Flavor::MultiThread, connections, options.timing),
            ix => ix_pair::run_ix(ix, connections, options.timing),
        }
        .map_err(context)?;
        if sample.recorded.round_trips == 0 {
            return Err(context("no round trip completed in the window".into()));
        }
        let others = before.and_then(|b| b.others_since());
        tries += 1;
        match others {
            Some(cpu) if cpu > options.max_others_cpu && tries <= DISTURBED_RETRIES => {
                eprintln!(
                    "  {} with {connections}: other processes took {cpu:.2} CPU, running it again",
                    system.name()
                );
            }
            _ => return Ok((sample, others, tries - 1)),
        }
    }
}

fn main() -> ExitCode {
    let options = match Options::parse(std::env::args().skip(1)) {
        Ok(options) => options,
        Err(message) if message.is_empty() => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Err(message) => {
            eprintln!("echo bench: {message}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    let load_before = load_average();
    let started = Instant::now();
    let results = match run(&options) {
        Ok(results) => results,
        Err(message) => {
            eprintln!("echo bench: {message}");
            return ExitCode::FAILURE;
        }
    };
    println!(
        "TCP echo, {MESSAGE_BYTES}-byte request and response, one request in flight per connection; \
         {} x {} ms per case after {} ms of warm-up",
        options.reps,
        options.timing.measure.as_millis(),
        options.timing.warmup.as_millis()
    );
    println!(
        "server on CPU {SERVER_CPU}, client on CPU {CLIENT_CPU} (tokio multi_thread: {TOKIO_WORKER_THREADS} unpinned \
         workers each); IX idle policy in the name (busy: BusyPoll; adaptive: the default, spinning \
         for its time budget; block: no spinning)"
    );
    print_table(&results);
    println!(
        "rt/s: round trips per second (median, min..max over repetitions); vs tokio: median over \
         tokio-current-thread's; p50/p99/p99.9: latency over all repetitions; cpu: CPUs' worth of \
         user + system time the process (server and client) used over the window, median"
    );
    println!(
        "batch: frames per non-empty receive burst (* kernel backend: readiness events per epoll_wait); \
         empty: rounds of the core's loop that found nothing (both over the measured windows; a share of \
         rounds, not of time)"
    );
    println!(
        "others: CPUs' worth of user time other processes took during the case (the most of any \
         repetition kept; a few hundredths is accounting noise, 0.1 or more means the case shared \
         its CPUs); {} repetition(s) were run again for taking more than --max-others {}",
        results.iter().map(|c| c.reruns).sum::<usize>(),
        options.max_others_cpu
    );
    println!(
        "load average before {load_before}, after {}; {:.0} s in all",
        load_average(),
        started.elapsed().as_secs_f64()
    );
    ExitCode::SUCCESS
}
