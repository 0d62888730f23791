//! What each fuzz target checks, one function per target, shared by the
//! libFuzzer binaries (`fuzz/fuzz_targets/`, nightly) and by the replay of
//! the committed corpora (`tests/fuzz_corpus.rs`, stable, in every
//! `cargo test`). Each takes arbitrary bytes; a panic is a finding.

#![allow(dead_code)]

use std::net::Ipv4Addr;

use bootloader_core::dhcp::classify::{classify, decode};
use bootloader_core::dhcp::decide::{EfiBinary, Known, Mode, Policy, UnknownPolicy, decide};
use bootloader_core::dhcp::reply::{LeaseOffer, ReplyContext, nak, reply};
use dhcproto::{Decodable, Encodable};

/// A target's check.
pub type Check = fn(&[u8]);

/// The targets, by name, for the replay.
pub const TARGETS: &[(&str, Check)] = &[
    ("profile_parse", profile_parse),
    ("csv_import", csv_import),
    ("mac_parse", mac_parse),
    ("tftp_packet", tftp_packet),
    ("dhcp_classify", dhcp_classify),
    ("dhcp_reply", dhcp_reply),
    ("api_json", api_json),
    ("http_range", http_range),
    ("callback_path", callback_path),
];

/// Profile uploads come from the network: parsing never panics, and a
/// profile that validates renders its templates without panicking.
pub fn profile_parse(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(profile) = bootloader_core::profile::parse(text) {
        let ctx = serde_json::json!({});
        for name in profile.templates.keys() {
            let _ = bootloader_core::profile::render_template(&profile, name, &ctx);
        }
    }
}

/// Bulk-import CSV: parsing never panics, and every error names a line
/// that exists.
pub fn csv_import(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let lines = text.lines().count() as u64 + 1;
    if let Err(errors) = bootloader::ops::import::parse_csv(text, Some("dc1")) {
        for e in errors {
            assert!(e.line >= 1 && e.line <= lines, "line {} of {lines}", e.line);
        }
    }
}

/// MAC addresses in paths, JSON and CSV: parse, print, parse again.
pub fn mac_parse(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(mac) = text.parse::<bootloader_core::model::MacAddr>() {
        let again: bootloader_core::model::MacAddr = mac.to_string().parse().expect("round trip");
        assert_eq!(mac, again);
        let _ = mac.not_assignable();
    }
}

/// TFTP datagrams: decode never panics, and what decodes encodes to
/// something that decodes to the same packet.
pub fn tftp_packet(data: &[u8]) {
    use bootloader_core::tftp::packet::{Packet, decode, encode};
    if let Ok(packet) = decode(data) {
        let mut out = Vec::new();
        encode(&packet, &mut out);
        let again = decode(&out).expect("an encoded packet decodes");
        // ERROR text may lose a NUL when encoded; everything else is exact.
        if !matches!(packet, Packet::Error { .. }) {
            assert_eq!(packet, again);
        }
    }
}

fn policy(mode: Mode) -> Policy {
    Policy {
        mode,
        unknown: UnknownPolicy::Local,
        efi_x64: EfiBinary::IpxeEfi,
        arm64_binary: Some("ipxe-arm64.efi".into()),
        http_base: "http://10.0.0.1:8080".into(),
    }
}

fn lease(server_ip: Ipv4Addr) -> LeaseOffer {
    LeaseOffer {
        ip: Ipv4Addr::new(10, 0, 0, 100),
        prefix_len: 24,
        router: Some(server_ip),
        dns: vec![server_ip],
        domain: Some("example.com".into()),
        lease_secs: 3600,
        options: vec![(42, vec![10, 0, 0, 5])],
    }
}

/// DHCP requests from anyone on the boot VLAN: decoding, classifying,
/// deciding, building the reply and encoding it never panic, in either
/// mode, for known and unknown machines.
pub fn dhcp_classify(data: &[u8]) {
    let Ok(msg) = decode(data) else { return };
    let Ok(client) = classify(&msg) else { return };
    let server_ip = Ipv4Addr::new(10, 0, 0, 1);
    for mode in [Mode::Authoritative, Mode::Proxy] {
        for known in [Known::Unknown, Known::Idle, Known::Deploying] {
            let decision = decide(&policy(mode), &client, known);
            let ctx = ReplyContext {
                server_ip,
                lease: (mode == Mode::Authoritative).then(|| lease(server_ip)),
            };
            if let Ok(Some(out)) = reply(&msg, &client, &decision, &ctx) {
                let _ = out.to_vec();
            }
        }
    }
    let _ = nak(&msg, server_ip, "fuzz").to_vec();
}

/// decode -> decide -> reply -> encode -> decode: the reply we send is a
/// DHCP message a client can read, to the same transaction and hardware
/// address, with the address we meant.
pub fn dhcp_reply(data: &[u8]) {
    let Ok(msg) = decode(data) else { return };
    let Ok(client) = classify(&msg) else { return };
    let server_ip = Ipv4Addr::new(10, 0, 0, 1);
    for mode in [Mode::Authoritative, Mode::Proxy] {
        let decision = decide(&policy(mode), &client, Known::Deploying);
        let offer = lease(server_ip);
        let ctx = ReplyContext {
            server_ip,
            lease: (mode == Mode::Authoritative).then(|| offer.clone()),
        };
        let Ok(Some(out)) = reply(&msg, &client, &decision, &ctx) else {
            continue;
        };
        let bytes = out.to_vec().expect("a reply we built encodes");
        let back = dhcproto::v4::Message::decode(&mut dhcproto::Decoder::new(&bytes))
            .expect("a reply we encoded decodes");
        assert_eq!(back.xid(), msg.xid());
        assert_eq!(back.opcode(), dhcproto::v4::Opcode::BootReply);
        assert_eq!(
            &back.chaddr()[..6],
            &msg.chaddr()[..6.min(msg.chaddr().len())]
        );
        assert_eq!(back.giaddr(), msg.giaddr());
        if mode == Mode::Proxy {
            assert!(back.yiaddr().is_unspecified(), "ProxyDHCP gives no address");
        }
        assert!(classify(&back).is_err() || back.opcode() == dhcproto::v4::Opcode::BootReply);
    }
}

/// The API's JSON bodies: parsing (as `JsonBody` does) and validating every
/// input never panics, and every error renders.
pub fn api_json(data: &[u8]) {
    use axum::response::IntoResponse;
    use bootloader::http::api::extract::parse_json;
    use bootloader::ops::{credentials, networks, servers, users};
    fn render(e: bootloader::http::api::error::ApiError) {
        let _ = e.into_response();
    }
    /// Parses `data` as `T` and validates it with `spec`; renders any error.
    fn validate<T: serde::de::DeserializeOwned, S>(
        data: &[u8],
        spec: impl FnOnce(T) -> Result<S, bootloader::http::api::error::ApiError>,
    ) {
        if let Err(e) = parse_json::<T>(data).and_then(|input| spec(input).map(drop)) {
            render(e);
        }
    }
    validate(data, |i: servers::ServerInput| {
        servers::server_spec(i, None)
    });
    validate(data, |i: networks::NetworkInput| {
        networks::network_spec(i, None)
    });
    validate(data, |i: credentials::CredentialInput| {
        credentials::credential_spec(i, None)
    });
    validate(data, |i: users::UserInput| users::user_spec(i, None));
    let _ = parse_json::<bootloader::ops::deployments::DeploymentInput>(data);
    let _ = parse_json::<bootloader::ops::power::PowerInput>(data);
    let _ = parse_json::<bootloader_core::power::BootRequest>(data);
    let _ = parse_json::<users::TokenInput>(data);
    let _ = parse_json::<users::SshKeyInput>(data);
}

/// The `Range` header of requests for kernels and initrds: the parser that
/// `/static` and cached files use never panics, and what it accepts for a
/// file lies inside the file.
pub fn http_range(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let size = 1_000_000u64;
    if let Ok(parsed) = http_range_header::parse_range_header(text)
        && let Ok(ranges) = parsed.validate(size)
    {
        for r in ranges {
            assert!(r.start() <= r.end() && *r.end() < size, "{r:?}");
        }
    }
}

/// Callback and export paths: a name is accepted only in the allowed
/// alphabet, and the path shown in logs and the timeline never holds the
/// token.
pub fn callback_path(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let (token, rest) = text.split_once('/').unwrap_or((text, "x"));
    if bootloader::http::boot::valid_callback_name(rest) {
        assert!(
            rest.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
        );
    }
    let hash = bootloader_core::model::CallbackToken::from_presented(token).hash();
    let _ = hash;
    if !token.is_empty() && !token.contains('/') {
        for (prefix, rest) in [
            ("/_callback/", rest.to_string()),
            ("/export/file/12/", format!("p/1.0/{rest}")),
            ("/export/sshkeys/12/", rest.to_string()),
        ] {
            let path = format!("{prefix}{token}/{rest}");
            let shown = bootloader::http::boot::redact_token(&path);
            assert_eq!(shown, format!("{prefix}<token>/{rest}"), "{path:?}");
        }
    }
}
