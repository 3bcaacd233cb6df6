//! Register access for the Intel NIC backends: a small trait over the device's
//! 32-bit registers, implemented by the mapped BAR0 (and by the in-memory model
//! the ring tests use), and the register offsets of one queue.

use std::ptr::NonNull;
use std::time::{Duration, Instant};

/// The device's 32-bit registers, by byte offset into BAR0.
///
/// Implementations are shared by the cores: each core writes only its own
/// queue's registers after set-up, so plain ordered accesses suffice.
pub trait Registers: Send + Sync {
    /// Reads the register at `offset`.
    fn read(&self, offset: u32) -> u32;

    /// Writes `value` to the register at `offset`.
    fn write(&self, offset: u32, value: u32);

    /// Sets `bits` in the register at `offset` (read, modify, write).
    fn set_bits(&self, offset: u32, bits: u32) {
        self.write(offset, self.read(offset) | bits);
    }

    /// Clears `bits` in the register at `offset` (read, modify, write).
    fn clear_bits(&self, offset: u32, bits: u32) {
        self.write(offset, self.read(offset) & !bits);
    }
}

/// Polls the register at `offset` until `done` holds for its value or
/// `timeout` passes; returns the last value read and whether `done` held.
pub(crate) fn poll_register(
    regs: &dyn Registers,
    offset: u32,
    timeout: Duration,
    done: impl Fn(u32) -> bool,
) -> (u32, bool) {
    let deadline = Instant::now() + timeout;
    loop {
        let value = regs.read(offset);
        if done(value) {
            return (value, true);
        }
        if Instant::now() >= deadline {
            return (value, false);
        }
        std::thread::sleep(Duration::from_micros(100));
    }
}

/// The registers of one receive or transmit descriptor ring.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct RingRegisters {
    /// Descriptor base address, low 32 bits.
    pub base_low: u32,
    /// Descriptor base address, high 32 bits.
    pub base_high: u32,
    /// Ring length in bytes.
    pub len: u32,
    /// Head: the next descriptor the device will use.
    pub head: u32,
    /// Tail: one past the last descriptor software handed to the device.
    pub tail: u32,
    /// Queue control (its enable bit is bit 25 on both families).
    pub control: u32,
}

/// Queue enable bit of RXDCTL and TXDCTL, on both families.
pub(crate) const QUEUE_ENABLE: u32 = 1 << 25;

/// BAR0 mapped into this process: the device's registers.
#[derive(Debug)]
pub(crate) struct MappedBar {
    base: NonNull<u8>,
    len: usize,
}

// SAFETY: the mapping is device memory owned by this value; accesses are
// volatile 32-bit loads and stores, which the device serialises. Which core
// touches which register is the driver's protocol (see `Registers`).
unsafe impl Send for MappedBar {}
// SAFETY: as above: `&MappedBar` only performs volatile register accesses.
unsafe impl Sync for MappedBar {}

impl MappedBar {
    /// Takes ownership of a mapping of `len` bytes at `base`.
    ///
    /// # Safety
    /// `base..base + len` must be a live mapping of the device's BAR0 that
    /// nothing else unmaps; it is unmapped when this value drops.
    pub(crate) unsafe fn new(base: NonNull<u8>, len: usize) -> Self {
        Self { base, len }
    }

    fn register(&self, offset: u32) -> *mut u32 {
        let offset = offset as usize;
        assert!(offset % 4 == 0 && offset + 4 <= self.len, "register {offset:#x} outside BAR0 of {} bytes", self.len);
        // SAFETY: `offset + 4 <= len`, so the result stays inside the mapping.
        unsafe { self.base.as_ptr().add(offset).cast() }
    }
}

impl Registers for MappedBar {
    fn read(&self, offset: u32) -> u32 {
        let register = self.register(offset);
        // SAFETY: an aligned register inside the live BAR0 mapping (checked by
        // `register`); device memory is read with a volatile load.
        unsafe { register.read_volatile() }
    }

    fn write(&self, offset: u32, value: u32) {
        let register = self.register(offset);
        // SAFETY: as for `read`, with a volatile store.
        unsafe { register.write_volatile(value) }
    }
}

impl Drop for MappedBar {
    fn drop(&mut self) {
        // SAFETY: the mapping was made with `len` bytes (constructor contract)
        // and no access outlives `self`.
        unsafe { libc::munmap(self.base.as_ptr().cast(), self.len) };
    }
}
