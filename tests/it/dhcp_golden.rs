//! Golden decisions on DHCP requests captured from real firmware: SeaBIOS
//! with Debian's iPXE ROM, OVMF's own PXE, Debian's ipxe.efi, and the
//! payload's busybox udhcpc (`tests/fixtures/dhcp/`, captured on the
//! end-to-end tests' bridge with `BOOTLOADER_E2E_CAPTURE`). Each goes
//! through decode -> classify -> decide -> reply -> encode -> decode, as
//! the server does, in both modes and for known and unknown machines.

use std::net::Ipv4Addr;

use bootloader_core::dhcp::classify::{Firmware, MessageKind, classify, decode, file_field};
use bootloader_core::dhcp::decide::{
    BootAnswer, DhcpDecision, EfiBinary, Known, Mode, Policy, UnknownPolicy, decide,
};
use bootloader_core::dhcp::reply::{LeaseOffer, ReplyContext, reply};
use dhcproto::Encodable;
use dhcproto::v4::{DhcpOption, MessageType, OptionCode};

const SERVER: Ipv4Addr = Ipv4Addr::new(10, 77, 0, 1);

fn fixture(name: &str) -> Vec<u8> {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/dhcp")
        .join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn policy(mode: Mode) -> Policy {
    Policy {
        mode,
        unknown: UnknownPolicy::Ignore,
        efi_x64: EfiBinary::IpxeEfi,
        arm64_binary: None,
        http_base: "http://10.77.0.1:8080".into(),
    }
}

/// What the answer should be, in words the table can hold.
#[derive(Debug, PartialEq, Eq)]
enum Want {
    Silent,
    AddressOnly,
    Tftp(&'static str),
    Script,
}

fn summarize(d: &DhcpDecision) -> Want {
    match d {
        DhcpDecision::Silent { .. } => Want::Silent,
        DhcpDecision::AddressOnly => Want::AddressOnly,
        DhcpDecision::Boot {
            answer: BootAnswer::Tftp { filename },
            ..
        } => Want::Tftp(match filename.as_str() {
            "undionly.kpxe" => "undionly.kpxe",
            "ipxe.efi" => "ipxe.efi",
            other => panic!("unexpected file {other}"),
        }),
        DhcpDecision::Boot {
            answer: BootAnswer::Script { .. },
            ..
        } => Want::Script,
        other => panic!("unexpected {other:?}"),
    }
}

#[test]
fn captured_requests_classify_as_their_firmware() {
    let cases: [(&str, MessageKind, Option<Firmware>, bool); 8] = [
        (
            "ipxe-bios-discover.bin",
            MessageKind::Discover,
            Some(Firmware::Bios),
            true,
        ),
        (
            "ipxe-bios-request.bin",
            MessageKind::Request,
            Some(Firmware::Bios),
            true,
        ),
        (
            "ipxe-efi-x64-discover.bin",
            MessageKind::Discover,
            Some(Firmware::EfiX64),
            true,
        ),
        (
            "ipxe-efi-x64-request.bin",
            MessageKind::Request,
            Some(Firmware::EfiX64),
            true,
        ),
        (
            "pxe-efi-x64-discover.bin",
            MessageKind::Discover,
            Some(Firmware::EfiX64),
            false,
        ),
        (
            "pxe-efi-x64-request.bin",
            MessageKind::Request,
            Some(Firmware::EfiX64),
            false,
        ),
        ("udhcpc-discover.bin", MessageKind::Discover, None, false),
        ("udhcpc-request.bin", MessageKind::Request, None, false),
    ];
    for (name, kind, firmware, ipxe) in cases {
        let msg = decode(&fixture(name)).unwrap_or_else(|e| panic!("{name}: {e}"));
        let c = classify(&msg).unwrap();
        assert_eq!(
            (c.kind, c.firmware, c.is_ipxe),
            (kind, firmware, ipxe),
            "{name}"
        );
        assert_eq!(c.mac.octets()[..3], [0x52, 0x54, 0x00], "{name}");
        assert_eq!(c.is_boot_client(), firmware.is_some(), "{name}");
    }
}

#[test]
fn golden_decisions_and_replies() {
    use Want::*;
    // (fixture, known, mode, expected)
    let table: &[(&str, Known, Mode, Want)] = &[
        (
            "ipxe-bios-discover.bin",
            Known::Deploying,
            Mode::Authoritative,
            Script,
        ),
        (
            "ipxe-bios-discover.bin",
            Known::Deploying,
            Mode::Proxy,
            Script,
        ),
        ("ipxe-bios-discover.bin", Known::Idle, Mode::Proxy, Script),
        (
            "ipxe-bios-discover.bin",
            Known::Unknown,
            Mode::Proxy,
            Silent,
        ),
        (
            "ipxe-bios-discover.bin",
            Known::Unknown,
            Mode::Authoritative,
            AddressOnly,
        ),
        (
            "pxe-efi-x64-discover.bin",
            Known::Deploying,
            Mode::Authoritative,
            Tftp("ipxe.efi"),
        ),
        (
            "pxe-efi-x64-discover.bin",
            Known::Deploying,
            Mode::Proxy,
            Tftp("ipxe.efi"),
        ),
        (
            "pxe-efi-x64-request.bin",
            Known::Deploying,
            Mode::Authoritative,
            Tftp("ipxe.efi"),
        ),
        (
            "ipxe-efi-x64-discover.bin",
            Known::Deploying,
            Mode::Proxy,
            Script,
        ),
        (
            "udhcpc-discover.bin",
            Known::Deploying,
            Mode::Authoritative,
            AddressOnly,
        ),
        ("udhcpc-discover.bin", Known::Deploying, Mode::Proxy, Silent),
        (
            "udhcpc-request.bin",
            Known::Deploying,
            Mode::Authoritative,
            AddressOnly,
        ),
    ];
    for (name, known, mode, want) in table {
        let msg = decode(&fixture(name)).unwrap();
        let client = classify(&msg).unwrap();
        let decision = decide(&policy(*mode), &client, *known);
        assert_eq!(&summarize(&decision), want, "{name} {known:?} {mode:?}");
        let lease = (*mode == Mode::Authoritative).then(|| LeaseOffer {
            ip: Ipv4Addr::new(10, 77, 0, 100),
            prefix_len: 20,
            router: Some(SERVER),
            dns: vec![SERVER],
            domain: Some("lab.example.com".into()),
            lease_secs: 600,
            options: Vec::new(),
        });
        let ctx = ReplyContext {
            server_ip: SERVER,
            lease,
        };
        let Some(out) = reply(&msg, &client, &decision, &ctx).unwrap() else {
            assert_eq!(want, &Silent, "{name}: no reply");
            continue;
        };
        // What the client receives.
        let got = decode(&out.to_vec().unwrap()).unwrap();
        let expected_type = match client.kind {
            MessageKind::Discover => MessageType::Offer,
            _ => MessageType::Ack,
        };
        assert_eq!(got.opts().msg_type(), Some(expected_type), "{name}");
        assert_eq!(got.xid(), msg.xid(), "{name}");
        assert_eq!(got.chaddr(), msg.chaddr(), "{name}");
        assert!(
            matches!(got.opts().get(OptionCode::ServerIdentifier), Some(DhcpOption::ServerIdentifier(s)) if *s == SERVER),
            "{name}: option 54"
        );
        let file = String::from_utf8_lossy(file_field(&got).unwrap_or_default()).into_owned();
        let pxe_class = matches!(
            got.opts().get(OptionCode::ClassIdentifier),
            Some(DhcpOption::ClassIdentifier(v)) if v == b"PXEClient"
        );
        match want {
            Tftp(f) => {
                assert_eq!(file, *f, "{name}");
                assert_eq!(got.siaddr(), SERVER, "{name}: next-server");
                assert!(pxe_class, "{name}: PXEClient echoed");
            }
            Script => {
                assert_eq!(file, "http://10.77.0.1:8080/boot.ipxe", "{name}");
                // Without an address, iPXE takes the offer as ProxyDHCP only
                // when it says PXEClient.
                assert_eq!(pxe_class, *mode == Mode::Proxy, "{name}");
            }
            AddressOnly => assert_eq!(file, "", "{name}"),
            Silent => panic!("{name}: a reply where silence was expected"),
        }
        if *mode == Mode::Proxy {
            assert_eq!(
                got.yiaddr(),
                Ipv4Addr::UNSPECIFIED,
                "{name}: a proxy gives no address"
            );
        } else {
            assert_eq!(got.yiaddr(), Ipv4Addr::new(10, 77, 0, 100), "{name}");
        }
        // OVMF sends its UUID (option 97); PXE wants it back.
        if client.uuid.is_some() {
            assert!(
                got.opts()
                    .get(OptionCode::ClientMachineIdentifier)
                    .is_some(),
                "{name}: option 97 echoed"
            );
        }
    }
}
