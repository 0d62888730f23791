//! The network boot settings: `[dhcp]`, `[timeline]` and `http.static_dir`.

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::Resolver;
use super::file::DhcpSection;
use super::file::QuirkSection;
use super::{Setting, Source};
use bootloader_core::dhcp::decide::{EfiBinary, Mode, UnknownPolicy};
use bootloader_core::dhcp::quirks::{Quirk, parse_mac_prefix};
use bootloader_core::model::Name;

#[derive(Debug, Clone)]
pub struct DhcpSettings {
    /// What the server does on the boot interfaces; `None`: it is off.
    pub mode: Option<Mode>,
    /// Boot interfaces, each served by its own socket (SO_BINDTODEVICE).
    /// Empty: one socket on `listen` (relayed requests only; for tests).
    pub interfaces: Vec<String>,
    pub listen: Ipv4Addr,
    pub port: u16,
    pub proxy_port: u16,
    pub client_port: u16,
    /// Our address as clients see it; by default the interface's address.
    pub server_address: Option<Ipv4Addr>,
    /// Answer only for this location's networks.
    pub location: Option<Name>,
    pub unknown: UnknownPolicy,
    pub efi_x64: EfiBinary,
    pub arm64_binary: Option<String>,
    pub lease_time: u32,
    pub offer_hold: u32,
    pub decline_hold: u32,
    /// Firmware quirk rules (`[[dhcp.quirk]]`), first match wins.
    pub quirks: Vec<Quirk>,
    /// Unicast replies to clients without an address through an ARP entry
    /// (CAP_NET_ADMIN) instead of broadcasting them.
    pub unicast: bool,
    /// Relays (giaddr) whose requests are served; empty: any relay. Only a
    /// relayed request may select a subnet with option 118.
    pub trusted_relays: Vec<Ipv4Addr>,
    /// Whether IPv6 router solicitations on the boot interfaces are
    /// answered, ending iPXE's wait for IPv6 (`src/ndp.rs`).
    pub router_advertisements: bootloader_core::ndp::RaMode,
}

#[derive(Debug, Clone)]
pub struct BootSettings {
    pub dhcp: DhcpSettings,
    /// Served at `/static/` with Range (kernels, initrds).
    pub static_dir: PathBuf,
    pub timeline_retention: Duration,
}

/// The parts of the file this module reads.
pub(super) struct BootFile {
    pub dhcp: DhcpSection,
    pub static_dir: Option<String>,
    pub retention_days: Option<u32>,
}

pub(super) fn resolve(r: &mut Resolver<'_>, f: BootFile, data_dir: &Path) -> BootSettings {
    let d = f.dhcp;
    let mode_raw = r.pick("dhcp.mode", None, d.mode).unwrap_or_default();
    let mode = match mode_raw.as_str() {
        "off" => None,
        "proxy" => Some(Mode::Proxy),
        "authoritative" => Some(Mode::Authoritative),
        other => {
            r.errors.push(format!(
                "dhcp.mode: {other:?} is not one of off, proxy, authoritative"
            ));
            None
        }
    };
    let interfaces_raw = r
        .pick("dhcp.interfaces", None, d.interfaces.map(|v| v.join(",")))
        .unwrap_or_default();
    let interfaces: Vec<String> = interfaces_raw
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(String::from)
        .collect();
    for name in &interfaces {
        // IFNAMSIZ is 16 with the NUL.
        if name.len() > 15 || name.contains(['/', ' ']) {
            r.errors.push(format!(
                "dhcp.interfaces: {name:?} is not an interface name"
            ));
        }
    }
    let addr = |r: &mut Resolver<'_>, key, file: Option<String>| {
        let raw = r.pick(key, None, file)?;
        match raw.parse::<Ipv4Addr>() {
            Ok(a) => Some(a),
            Err(_) => {
                r.errors
                    .push(format!("{key}: {raw:?} is not an IPv4 address"));
                None
            }
        }
    };
    let listen = addr(r, "dhcp.listen", d.listen).unwrap_or(Ipv4Addr::UNSPECIFIED);
    let server_address = addr(r, "dhcp.server_address", d.server_address);
    let port =
        |r: &mut Resolver<'_>, key, file| -> u16 { r.pick(key, None, file).unwrap_or_default() };
    let port_main = port(r, "dhcp.port", d.port);
    let proxy_port = port(r, "dhcp.proxy_port", d.proxy_port);
    let client_port = port(r, "dhcp.client_port", d.client_port);
    if mode.is_some() && interfaces.is_empty() && listen.is_unspecified() {
        r.errors.push(
            "dhcp.interfaces: name the boot interface(s) (or set dhcp.listen to one address for relayed requests only)"
                .to_string(),
        );
    }
    let location =
        r.pick("dhcp.location", None, d.location)
            .and_then(|l| match l.parse::<Name>() {
                Ok(n) => Some(n),
                Err(e) => {
                    r.errors.push(format!("dhcp.location: {e}"));
                    None
                }
            });
    let unknown = match r.pick("dhcp.unknown", None, d.unknown).as_deref() {
        Some("local") => UnknownPolicy::Local,
        Some("ignore") | None => UnknownPolicy::Ignore,
        Some(other) => {
            r.errors.push(format!(
                "dhcp.unknown: {other:?} is not one of ignore, local"
            ));
            UnknownPolicy::Ignore
        }
    };
    let efi_x64 = match r.pick("dhcp.efi_x64", None, d.efi_x64).as_deref() {
        Some("snponly.efi") => EfiBinary::SnpOnly,
        Some("ipxe.efi") | None => EfiBinary::IpxeEfi,
        Some(other) => {
            r.errors.push(format!(
                "dhcp.efi_x64: {other:?} is not one of ipxe.efi, snponly.efi"
            ));
            EfiBinary::IpxeEfi
        }
    };
    let arm64_binary = r.pick("dhcp.arm64_binary", None, d.arm64_binary);
    let secs =
        |r: &mut Resolver<'_>, key, file| -> u32 { r.pick(key, None, file).unwrap_or_default() };
    let lease_time = secs(r, "dhcp.lease_time", d.lease_time);
    let offer_hold = secs(r, "dhcp.offer_hold", d.offer_hold);
    let decline_hold = secs(r, "dhcp.decline_hold", d.decline_hold);

    let quirks = quirks(r, d.quirk.unwrap_or_default());
    let unicast = r.pick("dhcp.unicast", None, d.unicast).unwrap_or_default();

    let trusted_raw = r
        .pick(
            "dhcp.trusted_relays",
            None,
            d.trusted_relays.map(|v| v.join(",")),
        )
        .unwrap_or_default();
    let mut trusted_relays = Vec::new();
    for raw in trusted_raw
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
    {
        match raw.parse::<Ipv4Addr>() {
            Ok(a) => trusted_relays.push(a),
            Err(_) => r.errors.push(format!(
                "dhcp.trusted_relays: {raw:?} is not an IPv4 address"
            )),
        }
    }

    let router_advertisements = match r
        .pick("dhcp.router_advertisements", None, d.router_advertisements)
        .as_deref()
    {
        None => bootloader_core::ndp::RaMode::Auto,
        Some(raw) => raw.parse().unwrap_or_else(|e| {
            r.errors.push(format!("dhcp.router_advertisements: {e}"));
            bootloader_core::ndp::RaMode::Auto
        }),
    };

    let static_dir = r.pick_or(
        "http.static_dir",
        None,
        f.static_dir,
        data_dir.join("static").display().to_string(),
    );
    let retention_days = r
        .pick("timeline.retention_days", None, f.retention_days)
        .unwrap_or_default();

    BootSettings {
        dhcp: DhcpSettings {
            mode,
            interfaces,
            listen,
            port: port_main,
            proxy_port,
            client_port,
            server_address,
            location,
            unknown,
            efi_x64,
            arm64_binary,
            lease_time,
            offer_hold,
            decline_hold,
            quirks,
            unicast,
            trusted_relays,
            router_advertisements,
        },
        static_dir: PathBuf::from(static_dir),
        timeline_retention: Duration::from_secs(u64::from(retention_days) * 86400),
    }
}

/// Validates `[[dhcp.quirk]]` rules; errors name the rule by position.
fn quirks(r: &mut Resolver<'_>, raw: Vec<QuirkSection>) -> Vec<Quirk> {
    let mut out = Vec::new();
    for (i, q) in raw.into_iter().enumerate() {
        let at = format!("dhcp.quirk[{i}]");
        let mac_prefix = match q.mac_prefix.as_deref().map(parse_mac_prefix) {
            Some(Ok(p)) => Some(p),
            Some(Err(e)) => {
                r.errors.push(format!("{at}.mac_prefix: {e}"));
                None
            }
            None => None,
        };
        if q.mac_prefix.is_none() && q.arch.is_none() && q.vendor_class.is_none() {
            r.errors.push(format!(
                "{at}: give at least one of mac_prefix, arch, vendor_class (a rule matching every client is a setting, not a quirk)"
            ));
        }
        let answer = match q.answer.as_deref() {
            None => None,
            Some("proxy") => Some(Mode::Proxy),
            Some("authoritative") => Some(Mode::Authoritative),
            Some(other) => {
                r.errors.push(format!(
                    "{at}.answer: {other:?} is not one of proxy, authoritative"
                ));
                None
            }
        };
        if let Some(b) = q.tftp_blksize
            && !(8..=65464).contains(&b)
        {
            r.errors.push(format!(
                "{at}.tftp_blksize ({b}) must be between 8 and 65464"
            ));
        }
        if q.set_arch.is_none() && answer.is_none() && q.tftp_blksize.is_none() {
            r.errors.push(format!(
                "{at}: the rule changes nothing (set set_arch, answer or tftp_blksize)"
            ));
        }
        out.push(Quirk {
            name: q.name.unwrap_or_else(|| format!("quirk {i}")),
            mac_prefix,
            arch: q.arch,
            vendor_class: q.vendor_class,
            set_arch: q.set_arch,
            answer,
            tftp_blksize: q.tftp_blksize,
        });
    }
    let names: Vec<&str> = out.iter().map(|q| q.name.as_str()).collect();
    r.settings.push(Setting {
        key: "dhcp.quirk",
        value: if names.is_empty() {
            "(none)".to_string()
        } else {
            format!("{} rule(s): {}", names.len(), names.join(", "))
        },
        source: if names.is_empty() {
            Source::Default
        } else {
            Source::File(r.file_path.clone().unwrap_or_default())
        },
    });
    out
}
