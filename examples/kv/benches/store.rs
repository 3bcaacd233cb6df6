//! Store micro-benchmark: 90% get / 10% set on 32-byte keys and values from
//! two threads at once, sharded (the server's choice) against one shard (a
//! global lock), to justify the sharding in `docs/kv.md`.

use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use ix_kv::protocol::StoreMode;
use ix_kv::store::{Store, StoreConfig, StoreRequest};

const KEYS: usize = 10_000;
const THREADS: usize = 2;
const OPS_PER_ITER: u64 = 1_000;

fn key(i: usize) -> [u8; 32] {
    let mut k = [b'k'; 32];
    k[..8].copy_from_slice(format!("{i:08}").as_bytes());
    k
}

fn filled(shards: usize) -> Arc<Store> {
    let store = Arc::new(Store::new(StoreConfig { memory_limit_bytes: 64 << 20, item_size_max: 1 << 20, shards }));
    for i in 0..KEYS {
        set(&store, i);
    }
    store
}

fn set(store: &Store, i: usize) {
    let k = key(i);
    let req = StoreRequest::new(StoreMode::Set, &k, 0, 0, &[b'v'; 32]);
    store.store(req);
}

/// Runs `iters` rounds of `OPS_PER_ITER` operations on each of `THREADS`
/// threads and returns the wall time of the slowest thread.
fn run(store: &Arc<Store>, iters: u64) -> Duration {
    let barrier = Arc::new(Barrier::new(THREADS));
    let handles: Vec<_> = (0..THREADS)
        .map(|t| {
            let (store, barrier) = (store.clone(), barrier.clone());
            std::thread::spawn(move || {
                let mut x = 0x9e37_79b9_7f4a_7c15u64 ^ t as u64;
                barrier.wait();
                let start = Instant::now();
                for _ in 0..iters * OPS_PER_ITER {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    let i = (x % KEYS as u64) as usize;
                    if x.is_multiple_of(10) {
                        set(&store, i);
                    } else {
                        std::hint::black_box(store.get(&key(i), None));
                    }
                }
                start.elapsed()
            })
        })
        .collect();
    handles.into_iter().map(|h| h.join().unwrap()).max().unwrap_or_default()
}

fn bench(c: &mut Criterion) {
    let mut group = c.benchmark_group("store_90get_10set_2threads");
    group.throughput(Throughput::Elements(OPS_PER_ITER * THREADS as u64));
    for shards in [1usize, 16, 64] {
        let store = filled(shards);
        group.bench_function(format!("{shards}_shards"), |b| b.iter_custom(|iters| run(&store, iters)));
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
