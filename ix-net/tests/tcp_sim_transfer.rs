//! Deterministic simulation: two stacks on the `mem` wire transfer data both
//! ways under loss, duplication and reordering, every byte checked.

mod support;

use std::net::SocketAddrV4;

use bytes::Bytes;
use ix_driver::mem::FaultConfig;
use ix_net::{SocketHandle, Stack};
use support::{Sim, addr};

const PORT: u16 = 5000;
/// Bytes handed to `send` at a time.
const WRITE_BYTES: usize = 64 * 1024;
/// Virtual time after which a transfer counts as stalled.
const SIM_LIMIT_SECS: u64 = 3600;

fn pattern(len: usize, salt: u64) -> Bytes {
    (0..len as u64)
        .map(|i| ((i.wrapping_add(salt)).wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 56) as u8)
        .collect::<Vec<_>>()
        .into()
}

struct Side {
    handle: Option<SocketHandle>,
    out: Bytes,
    sent: usize,
    shut: bool,
    expect: Bytes,
    received: usize,
    eof: bool,
}

impl Side {
    fn new(out: Bytes, expect: Bytes) -> Self {
        Self { handle: None, out, sent: 0, shut: false, expect, received: 0, eof: false }
    }

    /// The application's part of a step: write what fits, read what arrived.
    fn drive(&mut self, stack: &mut Stack) -> Result<(), String> {
        let Some(h) = self.handle else { return Ok(()) };
        while self.sent < self.out.len() {
            let end = (self.sent + WRITE_BYTES).min(self.out.len());
            let n = stack.tcp_send(h, self.out.slice(self.sent..end)).map_err(|e| format!("send: {e}"))?;
            if n == 0 {
                break;
            }
            self.sent += n;
        }
        if self.sent == self.out.len() && !self.shut {
            stack.tcp_shutdown(h).map_err(|e| format!("shutdown: {e}"))?;
            self.shut = true;
        }
        while let Some(chunk) = stack.tcp_recv(h).map_err(|e| format!("recv: {e}"))? {
            let end = self.received + chunk.len();
            if end > self.expect.len() {
                return Err(format!("received {end} bytes, more than the {} sent", self.expect.len()));
            }
            if chunk[..] != self.expect[self.received..end] {
                let at = chunk.iter().zip(&self.expect[self.received..end]).position(|(a, b)| a != b).unwrap_or(0);
                return Err(format!("corrupt or misordered byte at offset {}", self.received + at));
            }
            self.received = end;
        }
        if stack.tcp_at_eof(h).map_err(|e| format!("eof: {e}"))? {
            self.eof = true;
        }
        Ok(())
    }

    fn done(&self) -> bool {
        self.eof && self.received == self.expect.len() && self.shut
    }
}

/// Runs one transfer of `bytes` each way; returns the virtual time it took.
fn transfer(seed: u64, faults: FaultConfig, bytes: usize) -> Result<f64, String> {
    let mut sim = Sim::new(2, faults, seed, |_| {});
    let a_data = pattern(bytes, seed);
    let b_data = pattern(bytes, seed ^ 0xABCD);
    let listener = sim.nodes[0].stack.tcp_listen(PORT, 16).map_err(|e| e.to_string())?;
    let now = sim.now();
    let client =
        sim.nodes[1].stack.tcp_connect(SocketAddrV4::new(addr(0), PORT), now, &|_| true).map_err(|e| e.to_string())?;
    let mut server = Side::new(a_data.clone(), b_data.clone());
    let mut client_side = Side::new(b_data, a_data);
    client_side.handle = Some(client);
    while !(server.done() && client_side.done()) {
        sim.step();
        if server.handle.is_none() {
            server.handle = sim.nodes[0].stack.tcp_accept(listener).map_err(|e| e.to_string())?;
        }
        server.drive(&mut sim.nodes[0].stack).map_err(|e| format!("server: {e}"))?;
        client_side.drive(&mut sim.nodes[1].stack).map_err(|e| format!("client: {e}"))?;
        if sim.now().as_micros() > SIM_LIMIT_SECS * 1_000_000 {
            return Err(format!(
                "stalled: server got {}/{} eof={}, client got {}/{} eof={}; server {:?} client {:?}",
                server.received,
                bytes,
                server.eof,
                client_side.received,
                bytes,
                client_side.eof,
                server.handle.map(|h| sim.nodes[0].stack.tcp_info(h)),
                sim.nodes[1].stack.tcp_info(client),
            ));
        }
    }
    Ok(sim.now().as_micros() as f64 / 1e6)
}

fn lossy(loss: f64) -> FaultConfig {
    FaultConfig { loss, duplicate: loss / 2.0, reorder: loss, corrupt: 0.0, delay_micros: 50, jitter_micros: 20 }
}

#[test]
fn clean_transfer_of_one_megabyte_each_way() {
    let secs = transfer(1, lossy(0.0), 1 << 20).unwrap();
    assert!(secs < 10.0, "took {secs} s of virtual time");
}

#[test]
fn lossy_transfer_of_one_megabyte_each_way() {
    for (seed, loss) in [(2, 0.01), (3, 0.05), (4, 0.10)] {
        transfer(seed, lossy(loss), 1 << 20).unwrap_or_else(|e| panic!("seed {seed} loss {loss}: {e}"));
    }
}
/// The acceptance sweep: 10 MB each way for 200 seeds at each loss rate, with
/// duplication, reordering and a little corruption; every run must complete
/// with every byte checked. Runs on two threads.
#[test]
fn ten_megabytes_each_way_for_200_seeds_at_each_loss_rate() {
    const SEEDS: u64 = 200;
    let cases: Vec<(u64, f64)> =
        [0.0, 0.01, 0.05, 0.10].iter().flat_map(|&loss| (0..SEEDS).map(move |seed| (seed, loss))).collect();
    let failures = std::sync::Mutex::new(Vec::new());
    let next = std::sync::atomic::AtomicUsize::new(0);
    std::thread::scope(|scope| {
        for _ in 0..2 {
            scope.spawn(|| {
                loop {
                    let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    let Some(&(seed, loss)) = cases.get(i) else { break };
                    let faults = FaultConfig { corrupt: loss / 10.0, ..lossy(loss) };
                    if let Err(e) = transfer(1000 + seed, faults, 10 << 20) {
                        failures.lock().unwrap().push(format!("seed {seed} loss {loss}: {e}"));
                    }
                }
            });
        }
    });
    let failures = failures.into_inner().unwrap();
    assert!(failures.is_empty(), "{} of {} runs failed:\n{}", failures.len(), cases.len(), failures.join("\n"));
}
