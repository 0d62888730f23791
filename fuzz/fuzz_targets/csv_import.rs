//! See `checks::csv_import` (fuzz/checks.rs) for what this target asserts.
#![no_main]

#[path = "../checks.rs"]
mod checks;

libfuzzer_sys::fuzz_target!(|data: &[u8]| checks::csv_import(data));
