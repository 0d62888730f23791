//! DHCP requests come from anyone on the boot VLAN: decoding (dhcproto),
//! classifying, deciding, building the reply (OFFER/ACK/NAK) and encoding
//! it never panic, in either mode, for known and unknown machines.
#![no_main]

use std::net::Ipv4Addr;

use bootloader::dhcp::classify::{classify, decode};
use bootloader::dhcp::decide::{EfiBinary, Known, Mode, Policy, UnknownPolicy, decide};
use bootloader::dhcp::reply::{LeaseOffer, ReplyContext, nak, reply};
use dhcproto::Encodable;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(msg) = decode(data) else { return };
    let Ok(client) = classify(&msg) else { return };
    let server_ip = Ipv4Addr::new(10, 0, 0, 1);
    for mode in [Mode::Authoritative, Mode::Proxy] {
        let policy = Policy {
            mode,
            unknown: UnknownPolicy::Local,
            efi_x64: EfiBinary::IpxeEfi,
            arm64_binary: Some("ipxe-arm64.efi".into()),
            http_base: "http://10.0.0.1:8080".into(),
        };
        for known in [Known::Unknown, Known::Idle, Known::Deploying] {
            let decision = decide(&policy, &client, known);
            let lease = (mode == Mode::Authoritative).then(|| LeaseOffer {
                ip: Ipv4Addr::new(10, 0, 0, 100),
                prefix_len: 24,
                router: Some(server_ip),
                dns: vec![server_ip],
                domain: Some("example.com".into()),
                lease_secs: 3600,
            });
            let ctx = ReplyContext { server_ip, lease };
            if let Ok(Some(out)) = reply(&msg, &client, &decision, &ctx) {
                let _ = out.to_vec();
            }
        }
    }
    let _ = nak(&msg, server_ip, "fuzz").to_vec();
});
