//! An IO that first replays bytes already read from it (while the protocol
//! was being detected), then reads on.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use hyper::rt::ReadBufCursor;

/// `prefix` first, then `io`. Writes go straight to `io`.
#[derive(Debug)]
pub(crate) struct Replay<I> {
    prefix: Vec<u8>,
    at: usize,
    io: I,
}

impl<I> Replay<I> {
    pub(crate) fn new(prefix: Vec<u8>, io: I) -> Self {
        Replay { prefix, at: 0, io }
    }
}

impl<I: hyper::rt::Read + Unpin> hyper::rt::Read for Replay<I> {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, mut buf: ReadBufCursor<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.at < this.prefix.len() {
            let n = (this.prefix.len() - this.at).min(buf.remaining());
            buf.put_slice(&this.prefix[this.at..this.at + n]);
            this.at += n;
            if this.at == this.prefix.len() {
                this.prefix = Vec::new();
                this.at = 0;
            }
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut this.io).poll_read(cx, buf)
    }
}

crate::forward_write_to_io!(Replay);

/// Reads once more into the end of `buf` (at most `want` bytes, at most 4 KiB).
/// The read lands in a stack buffer first, so a connection that has sent
/// nothing yet holds no heap memory for it; the buffer is left uninitialised
/// (hyper's `ReadBuf` tracks what was written), not zeroed on every call.
///
/// - `Ready(Ok(n))`: `n` bytes appended; `0` is the end of the stream.
/// - `Ready(Err(_))`: the read failed.
/// - `Pending`: nothing yet.
pub(crate) fn poll_read_into_vec<I: hyper::rt::Read + Unpin>(
    io: &mut I,
    cx: &mut Context<'_>,
    buf: &mut Vec<u8>,
    want: usize,
) -> Poll<io::Result<usize>> {
    const STEP_BYTES: usize = 4096;
    let mut landing = [std::mem::MaybeUninit::<u8>::uninit(); STEP_BYTES];
    let mut read = hyper::rt::ReadBuf::uninit(&mut landing[..want.min(STEP_BYTES)]);
    let result = Pin::new(io).poll_read(cx, read.unfilled());
    buf.extend_from_slice(read.filled());
    result.map_ok(|()| read.filled().len())
}
