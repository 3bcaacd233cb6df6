//! hyper on IX: hyper's runtime traits (`Read`/`Write`, `Executor`, `Timer`) for
//! the dataplane's streams, cores and timer wheel, and a per-core server for
//! HTTP/1.1 and HTTP/2 (prior knowledge and h2c upgrade) with production limits.
//!
//! A hyper service moves from tokio to IX by changing its listener, its spawn
//! and its main (see `docs/porting.md`):
//!
//! ```no_run
//! #![forbid(unsafe_code)]
//! use std::convert::Infallible;
//! use http_body_util::Full;
//! use hyper::{Request, Response, body::{Bytes, Incoming}, service::service_fn};
//! use ix_hyper_compat::{ServerConfig, serve};
//! use ix_runtime::{Backend, Runtime};
//!
//! async fn hello(_: Request<Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
//!     Ok(Response::new(Full::new(Bytes::from_static(b"Hello, world!"))))
//! }
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! Runtime::builder()
//!     .cores(2)
//!     .backend(Backend::Tap { name: "ix0".into() })
//!     .ipv4("10.99.0.2".parse()?, 24)
//!     .build()?
//!     .run(|_core| async {
//!         let served = serve(8080, |_peer| service_fn(hello), ServerConfig::default()).await;
//!         if let Err(e) = served {
//!             eprintln!("port 8080: {e}");
//!         }
//!     })?;
//! # Ok(())
//! # }
//! ```

mod activity;
mod conn;
mod exec;
mod h2c;
mod io;
mod replay;
mod server;
mod signal;
mod timer;

pub use activity::{TrackedBody, TrackedFuture};
pub use conn::{ConnectionEnd, ConnectionReport, Protocol, ServerConfig};
pub use exec::LocalExec;
pub use io::IxIo;
pub use server::{Accept, ConnectionTask, ServeCounters, Server, serve};
pub use signal::Shutdown;
pub use timer::{IxSleep, IxTimer};
