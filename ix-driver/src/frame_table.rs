//! Frames a queue lends to whatever writes into them or sends them (a kernel
//! ring, another core's sender on the mem wire), kept by frame index until
//! they come back.

use crate::pool::FRAME_STRIDE_BYTES;

/// Frames held for a device, indexed by frame.
#[derive(Debug)]
pub(crate) struct FrameTable<T> {
    slots: Vec<Option<T>>,
    held: u32,
}

impl<T> FrameTable<T> {
    /// An empty table for a pool of `frames` frames.
    pub(crate) fn new(frames: u32) -> Self {
        Self { slots: (0..frames).map(|_| None).collect(), held: 0 }
    }

    /// Whether frame `index` exists and is not held.
    pub(crate) fn is_free(&self, index: u32) -> bool {
        self.slots.get(index as usize).is_some_and(Option::is_none)
    }

    /// Holds `value` as frame `index`.
    ///
    /// # Panics
    /// If `index` is past the pool the table was made for.
    #[inline]
    pub(crate) fn put(&mut self, index: u32, value: T) {
        let slot = &mut self.slots[index as usize];
        debug_assert!(slot.is_none(), "frame {index} held twice");
        if slot.replace(value).is_none() {
            self.held += 1;
        }
    }

    /// Frame `index`, if this table holds it.
    #[inline]
    pub(crate) fn take(&mut self, index: u32) -> Option<T> {
        let taken = self.slots.get_mut(index as usize)?.take();
        if taken.is_some() {
            self.held -= 1;
        }
        taken
    }

    /// The frame at a region offset a device returned, if this table holds it.
    pub(crate) fn take_at(&mut self, addr: u64) -> Option<T> {
        self.take(u32::try_from(addr / u64::from(FRAME_STRIDE_BYTES)).ok()?)
    }

    /// Frames held.
    pub(crate) fn held(&self) -> u32 {
        self.held
    }

    /// Lets every frame go.
    pub(crate) fn clear(&mut self) {
        self.slots.iter_mut().for_each(|slot| *slot = None);
        self.held = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_frame_table_holds_each_frame_once() {
        let mut table: FrameTable<u32> = FrameTable::new(4);
        table.put(2, 7);
        assert!(!table.is_free(2));
        assert!(table.is_free(1));
        assert!(!table.is_free(9), "out of range is never free");
        assert_eq!(table.take_at(2 * 4096 + 256), Some(7));
        assert_eq!(table.take_at(2 * 4096), None);
        assert_eq!(table.take_at(99 * 4096), None, "an address past the region is ignored");
        table.put(3, 8);
        assert_eq!(table.held(), 1);
        assert_eq!(table.take(3), Some(8));
        assert_eq!(table.take(3), None);
        assert_eq!(table.take(u32::MAX), None);
        assert_eq!(table.held(), 0);
    }
}
