//! Stopping a harness run cleanly on SIGINT or SIGTERM: a flag that the run
//! checks between points, so that its ordinary teardown stops the servers and
//! removes the test network; a second signal exits at once.

use std::io;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use futures::future::{self, Either};
use tokio::signal::unix::{Signal, SignalKind, signal};

/// Exit status after a second signal (128 + SIGINT, as a shell reports it).
const EXIT_STATUS_FORCED: i32 = 130;

/// Whether SIGINT or SIGTERM arrived since [`Interrupt::install`].
///
/// The first signal only sets the flag (and says so on standard error): the
/// run finishes the point it is measuring (a few seconds at most), measures
/// nothing more, and returns through its usual teardown. A second signal
/// exits the process at once, leaving servers and namespaces behind
/// (`scripts/testnet.sh down -p PREFIX` removes them).
#[derive(Debug, Clone)]
pub struct Interrupt {
    raised: Arc<AtomicBool>,
}

impl Interrupt {
    /// Replaces the default action of SIGINT and SIGTERM for the whole
    /// process with the flag, watched by a thread of its own.
    ///
    /// # Errors
    /// The error of building the watcher's runtime or registering a signal.
    pub fn install() -> io::Result<Interrupt> {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_io().build()?;
        // Registered here, before returning, so that no signal between this
        // call and the watcher's first poll takes the default action.
        let (interrupt, terminate) = {
            let _context = runtime.enter();
            (signal(SignalKind::interrupt())?, signal(SignalKind::terminate())?)
        };
        let raised = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&raised);
        std::thread::Builder::new()
            .name("ix-bench-signals".into())
            .spawn(move || runtime.block_on(watch(interrupt, terminate, &flag)))?;
        Ok(Interrupt { raised })
    }

    /// Whether a signal asked the run to stop.
    pub fn is_raised(&self) -> bool {
        self.raised.load(Ordering::Relaxed)
    }
}

async fn watch(mut interrupt: Signal, mut terminate: Signal, raised: &AtomicBool) {
    loop {
        let name = match future::select(Box::pin(interrupt.recv()), Box::pin(terminate.recv())).await {
            Either::Left(_) => "SIGINT",
            Either::Right(_) => "SIGTERM",
        };
        if raised.swap(true, Ordering::Relaxed) {
            eprintln!("ix-bench: {name} again: exiting now; servers and namespaces may be left behind");
            std::process::exit(EXIT_STATUS_FORCED);
        }
        eprintln!(
            "ix-bench: {name}: finishing the current point, then stopping the servers and removing the test network \
             (a second signal exits at once)"
        );
    }
}
