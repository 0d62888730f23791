//! MAC addresses arrive in paths, JSON and CSV: parse, print, parse again.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    if let Ok(mac) = text.parse::<bootloader::model::MacAddr>() {
        let again: bootloader::model::MacAddr = mac.to_string().parse().expect("round trip");
        assert_eq!(mac, again);
    }
});
