//! cargo-fuzz entry of the `tcp_session` target; the harness is `ix_fuzz`'s (see its `TARGETS`).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| ix_fuzz::tcp_session::run(data));
