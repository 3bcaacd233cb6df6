//! hyper's `rt::Executor` for `!Send` futures: each runs as a task on the
//! current IX core (hyper's HTTP/2 streams need this; nothing requires `Send`).

use std::future::Future;

/// Spawns hyper's background futures (HTTP/2 streams, connection drivers) as
/// tasks of the current core with [`ix_runtime::spawn_local`].
///
/// # Panics
/// `execute` panics outside a task of an IX runtime.
#[derive(Debug, Clone, Copy, Default)]
pub struct LocalExec;

impl<F> hyper::rt::Executor<F> for LocalExec
where
    F: Future + 'static,
{
    fn execute(&self, future: F) {
        // Detached: the task runs until it finishes or the core stops.
        drop(ix_runtime::spawn_local(async move {
            future.await;
        }));
    }
}
