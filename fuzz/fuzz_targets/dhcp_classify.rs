//! See `checks::dhcp_classify` (fuzz/checks.rs) for what this target asserts.
#![no_main]

#[path = "../checks.rs"]
mod checks;

libfuzzer_sys::fuzz_target!(|data: &[u8]| checks::dhcp_classify(data));
