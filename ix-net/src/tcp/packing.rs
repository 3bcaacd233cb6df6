//! Pool pressure on the receive side: small unread chunks, each pinning a
//! frame of its own, are copied together into shared frames (as Linux
//! collapses receive queues under memory pressure).

use std::ops::Range;
use std::time::Duration;

use ix_driver::pool::FRAME_DATA_BYTES;
use ix_driver::{PacketBuf, PoolPressure, TxBuf};

use crate::socket::SocketHandle;
use crate::stack::{SocketKind, Stack};
use crate::time::Instant;

/// A chunk this short (a quarter of a frame's room or less) alone in its frame
/// is worth moving into a shared frame.
const PACK_BELOW_BYTES: usize = FRAME_DATA_BYTES as usize / 4;
/// Packing walks every connection: at most this often while the pressure lasts.
pub(crate) const PACKING_INTERVAL: Duration = Duration::from_millis(50);

/// Where each copied chunk goes back once its shared frame is full.
struct Packer {
    frame: Option<TxBuf>,
    /// (connection, index in its read queue, range in `frame`).
    placed: Vec<(SocketHandle, usize, Range<usize>)>,
}

impl Stack {
    /// Packs small unread chunks into shared frames when the pool is under
    /// pressure, at most every [`PACKING_INTERVAL`].
    pub(crate) fn pack_under_pressure(&mut self, now: Instant) {
        if now < self.next_packing || self.pool.pressure() == PoolPressure::Normal {
            return;
        }
        self.next_packing = now + PACKING_INTERVAL;
        let mut packer = Packer { frame: None, placed: Vec::new() };
        let handles: Vec<SocketHandle> = self
            .sockets
            .iter()
            .filter(|(_, e)| matches!(&e.kind, SocketKind::Tcp(c) if c.recv_queued() > 0))
            .map(|(i, e)| SocketHandle { index: i as u32, generation: e.generation })
            .collect();
        for handle in handles {
            let Ok(conn) = self.conn(handle) else { continue };
            let lone_small: Vec<(usize, PacketBuf)> = conn
                .ready_chunks()
                .enumerate()
                .filter(|(_, c)| c.len() <= PACK_BELOW_BYTES && c.frame_refs() == 1)
                .map(|(i, c)| (i, c.clone()))
                .collect();
            for (index, chunk) in lone_small {
                if !self.place(&mut packer, handle, index, &chunk) {
                    self.finish_frame(&mut packer);
                    return;
                }
            }
        }
        self.finish_frame(&mut packer);
    }

    /// Copies `chunk` into the packer's frame (a fresh one when it is full);
    /// false when the pool has no frame left for it.
    fn place(&mut self, packer: &mut Packer, handle: SocketHandle, index: usize, chunk: &PacketBuf) -> bool {
        if packer.frame.as_ref().is_some_and(|f| f.tailroom() < chunk.len()) {
            self.finish_frame(packer);
        }
        if packer.frame.is_none() {
            match self.pool.alloc() {
                Ok(frame) => packer.frame = Some(frame),
                Err(_) => return false,
            }
        }
        let frame = packer.frame.as_mut().expect("allocated above");
        let start = frame.len();
        frame.extend_from_slice(chunk).expect("room checked");
        packer.placed.push((handle, index, start..frame.len()));
        true
    }

    /// Freezes the packer's frame and puts each copy in place of its original,
    /// whose frame returns to the pool.
    fn finish_frame(&mut self, packer: &mut Packer) {
        let Some(frame) = packer.frame.take() else { return };
        let shared = frame.freeze();
        for (handle, index, range) in packer.placed.drain(..) {
            if let Ok(conn) = self.conn_mut(handle) {
                conn.replace_ready_chunk(index, shared.slice(range));
                self.stats.tcp.rx_packed_chunks += 1;
            }
        }
    }
}
