//! libFuzzer entry point for [`rt_fuzz::publish`]: `cargo +nightly fuzz run publish --features libfuzzer`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| rt_fuzz::publish(data));
