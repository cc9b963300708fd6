//! libFuzzer entry point for [`rt_fuzz::token`]: `cargo +nightly fuzz run token --features libfuzzer`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| rt_fuzz::token(data));
