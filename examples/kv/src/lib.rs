//! A memcached-compatible key-value server (text and meta protocol) whose
//! protocol, store and connection code run unchanged on IX or tokio; the
//! binary in `main.rs` picks the runtime.
#![forbid(unsafe_code)]

pub mod handler;
pub mod on_ix;
pub mod protocol;
pub mod server;
pub mod stats;
pub mod store;

pub use server::{ClientAddrs, Server, Settings, Tunables, serve_client, serve_connection};
pub use store::{Store, StoreConfig};
