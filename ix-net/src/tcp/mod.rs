//! TCP building blocks: congestion control, the SACK scoreboard and the
//! receive reassembly queue.

pub mod assembler;
pub mod cc;
pub mod sack;
