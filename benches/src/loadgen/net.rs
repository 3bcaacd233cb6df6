//! Where the generator's connections and timers come from: kernel sockets on a
//! tokio current-thread runtime, or IX's own stack. Sleeps are precise to a few
//! microseconds: the coarse timer sleeps to just before the deadline, then the
//! task spins by yielding, so the I/O of other connections keeps being served.

use std::cell::Cell;
use std::future::Future;
use std::io;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::ops::RangeInclusive;
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
#[derive(Debug, Default)]
pub struct KernelNet {
    /// Where connections are made from (`None`: the kernel's choice of
    /// address and port).
    source: Option<SourcePorts>,
}

impl KernelNet {
    /// Connections from `source`, on ports this generator picks itself from
    /// the namespace's ephemeral range (see [`SourcePorts`]). A client address
    /// has about 64k ports: more connections to one server need several
    /// addresses.
    pub fn from_source(source: Ipv4Addr) -> Self {
        Self { source: Some(SourcePorts::new(source, ephemeral_port_range(), std::process::id())) }
    }
}

/// The local ports of connections from one address, handed out in turn.
///
/// Binding to an address with port 0 makes Linux search its bind table for a
/// free port (`inet_csk_get_port`), a search that grows with the ports already
/// bound: past about 31,600 connections from one address (Linux tries odd
/// ports for `bind` first, half the range), clients opened 30 connections per
/// second (31,616 to 35,079 in 117 s, the client's stack in that search).
/// Binding a named port is one lookup. A port another socket holds (another
/// process on the same address, a connection in TIME-WAIT) fails with
/// `EADDRINUSE` and the next one is tried.
#[derive(Debug)]
struct SourcePorts {
    addr: Ipv4Addr,
    first: u16,
    count: u32,
    /// Offset in the range of the next port to try.
    next: Cell<u32>,
}

impl SourcePorts {
    /// Ports `range`, starting at an offset drawn from `spread` (processes
    /// sharing an address start apart).
    fn new(addr: Ipv4Addr, range: RangeInclusive<u16>, spread: u32) -> Self {
        let count = u32::from(*range.end()) - u32::from(*range.start()) + 1;
        let next = Cell::new(spread.wrapping_mul(2_654_435_761) % count);
        Self { addr, first: *range.start(), count, next }
    }

    /// A socket bound to the next free port of the range.
    fn bind(&self) -> io::Result<tokio::net::TcpSocket> {
        let mut last = None;
        for _ in 0..self.count {
            let offset = self.next.get();
            self.next.set((offset + 1) % self.count);
            let port = self.first + offset as u16;
            let socket = tokio::net::TcpSocket::new_v4()?;
            match socket.bind(SocketAddrV4::new(self.addr, port).into()) {
                Ok(()) => return Ok(socket),
                Err(e) if e.kind() == io::ErrorKind::AddrInUse => last = Some(e),
                Err(e) => return Err(e),
            }
        }
        Err(last.unwrap_or_else(|| io::Error::from(io::ErrorKind::AddrInUse)))
    }
}

/// The network namespace's ephemeral port range
/// (`net.ipv4.ip_local_port_range`), or Linux's default when it cannot be read.
fn ephemeral_port_range() -> RangeInclusive<u16> {
    const LINUX_DEFAULT: RangeInclusive<u16> = 32768..=60999;
    let Ok(text) = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range") else { return LINUX_DEFAULT };
    let mut bounds = text.split_whitespace().map(str::parse::<u16>);
    match (bounds.next(), bounds.next()) {
        (Some(Ok(low)), Some(Ok(high))) if low <= high => low..=high,
        _ => LINUX_DEFAULT,
    }
}

impl Net for KernelNet {
    type Stream = tokio::net::TcpStream;

    async fn connect(&self, addr: SocketAddrV4) -> io::Result<Self::Stream> {
        let stream = match &self.source {
            None => tokio::net::TcpStream::connect(addr).await?,
            Some(ports) => ports.bind()?.connect(addr.into()).await?,
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn source_ports_skip_a_port_in_use_and_wrap_around_the_range() {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let _guard = runtime.enter();
        let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = taken.local_addr().unwrap().port();
        // A range of two that starts at the taken port (offset 0 for spread 0, 1 for spread 1).
        let (range, spread) = if port < u16::MAX { (port..=port + 1, 0) } else { (port - 1..=port, 1) };
        let ports = SourcePorts::new(Ipv4Addr::LOCALHOST, range, spread);
        let first = ports.bind().expect("the port after the taken one is free");
        let bound = first.local_addr().unwrap().port();
        assert_ne!(bound, port, "the taken port was bound again");
        let single = SourcePorts::new(Ipv4Addr::LOCALHOST, port..=port, 7);
        let refused = single.bind().unwrap_err();
        assert_eq!(refused.kind(), io::ErrorKind::AddrInUse);
    }
}
