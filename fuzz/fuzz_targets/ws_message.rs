//! libFuzzer entry point for [`rt_fuzz::ws_message`]: `cargo +nightly fuzz run ws_message --features libfuzzer`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| rt_fuzz::ws_message(data));
