//! Header prediction changes no outcome: the same conversations, with the
//! same seeds and faults, run once with `TcpConfig::header_prediction` on and
//! once off, put the same frames on the wire at the same virtual instants and
//! end with the same counters (but `header_predicted`).

mod support;

use std::collections::VecDeque;
use std::net::SocketAddrV4;

use bytes::Bytes;
use ix_driver::mem::FaultConfig;
use ix_net::tcp::LossDetection;
use ix_net::{SocketHandle, Stack, StackConfig, StackStats};
use support::{Sim, addr};

const PORT: u16 = 7000;
/// Connections the client opens to the echo server.
const CONNECTIONS: usize = 3;
/// Messages each connection sends and waits to see echoed.
const MESSAGES: usize = 24;
/// Message sizes, taken in turn: single bytes and one-segment requests,
/// messages of a few segments, and flights of dozens.
const MESSAGE_BYTES: [usize; 6] = [64, 1, 3000, 64, 60_000, 700];
/// Virtual time after which a run counts as stalled.
const SIM_LIMIT_MICROS: u64 = 900 * 1_000_000;

/// What one run left behind.
#[derive(Debug, PartialEq)]
struct Outcome {
    /// Every frame each node sent: (virtual microseconds, hash of its bytes).
    frames: Vec<Vec<(u64, u64)>>,
    /// Each node's counters, with `header_predicted` set aside.
    stats: Vec<StackStats>,
    /// `header_predicted` of both nodes together.
    predicted: u64,
}

fn message(conn: usize, index: usize) -> Bytes {
    let len = MESSAGE_BYTES[(conn + index) % MESSAGE_BYTES.len()];
    (0..len).map(|i| (i.wrapping_mul(31) ^ conn.wrapping_mul(7) ^ index) as u8).collect::<Vec<_>>().into()
}

/// One client connection: sends a message, waits for all of it to come back.
struct Caller {
    handle: SocketHandle,
    conn: usize,
    sent_messages: usize,
    current: Bytes,
    sent: usize,
    echoed: usize,
    shut: bool,
    eof: bool,
}

impl Caller {
    fn drive(&mut self, stack: &mut Stack) -> Result<(), String> {
        while self.sent < self.current.len() {
            let n = stack.tcp_send(self.handle, self.current.slice(self.sent..)).map_err(|e| format!("send: {e}"))?;
            if n == 0 {
                break;
            }
            self.sent += n;
        }
        while let Some(chunk) = stack.tcp_recv(self.handle).map_err(|e| format!("recv: {e}"))? {
            let end = self.echoed + chunk.len();
            if end > self.current.len() || chunk[..] != self.current[self.echoed..end] {
                return Err(format!("connection {} message {}: a wrong echo", self.conn, self.sent_messages));
            }
            self.echoed = end;
        }
        if self.echoed == self.current.len() && self.sent_messages < MESSAGES {
            self.sent_messages += 1;
            self.current = message(self.conn, self.sent_messages);
            (self.sent, self.echoed) = (0, 0);
        }
        if self.sent_messages == MESSAGES && self.echoed == self.current.len() && !self.shut {
            stack.tcp_shutdown(self.handle).map_err(|e| format!("shutdown: {e}"))?;
            self.shut = true;
        }
        self.eof = stack.tcp_at_eof(self.handle).map_err(|e| format!("eof: {e}"))?;
        Ok(())
    }
}

/// One server connection: sends back what it reads, closes after the peer.
struct Echo {
    handle: SocketHandle,
    unsent: VecDeque<Bytes>,
    shut: bool,
}

impl Echo {
    fn drive(&mut self, stack: &mut Stack) -> Result<(), String> {
        while let Some(chunk) = stack.tcp_recv(self.handle).map_err(|e| format!("echo recv: {e}"))? {
            self.unsent.push_back(Bytes::copy_from_slice(&chunk));
        }
        while let Some(front) = self.unsent.front_mut() {
            let n = stack.tcp_send(self.handle, front.clone()).map_err(|e| format!("echo send: {e}"))?;
            if n < front.len() {
                let _ = front.split_to(n);
                break;
            }
            self.unsent.pop_front();
        }
        if self.unsent.is_empty() && !self.shut && stack.tcp_at_eof(self.handle).map_err(|e| e.to_string())? {
            stack.tcp_shutdown(self.handle).map_err(|e| format!("echo shutdown: {e}"))?;
            self.shut = true;
        }
        Ok(())
    }
}

/// Runs the echo conversation on a fresh simulation and records it.
fn run(seed: u64, faults: FaultConfig, prediction: bool, tune: fn(&mut StackConfig)) -> Result<Outcome, String> {
    let mut sim = Sim::new(2, faults, seed, |cfg| {
        tune(cfg);
        cfg.tcp.header_prediction = prediction;
    });
    for node in &mut sim.nodes {
        node.sent_trace = Some(Vec::new());
    }
    let listener = sim.nodes[0].stack.tcp_listen(PORT, 16).map_err(|e| e.to_string())?;
    let mut callers = Vec::new();
    for conn in 0..CONNECTIONS {
        let now = sim.now();
        let handle = sim.nodes[1]
            .stack
            .tcp_connect(SocketAddrV4::new(addr(0), PORT), now, &|_| true)
            .map_err(|e| e.to_string())?;
        let current = message(conn, 0);
        callers.push(Caller { handle, conn, sent_messages: 0, current, sent: 0, echoed: 0, shut: false, eof: false });
    }
    let mut echoes: Vec<Echo> = Vec::new();
    while !callers.iter().all(|c| c.shut && c.eof) {
        sim.step();
        while let Some(handle) = sim.nodes[0].stack.tcp_accept(listener).map_err(|e| e.to_string())? {
            echoes.push(Echo { handle, unsent: VecDeque::new(), shut: false });
        }
        for echo in &mut echoes {
            echo.drive(&mut sim.nodes[0].stack)?;
        }
        for caller in &mut callers {
            caller.drive(&mut sim.nodes[1].stack)?;
        }
        if sim.now().as_micros() > SIM_LIMIT_MICROS {
            let done: Vec<usize> = callers.iter().map(|c| c.sent_messages).collect();
            return Err(format!("stalled with messages done per connection {done:?}"));
        }
    }
    let mut stats: Vec<StackStats> = sim.nodes.iter().map(|n| *n.stack.stats()).collect();
    let predicted = stats.iter_mut().map(|s| std::mem::take(&mut s.tcp.header_predicted)).sum();
    let frames = sim.nodes.iter_mut().map(|n| n.sent_trace.take().unwrap_or_default()).collect();
    Ok(Outcome { frames, stats, predicted })
}

/// Runs each case with prediction on and off and compares; returns the
/// share of segments received that were predicted, over all cases (a third
/// or more: handshakes, FINs, pure ACKs at SND.UNA, segments with SACK blocks
/// and everything under loss recovery take the general path).
fn assert_same_both_ways(name: &str, tune: fn(&mut StackConfig), cases: &[(u64, FaultConfig)]) -> f64 {
    let (mut predicted, mut received) = (0, 0);
    for &(seed, faults) in cases {
        let on = run(seed, faults, true, tune).unwrap_or_else(|e| panic!("{name} seed {seed}, prediction on: {e}"));
        let off = run(seed, faults, false, tune).unwrap_or_else(|e| panic!("{name} seed {seed}, prediction off: {e}"));
        assert_eq!(off.predicted, 0, "{name} seed {seed}: predicted with prediction off");
        for node in 0..2 {
            let first_difference = on.frames[node].iter().zip(&off.frames[node]).position(|(a, b)| a != b);
            assert_eq!(
                (first_difference, on.frames[node].len()),
                (None, off.frames[node].len()),
                "{name} seed {seed}: node {node} sent other frames with prediction on (first difference, count)"
            );
        }
        assert_eq!(on.stats, off.stats, "{name} seed {seed}: other counters with prediction on");
        predicted += on.predicted;
        received += on.stats.iter().map(|s| s.tcp.in_to_conn).sum::<u64>();
    }
    predicted as f64 / received as f64
}

fn lossy(seed_loss: f64) -> FaultConfig {
    FaultConfig {
        loss: seed_loss,
        duplicate: seed_loss / 2.0,
        reorder: seed_loss,
        corrupt: seed_loss / 10.0,
        delay_micros: 40,
        jitter_micros: 30,
    }
}

/// The clean case and three loss rates, each with its own seed.
fn cases() -> Vec<(u64, FaultConfig)> {
    vec![(1, FaultConfig::NONE), (2, lossy(0.0)), (3, lossy(0.02)), (4, lossy(0.05)), (5, lossy(0.10))]
}

#[test]
fn prediction_changes_nothing_with_sack_and_timestamps() {
    let share = assert_same_both_ways("default", |_| {}, &cases());
    assert!(share > 0.25, "only {:.0}% of segments were predicted", share * 100.0);
}

#[test]
fn prediction_changes_nothing_without_sack() {
    let share = assert_same_both_ways("no SACK", |cfg| cfg.tcp.sack = false, &cases());
    assert!(share > 0.25, "only {:.0}% of segments were predicted", share * 100.0);
}

#[test]
fn prediction_changes_nothing_without_timestamps_or_window_scaling() {
    let tune = |cfg: &mut StackConfig| {
        cfg.tcp.timestamps = false;
        cfg.tcp.window_scaling = false;
    };
    let share = assert_same_both_ways("no timestamps", tune, &cases());
    assert!(share > 0.25, "only {:.0}% of segments were predicted", share * 100.0);
}

#[test]
fn prediction_changes_nothing_with_dupthresh_loss_detection() {
    let tune = |cfg: &mut StackConfig| cfg.tcp.loss.detection = LossDetection::DupThresh;
    assert_same_both_ways("DupThresh", tune, &cases());
}

#[test]
fn prediction_changes_nothing_with_a_small_receive_buffer() {
    // Windows that close and reopen: zero-window probes, window updates.
    let tune = |cfg: &mut StackConfig| cfg.tcp.recv_buffer_bytes = 8 * 1024;
    assert_same_both_ways("small buffer", tune, &cases());
}
