//! The mem backend end to end: reproducible fault injection, fault rates within
//! statistical bounds, delay and jitter under a manual clock, RSS steering,
//! broadcast, and a lossless cross-thread transfer driven by eventfd wake-ups.

use std::net::Ipv4Addr;
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use ix_driver::MemQueue;
use ix_driver::mem::{FaultConfig, FaultStats, ManualClock, MemWire, MemWireConfig, mem_port_mac};
use ix_driver::region::HugePages;
use ix_driver::{NetQueue, PacketBuf, PacketPool, PoolConfig, find_port_for_queue};

const CLIENT: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 1);
const SERVER: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 2);
const BURST_FRAMES: usize = 64;
const PAYLOAD_WORDS: usize = 4;
const STAT_FRAMES: u64 = 100_000;

fn pool(frames: u32) -> PacketPool {
    PacketPool::new(PoolConfig { frames, huge_pages: HugePages::Never }).unwrap()
}

/// A stateless 64-bit mix, so a payload word depends on every bit of `seq`.
fn mix(x: u64) -> u64 {
    let x = (x ^ (x >> 33)).wrapping_mul(0xff51_afd7_ed55_8ccd);
    x ^ (x >> 29)
}

/// An Ethernet/IPv4/UDP frame whose payload is `seq` and words derived from it.
fn udp_frame(dst_mac: [u8; 6], src: (Ipv4Addr, u16), dst: (Ipv4Addr, u16), seq: u64) -> Vec<u8> {
    let payload_bytes = 8 * (1 + PAYLOAD_WORDS);
    let mut f = Vec::with_capacity(14 + 20 + 8 + payload_bytes);
    f.extend_from_slice(&dst_mac);
    f.extend_from_slice(&mem_port_mac(0));
    f.extend_from_slice(&0x0800u16.to_be_bytes());
    f.extend_from_slice(&[0x45, 0]);
    f.extend_from_slice(&((20 + 8 + payload_bytes) as u16).to_be_bytes());
    f.extend_from_slice(&[0, 0, 0, 0, 64, 17, 0, 0]);
    f.extend_from_slice(&src.0.octets());
    f.extend_from_slice(&dst.0.octets());
    f.extend_from_slice(&src.1.to_be_bytes());
    f.extend_from_slice(&dst.1.to_be_bytes());
    f.extend_from_slice(&((8 + payload_bytes) as u16).to_be_bytes());
    f.extend_from_slice(&[0, 0]);
    f.extend_from_slice(&seq.to_be_bytes());
    for word in 0..PAYLOAD_WORDS as u64 {
        f.extend_from_slice(&mix(seq ^ (word << 56)).to_be_bytes());
    }
    f
}

/// The sequence number a frame claims (meaningless if the frame is corrupted).
fn seq_of(frame: &[u8]) -> u64 {
    u64::from_be_bytes(frame[42..50].try_into().unwrap())
}

/// The one flow the statistical runs use.
fn flow_frame(seq: u64) -> Vec<u8> {
    udp_frame(mem_port_mac(1), (CLIENT, 40000), (SERVER, 9000), seq)
}

fn send(queue: &mut MemQueue, frames: impl IntoIterator<Item = Vec<u8>>) {
    let mut batch: Vec<PacketBuf> = frames
        .into_iter()
        .map(|bytes| {
            let mut tx = queue.pool().alloc().expect("sender pool sized for a burst");
            tx.extend_from_slice(&bytes).unwrap();
            tx.freeze()
        })
        .collect();
    queue.tx_burst(&mut batch);
    assert!(batch.is_empty(), "the mem wire takes whole bursts");
}

/// Receives everything due on `queue`, as (due time, bytes).
fn drain(queue: &mut MemQueue, out: &mut Vec<(u64, Vec<u8>)>) {
    let (mut batch, mut due) = (Vec::new(), Vec::new());
    while queue.rx_burst_with_due(&mut batch, &mut due, BURST_FRAMES) > 0 {
        out.extend(due.drain(..).zip(batch.drain(..).map(|f| f.to_vec())));
    }
}

struct Pair {
    wire: Arc<MemWire>,
    clock: Arc<ManualClock>,
    tx: MemQueue,
    rx: Vec<MemQueue>,
}

/// Port 0 queue 0 sending, every queue of port 1 receiving, under a manual clock.
fn pair(config: MemWireConfig) -> Pair {
    let clock = Arc::new(ManualClock::new(0));
    let wire = MemWire::new(MemWireConfig { clock: clock.clone(), ..config }).unwrap();
    let tx = wire.queue(0, 0, pool(BURST_FRAMES as u32)).unwrap();
    let rx = (0..wire.config().queues_per_port).map(|q| wire.queue(1, q, pool(BURST_FRAMES as u32)).unwrap()).collect();
    Pair { wire, clock, tx, rx }
}

const ALL_FAULTS: FaultConfig =
    FaultConfig { loss: 0.05, duplicate: 0.03, reorder: 0.04, corrupt: 0.02, delay_micros: 50, jitter_micros: 40 };

/// Sends 10k frames over several flows in bursts while the clock advances, and
/// returns every delivery as (receiving queue, due time, bytes).
fn deliveries(seed: u64) -> Vec<(u16, u64, Vec<u8>)> {
    let config = MemWireConfig { queues_per_port: 2, faults: ALL_FAULTS, seed, ..MemWireConfig::default() };
    let mut p = pair(config);
    let mut out = Vec::new();
    let mut collect = |p: &mut Pair| {
        for (q, rx) in p.rx.iter_mut().enumerate() {
            let mut got = Vec::new();
            drain(rx, &mut got);
            out.extend(got.into_iter().map(|(due, bytes)| (q as u16, due, bytes)));
        }
    };
    for burst in 0..10_000 / BURST_FRAMES as u64 + 1 {
        let seqs = burst * BURST_FRAMES as u64..((burst + 1) * BURST_FRAMES as u64).min(10_000);
        let frames = seqs.map(|s| udp_frame(mem_port_mac(1), (CLIENT, 40000 + (s % 7) as u16), (SERVER, 80), s));
        send(&mut p.tx, frames);
        p.clock.advance(10);
        collect(&mut p);
    }
    p.clock.advance(1_000);
    collect(&mut p);
    out
}

#[test]
fn the_same_seed_gives_the_same_deliveries_and_another_seed_different_ones() {
    let first = deliveries(42);
    let second = deliveries(42);
    assert!(first.len() > 9_000, "most frames arrive: {}", first.len());
    assert!(first.iter().any(|d| d.0 == 0) && first.iter().any(|d| d.0 == 1), "both queues used");
    assert!(first == second, "two wires with seed 42 delivered differently");
    let other = deliveries(43);
    assert!(first != other, "seeds 42 and 43 delivered the same");
}

/// Asserts `observed` successes of `trials` Bernoulli(`p`) trials lie within five
/// standard deviations of the mean (a false failure is about 1 in 1.7 million).
fn assert_rate(name: &str, observed: u64, trials: u64, p: f64) {
    let mean = trials as f64 * p;
    let bound = 5.0 * (trials as f64 * p * (1.0 - p)).sqrt();
    assert!(
        (observed as f64 - mean).abs() <= bound,
        "{name}: {observed} of {trials}, expected {mean:.0} +/- {bound:.0} (5 sigma)"
    );
}

/// Sends `STAT_FRAMES` frames of one flow with the clock stopped (so nothing is
/// due and every reordered frame is passed by its successor), then lets them
/// all come due and receives them.
fn statistical_run(faults: FaultConfig) -> (Vec<Vec<u8>>, FaultStats) {
    let faults = FaultConfig { delay_micros: 1, ..faults };
    let config = MemWireConfig {
        faults,
        seed: 7,
        max_frame_len: 128,
        inbox_depth: 2 * STAT_FRAMES as usize,
        ..MemWireConfig::default()
    };
    let mut p = pair(config);
    let mut seq = 0;
    while seq < STAT_FRAMES {
        let end = (seq + BURST_FRAMES as u64).min(STAT_FRAMES);
        send(&mut p.tx, (seq..end).map(flow_frame));
        seq = end;
    }
    p.clock.advance(1);
    let mut got = Vec::new();
    drain(&mut p.rx[0], &mut got);
    assert_eq!(p.rx[0].stats().rx_drops, 0);
    let stats = p.wire.link_fault_stats(0, 1, 0).unwrap();
    assert_eq!(stats.frames, STAT_FRAMES);
    (got.into_iter().map(|(_, bytes)| bytes).collect(), stats)
}

#[test]
fn loss_rate_is_met() {
    let (got, stats) = statistical_run(FaultConfig { loss: 0.05, ..FaultConfig::NONE });
    let mut seen = vec![false; STAT_FRAMES as usize];
    for frame in &got {
        assert_eq!(*frame, flow_frame(seq_of(frame)), "loss alone never alters a frame");
        seen[seq_of(frame) as usize] = true;
    }
    let lost = seen.iter().filter(|s| !**s).count() as u64;
    assert_eq!(lost, stats.lost);
    assert_eq!(got.len() as u64, STAT_FRAMES - lost);
    assert_rate("loss", lost, STAT_FRAMES, 0.05);
}

#[test]
fn duplication_rate_is_met() {
    let (got, stats) = statistical_run(FaultConfig { duplicate: 0.03, ..FaultConfig::NONE });
    let mut copies = vec![0u32; STAT_FRAMES as usize];
    for frame in &got {
        assert_eq!(*frame, flow_frame(seq_of(frame)));
        copies[seq_of(frame) as usize] += 1;
    }
    assert!(copies.iter().all(|&c| c == 1 || c == 2), "every frame once or twice");
    let duplicated = copies.iter().filter(|&&c| c == 2).count() as u64;
    assert_eq!(duplicated, stats.duplicated);
    assert_rate("duplication", duplicated, STAT_FRAMES, 0.03);
}

#[test]
fn reordering_rate_is_met() {
    let (got, stats) = statistical_run(FaultConfig { reorder: 0.04, ..FaultConfig::NONE });
    assert_eq!(got.len() as u64, STAT_FRAMES);
    // A reordered frame arrives after a frame sent later than it.
    let mut highest = None;
    let mut late = 0u64;
    for frame in &got {
        let seq = seq_of(frame);
        if highest.is_some_and(|h| seq < h) {
            late += 1;
        }
        highest = highest.max(Some(seq));
    }
    // Frames still held when the last one was sent come due unpassed.
    let trailing = (0..STAT_FRAMES).rev().take_while(|&s| seq_of(&got[s as usize]) != s).count() as u64;
    assert!(late <= stats.reordered && stats.reordered - late <= trailing.max(1), "{late} late, {stats:?}");
    assert_rate("reordering", stats.reordered, STAT_FRAMES, 0.04);
    assert_rate("late arrivals", late, STAT_FRAMES, 0.04);
}

#[test]
fn corruption_rate_is_met() {
    let (got, stats) = statistical_run(FaultConfig { corrupt: 0.02, ..FaultConfig::NONE });
    assert_eq!(got.len() as u64, STAT_FRAMES);
    let mut corrupted = 0u64;
    for (i, frame) in got.iter().enumerate() {
        let expected = flow_frame(i as u64);
        let flipped: u32 = frame.iter().zip(&expected).map(|(a, b)| (a ^ b).count_ones()).sum();
        assert!(flipped <= 1, "frame {i} has {flipped} bits flipped");
        corrupted += u64::from(flipped);
    }
    assert_eq!(corrupted, stats.corrupted);
    assert_rate("corruption", corrupted, STAT_FRAMES, 0.02);
}

#[test]
fn all_rates_together_are_met_and_deliveries_add_up() {
    let faults = FaultConfig { delay_micros: 0, jitter_micros: 0, ..ALL_FAULTS };
    let (got, stats) = statistical_run(faults);
    let delivered = STAT_FRAMES - stats.lost;
    assert_eq!(got.len() as u64, delivered + stats.duplicated);
    assert_rate("loss", stats.lost, STAT_FRAMES, 0.05);
    assert_rate("duplication", stats.duplicated, delivered, 0.03);
    assert_rate("reordering", stats.reordered, delivered, 0.04);
    assert_rate("corruption", stats.corrupted, delivered, 0.02);
}

#[test]
fn frames_wait_for_their_delay_and_jitter_reorders_them_deterministically() {
    let faults = FaultConfig { delay_micros: 100, jitter_micros: 50, ..FaultConfig::NONE };
    let mut p = pair(MemWireConfig { faults, seed: 3, ..MemWireConfig::default() });
    p.clock.set(1_000);
    for start in (0..200).step_by(BURST_FRAMES) {
        send(&mut p.tx, (start..(start + BURST_FRAMES as u64).min(200)).map(flow_frame));
    }
    let mut got = Vec::new();
    p.clock.set(1_099);
    drain(&mut p.rx[0], &mut got);
    assert!(got.is_empty(), "nothing before the delay");
    let first_due = p.rx[0].next_due_micros().unwrap();
    assert!((1_100..=1_150).contains(&first_due));
    for now in 1_100..=1_150 {
        p.clock.set(now);
        let before = got.len();
        drain(&mut p.rx[0], &mut got);
        assert!(got[before..].iter().all(|(due, _)| (1_100..=now).contains(due)));
    }
    assert_eq!(got.len(), 200);
    assert_eq!(p.rx[0].next_due_micros(), None);
    assert!(got.windows(2).all(|w| w[0].0 <= w[1].0), "handed out in due order");
    assert!(got.windows(2).any(|w| seq_of(&w[0].1) > seq_of(&w[1].1)), "jitter reordered some");
    assert!(got.first().unwrap().0 < got.last().unwrap().0, "jitter spread the due times");
}

#[test]
fn rss_keeps_a_flow_on_one_queue_and_spreads_flows() {
    let mut p = pair(MemWireConfig { queues_per_port: 4, ..MemWireConfig::default() });
    let table = p.wire.redirection_table(1).unwrap();
    let probe = |queue| {
        find_port_for_queue(&table, p.wire.toeplitz(), SERVER, CLIENT, 40000, queue, 9000..=9999, 9000).unwrap()
    };
    let (port_a, port_b) = (probe(1), probe(3));
    let frames = (0..100).map(|s| {
        let dst_port = if s % 2 == 0 { port_a } else { port_b };
        udp_frame(mem_port_mac(1), (CLIENT, 40000), (SERVER, dst_port), s)
    });
    let frames: Vec<Vec<u8>> = frames.collect();
    for burst in frames.chunks(BURST_FRAMES) {
        send(&mut p.tx, burst.to_vec());
    }
    let mut per_queue: Vec<Vec<u64>> = Vec::new();
    for rx in &mut p.rx {
        let mut got = Vec::new();
        drain(rx, &mut got);
        per_queue.push(got.iter().map(|(_, f)| seq_of(f)).collect());
    }
    let evens: Vec<u64> = (0..100).step_by(2).collect();
    let odds: Vec<u64> = (1..100).step_by(2).collect();
    assert_eq!(per_queue, [vec![], evens, vec![], odds]);
}

#[test]
fn broadcast_reaches_all_other_ports() {
    let wire = MemWire::new(MemWireConfig { ports: 4, queues_per_port: 2, ..MemWireConfig::default() }).unwrap();
    let mut queues: Vec<Vec<MemQueue>> =
        (0..4).map(|port| (0..2).map(|q| wire.queue(port, q, pool(8)).unwrap()).collect()).collect();
    let frame = udp_frame([0xff; 6], (CLIENT, 68), (Ipv4Addr::BROADCAST, 67), 1);
    send(&mut queues[2][1], [frame.clone()]);
    for (port, port_queues) in queues.iter_mut().enumerate() {
        let mut got = Vec::new();
        for q in port_queues.iter_mut() {
            drain(q, &mut got);
        }
        let expected = if port == 2 { 0 } else { 1 };
        assert_eq!(got.len(), expected, "port {port}");
        assert!(got.iter().all(|(_, bytes)| *bytes == frame));
    }
    assert_eq!(wire.switch_stats().flooded, 1);
}

/// Blocks until `queue`'s descriptor is readable or `timeout` passes.
fn wait_readable(queue: &MemQueue, timeout: Duration) -> bool {
    let fd = queue.wait_fd().expect("mem queues have an eventfd").as_raw_fd();
    let mut pfd = libc::pollfd { fd, events: libc::POLLIN, revents: 0 };
    // SAFETY: one valid pollfd that outlives the call.
    let n = unsafe { libc::poll(&mut pfd, 1, timeout.as_millis() as libc::c_int) };
    assert!(n >= 0, "poll: {}", std::io::Error::last_os_error());
    n == 1
}

#[test]
fn a_frame_sent_on_one_thread_arrives_intact_and_in_order_on_another() {
    const FRAMES: u64 = 100_000;
    const IN_FLIGHT_MAX_FRAMES: u64 = 2_048;
    let wire = MemWire::new(MemWireConfig::default()).unwrap();
    let received = Arc::new(AtomicU64::new(0));
    let deadline = Instant::now() + Duration::from_secs(120);

    let receiver = {
        let (wire, received) = (wire.clone(), received.clone());
        std::thread::spawn(move || {
            let mut rx = wire.queue(1, 0, pool(256)).unwrap();
            let mut batch = Vec::new();
            let mut next = 0u64;
            while next < FRAMES {
                assert!(Instant::now() < deadline, "receiver stuck at frame {next}");
                if !wait_readable(&rx, Duration::from_millis(100)) {
                    continue;
                }
                rx.ack_wakeup();
                while rx.rx_burst(&mut batch, BURST_FRAMES) > 0 {
                    for frame in batch.drain(..) {
                        assert_eq!(*frame, *flow_frame(next), "frame {next}");
                        next += 1;
                    }
                    received.store(next, Ordering::Release);
                }
            }
            rx.stats()
        })
    };
    let sender = {
        let (wire, received) = (wire.clone(), received.clone());
        std::thread::spawn(move || {
            let mut tx = wire.queue(0, 0, pool(BURST_FRAMES as u32)).unwrap();
            let mut seq = 0;
            while seq < FRAMES {
                // Test-level flow control: never more in flight than the inbox holds.
                while seq - received.load(Ordering::Acquire) > IN_FLIGHT_MAX_FRAMES {
                    assert!(Instant::now() < deadline, "sender stuck at frame {seq}");
                    std::thread::yield_now();
                }
                let end = (seq + 32).min(FRAMES);
                send(&mut tx, (seq..end).map(flow_frame));
                seq = end;
            }
            tx.stats()
        })
    };
    let tx_stats = sender.join().unwrap();
    let rx_stats = receiver.join().unwrap();
    assert_eq!(tx_stats.tx_packets, FRAMES);
    assert_eq!((rx_stats.rx_packets, rx_stats.rx_drops), (FRAMES, 0));
    assert_eq!(wire.fault_stats(), FaultStats { frames: FRAMES, ..FaultStats::default() });
}
