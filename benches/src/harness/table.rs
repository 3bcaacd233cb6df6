//! The summary of a run: per server and objective, the highest load held with
//! p99 within it (of the requests no host stall touched, and of all), the peak
//! throughput and the server's CPU per request, each as median and range over
//! the repetitions, with the ratios to the tokio server of the same workload
//! taken repetition by repetition; and the CPU-per-request points alone, per
//! network steering.

use serde::{Deserialize, Serialize};

use crate::harness::servers::{ServerKind, WorkloadKind};
use crate::harness::stats::Spread;
use crate::harness::sweep::{Plan, Point, Purpose, Searched, ServerCost};

/// A figure over repetitions and its ratio to tokio's.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Figure {
    /// The figure.
    pub value: Option<Spread>,
    /// This server's figure over the tokio server's, per repetition.
    pub vs_tokio: Option<Spread>,
}

/// The rate held within one p99 objective.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct SlaFigure {
    /// The objective, microseconds of p99.
    pub sla_us: f64,
    /// Requests per second by the p99 of the requests no host stall touched
    /// (0 in a repetition where no rate tried met it): the headline.
    pub rate: Figure,
    /// Requests per second by the p99 of all requests, read off the same points.
    pub rate_all: Figure,
    /// Whether, in some repetition, the server met it at every rate tried
    /// (the figure is then a lower bound).
    pub unbounded: bool,
}

/// One server's line of the table.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Row {
    /// The workload.
    pub workload: WorkloadKind,
    /// The server.
    pub server: ServerKind,
    /// Its IX backend and idle policy, if any.
    pub backend: Option<String>,
    /// The rate within each objective.
    pub slas: Vec<SlaFigure>,
    /// The highest throughput measured in each repetition, requests per second.
    pub peak: Figure,
    /// The server's CPU per request at the plan's cost rate, microseconds: its
    /// CPU's busy time less other processes' (the first cost point of each
    /// repetition, see [`crate::harness::sweep::ServerCost`]).
    pub cpu_us_per_request: Figure,
    /// ... the run time of the server's own threads alone, over the same window.
    #[serde(default = "Figure::none")]
    pub threads_us_per_request: Figure,
    /// The share of requests host stalls touched, percent, over the search's points.
    pub stalled_pct: Option<Spread>,
    /// Points run again for being disturbed.
    pub reruns: u32,
    /// Points disturbed even in their last run.
    pub disturbed: usize,
}

impl Figure {
    /// No figure.
    pub fn none() -> Self {
        Figure { value: None, vs_tokio: None }
    }
}

/// Per-repetition values of one server, in repetition order (`NaN` where a
/// repetition has none, so that ratios pair the right repetitions).
fn per_repetition(reps: usize, value: impl Fn(usize) -> Option<f64>) -> Vec<f64> {
    (0..reps).map(|r| value(r).unwrap_or(f64::NAN)).collect()
}

/// The rows of `workload`, in the order of [`ServerKind::ALL`].
pub fn rows(workload: WorkloadKind, points: &[Point], searches: &[Searched]) -> Vec<Row> {
    let reps = points.iter().map(|p| p.repetition + 1).max().unwrap_or(0);
    let servers =
        ServerKind::ALL.into_iter().filter(|s| s.workload() == workload && points.iter().any(|p| p.server == *s));
    let figures = |s: ServerKind| {
        let of = move |purpose: Purpose, r: usize| {
            points.iter().filter(move |p| p.server == s && p.purpose == purpose && p.repetition == r)
        };
        let peak = per_repetition(reps, |r| {
            of(Purpose::Search, r).filter_map(|p| p.report.as_ref()).map(|r| r.throughput).reduce(f64::max)
        });
        let cost = |r| of(Purpose::Cost, r).next().and_then(|p| p.cost);
        let cpu = [
            per_repetition(reps, |r| cost(r)?.server_cpu_us_per_request()),
            per_repetition(reps, |r| cost(r)?.threads_us_per_request()),
        ];
        let slas: Vec<(f64, [Vec<f64>; 2], bool)> = searches
            .iter()
            .find(|x| x.server == s)
            .map(|first| first.rates.iter().map(|r| r.sla_us).collect::<Vec<_>>())
            .unwrap_or_default()
            .into_iter()
            .map(|sla_us| {
                let found = |r: usize| {
                    searches
                        .iter()
                        .find(|x| x.server == s && x.repetition == r)?
                        .rates
                        .iter()
                        .find(|x| x.sla_us == sla_us)
                        .copied()
                };
                let rates = per_repetition(reps, |r| found(r).map(|x| x.rate.unwrap_or(0.0)));
                let rates_all = per_repetition(reps, |r| found(r).map(|x| x.rate_all.unwrap_or(0.0)));
                let unbounded = (0..reps).any(|r| found(r).is_some_and(|x| !x.bounded));
                (sla_us, [rates, rates_all], unbounded)
            })
            .collect();
        (peak, cpu, slas)
    };
    let base = ServerKind::ALL.into_iter().find(|s| s.workload() == workload && s.is_tokio_baseline()).map(figures);
    let figure = |mine: &[f64], theirs: Option<&Vec<f64>>| Figure {
        value: Spread::of(mine.iter().copied()),
        vs_tokio: theirs.and_then(|t| Spread::of_ratios(mine, t)),
    };
    servers
        .map(|server| {
            let (peak, cpu, slas) = figures(server);
            let theirs_sla =
                |sla: f64, by: usize| base.as_ref().and_then(|b| b.2.iter().find(|x| x.0 == sla).map(|x| &x.1[by]));
            let mine = points.iter().filter(|p| p.server == server);
            Row {
                workload,
                server,
                backend: mine.clone().find_map(|p| p.backend.clone()),
                slas: slas
                    .iter()
                    .map(|(sla_us, [rates, rates_all], unbounded)| SlaFigure {
                        sla_us: *sla_us,
                        rate: figure(rates, theirs_sla(*sla_us, 0)),
                        rate_all: figure(rates_all, theirs_sla(*sla_us, 1)),
                        unbounded: *unbounded,
                    })
                    .collect(),
                peak: figure(&peak, base.as_ref().map(|b| &b.0)),
                cpu_us_per_request: figure(&cpu[0], base.as_ref().map(|b| &b.1[0])),
                threads_us_per_request: figure(&cpu[1], base.as_ref().map(|b| &b.1[1])),
                stalled_pct: Spread::of(
                    mine.clone()
                        .filter(|p| p.purpose == Purpose::Search && p.report.is_some())
                        .map(|p| p.disturbance.stalled_pct),
                ),
                reruns: mine.clone().map(|p| p.reruns).sum(),
                disturbed: mine.filter(|p| p.disturbed).count(),
            }
        })
        .collect()
}

/// A latency objective in human units: `500 us`, `1 ms`.
pub fn sla_label(sla_us: f64) -> String {
    if sla_us >= 1000.0 { format!("{} ms", sla_us / 1000.0) } else { format!("{sla_us} us") }
}

/// Microseconds with one decimal.
fn us(v: f64) -> String {
    format!("{v:.1}")
}

fn cell(f: &Figure, number: fn(f64) -> String) -> [String; 2] {
    let show = |s: &Option<Spread>, n: fn(f64) -> String| s.map_or_else(|| "-".to_string(), |s| s.show(n));
    [show(&f.value, number), show(&f.vs_tokio, |v| format!("{v:.2}"))]
}

/// The table as Markdown (also readable as plain text). Each figure is
/// `median [min-max]` over the repetitions.
pub fn markdown(rows: &[Row]) -> String {
    let slas: Vec<f64> = rows.first().map(|r| r.slas.iter().map(|s| s.sla_us).collect()).unwrap_or_default();
    let mut head = "| workload | server | backend |".to_string();
    for &sla in &slas {
        head += &format!(" req/s at p99 <= {} | x tokio | by p99 of all | x tokio |", sla_label(sla));
    }
    head += " peak req/s | x tokio | server CPU us/req | x tokio | its threads us/req | x tokio | stalled % | re-run / \
             disturbed |\n|---|---|---|";
    head += &"---:|".repeat(4 * slas.len() + 8);
    let mut out = head + "\n";
    let rate = |v: f64| format!("{:.1}k", v / 1000.0);
    for r in rows {
        out += &format!(
            "| {} | {} | {} |",
            r.workload.name(),
            r.server.name(),
            r.backend.as_deref().unwrap_or("kernel TCP")
        );
        for s in &r.slas {
            let at_least = if s.unbounded { ">= " } else { "" };
            let [v, x] = cell(&s.rate, rate);
            let [va, xa] = cell(&s.rate_all, rate);
            out += &format!(" {at_least}{v} | {x} | {at_least}{va} | {xa} |");
        }
        let [pv, px] = cell(&r.peak, rate);
        let [cv, cx] = cell(&r.cpu_us_per_request, us);
        let [tv, tx] = cell(&r.threads_us_per_request, us);
        let stalled = r.stalled_pct.map_or_else(|| "-".to_string(), |s| s.show(|v| format!("{v:.0}")));
        out += &format!(" {pv} | {px} | {cv} | {cx} | {tv} | {tx} | {stalled} | {} / {} |\n", r.reruns, r.disturbed);
    }
    out
}

/// How the figures were obtained, printed under the table.
pub fn procedure(plan: &Plan) -> String {
    let l = &plan.disturbance_limits;
    let slas: Vec<String> = plan.http.slas_us.iter().map(|&s| sla_label(s)).collect();
    format!(
        "Procedure: {reps} repetition(s); in each, every server in turn (interleaved: A B C, A B C, ...). Per server \
         and repetition: open-loop Poisson load, {conns} connections, {warm:.1} s warm-up + {dur:.1} s measured per \
         point, on an ascending grid of rates up to the first not kept up (< 95% completed, > 1% abandoned, or \
         errors), then {steps} bisection step(s) per p99 objective ({slas}) between the highest rate that met it and \
         the lowest that did not. Stalls: a thread of the load generator reads every CPU's steal counter \
         (/proc/stat) each 5 ms; a rise of d ticks (10 ms each) marks the interval from d + 1 ticks and one \
         scheduler tick before the earlier sample to {recovery} times the stall's length after the rise was seen \
         (its backlog draining); so does each wait of {run_delay} us or more for a CPU by a thread of the server \
         or the generator (/proc/PID/task/TID/schedstat: another process's time slice). A request whose life \
         (intended send to response) overlaps such an interval is \"stalled\". The search follows the p99 of the other requests: the server's own tail, since one 100 ms \
         stall of the VM's host in a point of a few seconds sets the p99 of all requests by itself. \"req/s at p99 \
         <= X\": that highest rate (0 if none; \">=\" when no rate tried failed); \"by p99 of all\": the same read \
         off the same points by the p99 of all requests, stalls included (no bisection of its own). \"stalled %\": \
         the share of requests stalls touched per search point. Peak: the highest throughput measured. {cost_text} \
         Every figure is median [min-max] over the repetitions; \"x tokio\" is the median [min-max] of the \
         per-repetition ratios. A point is run again (up to {reruns} times) when stalls touched more than \
         {stalled}% of its requests{steal}{others}; \"re-run / disturbed\" counts the re-runs and the points still \
         disturbed in their last run.",
        reps = plan.repetitions,
        conns = plan.connections,
        warm = plan.warmup.as_secs_f64(),
        dur = plan.duration.as_secs_f64(),
        steps = plan.http.bisect_steps,
        slas = slas.join(", "),
        cost_text = cost_procedure(plan),
        reruns = plan.max_reruns,
        steal = if l.steal_pct.is_finite() {
            format!(", the host stole more than {}% of the CPUs", l.steal_pct)
        } else {
            String::new()
        },
        others = if l.others_cpus.is_finite() {
            format!(", other processes took more than {} CPUs", l.others_cpus)
        } else {
            String::new()
        },
        stalled = l.stalled_pct,
        recovery = crate::harness::stalls::STALL_RECOVERY,
        run_delay = crate::harness::stalls::RUN_DELAY_STALL_MIN_US,
    )
}

/// How the CPU per request is measured, for the procedure under a table.
pub fn cost_procedure(plan: &Plan) -> String {
    format!(
        "Server CPU: at {rate:.0} req/s (IX with --idle block), over the measured window alone (read by the load \
         generator within 5 ms of its start and end), the busy time of the server's CPU (/proc/stat: not idle, not \
         stolen) less other processes' time there (that CPU's process time less the run time of the server's \
         threads and of its NAPI threads, /proc/PID/task/TID/schedstat), per request completed in the window; with \
         the network steered (testnet.sh steer: each side's receive work on its own CPU) that is the server's own \
         work: its threads, system calls and receive. \"its threads\": their run time alone.",
        rate = plan.cost_rate
    )
}

/// One server's CPU per request with one network steering, over the
/// repetitions.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CostRow {
    /// The server.
    pub server: ServerKind,
    /// Its IX backend and idle policy, if any.
    pub backend: Option<String>,
    /// Whether each side's receive work ran on its own CPU.
    pub steered: bool,
    /// The server's CPU per request, microseconds, with the ratio to the
    /// tokio server of the workload under the same steering.
    pub server_cpu_us: Figure,
    /// Its threads' run time per request, microseconds.
    pub threads_us: Figure,
    /// The figure before: its threads' CPU over the whole load run per
    /// request of the window, microseconds.
    pub threads_over_run_us: Figure,
    /// The server CPU's softirq time per request, microseconds.
    pub softirq_us: Option<Spread>,
    /// Its NAPI threads' run time per request, microseconds.
    pub receive_threads_us: Option<Spread>,
    /// Other processes' share of the server's CPU, percent.
    pub others_pct: Option<Spread>,
    /// The offered and the achieved rate, requests per second.
    pub throughput: Option<Spread>,
}

/// The cost points grouped by server and steering, in the order of
/// [`ServerKind::ALL`], steered first.
pub fn cost_rows(points: &[Point]) -> Vec<CostRow> {
    let reps = points.iter().map(|p| p.repetition + 1).max().unwrap_or(0);
    let of = |server: ServerKind, steered: bool, r: usize| {
        points.iter().find(|p| {
            p.purpose == Purpose::Cost && p.server == server && p.steering.is_some() == steered && p.repetition == r
        })
    };
    let figures = |server: ServerKind, steered: bool| {
        let value = |f: fn(&Point) -> Option<f64>| per_repetition(reps, |r| of(server, steered, r).and_then(f));
        [
            value(Point::server_cpu_us_per_request),
            value(|p| p.cost?.threads_us_per_request()),
            value(Point::threads_cpu_over_run_us_per_request),
        ]
    };
    let mut rows = Vec::new();
    for steered in [true, false] {
        for server in ServerKind::ALL {
            if (0..reps).all(|r| of(server, steered, r).is_none()) {
                continue;
            }
            let base = ServerKind::ALL
                .into_iter()
                .find(|b| b.workload() == server.workload() && b.is_tokio_baseline())
                .map(|b| figures(b, steered));
            let mine = figures(server, steered);
            let figure = |i: usize| Figure {
                value: Spread::of(mine[i].iter().copied()),
                vs_tokio: base.as_ref().and_then(|b| Spread::of_ratios(&mine[i], &b[i])),
            };
            let cost = |f: fn(&ServerCost) -> Option<f64>| {
                Spread::of((0..reps).filter_map(|r| of(server, steered, r)?.cost.as_ref().and_then(f)))
            };
            rows.push(CostRow {
                server,
                backend: (0..reps).find_map(|r| of(server, steered, r)?.backend.clone()),
                steered,
                server_cpu_us: figure(0),
                threads_us: figure(1),
                threads_over_run_us: figure(2),
                softirq_us: cost(ServerCost::softirq_us_per_request),
                receive_threads_us: cost(ServerCost::receive_threads_us_per_request),
                others_pct: cost(|c| Some(c.others_pct())),
                throughput: Spread::of(
                    (0..reps).filter_map(|r| of(server, steered, r)?.report.as_ref().map(|x| x.throughput)),
                ),
            });
        }
    }
    rows
}

/// The cost table as Markdown; figures are median [min-max].
pub fn cost_markdown(rows: &[CostRow]) -> String {
    let mut out = "| network | server | backend, idle | req/s | server CPU us/req | x tokio | its threads us/req | x tokio \
                   | softirq us/req | NAPI threads us/req | others on its CPU % | before: threads over the run us/req | \
                   x tokio |\n|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n"
        .to_string();
    let show = |s: &Option<Spread>, n: fn(f64) -> String| s.map_or_else(|| "-".to_string(), |s| s.show(n));
    for r in rows {
        let [cv, cx] = cell(&r.server_cpu_us, us);
        let [tv, tx] = cell(&r.threads_us, us);
        let [ov, ox] = cell(&r.threads_over_run_us, us);
        out += &format!(
            "| {} | {} | {} | {} | {cv} | {cx} | {tv} | {tx} | {} | {} | {} | {ov} | {ox} |\n",
            if r.steered { "steered" } else { "unsteered" },
            r.server.name(),
            r.backend.as_deref().unwrap_or("kernel TCP"),
            show(&r.throughput, |v| format!("{:.1}k", v / 1000.0)),
            show(&r.softirq_us, us),
            show(&r.receive_threads_us, us),
            show(&r.others_pct, |v| format!("{v:.0}")),
        );
    }
    out
}

/// One server (and IX idle policy) at one connection count, closed loop.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ClosedRow {
    /// The server.
    pub server: ServerKind,
    /// Its IX backend and idle policy, if any.
    pub backend: Option<String>,
    /// Connections.
    pub connections: usize,
    /// Requests per second.
    pub throughput: Option<Spread>,
    /// Latency percentiles, microseconds.
    pub p50_us: Option<Spread>,
    /// ... p99 of the requests no host stall touched.
    pub p99_us: Option<Spread>,
    /// ... p99 of all requests.
    pub p99_all_us: Option<Spread>,
    /// The share of requests host stalls touched, percent.
    pub stalled_pct: Option<Spread>,
    /// CPUs' worth of time the server's threads used.
    pub server_cpus: Option<Spread>,
    /// Points run again for being disturbed, and points still disturbed.
    pub reruns: u32,
    /// ...
    pub disturbed: usize,
}

/// The closed-loop points grouped by server, backend (idle policy) and
/// connection count, in the order first measured.
pub fn closed_rows(points: &[Point]) -> Vec<ClosedRow> {
    let closed: Vec<&Point> = points.iter().filter(|p| p.purpose == Purpose::Closed).collect();
    let mut keys: Vec<(ServerKind, Option<String>, usize)> = Vec::new();
    for p in &closed {
        let key = (p.server, p.backend.clone(), p.connections);
        if !keys.contains(&key) {
            keys.push(key);
        }
    }
    keys.into_iter()
        .map(|(server, backend, connections)| {
            let mine: Vec<&&Point> = closed
                .iter()
                .filter(|p| p.server == server && p.backend == backend && p.connections == connections)
                .collect();
            let report = |f: fn(&crate::loadgen::Report) -> f64| {
                Spread::of(mine.iter().filter_map(|p| p.report.as_ref().map(f)))
            };
            ClosedRow {
                server,
                backend,
                connections,
                throughput: report(|r| r.throughput),
                p50_us: report(|r| r.latency_us.p50),
                p99_us: Spread::of(mine.iter().filter_map(|p| p.p99_unstalled_us())),
                p99_all_us: report(|r| r.latency_us.p99),
                stalled_pct: report(|r| r.stalls.map_or(0.0, |s| s.stalled_pct)),
                server_cpus: Spread::of(mine.iter().filter_map(|p| p.server_cpus())),
                reruns: mine.iter().map(|p| p.reruns).sum(),
                disturbed: mine.iter().filter(|p| p.disturbed).count(),
            }
        })
        .collect()
}

/// The closed-loop table as Markdown; figures are median [min-max].
pub fn closed_markdown(rows: &[ClosedRow]) -> String {
    let mut out = "| server | backend, idle | connections | req/s | p50 | p99 unstalled | p99 all | stalled % | \
                   server CPUs | re-run / disturbed |\n|---|---|---:|---:|---:|---:|---:|---:|---:|---:|\n"
        .to_string();
    let show = |s: &Option<Spread>, n: fn(f64) -> String| s.map_or_else(|| "-".to_string(), |s| s.show(n));
    for r in rows {
        out += &format!(
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} / {} |\n",
            r.server.name(),
            r.backend.as_deref().unwrap_or("kernel TCP"),
            r.connections,
            show(&r.throughput, |v| format!("{:.1}k", v / 1000.0)),
            show(&r.p50_us, crate::harness::plot::human_us),
            show(&r.p99_us, crate::harness::plot::human_us),
            show(&r.p99_all_us, crate::harness::plot::human_us),
            show(&r.stalled_pct, |v| format!("{v:.0}")),
            show(&r.server_cpus, |v| format!("{v:.2}")),
            r.reruns,
            r.disturbed,
        );
    }
    out
}
