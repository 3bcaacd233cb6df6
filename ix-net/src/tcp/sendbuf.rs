//! The send queue of one connection: the application's buffers, kept without
//! copying from the moment they are accepted until the peer acknowledges them.

use std::collections::VecDeque;

use bytes::Bytes;
use ix_driver::PacketBuf;

/// One buffer handed to `send`: either the application's `Bytes` or a frame the
/// application filled in the driver's region (`alloc_tx`).
#[derive(Debug, Clone)]
pub enum SendChunk {
    /// Memory owned by the application, shared until acknowledged.
    Bytes(Bytes),
    /// A frame of the core's packet pool.
    Frame(PacketBuf),
}

impl SendChunk {
    fn as_slice(&self) -> &[u8] {
        match self {
            SendChunk::Bytes(b) => b,
            SendChunk::Frame(f) => f,
        }
    }

    fn advance(&mut self, n: usize) {
        match self {
            SendChunk::Bytes(b) => {
                let _ = b.split_to(n);
            }
            SendChunk::Frame(f) => f.advance(n),
        }
    }

    fn len(&self) -> usize {
        self.as_slice().len()
    }
}

/// Bytes queued for sending, from the oldest unacknowledged byte on.
///
/// Offsets are relative to the oldest byte (`SND.UNA` once the handshake is
/// done). The queue is bounded by `limit` bytes; a chunk larger than the room
/// left is accepted in part.
#[derive(Debug)]
pub struct SendBuffer {
    chunks: VecDeque<SendChunk>,
    len: usize,
    limit: usize,
    /// Where the last copy ended: (chunk index, offset of that chunk's first
    /// byte), so sequential segmentation does not rescan from the front.
    cursor: (usize, usize),
}

impl SendBuffer {
    /// An empty queue that holds at most `limit` bytes.
    pub fn new(limit: usize) -> Self {
        Self { chunks: VecDeque::new(), len: 0, limit, cursor: (0, 0) }
    }

    /// Bytes queued (sent or not, not yet acknowledged).
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether nothing is queued.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Room left before the limit.
    pub fn room(&self) -> usize {
        self.limit.saturating_sub(self.len)
    }

    /// The configured bound.
    pub fn limit(&self) -> usize {
        self.limit
    }

    /// Queues as much of `chunk` as fits and returns how many bytes that was.
    pub fn push(&mut self, mut chunk: SendChunk) -> usize {
        let n = chunk.len().min(self.room());
        if n == 0 {
            return 0;
        }
        match &mut chunk {
            SendChunk::Bytes(b) => b.truncate(n),
            SendChunk::Frame(f) => f.truncate(n),
        }
        self.len += n;
        self.chunks.push_back(chunk);
        n
    }

    /// Drops the first `n` bytes (acknowledged by the peer).
    pub fn consume(&mut self, mut n: usize) {
        n = n.min(self.len);
        self.len -= n;
        while n > 0 {
            let Some(front) = self.chunks.front_mut() else { break };
            let flen = front.len();
            if flen <= n {
                n -= flen;
                self.chunks.pop_front();
            } else {
                front.advance(n);
                n = 0;
            }
        }
        self.cursor = (0, 0);
    }

    /// Copies `dst.len()` bytes starting `offset` bytes after the oldest one.
    ///
    /// # Panics
    /// If the range goes past the queued bytes.
    pub fn copy_out(&mut self, offset: usize, dst: &mut [u8]) {
        assert!(offset + dst.len() <= self.len, "copy past the end of the send queue");
        if dst.is_empty() {
            return;
        }
        let (mut idx, mut start) = self.cursor;
        if idx >= self.chunks.len() || start > offset {
            (idx, start) = (0, 0);
        }
        // Walk to the chunk holding `offset`.
        while start + self.chunks[idx].len() <= offset {
            start += self.chunks[idx].len();
            idx += 1;
        }
        let mut written = 0;
        let mut within = offset - start;
        while written < dst.len() {
            let src = &self.chunks[idx].as_slice()[within..];
            let n = src.len().min(dst.len() - written);
            dst[written..written + n].copy_from_slice(&src[..n]);
            written += n;
            if n == src.len() && written < dst.len() {
                start += self.chunks[idx].len();
                idx += 1;
                within = 0;
            }
        }
        self.cursor = (idx, start);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_up_to_the_limit_and_copies_across_chunks() {
        let mut q = SendBuffer::new(10);
        assert_eq!(q.push(SendChunk::Bytes(Bytes::from_static(b"hello"))), 5);
        assert_eq!(q.push(SendChunk::Bytes(Bytes::from_static(b"world!!"))), 5);
        assert_eq!(q.push(SendChunk::Bytes(Bytes::from_static(b"x"))), 0);
        let mut out = [0u8; 6];
        q.copy_out(2, &mut out);
        assert_eq!(&out, b"llowor");
        q.consume(3);
        let mut out = [0u8; 7];
        q.copy_out(0, &mut out);
        assert_eq!(&out, b"loworld");
        assert_eq!(q.room(), 3);
    }

    #[test]
    fn sequential_copies_use_the_cursor_and_stay_correct() {
        let mut q = SendBuffer::new(1 << 20);
        let data: Vec<u8> = (0..5000u32).map(|i| i as u8).collect();
        for part in data.chunks(333) {
            q.push(SendChunk::Bytes(Bytes::copy_from_slice(part)));
        }
        let mut seen = Vec::new();
        let mut off = 0;
        while off < data.len() {
            let n = 100.min(data.len() - off);
            let mut buf = vec![0; n];
            q.copy_out(off, &mut buf);
            seen.extend_from_slice(&buf);
            off += n;
        }
        assert_eq!(seen, data);
        // A retransmission from an earlier offset goes back to the front.
        let mut buf = [0u8; 4];
        q.copy_out(1, &mut buf);
        assert_eq!(buf, [1, 2, 3, 4]);
    }
}
