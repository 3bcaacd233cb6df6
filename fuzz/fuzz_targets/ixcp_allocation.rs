//! cargo-fuzz entry of the `ixcp_allocation` target; the harness is `ix_fuzz`'s (see its `TARGETS`).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| ix_fuzz::ixcp::allocation(data));
