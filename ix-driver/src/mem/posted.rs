//! Frames a receiving mem queue posts to its inbox (as a NIC's receive ring, or
//! AF_XDP's fill ring, takes the driver's buffers), and the one write a sender
//! makes into each: a frame due at once lands in the receiver's pool directly.

use std::ptr::NonNull;

use crate::pool::TxBuf;

/// The writable data area of one frame of a receiving queue's pool, lent to
/// the wire. The queue keeps the frame's [`TxBuf`] and reads it again only
/// once the inbox hands the frame back (or the posting is revoked).
#[derive(Debug)]
pub(crate) struct PostedFrame {
    frame: u32,
    data: NonNull<u8>,
    capacity: usize,
}

// SAFETY: a posted frame is a pointer into a region that the posting queue
// keeps mapped and does not touch while the frame is posted (see
// `PostedFrame::lend`); it moves between threads only inside the inbox's
// mutex, which orders the sender's write before the receiver's read.
unsafe impl Send for PostedFrame {}

impl PostedFrame {
    /// Lends `buf`'s tailroom (the whole data area of a fresh frame).
    ///
    /// # Safety
    /// Until the frame comes back from the inbox in a
    /// [`Carried::Posted`](super::inbox::Carried::Posted) entry, or the inbox's
    /// postings are revoked, the caller keeps the frame out of its pool (holds
    /// `buf`) and neither reads nor writes it through any handle.
    #[inline]
    pub(crate) unsafe fn lend(buf: &mut TxBuf) -> Self {
        let frame = buf.frame_index();
        let spare = buf.spare_mut();
        Self { frame, capacity: spare.len(), data: NonNull::from(spare).cast() }
    }

    /// Index of the frame in the receiving queue's pool.
    pub(crate) fn frame(&self) -> u32 {
        self.frame
    }

    /// Copies `bytes` to the start of the frame's data area; `None` (nothing
    /// written, the frame stays unused) when they do not fit.
    #[inline]
    pub(crate) fn fill(&self, bytes: &[u8]) -> Option<u32> {
        let len = u32::try_from(bytes.len()).ok().filter(|_| bytes.len() <= self.capacity)?;
        // SAFETY: `data` is valid for `capacity` bytes of writes and no one
        // else accesses them while the frame is posted (`lend`'s contract);
        // `bytes` lies in another frame (the sender's) or a wire buffer, so
        // the two ranges do not overlap.
        unsafe { std::ptr::copy_nonoverlapping(bytes.as_ptr(), self.data.as_ptr(), bytes.len()) };
        Some(len)
    }
}
