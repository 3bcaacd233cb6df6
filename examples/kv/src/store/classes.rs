//! memcached's slab size classes, computed as memcached computes them from
//! `-I` (growth factor 1.25, 48-byte minimum payload, 8-byte alignment). This
//! store does not allocate by class; it groups items by the class memcached
//! would put them in, so `stats items`, `stats slabs` and `me` answer with
//! memcached's class numbers and chunk sizes.

/// memcached's `sizeof(item)` on a 64-bit build, before the CAS field.
const ITEM_STRUCT_BYTES: usize = 48;
/// memcached's default `-n` (minimum space for key, value and flags).
const CHUNK_MIN_PAYLOAD_BYTES: usize = 48;
/// memcached's default `-f`.
pub const GROWTH_FACTOR: f64 = 1.25;
/// Chunks are aligned to this many bytes.
const CHUNK_ALIGN_BYTES: usize = 8;
/// memcached has at most 64 classes (class 0 unused).
const CLASSES_MAX: usize = 63;

/// The class table for one item size limit.
#[derive(Debug, Clone)]
pub struct SizeClasses {
    /// Chunk size of class `i + 1`.
    chunk_sizes: Vec<usize>,
    /// memcached's page size (the item size limit).
    page_bytes: usize,
}

impl SizeClasses {
    /// memcached's classes for `item_size_max` (its `-I`): pages of that
    /// size, the largest chunk half of it.
    pub fn new(item_size_max: usize) -> Self {
        let chunk_max = item_size_max / 2;
        let mut chunk_sizes = Vec::new();
        let mut size = ITEM_STRUCT_BYTES + CHUNK_MIN_PAYLOAD_BYTES;
        while chunk_sizes.len() + 1 < CLASSES_MAX && (size as f64) < chunk_max as f64 / GROWTH_FACTOR {
            size = size.next_multiple_of(CHUNK_ALIGN_BYTES);
            chunk_sizes.push(size);
            // memcached multiplies an unsigned int by a double and truncates.
            size = (size as f64 * GROWTH_FACTOR) as usize;
        }
        chunk_sizes.push(chunk_max);
        Self { chunk_sizes, page_bytes: item_size_max }
    }

    /// The class (1-based) memcached stores an item of `total_bytes` in; the
    /// largest class for items beyond it (memcached chains those).
    pub fn class_of(&self, total_bytes: usize) -> usize {
        self.chunk_sizes.partition_point(|&c| c < total_bytes).min(self.chunk_sizes.len() - 1) + 1
    }

    /// How many classes there are.
    pub fn len(&self) -> usize {
        self.chunk_sizes.len()
    }

    /// Whether there are none (never: the largest class always exists).
    pub fn is_empty(&self) -> bool {
        self.chunk_sizes.is_empty()
    }

    /// The chunk size of `class` (1-based).
    pub fn chunk_size(&self, class: usize) -> usize {
        self.chunk_sizes[class - 1]
    }

    /// How many chunks of `class` a memcached page holds.
    pub fn chunks_per_page(&self, class: usize) -> usize {
        self.page_bytes / self.chunk_size(class)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The figures memcached 1.6.18 `-I 1m` reports in `stats slabs`.
    #[test]
    fn classes_match_memcached_1m() {
        let classes = SizeClasses::new(1 << 20);
        assert_eq!(classes.chunk_size(1), 96);
        assert_eq!(classes.chunks_per_page(1), 10922);
        assert_eq!(classes.chunk_size(17), 3632);
        assert_eq!(classes.chunks_per_page(17), 288);
        assert_eq!(classes.chunk_size(classes.len()), 524_288);
        assert_eq!(classes.class_of(63), 1);
        assert_eq!(classes.class_of(3064), 17);
        assert_eq!(classes.class_of(97), 2);
        assert_eq!(classes.chunk_size(36), 252_696);
        assert_eq!(classes.len(), 39);
    }
}
