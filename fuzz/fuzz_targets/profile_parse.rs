//! Profile uploads come from the network: parsing must never panic, and a
//! profile that validates must render its templates without panicking.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    if let Ok(profile) = bootloader::profile::parse(text) {
        let ctx = serde_json::json!({});
        for name in profile.templates.keys() {
            let _ = bootloader::profile::render_template(&profile, name, &ctx);
        }
    }
});
