//! `IxTimer` on a core's wheel: hyper's sleeps complete at (not before) their
//! deadline, `reset` moves them in place, and they are `Send + Sync` values that
//! may be dropped on another thread.

use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hyper::rt::Timer;
use ix_hyper_compat::{IxSleep, IxTimer};
use ix_runtime::{Backend, Runtime};

fn is_send_sync<T: Send + Sync + 'static>() {}

#[test]
fn sleeps_are_send_sync_and_fire_on_time() {
    is_send_sync::<IxSleep>();
    let results = Arc::new(Mutex::new(Vec::new()));
    let out = results.clone();
    let runtime = Runtime::builder().cores(1).backend(Backend::Kernel).handle_signals(false).build().unwrap();
    runtime
        .run(move |_| {
            let out = out.clone();
            async move {
                let timer = IxTimer;
                let start = Instant::now();
                timer.sleep(Duration::from_millis(30)).await;
                let plain = start.elapsed();

                let start = Instant::now();
                let mut sleep = timer.sleep(Duration::from_secs(60));
                timer.reset(&mut sleep, Instant::now() + Duration::from_millis(20));
                assert!(sleep.as_mut().downcast_mut_pin::<IxSleep>().is_some(), "reset kept our sleep");
                sleep.await;
                let reset = start.elapsed();

                // A sleep polled once on the core, then dropped on another thread.
                let mut moved: Pin<Box<dyn hyper::rt::Sleep>> = timer.sleep(Duration::from_millis(10));
                let polled = futures_poll_once(moved.as_mut());
                std::thread::spawn(move || drop(moved)).join().unwrap();
                // Its wheel entry fires later, waking this task once for nothing.
                timer.sleep(Duration::from_millis(20)).await;
                out.lock().unwrap().extend([plain, reset, Duration::from_nanos(polled as u64)]);
            }
        })
        .unwrap();
    let r = results.lock().unwrap();
    assert_eq!(r.len(), 3, "the core's task did not finish");
    assert!(r[0] >= Duration::from_millis(30) && r[0] < Duration::from_secs(5), "30 ms sleep took {:?}", r[0]);
    assert!(r[1] >= Duration::from_millis(20) && r[1] < Duration::from_secs(5), "reset sleep took {:?}", r[1]);
    assert_eq!(r[2], Duration::from_nanos(0), "a 10 ms sleep was ready at once");
}

/// Polls once with a no-op waker; true when ready.
fn futures_poll_once(sleep: Pin<&mut dyn hyper::rt::Sleep>) -> bool {
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    sleep.poll(&mut cx).is_ready()
}
