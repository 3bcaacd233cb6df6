//! Deterministic simulation of stacks joined by the `mem` wire under a virtual
//! clock: each step polls every node as the runtime's loop would (receive a
//! burst, ingress, timers, egress, transmit), then moves time forward.
#![allow(dead_code)]

use std::net::Ipv4Addr;
use std::sync::Arc;

use ix_driver::MemQueue;
use ix_driver::mem::{FaultConfig, ManualClock, MemWire, MemWireConfig};
use ix_driver::{HugePages, NetQueue, PacketBuf, PacketPool, PoolConfig};
use ix_net::wire::EthernetAddress;
use ix_net::{Instant, Stack, StackConfig};

/// Simulated time per busy step.
pub const STEP_MICROS: u64 = 5;

/// One host: a stack and its queue.
pub struct Node {
    pub stack: Stack,
    pub queue: MemQueue,
    /// When set, every frame the node sends is recorded here as (virtual
    /// time in microseconds, hash of its bytes), in order.
    pub sent_trace: Option<Vec<(u64, u64)>>,
    rx: Vec<PacketBuf>,
    tx: Vec<PacketBuf>,
}

impl Node {
    /// Runs one round of the dataplane loop; true when anything moved.
    pub fn poll(&mut self, now: Instant) -> bool {
        let n = self.queue.rx_burst(&mut self.rx, 64);
        for frame in self.rx.drain(..) {
            self.stack.ingress(frame, now);
        }
        self.stack.on_timers(now);
        self.stack.egress(now, &mut self.tx);
        if let Some(trace) = &mut self.sent_trace {
            for frame in &self.tx {
                let mut hasher = std::hash::DefaultHasher::new();
                std::hash::Hash::hash(&frame[..], &mut hasher);
                trace.push((now.as_micros(), std::hash::Hasher::finish(&hasher)));
            }
        }
        let sent = self.tx.len();
        while !self.tx.is_empty() {
            if self.queue.tx_burst(&mut self.tx) == 0 {
                break;
            }
        }
        n > 0 || sent > 0
    }
}

/// Hosts on one wire and the clock they share.
pub struct Sim {
    pub wire: Arc<MemWire>,
    pub clock: Arc<ManualClock>,
    pub nodes: Vec<Node>,
}

/// The address of node `i`: 10.0.0.(i+1)/24.
pub fn addr(i: usize) -> Ipv4Addr {
    Ipv4Addr::new(10, 0, 0, (i + 1) as u8)
}

impl Sim {
    /// `n` nodes with the given faults, each with a stack configured by `tune`.
    pub fn new(n: usize, faults: FaultConfig, seed: u64, tune: impl Fn(&mut StackConfig)) -> Self {
        let clock = Arc::new(ManualClock::new(0));
        let wire = MemWire::new(MemWireConfig {
            ports: n as u16,
            queues_per_port: 1,
            faults,
            seed,
            clock: clock.clone(),
            ..MemWireConfig::default()
        })
        .expect("wire");
        let nodes = (0..n)
            .map(|i| {
                let pool = PacketPool::new(PoolConfig { frames: 4096, huge_pages: HugePages::Never }).expect("pool");
                let queue = wire.queue(i as u16, 0, pool.clone()).expect("queue");
                let mut secret = [0u8; 16];
                secret[..8].copy_from_slice(&(seed ^ (i as u64 * 0x9E37_79B9)).to_le_bytes());
                let mut cfg = StackConfig::new(EthernetAddress(queue.mac()), addr(i), 24, secret);
                tune(&mut cfg);
                let stack = Stack::new(cfg, pool, Instant::ZERO).expect("stack");
                Node { stack, queue, sent_trace: None, rx: Vec::with_capacity(64), tx: Vec::with_capacity(256) }
            })
            .collect();
        Self { wire, clock, nodes }
    }

    /// Current virtual time.
    pub fn now(&self) -> Instant {
        Instant::from_micros(self.clock.now_micros())
    }

    /// Polls every node once and moves time: one step when something moved,
    /// straight to the next deadline (timer or delayed frame) when all is idle.
    pub fn step(&mut self) {
        let now = self.now();
        let mut busy = false;
        for node in &mut self.nodes {
            busy |= node.poll(now);
        }
        if busy {
            self.clock.advance(STEP_MICROS);
            return;
        }
        let next_timer = self.nodes.iter().filter_map(|n| n.stack.poll_timeout()).min();
        let next_frame = self.nodes.iter().filter_map(|n| n.queue.next_due_micros()).min().map(Instant::from_micros);
        let next = [next_timer, next_frame].into_iter().flatten().min();
        match next {
            Some(t) if t > now => self.clock.set(t.as_micros()),
            _ => {
                self.clock.advance(STEP_MICROS);
            }
        }
    }
}

use ix_driver::mem::WireClock;
