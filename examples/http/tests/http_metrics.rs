//! `ix-http --metrics ADDR`: curl scrapes the per-core counters, and every
//! line is checked against the Prometheus text format (0.0.4) independently of
//! the code that writes it; bad requests to the metrics listener are refused.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read, Write};
use std::process::Command;
use std::time::{Duration, Instant};

use support::{HttpServer, Target, curl_response, free_port, have};

/// One sample line: name, labels, value.
type Sample = (String, BTreeMap<String, String>, f64);

fn is_metric_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == ':')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

/// `{a="x",b="y"}` into a map; `None` when malformed.
fn parse_labels(text: &str) -> Option<BTreeMap<String, String>> {
    let mut labels = BTreeMap::new();
    let mut rest = text.strip_prefix('{')?.strip_suffix('}')?;
    while !rest.is_empty() {
        let (name, after) = rest.split_once("=\"")?;
        if !is_metric_name(name) || name.contains(':') {
            return None;
        }
        let mut value = String::new();
        let mut chars = after.char_indices();
        let end = loop {
            match chars.next()? {
                (_, '\\') => match chars.next()?.1 {
                    'n' => value.push('\n'),
                    c @ ('\\' | '"') => value.push(c),
                    _ => return None,
                },
                (i, '"') => break i,
                (_, c) => value.push(c),
            }
        };
        labels.insert(name.to_owned(), value);
        rest = &after[end + 1..];
        rest = rest.strip_prefix(',').unwrap_or(rest);
    }
    Some(labels)
}

/// Checks the exposition line by line: every family has one `# HELP` then one
/// `# TYPE` (counter or gauge; counters end in `_total`) before its samples,
/// which follow each other; every sample line is `name{labels} value`.
fn parse_exposition(text: &str) -> Vec<Sample> {
    let mut samples = Vec::new();
    let mut typed = BTreeSet::new();
    let mut current: Option<(String, String)> = None;
    let mut help_for: Option<String> = None;
    for (n, line) in text.lines().enumerate() {
        let at = format!("line {}: {line:?}", n + 1);
        if let Some(rest) = line.strip_prefix("# HELP ") {
            let name = rest.split(' ').next().unwrap();
            assert!(is_metric_name(name), "{at}");
            help_for = Some(name.to_owned());
        } else if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').unwrap_or_else(|| panic!("{at}"));
            assert_eq!(help_for.as_deref(), Some(name), "{at}: # HELP comes first");
            assert!(kind == "counter" || kind == "gauge", "{at}");
            assert!(kind != "counter" || name.ends_with("_total"), "{at}: counters end in _total");
            assert!(typed.insert(name.to_owned()), "{at}: a second # TYPE for {name}");
            current = Some((name.to_owned(), kind.to_owned()));
        } else {
            assert!(!line.starts_with('#') && !line.is_empty(), "{at}");
            let (series, value) = line.rsplit_once(' ').unwrap_or_else(|| panic!("{at}"));
            let value: f64 = value.parse().unwrap_or_else(|_| panic!("{at}: value"));
            let (name, labels) = match series.find('{') {
                Some(brace) => (&series[..brace], parse_labels(&series[brace..]).unwrap_or_else(|| panic!("{at}"))),
                None => (series, BTreeMap::new()),
            };
            let family = current.as_ref().map(|(f, _)| f.as_str());
            assert_eq!(family, Some(name), "{at}: a sample outside its family's block");
            samples.push((name.to_owned(), labels, value));
        }
    }
    assert!(text.ends_with('\n'), "the exposition ends with a newline");
    samples
}

fn sum(samples: &[Sample], name: &str) -> f64 {
    samples.iter().filter(|(n, _, _)| n == name).map(|(_, _, v)| v).sum()
}

#[test]
fn metrics_are_scraped_per_core_in_the_prometheus_text_format() {
    assert!(have("curl"), "curl is missing: apt-get install curl (scripts/test.sh does)");
    let metrics_port = free_port();
    let metrics_addr = format!("127.0.0.1:{metrics_port}");
    let server = HttpServer::start(Target::IxKernel, &[&format!("--metrics={metrics_addr}")]);
    const REQUESTS: usize = 20;
    for _ in 0..REQUESTS {
        assert_eq!(curl_response(&[&server.url("/")]).body, b"Hello, world!");
    }
    let url = format!("http://{metrics_addr}/metrics");
    let deadline = Instant::now() + Duration::from_secs(20);
    let (scrape, samples) = loop {
        let scrape = curl_response(&[&url]);
        assert_eq!(scrape.status, 200);
        let samples = parse_exposition(&String::from_utf8(scrape.body.clone()).unwrap());
        // Cores publish every 500 ms: wait for the snapshot that saw every connection close.
        if sum(&samples, "ix_http_http1_total") >= REQUESTS as f64 {
            break (scrape, samples);
        }
        assert!(Instant::now() < deadline, "the closed connections never showed");
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(scrape.header("content-type").as_deref(), Some("text/plain; version=0.0.4; charset=utf-8"));
    let per_core = [
        "ix_loop_rounds_total",
        "ix_queue_rx_packets_total",
        "ix_stack_events_total",
        "ix_pool_free_frames",
        "ix_executor_polls_total",
        "ix_connections",
        "ix_http_accepted_total",
        "ix_http_connections_live",
    ];
    for family in per_core {
        let cores: BTreeSet<&str> = samples
            .iter()
            .filter(|(n, _, _)| n == family)
            .filter_map(|(_, l, _)| l.get("core").map(|c| c.as_str()))
            .collect();
        assert_eq!(cores, BTreeSet::from(["0", "1"]), "{family} on both cores");
    }
    assert!(sum(&samples, "ix_loop_rounds_total") > 0.0);
    assert!(sum(&samples, "ix_executor_polls_total") > 0.0);
    assert_eq!(sum(&samples, "ix_http_http1_total"), REQUESTS as f64, "every curl spoke HTTP/1.1");
    assert_eq!(sum(&samples, "ix_http_accepted_total"), REQUESTS as f64);
    assert!(samples.iter().any(|(n, _, _)| n == "ix_blocking_threads"));

    // The listener refuses what is not a scrape, and keeps answering.
    assert_eq!(curl_response(&[&format!("http://{metrics_addr}/other")]).status, 404);
    assert_eq!(curl_response(&["-X", "POST", &url]).status, 405);
    let mut raw = std::net::TcpStream::connect(&metrics_addr).unwrap();
    raw.write_all(b"\x16\x03\x01garbage\r\n\r\n").unwrap();
    let mut answer = String::new();
    raw.read_to_string(&mut answer).unwrap();
    assert!(answer.starts_with("HTTP/1.1 400 "), "{answer}");
    let after = parse_exposition(&String::from_utf8(curl_response(&[&url]).body).unwrap());
    assert_eq!(sum(&after, "ix_metrics_bad_requests_total"), 1.0);
    assert!(server.stop().success());
}

#[test]
fn metrics_on_tokio_are_refused_with_a_reason() {
    let out = Command::new(env!("CARGO_BIN_EXE_ix-http"))
        .args(["--runtime=tokio", "--metrics=127.0.0.1:1", &format!("--port={}", free_port())])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("--metrics") && stderr.contains("--runtime ix"), "{stderr}");
}
