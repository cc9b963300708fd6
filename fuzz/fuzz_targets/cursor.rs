//! libFuzzer entry point for [`rt_fuzz::cursor`]: `cargo +nightly fuzz run cursor --features libfuzzer`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| rt_fuzz::cursor(data));
