//! Reads structured values out of the fuzzer's bytes: each read takes what it needs from the front and yields
//! zeros once the input runs out, so every input decodes to some sequence of operations.

/// The fuzzer's bytes, consumed from the front.
#[derive(Debug, Clone)]
pub struct FuzzInput<'a> {
    rest: &'a [u8],
}

impl<'a> FuzzInput<'a> {
    /// Reads from `data`.
    pub fn new(data: &'a [u8]) -> Self {
        Self { rest: data }
    }

    /// Whether every byte was read.
    pub fn is_empty(&self) -> bool {
        self.rest.is_empty()
    }

    /// The next byte (0 past the end).
    pub fn u8(&mut self) -> u8 {
        let Some((&first, rest)) = self.rest.split_first() else { return 0 };
        self.rest = rest;
        first
    }

    /// The next two bytes, big-endian.
    pub fn u16(&mut self) -> u16 {
        u16::from_be_bytes([self.u8(), self.u8()])
    }

    /// The next four bytes, big-endian.
    pub fn u32(&mut self) -> u32 {
        u32::from_be_bytes([self.u8(), self.u8(), self.u8(), self.u8()])
    }

    /// A bit.
    pub fn bool(&mut self) -> bool {
        self.u8() & 1 == 1
    }

    /// A value in `0..bound` (`bound` > 0) from one byte, or two when `bound` exceeds 256.
    pub fn below(&mut self, bound: usize) -> usize {
        let raw = if bound > 256 { usize::from(self.u16()) } else { usize::from(self.u8()) };
        raw % bound
    }

    /// Up to `max` bytes (a length byte, then the bytes; fewer if the input ends).
    pub fn bytes(&mut self, max: usize) -> &'a [u8] {
        let len = self.below(max + 1).min(self.rest.len());
        let (taken, rest) = self.rest.split_at(len);
        self.rest = rest;
        taken
    }

    /// Everything not read yet.
    pub fn take_rest(&mut self) -> &'a [u8] {
        std::mem::take(&mut self.rest)
    }
}

/// Cuts `stream` into the reads a connection could see: sizes from 1 to `small_max` when `choice`'s top bit
/// is clear, else from 1 to `large_max`, drawn by xorshift32 seeded with `choice`. The second value of each
/// read is a further coin from the same generator (the HTTP harness makes some reads wait once).
pub fn cut_into_reads(stream: &[u8], choice: u8, small_max: usize, large_max: usize) -> Vec<(&[u8], bool)> {
    let mut state = u32::from(choice) | 1;
    let mut reads = Vec::new();
    let mut rest = stream;
    while !rest.is_empty() {
        state ^= state << 13;
        state ^= state >> 17;
        state ^= state << 5;
        let max = if choice & 0x80 == 0 { small_max } else { large_max };
        let (read, after) = rest.split_at((1 + state as usize % max).min(rest.len()));
        reads.push((read, state & 1 == 1));
        rest = after;
    }
    reads
}
