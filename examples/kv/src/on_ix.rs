//! Serving on IX: a core's accept loop, a task per connection, as the `ix-kv`
//! binary and the in-process benchmark (`benches/benches/inprocess`) run it.

use std::sync::Arc;

use ix_runtime::net::TcpListener;

use crate::server::{ClientAddrs, Server, serve_client};

/// Accepts connections on `listener` until it stops (the runtime shuts
/// down), serving each on its own task of this core.
///
/// # Cancel safety
/// Cancel safe: dropping the future stops accepting; the connections already
/// accepted keep being served by their own tasks.
pub async fn accept_loop(server: Arc<Server>, listener: &TcpListener) {
    while let Ok((stream, peer)) = listener.accept().await {
        tracing::debug!(%peer, "connection accepted");
        let addrs = ClientAddrs { peer: stream.peer_addr().into(), local: stream.local_addr().into() };
        let served = serve_client(server.clone(), stream, Some(addrs));
        drop(ix_runtime::spawn_local(async move {
            let outcome = served.await;
            tracing::debug!(%peer, ?outcome, "connection closed");
        }));
    }
}
