//! Where the generator's connections and timers come from: kernel sockets on a
//! tokio current-thread runtime, or IX's own stack. Sleeps are precise to a few
//! microseconds: the coarse timer sleeps to just before the deadline, then the
//! task spins by yielding, so the I/O of other connections keeps being served.

use std::future::Future;
use std::io;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncWrite};

/// Connections and timers for the load generator (single-threaded: nothing
/// here needs to be `Send`).
pub trait Net {
    /// A connected stream.
    type Stream: AsyncRead + AsyncWrite + Unpin;

    /// Connects to `addr`, with Nagle's algorithm off.
    fn connect(&self, addr: SocketAddrV4) -> impl Future<Output = io::Result<Self::Stream>>;

    /// Completes at `at` (already past: at once), within a few microseconds.
    fn sleep_until(&self, at: Instant) -> impl Future<Output = ()>;
}

/// tokio's timer has 1 ms ticks: sleep on it to this much before a deadline,
/// then spin.
const KERNEL_SPIN_BEFORE_DEADLINE: Duration = Duration::from_micros(2000);
/// IX's timer wheel has 16 µs ticks.
const IX_SPIN_BEFORE_DEADLINE: Duration = Duration::from_micros(50);

/// Kernel sockets, driven by a tokio current-thread runtime.
#[derive(Debug, Clone, Copy, Default)]
pub struct KernelNet {
    /// The local address connections are made from (`None`: the kernel's
    /// choice). A client address has about 64k ports: more connections to
    /// one server need several addresses.
    pub source: Option<Ipv4Addr>,
}

impl Net for KernelNet {
    type Stream = tokio::net::TcpStream;

    async fn connect(&self, addr: SocketAddrV4) -> io::Result<Self::Stream> {
        let stream = match self.source {
            None => tokio::net::TcpStream::connect(addr).await?,
            Some(source) => {
                let socket = tokio::net::TcpSocket::new_v4()?;
                socket.bind(SocketAddrV4::new(source, 0).into())?;
                socket.connect(addr.into()).await?
            }
        };
        stream.set_nodelay(true)?;
        Ok(stream)
    }

    async fn sleep_until(&self, at: Instant) {
        if let Some(coarse) = at.checked_sub(KERNEL_SPIN_BEFORE_DEADLINE).filter(|c| *c > Instant::now()) {
            tokio::time::sleep_until(coarse.into()).await;
        }
        while Instant::now() < at {
            tokio::task::yield_now().await;
        }
    }
}

/// IX's stack and timer wheel: the generator runs as a task of an
/// `ix_runtime::Runtime`.
#[derive(Debug, Clone, Copy, Default)]
pub struct IxNet;

impl Net for IxNet {
    type Stream = ix_runtime::net::TcpStream;

    async fn connect(&self, addr: SocketAddrV4) -> io::Result<Self::Stream> {
        let stream = ix_runtime::net::TcpStream::connect(addr).await?;
        stream.set_nodelay(true)?;
        Ok(stream)
    }

    async fn sleep_until(&self, at: Instant) {
        let ahead = at.saturating_duration_since(Instant::now());
        if ahead > IX_SPIN_BEFORE_DEADLINE {
            ix_runtime::time::sleep(ahead - IX_SPIN_BEFORE_DEADLINE).await;
        }
        while Instant::now() < at {
            ix_runtime::yield_now().await;
        }
    }
}
