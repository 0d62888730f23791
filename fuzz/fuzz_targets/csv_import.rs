//! Bulk-import CSV comes from the network: parsing never panics, and every
//! error names a line that exists.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let lines = text.lines().count() as u64 + 1;
    if let Err(errors) = bootloader::http::api::import::parse_csv(text, Some("dc1")) {
        for e in errors {
            assert!(e.line >= 1 && e.line <= lines, "line {} of {lines}", e.line);
        }
    }
});
