//! DHCP requests come from anyone on the boot VLAN: decoding (dhcproto)
//! and classifying never panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(msg) = bootloader::dhcp::classify::decode(data) {
        let _ = bootloader::dhcp::classify::classify(&msg);
    }
});
