//! cargo-fuzz entry of the `udp` target; the harness is `ix_fuzz`'s (see its `TARGETS`).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| ix_fuzz::wire::udp(data));
