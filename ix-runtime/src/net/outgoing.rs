//! What a stream sends without copying (the application's `Bytes`, or a frame
//! it filled in the packet region), for both backends' send loops.

use bytes::Bytes;
use ix_driver::PacketBuf;
use ix_net::{SocketError, SocketHandle, Stack};

/// Data a stream sends without copying it.
pub(crate) trait Outgoing: Clone + std::ops::Deref<Target = [u8]> {
    /// Hands (a clone of) the data to the stack; returns how much it took.
    fn queue(self, stack: &mut Stack, handle: SocketHandle) -> Result<usize, SocketError>;
    /// Drops the first `n` bytes, which were taken.
    fn consume(&mut self, n: usize);
}

impl Outgoing for Bytes {
    fn queue(self, stack: &mut Stack, handle: SocketHandle) -> Result<usize, SocketError> {
        stack.tcp_send(handle, self)
    }

    fn consume(&mut self, n: usize) {
        let _ = self.split_to(n);
    }
}

impl Outgoing for PacketBuf {
    fn queue(self, stack: &mut Stack, handle: SocketHandle) -> Result<usize, SocketError> {
        stack.tcp_send_frame(handle, self)
    }

    fn consume(&mut self, n: usize) {
        self.advance(n);
    }
}
