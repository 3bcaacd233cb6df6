//! Serving a tower `Service` (an axum `Router`, for example) on every core of
//! a runtime: what `axum::serve` is on tokio.

use std::io;
use std::sync::{Arc, Mutex, PoisonError};

use hyper::body::{Body, Incoming};
use hyper::{Request, Response};
use hyper_util::service::TowerToHyperService;
use ix_runtime::{Runtime, RuntimeError};

use crate::{ServerConfig, serve};

/// Why [`serve_tower`] stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum ServeTowerError {
    /// The runtime could not start, or a core failed.
    #[error(transparent)]
    Runtime(#[from] RuntimeError),
    /// A core could not listen on the port (the runtime was shut down then).
    #[error("core {core}: port {port}: {source}")]
    Listen {
        /// The core that failed.
        core: usize,
        /// The port.
        port: u16,
        /// The OS error.
        source: io::Error,
    },
}

/// Runs `runtime` and serves `service` on `port` on every core, HTTP/1.1 and
/// HTTP/2, with `config`'s limits, until the runtime shuts down (SIGINT,
/// SIGTERM or its `ShutdownHandle`). Each core holds a clone of `service`;
/// each request is served by a clone of it, as `axum::serve` does.
///
/// # Errors
/// [`ServeTowerError::Runtime`] when the runtime cannot start or a core
/// fails; [`ServeTowerError::Listen`] when a core cannot listen on `port`.
pub fn serve_tower<S, B>(runtime: Runtime, port: u16, service: S, config: ServerConfig) -> Result<(), ServeTowerError>
where
    S: tower_service::Service<Request<Incoming>, Response = Response<B>> + Clone + Send + Sync + 'static,
    S::Future: 'static,
    S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    B: Body + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let shutdown = runtime.shutdown_handle();
    let failure = Arc::new(Mutex::new(None));
    let failed = failure.clone();
    runtime.run(move |core| {
        let (service, config, shutdown, failed) = (service.clone(), config.clone(), shutdown.clone(), failed.clone());
        async move {
            let service = TowerToHyperService::new(service);
            if let Err(source) = serve(port, move |_peer| service.clone(), config).await {
                tracing::warn!(core, port, error = %source, "cannot listen");
                failed.lock().unwrap_or_else(PoisonError::into_inner).get_or_insert(ServeTowerError::Listen {
                    core,
                    port,
                    source,
                });
                shutdown.shutdown();
            }
        }
    })?;
    let failure = failure.lock().unwrap_or_else(PoisonError::into_inner).take();
    failure.map_or(Ok(()), Err)
}
