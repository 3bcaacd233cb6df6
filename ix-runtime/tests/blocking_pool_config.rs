//! `Builder::blocking_pool` shapes the process-wide pool that `spawn_blocking`
//! uses, and a later runtime asking for another shape is refused. A test binary
//! of its own: the pool is one per process.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use ix_runtime::blocking::{BlockingConfig, BlockingPool};
use ix_runtime::{Backend, Runtime, RuntimeError, spawn_blocking};

fn builder(pool: BlockingConfig) -> ix_runtime::Builder {
    Runtime::builder()
        .cores(1)
        .backend(Backend::Kernel)
        .ipv4(std::net::Ipv4Addr::LOCALHOST, 8)
        .pin_threads(false)
        .handle_signals(false)
        .blocking_pool(pool)
}

fn shape(max_threads: usize) -> BlockingConfig {
    BlockingConfig {
        max_threads,
        queue_capacity: 16,
        keep_alive: Duration::from_secs(1),
        thread_name: format!("shaped-{max_threads}"),
    }
}

#[test]
fn the_builder_shapes_the_pool_and_a_conflicting_shape_is_refused() {
    let runtime = builder(shape(2)).build().expect("the first shape is taken");
    let names = Arc::new(Mutex::new(Vec::new()));
    let seen = names.clone();
    runtime
        .run(move |_| {
            let seen = seen.clone();
            async move {
                let handles: Vec<_> =
                    (0..4).map(|_| spawn_blocking(|| std::thread::current().name().unwrap_or("").to_owned())).collect();
                for handle in handles {
                    let name = handle.await.expect("the closure ran");
                    seen.lock().unwrap().push(name);
                }
            }
        })
        .expect("the runtime ran");
    let names = names.lock().unwrap();
    assert_eq!(names.len(), 4);
    assert!(names.iter().all(|name| name == "shaped-2"), "closures ran on {names:?}");
    let stats = BlockingPool::global().stats();
    assert!(stats.threads_started <= 2, "a pool of 2 threads started {}", stats.threads_started);

    builder(shape(2)).build().expect("asking again for the pool's own shape is fine");

    match builder(shape(3)).build() {
        Err(RuntimeError::BlockingPool(refused)) => assert_eq!(refused.existing, shape(2)),
        other => panic!("a second shape must be refused, got {other:?}"),
    }
    match builder(shape(0)).build() {
        Err(RuntimeError::Config(message)) => assert!(message.contains("blocking pool"), "{message}"),
        other => panic!("a pool of no thread must be refused, got {other:?}"),
    }
}
