//! TFTP datagrams come from anyone on the boot VLAN: decode never panics,
//! and what decodes encodes to something that decodes to the same packet.
#![no_main]

use bootloader::tftp::packet::{decode, encode};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(packet) = decode(data) {
        let mut out = Vec::new();
        encode(&packet, &mut out);
        let again = decode(&out).expect("an encoded packet decodes");
        // ERROR text may lose a NUL when encoded; everything else is exact.
        if !matches!(packet, bootloader::tftp::packet::Packet::Error { .. }) {
            assert_eq!(packet, again);
        }
    }
});
