//! The fuzz harnesses: one entry point per target, each taking the fuzzer's bytes and panicking only when an
//! invariant breaks. The cargo-fuzz targets in `fuzz/` and the stable replay test (`tests/corpus_replay.rs`)
//! call the same functions, listed once in [`TARGETS`].

pub mod http;
pub mod input;
pub mod ixcp;
pub mod kv;
pub mod tcp_session;
pub mod wire;

/// A fuzz target: its name (the directory of its corpus and regressions under `fuzz/`) and its entry point.
#[derive(Debug, Clone, Copy)]
pub struct Target {
    /// The cargo-fuzz binary's name and its corpus directory's.
    pub name: &'static str,
    /// Runs one input; panics when an invariant breaks.
    pub run: fn(&[u8]),
}

/// Every target, in the order `scripts/fuzz.sh` runs them.
pub const TARGETS: &[Target] = &[
    Target { name: "ethernet", run: wire::ethernet },
    Target { name: "arp", run: wire::arp },
    Target { name: "ipv4", run: wire::ipv4 },
    Target { name: "icmpv4", run: wire::icmpv4 },
    Target { name: "udp", run: wire::udp },
    Target { name: "tcp", run: wire::tcp },
    Target { name: "tcp_session", run: tcp_session::run },
    Target { name: "kv_text", run: kv::run },
    Target { name: "http_server", run: http::run },
    Target { name: "ixcp_message", run: ixcp::message },
    Target { name: "ixcp_allocation", run: ixcp::allocation },
];
