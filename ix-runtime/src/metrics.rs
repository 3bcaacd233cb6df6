//! Per-core counters in the Prometheus text format (version 0.0.4), served by a
//! thread of its own from a kernel-socket listener, so that a scrape works on
//! every backend and never runs on a polling core.
//!
//! Each core publishes a snapshot of its [`CoreStats`] (and the application's
//! own counters) to a shared [`MetricsBoard`] every period, with
//! [`MetricsBoard::publish_while`]; [`serve_metrics`] renders the latest
//! snapshots for each `GET /metrics`. A scrape is at most one period stale.

use std::collections::HashMap;
use std::convert::Infallible;
use std::fmt::Write as _;
use std::future::{Future, poll_fn};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::pin::pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::Poll;
use std::time::Duration;

use crate::CoreStats;
use crate::blocking::{BlockingPool, BlockingStats};

/// How often cores publish their counters unless told otherwise: a scrape is at most this stale.
pub const PUBLISH_PERIOD_DEFAULT: Duration = Duration::from_millis(500);
/// Largest request head the metrics listener reads; longer ones get 400.
pub const METRICS_REQUEST_MAX_BYTES: usize = 8 * 1024;
/// How long the metrics listener waits on one client's reads or writes.
pub const METRICS_CLIENT_TIMEOUT: Duration = Duration::from_secs(2);

/// A Prometheus metric type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetricKind {
    /// Only grows (names end in `_total`).
    Counter,
    /// Goes up and down.
    Gauge,
}

impl MetricKind {
    fn as_str(self) -> &'static str {
        match self {
            MetricKind::Counter => "counter",
            MetricKind::Gauge => "gauge",
        }
    }
}

/// One of an application's own per-core counters, published beside the runtime's.
#[derive(Debug, Clone, Copy)]
pub struct AppSample {
    /// Metric name, `[a-zA-Z_:][a-zA-Z0-9_:]*`.
    pub name: &'static str,
    /// The `# HELP` text.
    pub help: &'static str,
    /// Counter or gauge.
    pub kind: MetricKind,
    /// Its value on this core now.
    pub value: u64,
}

struct Family {
    name: String,
    help: String,
    kind: MetricKind,
    /// `{labels} value` lines, labels already rendered.
    samples: Vec<(String, u64)>,
}

/// A Prometheus text exposition being written: samples are grouped by metric
/// name, each family once with its `# HELP` and `# TYPE`, in first-seen order.
#[derive(Default)]
pub struct PrometheusText {
    families: Vec<Family>,
    index: HashMap<String, usize>,
}

impl std::fmt::Debug for PrometheusText {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PrometheusText").field("families", &self.families.len()).finish()
    }
}

/// `\`, `"` and newlines escaped, as label values need.
fn escape_label_value(value: &str) -> String {
    value.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

impl PrometheusText {
    /// An empty exposition.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds one sample of family `name`. A family's help and kind are those of its first sample.
    ///
    /// # Panics
    /// When `name` or a label name is not a valid Prometheus name (a bug in the caller).
    pub fn sample(&mut self, name: &str, help: &str, kind: MetricKind, labels: &[(&str, &str)], value: u64) {
        assert!(valid_name(name), "not a Prometheus metric name: {name:?}");
        let mut rendered = String::new();
        if !labels.is_empty() {
            rendered.push('{');
            for (i, (label, value)) in labels.iter().enumerate() {
                assert!(valid_name(label) && !label.contains(':'), "not a Prometheus label name: {label:?}");
                let comma = if i == 0 { "" } else { "," };
                let _ = write!(rendered, "{comma}{label}=\"{}\"", escape_label_value(value));
            }
            rendered.push('}');
        }
        let at = *self.index.entry(name.to_owned()).or_insert_with(|| {
            let help = help.replace('\\', "\\\\").replace('\n', "\\n");
            self.families.push(Family { name: name.to_owned(), help, kind, samples: Vec::new() });
            self.families.len() - 1
        });
        self.families[at].samples.push((rendered, value));
    }

    /// Every counter of one core, labelled `core="N"`: its loop, queue, stack
    /// (`ix_stack_events_total{layer, counter}`), packet pool, executor and,
    /// on the `kernel` backend, reactor.
    pub fn core_stats(&mut self, stats: &CoreStats) {
        use MetricKind::{Counter, Gauge};
        let core = stats.core.to_string();
        let labels = [("core", core.as_str())];
        let l = &stats.r#loop;
        let q = &stats.queue;
        let e = &stats.executor;
        let r = &stats.reactor;
        let rows: [(&str, &str, MetricKind, u64); 37] = [
            ("ix_loop_rounds_total", "Rounds of the core's loop.", Counter, l.rounds),
            ("ix_loop_batches_total", "Receive bursts that returned frames.", Counter, l.batches),
            ("ix_loop_rx_packets_total", "Frames the loop received.", Counter, l.rx_packets),
            ("ix_loop_empty_rounds_total", "Rounds that found nothing to do.", Counter, l.empty_rounds),
            ("ix_loop_blocks_total", "Times the core blocked waiting for work.", Counter, l.blocks),
            ("ix_loop_tx_packets_total", "Frames the loop transmitted.", Counter, l.tx_packets),
            ("ix_loop_tasks_polled_total", "Tasks the loop polled.", Counter, l.tasks_polled),
            ("ix_loop_handed_over_total", "Frames of another core's flow sent to it.", Counter, l.handed_over),
            (
                "ix_loop_handover_dropped_total",
                "Hand-overs dropped: the owner's queue was full.",
                Counter,
                l.handover_dropped,
            ),
            (
                "ix_loop_handover_owner_stopped_total",
                "Hand-overs dropped: the owner core had stopped.",
                Counter,
                l.handover_owner_stopped,
            ),
            ("ix_queue_rx_packets_total", "Frames the NIC queue received.", Counter, q.rx_packets),
            ("ix_queue_rx_bytes_total", "Bytes the NIC queue received.", Counter, q.rx_bytes),
            ("ix_queue_rx_drops_total", "Frames the NIC queue dropped on receive.", Counter, q.rx_drops),
            ("ix_queue_tx_packets_total", "Frames the NIC queue sent.", Counter, q.tx_packets),
            ("ix_queue_tx_bytes_total", "Bytes the NIC queue sent.", Counter, q.tx_bytes),
            ("ix_queue_tx_drops_total", "Frames the NIC queue dropped on transmit.", Counter, q.tx_drops),
            (
                "ix_queue_pool_exhausted_total",
                "Times the queue found the packet pool empty.",
                Counter,
                q.pool_exhausted,
            ),
            ("ix_queue_empty_polls_total", "Receive polls that found nothing.", Counter, q.empty_polls),
            ("ix_queue_hw_rx_packets_total", "Frames received, as the NIC counted them.", Counter, q.hw_rx_packets),
            ("ix_queue_hw_rx_bytes_total", "Bytes received, as the NIC counted them.", Counter, q.hw_rx_bytes),
            ("ix_queue_hw_tx_packets_total", "Frames sent, as the NIC counted them.", Counter, q.hw_tx_packets),
            ("ix_queue_hw_tx_bytes_total", "Bytes sent, as the NIC counted them.", Counter, q.hw_tx_bytes),
            ("ix_pool_free_frames", "Packet buffers free in the core's pool.", Gauge, u64::from(stats.pool_free)),
            ("ix_pool_capacity_frames", "Packet buffers in the core's pool.", Gauge, u64::from(stats.pool_capacity)),
            (
                "ix_pool_buffer_waits_total",
                "Times a task waited for a free packet buffer.",
                Counter,
                stats.buffer_waits,
            ),
            (
                "ix_pool_handover_lost_total",
                "Handed-over frames dropped: no free buffer.",
                Counter,
                stats.handover_lost,
            ),
            ("ix_connections", "Open TCP connections (kernel backend: open sockets).", Gauge, stats.connections),
            ("ix_executor_spawned_total", "Tasks spawned on the core.", Counter, e.spawned),
            ("ix_executor_remote_spawned_total", "Tasks spawned from other threads.", Counter, e.remote_spawned),
            ("ix_executor_completed_total", "Tasks finished.", Counter, e.completed),
            ("ix_executor_polls_total", "Task polls.", Counter, e.polls),
            ("ix_executor_panics_total", "Tasks that panicked.", Counter, e.panics),
            ("ix_executor_remote_wakes_total", "Wakes from other threads.", Counter, e.remote_wakes),
            ("ix_executor_budget_yields_total", "Tasks made to yield by the poll budget.", Counter, e.budget_yields),
            ("ix_reactor_waits_total", "epoll waits (kernel backend).", Counter, r.waits),
            ("ix_reactor_events_total", "epoll events (kernel backend).", Counter, r.events),
            ("ix_reactor_registered", "Sockets registered with epoll (kernel backend).", Gauge, r.registered),
        ];
        self.rows(&rows, &labels);
        stats.stack.for_each(|layer, counter, value| {
            let layer = layer.to_ascii_lowercase();
            let labels = [("core", core.as_str()), ("layer", layer.as_str()), ("counter", counter)];
            self.sample("ix_stack_events_total", "The TCP/IP stack's counters.", Counter, &labels, value);
        });
        for (identity, total, parts) in stats.stack.identities() {
            let labels = [("core", core.as_str()), ("identity", identity)];
            let help =
                "Received frames or segments a stack's counters do not account for (|in - sum of fates|; 0 always).";
            self.sample("ix_stack_unaccounted", help, Gauge, &labels, total.abs_diff(parts));
        }
    }

    /// An application's own counters of one core, labelled `core="N"`.
    pub fn app_samples(&mut self, core: usize, samples: &[AppSample]) {
        let core = core.to_string();
        for s in samples {
            self.sample(s.name, s.help, s.kind, &[("core", &core)], s.value);
        }
    }

    /// The process-wide blocking pool's counters (no `core` label).
    pub fn blocking_pool(&mut self, stats: &BlockingStats) {
        use MetricKind::{Counter, Gauge};
        let rows: [(&str, &str, MetricKind, u64); 6] = [
            ("ix_blocking_threads", "Blocking pool threads alive.", Gauge, stats.threads),
            ("ix_blocking_busy_threads", "Blocking pool threads running a closure.", Gauge, stats.busy),
            ("ix_blocking_queued", "Closures waiting for a blocking pool thread.", Gauge, stats.queued),
            ("ix_blocking_completed_total", "Blocking closures that ran.", Counter, stats.completed),
            ("ix_blocking_rejected_total", "Blocking closures refused: the queue was full.", Counter, stats.rejected),
            ("ix_blocking_cancelled_total", "Blocking closures dropped unrun at shutdown.", Counter, stats.cancelled),
        ];
        self.rows(&rows, &[]);
    }

    /// One sample per `(name, help, kind, value)` row, each with `labels`.
    fn rows(&mut self, rows: &[(&str, &str, MetricKind, u64)], labels: &[(&str, &str)]) {
        for &(name, help, kind, value) in rows {
            self.sample(name, help, kind, labels, value);
        }
    }

    /// The exposition: for each family `# HELP`, `# TYPE`, then its samples.
    pub fn render(&self) -> String {
        let mut out = String::new();
        for family in &self.families {
            let _ = writeln!(out, "# HELP {} {}", family.name, family.help);
            let _ = writeln!(out, "# TYPE {} {}", family.name, family.kind.as_str());
            for (labels, value) in &family.samples {
                let _ = writeln!(out, "{}{labels} {value}", family.name);
            }
        }
        out
    }
}

fn valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == ':')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

/// The latest snapshot each core published.
#[derive(Debug, Clone)]
struct Published {
    stats: CoreStats,
    app: Vec<AppSample>,
}

/// Where cores publish their counters and the metrics thread reads them.
#[derive(Debug, Default)]
pub struct MetricsBoard {
    cores: Mutex<Vec<Option<Published>>>,
    bad_requests: AtomicU64,
}

impl MetricsBoard {
    /// An empty board.
    pub fn new() -> Arc<MetricsBoard> {
        Arc::new(MetricsBoard::default())
    }

    /// Replaces core `stats.core`'s snapshot.
    pub fn publish(&self, stats: CoreStats, app: Vec<AppSample>) {
        let mut cores = self.cores.lock().unwrap_or_else(PoisonError::into_inner);
        if cores.len() <= stats.core {
            cores.resize(stats.core + 1, None);
        }
        cores[stats.core] = Some(Published { stats, app });
    }

    /// On a core: publishes [`crate::stats`] and `app()` now and every
    /// `period`, forever (it never returns).
    ///
    /// # Panics
    /// Outside a task of an IX runtime.
    ///
    /// # Cancel safety
    /// Cancel-safe: dropping it stops the publishing; the last snapshot stays.
    pub async fn publish_every(&self, period: Duration, mut app: impl FnMut() -> Vec<AppSample>) -> Infallible {
        let mut ticks = crate::time::interval(period);
        loop {
            ticks.tick().await;
            self.publish(crate::stats(), app());
        }
    }

    /// On a core: runs `work` and, until it completes, publishes as
    /// [`publish_every`](Self::publish_every) does; returns `work`'s output.
    ///
    /// # Panics
    /// Outside a task of an IX runtime.
    ///
    /// # Cancel safety
    /// As cancel-safe as `work`: dropping it drops `work` and stops the publishing.
    pub async fn publish_while<F: Future>(
        &self,
        period: Duration,
        app: impl FnMut() -> Vec<AppSample>,
        work: F,
    ) -> F::Output {
        let mut work = pin!(work);
        let mut publishing = pin!(self.publish_every(period, app));
        poll_fn(|cx| {
            if let Poll::Ready(output) = work.as_mut().poll(cx) {
                return Poll::Ready(output);
            }
            match publishing.as_mut().poll(cx) {
                Poll::Ready(never) => match never {},
                Poll::Pending => Poll::Pending,
            }
        })
        .await
    }

    /// The exposition of every core's latest snapshot, the blocking pool and
    /// the metrics listener's own count of refused requests.
    pub fn render(&self) -> String {
        let mut text = PrometheusText::new();
        {
            let cores = self.cores.lock().unwrap_or_else(PoisonError::into_inner);
            for published in cores.iter().flatten() {
                text.core_stats(&published.stats);
            }
            for published in cores.iter().flatten() {
                text.app_samples(published.stats.core, &published.app);
            }
        }
        text.blocking_pool(&BlockingPool::global().stats());
        let bad = self.bad_requests.load(Ordering::Relaxed);
        text.sample(
            "ix_metrics_bad_requests_total",
            "Requests the metrics listener refused.",
            MetricKind::Counter,
            &[],
            bad,
        );
        text.render()
    }
}

/// Binds `addr` (a kernel socket, whatever the runtime's backend) and serves
/// `GET /metrics` there on a thread named `ix-metrics`, one client at a time
/// (each bounded by [`METRICS_CLIENT_TIMEOUT`] and [`METRICS_REQUEST_MAX_BYTES`]),
/// until the process exits; returns the board for the cores to publish to.
/// Other paths get 404, other methods 405, malformed or oversized requests 400 (counted).
///
/// # Errors
/// When `addr` cannot be bound or the thread cannot be started.
pub fn serve_metrics(addr: SocketAddr) -> std::io::Result<Arc<MetricsBoard>> {
    let listener = TcpListener::bind(addr)?;
    let board = MetricsBoard::new();
    let shared = board.clone();
    std::thread::Builder::new().name("ix-metrics".to_owned()).spawn(move || {
        for stream in listener.incoming() {
            match stream {
                Ok(stream) => {
                    if let Err(e) = answer_scrape(stream, &shared) {
                        tracing::debug!(error = %e, "metrics client");
                    }
                }
                Err(e) => tracing::warn!(error = %e, "metrics listener: accept failed"),
            }
        }
    })?;
    Ok(board)
}

/// Reads one request head and answers it; the connection is closed after.
fn answer_scrape(mut stream: TcpStream, board: &MetricsBoard) -> std::io::Result<()> {
    stream.set_read_timeout(Some(METRICS_CLIENT_TIMEOUT))?;
    stream.set_write_timeout(Some(METRICS_CLIENT_TIMEOUT))?;
    let mut head = Vec::with_capacity(512);
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        if head.len() > METRICS_REQUEST_MAX_BYTES {
            break;
        }
        let n = stream.read(&mut buf)?;
        if n == 0 {
            break;
        }
        head.extend_from_slice(&buf[..n]);
    }
    let request_line = head.split(|&b| b == b'\n').next().unwrap_or_default();
    let mut parts = request_line.strip_suffix(b"\r").unwrap_or(request_line).split(|&b| b == b' ');
    let (method, path, version) = (parts.next(), parts.next(), parts.next());
    let well_formed = head.len() <= METRICS_REQUEST_MAX_BYTES
        && head.windows(4).any(|w| w == b"\r\n\r\n")
        && version.is_some_and(|v| v.starts_with(b"HTTP/1."))
        && parts.next().is_none();
    let (status, body) = match (well_formed, method, path) {
        (false, _, _) => {
            board.bad_requests.fetch_add(1, Ordering::Relaxed);
            ("400 Bad Request", "bad request\n".to_owned())
        }
        (true, Some(b"GET"), Some(b"/metrics")) => ("200 OK", board.render()),
        (true, Some(b"GET"), _) => ("404 Not Found", "not found: try /metrics\n".to_owned()),
        (true, _, _) => ("405 Method Not Allowed", "method not allowed\n".to_owned()),
    };
    let content_type = "text/plain; version=0.0.4; charset=utf-8";
    let response = format!(
        "HTTP/1.1 {status}\r\ncontent-type: {content_type}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(response.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn families_are_grouped_with_help_and_type_once() {
        let mut text = PrometheusText::new();
        text.sample("a_total", "A.", MetricKind::Counter, &[("core", "0")], 1);
        text.sample("b", "B.", MetricKind::Gauge, &[], 7);
        text.sample("a_total", "A.", MetricKind::Counter, &[("core", "1")], 2);
        assert_eq!(
            text.render(),
            "# HELP a_total A.\n# TYPE a_total counter\na_total{core=\"0\"} 1\na_total{core=\"1\"} 2\n\
             # HELP b B.\n# TYPE b gauge\nb 7\n"
        );
    }

    #[test]
    fn label_values_and_help_are_escaped() {
        let mut text = PrometheusText::new();
        text.sample("x", "two\nlines \\", MetricKind::Gauge, &[("v", "a\"b\\c\nd")], 0);
        assert_eq!(text.render(), "# HELP x two\\nlines \\\\\n# TYPE x gauge\nx{v=\"a\\\"b\\\\c\\nd\"} 0\n");
    }

    #[test]
    #[should_panic(expected = "not a Prometheus metric name")]
    fn a_bad_metric_name_is_a_bug() {
        PrometheusText::new().sample("1bad-name", "", MetricKind::Gauge, &[], 0);
    }

    #[test]
    fn every_core_counter_is_rendered_per_core() {
        let mut text = PrometheusText::new();
        for core in 0..2 {
            let mut stats = CoreStats { core, ..CoreStats::default() };
            stats.r#loop.rounds = 10 + core as u64;
            stats.stack.tcp.fast_retransmits = 3;
            // Core 1 received two segments and accounted for one.
            stats.stack.tcp.in_segs = 2 * core as u64;
            stats.stack.tcp.in_to_conn = core as u64;
            text.core_stats(&stats);
        }
        let out = text.render();
        assert!(out.contains("ix_loop_rounds_total{core=\"0\"} 10\nix_loop_rounds_total{core=\"1\"} 11\n"), "{out}");
        assert!(out.contains("ix_stack_events_total{core=\"1\",layer=\"tcp\",counter=\"fast_retransmits\"} 3\n"));
        assert_eq!(out.matches("# TYPE ix_stack_events_total counter").count(), 1);
        assert!(out.contains("ix_stack_unaccounted{core=\"0\",identity=\"tcp.in_segs\"} 0\n"), "{out}");
        assert!(out.contains("ix_stack_unaccounted{core=\"1\",identity=\"tcp.in_segs\"} 1\n"), "{out}");
    }
}
