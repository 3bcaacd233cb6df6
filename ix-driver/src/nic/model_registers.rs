//! An in-memory register file for the NIC tests: it remembers every write, so a
//! test can check a family's set-up steps without a device.

use std::collections::HashMap;
use std::sync::Mutex;

use super::regs::Registers;

/// A register file that remembers every write.
#[derive(Default)]
pub(crate) struct ModelRegisters {
    values: Mutex<HashMap<u32, u32>>,
    writes: Mutex<Vec<(u32, u32)>>,
}

impl Registers for ModelRegisters {
    fn read(&self, offset: u32) -> u32 {
        self.values.lock().unwrap().get(&offset).copied().unwrap_or(0)
    }

    fn write(&self, offset: u32, value: u32) {
        self.values.lock().unwrap().insert(offset, value);
        self.writes.lock().unwrap().push((offset, value));
    }
}

impl ModelRegisters {
    /// A register file whose every register reads `value` until written.
    pub(crate) fn filled(offsets: &[u32], value: u32) -> Self {
        let regs = Self::default();
        regs.values.lock().unwrap().extend(offsets.iter().map(|&o| (o, value)));
        regs
    }

    /// How many times `offset` was written.
    pub(crate) fn writes_to(&self, offset: u32) -> usize {
        self.writes.lock().unwrap().iter().filter(|(o, _)| *o == offset).count()
    }
}
