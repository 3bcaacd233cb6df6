//! cargo-fuzz entry of the `http_server` target; the harness is `ix_fuzz`'s (see its `TARGETS`).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| ix_fuzz::http::run(data));
