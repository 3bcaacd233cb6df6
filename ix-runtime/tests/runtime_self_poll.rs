//! A blocking core's switch to busy-polling on its own, over the `mem` wire
//! with a core board the test writes as `ixcp` would: a burst switches it
//! within the round that received it, `ixcp`'s answer sends it back, a small
//! burst does not switch it. No timing asserts: deadlines only bound waits.

use std::net::Ipv4Addr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ix_driver::ixcp::core_board::SelfPollRule;
use ix_driver::ixcp::{CoreBoard, CoreMode, CoreSample};
use ix_driver::mem::{MemWire, MemWireConfig, mem_port_mac};
use ix_driver::{HugePages, NetQueue, PacketBuf, PacketPool, PoolConfig};
use ix_runtime::{Backend, IdlePolicy, Runtime};

const SERVER: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 1);
/// Frames of a burst that switch the core (the board's rule).
const SELF_POLL_BATCH: u32 = 8;
/// Rounds a core must run without blocking to count as polling: a blocking
/// core with nothing to do runs one round per wake-up, at most one per 20 ms.
const POLLING_ROUNDS: u64 = 20_000;
/// Blocks a core may have made that its published counters do not show yet.
const BLOCKS_UNPUBLISHED_MAX: u64 = 2;
/// The longest any wait below may take before the test fails.
const PATIENCE: Duration = Duration::from_secs(60);

/// Reads slot 0 of `board` until `done` holds, or fails saying `what`.
fn wait_for(board: &CoreBoard, what: &str, done: impl Fn(&CoreSample) -> bool) -> CoreSample {
    let deadline = Instant::now() + PATIENCE;
    loop {
        let sample = board.read(0);
        if done(&sample) {
            return sample;
        }
        assert!(Instant::now() < deadline, "waited {PATIENCE:?} for {what}; last sample {sample:?}");
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// `count` frames of a local experimental EtherType to the server's port, sent
/// in one burst (the wire delivers a burst at once, so the blocked core's
/// first receive burst after the wake-up takes them all, up to its bound).
fn burst(queue: &mut impl NetQueue, pool: &PacketPool, count: usize) {
    let mut frames: Vec<PacketBuf> = (0..count)
        .map(|_| {
            let mut tx = pool.alloc().unwrap();
            let bytes = tx.append(60).unwrap();
            bytes.fill(0);
            bytes[..6].copy_from_slice(&mem_port_mac(0));
            bytes[12..14].copy_from_slice(&0x88b5u16.to_be_bytes());
            tx.freeze()
        })
        .collect();
    assert_eq!(queue.tx_burst(&mut frames), count);
}

#[test]
fn a_blocked_core_polls_from_the_round_of_a_burst_until_ixcp_answers() {
    let wire = MemWire::new(MemWireConfig { ports: 2, queues_per_port: 1, ..MemWireConfig::default() }).unwrap();
    let board = Arc::new(CoreBoard::create(1).unwrap());
    // A limit and an idle time no test run reaches: only the answer ends a
    // switch here (the core's own ends are unit-tested in core_board_link).
    let never = Duration::from_secs(3600);
    board.set_self_poll_rule(SelfPollRule { batch: SELF_POLL_BATCH, limit: never, idle: never });
    let runtime = Runtime::builder()
        .backend(Backend::Mem { wire: wire.clone(), port: 0 })
        .ipv4(SERVER, 24)
        .idle(IdlePolicy::Block)
        .core_board(board.clone())
        .drain_timeout(Duration::from_millis(50))
        .handle_signals(false)
        .build()
        .unwrap();
    let shutdown = runtime.shutdown_handle();
    let server = std::thread::spawn(move || {
        runtime.run(|_| std::future::pending::<()>()).unwrap();
    });
    let pool = PacketPool::new(PoolConfig { frames: 256, huge_pages: HugePages::Never }).unwrap();
    let mut peer = wire.queue(1, 0, pool.clone()).unwrap();

    // Idle and asked to block: it blocks (and publishes before blocking).
    let idle = wait_for(&board, "the core to block", |s| s.thread_id != 0 && s.blocks >= 2);
    assert_eq!((idle.mode_in_effect, idle.self_polls), (CoreMode::Block, 0));

    // A small burst: handled, no switch, the core blocks again.
    let small = wait_for(&board, "a fresh sample", |s| s.published > idle.published);
    burst(&mut peer, &pool, SELF_POLL_BATCH as usize - 1);
    let after_small = wait_for(&board, "the small burst to be received and the core to block", |s| {
        s.rx_packets >= small.rx_packets + u64::from(SELF_POLL_BATCH) - 1 && s.blocks > small.blocks + 1
    });
    assert_eq!((after_small.self_polls, after_small.mode_in_effect), (0, CoreMode::Block));

    // A burst of the rule's size: the core switches in the round that
    // received it (one receive batch) and then never blocks, though ixcp
    // still asks it to block.
    let before = board.read(0);
    burst(&mut peer, &pool, SELF_POLL_BATCH as usize);
    let switched = wait_for(&board, "the switch", |s| s.self_polls == 1);
    assert_eq!(switched.mode_in_effect, CoreMode::BusyPoll);
    assert_eq!(board.asked_mode(0), CoreMode::Block);
    let polling = wait_for(&board, "rounds without blocking", |s| s.rounds >= switched.rounds + POLLING_ROUNDS);
    // The board's counters are the core's snapshot of its last round, taken
    // before that round's block: the count read before the burst may miss
    // the block the burst woke the core from and the one before it.
    assert!(
        polling.blocks <= before.blocks + BLOCKS_UNPUBLISHED_MAX,
        "the core blocked after the burst: {} blocks before it, {} after {POLLING_ROUNDS} rounds",
        before.blocks,
        polling.blocks
    );
    assert_eq!(polling.batches, before.batches + 1, "the burst took one receive batch");
    assert_eq!(polling.self_polls, 1, "one switch for one burst");

    // ixcp answers with block (as when no polling CPU is free): it blocks again.
    board.ask_mode(0, CoreMode::Block);
    board.answer_self_polls(0, 1);
    let answered = wait_for(&board, "the core to block after the answer", |s| {
        s.blocks > polling.blocks && s.mode_in_effect == CoreMode::Block
    });
    assert_eq!(answered.self_polls, 1);

    // A second burst switches it again; an answer with busy-poll keeps it polling.
    burst(&mut peer, &pool, 64);
    let again = wait_for(&board, "the second switch", |s| s.self_polls == 2);
    board.ask_mode(0, CoreMode::BusyPoll);
    board.answer_self_polls(0, 2);
    let kept = wait_for(&board, "rounds polling by ixcp's word", |s| s.rounds >= again.rounds + POLLING_ROUNDS);
    assert!(kept.blocks <= again.blocks + BLOCKS_UNPUBLISHED_MAX, "polling by ixcp's word, it blocked: {kept:?}");
    assert_eq!(kept.mode_in_effect, CoreMode::BusyPoll);

    shutdown.shutdown();
    server.join().unwrap();
}

#[test]
fn a_board_with_fewer_slots_than_cores_is_refused() {
    let wire = MemWire::new(MemWireConfig { ports: 1, queues_per_port: 2, ..MemWireConfig::default() }).unwrap();
    let built = Runtime::builder()
        .cores(2)
        .backend(Backend::Mem { wire, port: 0 })
        .ipv4(SERVER, 24)
        .core_board(Arc::new(CoreBoard::create(1).unwrap()))
        .build();
    assert!(built.is_err());
}
