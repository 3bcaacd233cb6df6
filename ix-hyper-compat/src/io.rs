//! hyper's `rt::Read` and `rt::Write` for an IX `TcpStream`: reads copy from the
//! received frames straight into hyper's (uninitialised) buffer; writes gather
//! hyper's slices into packet-region frames.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use hyper::rt::ReadBufCursor;
use ix_runtime::net::RxChunk;
use ix_runtime::net::TcpStream;

/// An IX stream as hyper's IO: wrap what `accept` or `connect` returned.
///
/// Reading copies each received chunk once, into the memory hyper hands over,
/// without zero-filling it first; a chunk hyper has no room for is kept (its
/// bytes stay out of the receive window) until the next read. Writing is
/// vectored: hyper's head and body slices share frames.
#[derive(Debug)]
pub struct IxIo {
    stream: TcpStream,
    /// Received data hyper had no room for yet.
    partial: Option<RxChunk>,
}

impl IxIo {
    /// Wraps a connected stream.
    pub fn new(stream: TcpStream) -> IxIo {
        IxIo { stream, partial: None }
    }

    /// The stream.
    pub fn get_ref(&self) -> &TcpStream {
        &self.stream
    }
}

impl hyper::rt::Read for IxIo {
    /// Fills hyper's buffer from as many received chunks as are ready.
    ///
    /// - `Ready(Ok(()))` with bytes added: data; with none added: end of stream.
    /// - `Ready(Err(_))`: the connection failed (reset, timed out).
    /// - `Pending`: nothing received yet; the task is woken when data comes.
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, mut buf: ReadBufCursor<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let mut copied = false;
        while buf.remaining() > 0 {
            let mut chunk = match this.partial.take() {
                Some(chunk) => chunk,
                None => match this.stream.poll_recv(cx) {
                    Poll::Ready(Ok(Some(chunk))) => chunk,
                    Poll::Ready(Ok(None)) => break,
                    // Hand over what was copied; the error comes back on the next call.
                    Poll::Ready(Err(_)) | Poll::Pending if copied => break,
                    Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                    Poll::Pending => return Poll::Pending,
                },
            };
            let n = chunk.len().min(buf.remaining());
            buf.put_slice(&chunk[..n]);
            copied |= n > 0;
            if n < chunk.len() {
                chunk.advance(n);
                this.partial = Some(chunk);
                break;
            }
        }
        Poll::Ready(Ok(()))
    }
}

impl hyper::rt::Write for IxIo {
    /// - `Ready(Ok(n))`: `n` bytes queued for sending.
    /// - `Ready(Err(_))`: the connection failed or was shut down.
    /// - `Pending`: the send queue is full; the task is woken when it drains.
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        self.stream.poll_write_vectored(cx, &[io::IoSlice::new(buf)])
    }

    /// As `poll_write`, gathering every slice into shared frames.
    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        self.stream.poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    /// Always ready: queued data leaves on the core's next transmit.
    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    /// Sends a FIN after the queued data.
    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(self.stream.shutdown())
    }
}
