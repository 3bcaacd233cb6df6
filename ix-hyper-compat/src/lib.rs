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

#![forbid(unsafe_code)]

/// `hyper::rt::Write` for a wrapper `$ty<I>` whose field `io: I` takes every
/// write unchanged (the wrappers here only change what is read).
macro_rules! forward_write_to_io {
    ($ty:ident) => {
        impl<I: hyper::rt::Write + Unpin> hyper::rt::Write for $ty<I> {
            fn poll_write(
                self: std::pin::Pin<&mut Self>,
                cx: &mut std::task::Context<'_>,
                buf: &[u8],
            ) -> std::task::Poll<std::io::Result<usize>> {
                std::pin::Pin::new(&mut self.get_mut().io).poll_write(cx, buf)
            }

            fn poll_write_vectored(
                self: std::pin::Pin<&mut Self>,
                cx: &mut std::task::Context<'_>,
                bufs: &[std::io::IoSlice<'_>],
            ) -> std::task::Poll<std::io::Result<usize>> {
                std::pin::Pin::new(&mut self.get_mut().io).poll_write_vectored(cx, bufs)
            }

            fn is_write_vectored(&self) -> bool {
                self.io.is_write_vectored()
            }

            fn poll_flush(
                self: std::pin::Pin<&mut Self>,
                cx: &mut std::task::Context<'_>,
            ) -> std::task::Poll<std::io::Result<()>> {
                std::pin::Pin::new(&mut self.get_mut().io).poll_flush(cx)
            }

            fn poll_shutdown(
                self: std::pin::Pin<&mut Self>,
                cx: &mut std::task::Context<'_>,
            ) -> std::task::Poll<std::io::Result<()>> {
                std::pin::Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
            }
        }
    };
}
pub(crate) use forward_write_to_io;

mod activity;
mod conn;
mod exec;
mod h2c;
mod io;
mod replay;
mod server;
mod signal;
mod timer;
mod tower_serve;
mod tower_timeout;

pub use activity::{TrackedBody, TrackedFuture};
pub use conn::{ConnectionEnd, ConnectionReport, Protocol, ServerConfig};
pub use exec::LocalExec;
pub use io::IxIo;
pub use server::{Accept, ConnectionTask, ServeCounters, Server, serve};
pub use signal::Shutdown;
pub use timer::{IxSleep, IxTimer};
pub use tower_serve::{ServeTowerError, serve_tower};
pub use tower_timeout::{Timeout, TimeoutFuture, TimeoutLayer};
