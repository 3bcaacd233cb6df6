//! Why a runtime could not start or run.

use ix_driver::DriverError;

/// Why a runtime could not start or run.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    /// The builder lacks a setting.
    #[error("runtime configuration: {0}")]
    Config(String),
    /// [`Builder::blocking_pool`](crate::Builder::blocking_pool) asked for a
    /// shape the process's blocking pool does not have.
    #[error(transparent)]
    BlockingPool(#[from] crate::blocking::GlobalPoolConfigured),
    /// A backend could not start.
    #[error(transparent)]
    Driver(#[from] DriverError),
    /// A core thread could not start or failed.
    #[error("core {core}: {message}")]
    Core {
        /// The core.
        core: usize,
        /// What happened.
        message: String,
    },
}
