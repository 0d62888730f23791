//! Options an operator adds to a network's DHCP replies, what the older
//! agent's `DNSMASQ_OPTS` gave: NTP servers, a domain search list, the
//! MTU, static routes, a time zone... Each is given as a code (or its
//! name) and a value in text, checked when the network is written
//! (`DhcpOptionSetting::parse`), and encoded into the bytes the reply
//! carries (`encode`). Options the server sets itself (the mask, the
//! router, the lease times, the boot file...) are refused with the reason.

use std::net::Ipv4Addr;

use serde::Serialize;

/// How a value is written and encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// Addresses, comma- or space-separated.
    Addresses,
    Text,
    U8,
    U16,
    U32,
    I32,
    Bool,
    /// Domain names (RFC 3397), comma- or space-separated.
    Domains,
    /// `dest/len router` pairs, comma-separated (RFC 3442).
    Routes,
    /// Raw bytes in hex, with or without `:` between them.
    Hex,
}

/// The options known by name.
const KNOWN: &[(u8, &str, Kind)] = &[
    (2, "time-offset", Kind::I32),
    (4, "time-servers", Kind::Addresses),
    (7, "log-servers", Kind::Addresses),
    (9, "lpr-servers", Kind::Addresses),
    (12, "host-name", Kind::Text),
    (13, "boot-size", Kind::U16),
    (17, "root-path", Kind::Text),
    (19, "ip-forwarding", Kind::Bool),
    (23, "default-ttl", Kind::U8),
    (26, "interface-mtu", Kind::U16),
    (31, "router-discovery", Kind::Bool),
    (35, "arp-cache-timeout", Kind::U32),
    (37, "tcp-ttl", Kind::U8),
    (40, "nis-domain", Kind::Text),
    (41, "nis-servers", Kind::Addresses),
    (42, "ntp-servers", Kind::Addresses),
    (44, "netbios-name-servers", Kind::Addresses),
    (46, "netbios-node-type", Kind::U8),
    (47, "netbios-scope", Kind::Text),
    (69, "smtp-servers", Kind::Addresses),
    (70, "pop3-servers", Kind::Addresses),
    (72, "www-servers", Kind::Addresses),
    (100, "posix-timezone", Kind::Text),
    (101, "tzdb-timezone", Kind::Text),
    (114, "captive-portal", Kind::Text),
    (119, "domain-search", Kind::Domains),
    (121, "classless-static-routes", Kind::Routes),
    (150, "tftp-server-addresses", Kind::Addresses),
    (252, "wpad", Kind::Text),
];

/// Options the server writes itself, and what each is.
const MANAGED: &[(u8, &str)] = &[
    (0, "padding"),
    (1, "the subnet mask (from the network's CIDR)"),
    (3, "the router (the network's gateway)"),
    (6, "the name servers (the network's nameservers)"),
    (15, "the domain name (the network's domain)"),
    (28, "the broadcast address (from the network's CIDR)"),
    (43, "PXE vendor options (set for boot answers)"),
    (50, "the requested address"),
    (51, "the lease time (dhcp.lease_time)"),
    (52, "option overload"),
    (53, "the message type"),
    (54, "the server identifier"),
    (55, "the parameter request list"),
    (56, "the server's message"),
    (57, "the maximum message size"),
    (58, "the renewal time (from dhcp.lease_time)"),
    (59, "the rebinding time (from dhcp.lease_time)"),
    (60, "the vendor class (set for boot answers)"),
    (61, "the client identifier"),
    (66, "the TFTP server (set for boot answers)"),
    (67, "the boot file (set for boot answers)"),
    (77, "the user class"),
    (82, "relay agent information (echoed to the relay)"),
    (93, "the client architecture"),
    (94, "the client network interface"),
    (97, "the client machine identifier (echoed)"),
    (118, "the subnet selection (echoed)"),
    (175, "iPXE's encapsulated options"),
    (255, "the end mark"),
];

/// One option of a network, as written and shown: its code, its name if
/// it has one, and its value in text.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct DhcpOptionSetting {
    pub code: u8,
    /// The option's name, empty for one known only by its code (its value
    /// is hex then).
    pub name: String,
    pub value: String,
}

fn kind_of(code: u8) -> (&'static str, Kind) {
    KNOWN
        .iter()
        .find(|(c, _, _)| *c == code)
        .map_or(("", Kind::Hex), |(_, name, kind)| (*name, *kind))
}

fn list(value: &str) -> impl Iterator<Item = &str> {
    value
        .split([',', ' ', '\t'])
        .map(str::trim)
        .filter(|s| !s.is_empty())
}

fn addresses(value: &str) -> Result<Vec<Ipv4Addr>, String> {
    let all: Vec<Ipv4Addr> = list(value)
        .map(|a| {
            a.parse::<Ipv4Addr>()
                .map_err(|_| format!("{a:?} is not an IPv4 address"))
        })
        .collect::<Result<_, _>>()?;
    if all.is_empty() {
        return Err("give at least one address".into());
    }
    Ok(all)
}

fn domain_wire(name: &str, out: &mut Vec<u8>) -> Result<(), String> {
    let name = name.trim_end_matches('.');
    if name.is_empty() || name.len() > 253 {
        return Err(format!("{name:?} is not a domain name"));
    }
    for label in name.split('.') {
        let ok = !label.is_empty()
            && label.len() <= 63
            && label
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        if !ok {
            return Err(format!("{name:?} is not a domain name"));
        }
        out.push(label.len() as u8);
        out.extend_from_slice(label.as_bytes());
    }
    out.push(0);
    Ok(())
}

fn routes_wire(value: &str) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    for route in value.split(',').map(str::trim).filter(|r| !r.is_empty()) {
        let mut parts = route.split_whitespace();
        let (Some(dest), Some(router), None) = (parts.next(), parts.next(), parts.next()) else {
            return Err(format!(
                "{route:?}: write each route as \"destination/length router\""
            ));
        };
        let net: ipnet::Ipv4Net = dest
            .parse()
            .map_err(|_| format!("{dest:?} is not a network such as 10.1.0.0/16"))?;
        if net.trunc() != net {
            return Err(format!(
                "{dest:?} has host bits set (did you mean {}?)",
                net.trunc()
            ));
        }
        let router: Ipv4Addr = router
            .parse()
            .map_err(|_| format!("{router:?} is not an IPv4 address"))?;
        let width = net.prefix_len();
        out.push(width);
        out.extend_from_slice(&net.network().octets()[..usize::from(width).div_ceil(8)]);
        out.extend_from_slice(&router.octets());
    }
    if out.is_empty() {
        return Err("give at least one route".into());
    }
    Ok(out)
}

fn hex(value: &str) -> Result<Vec<u8>, String> {
    let digits: String = value
        .chars()
        .filter(|c| !matches!(c, ':' | ' ' | '-'))
        .collect();
    let bytes = ::hex::decode(&digits)
        .map_err(|_| format!("{value:?} is not hex bytes such as 01:02:0a"))?;
    if bytes.is_empty() {
        return Err("give at least one byte".into());
    }
    Ok(bytes)
}

fn number<T: std::str::FromStr>(value: &str, what: &str) -> Result<T, String> {
    value
        .trim()
        .parse()
        .map_err(|_| format!("{value:?} is not {what}"))
}

fn encode_kind(kind: Kind, value: &str) -> Result<Vec<u8>, String> {
    Ok(match kind {
        Kind::Addresses => addresses(value)?.iter().flat_map(|a| a.octets()).collect(),
        Kind::Text => {
            if value.is_empty() || value.chars().any(char::is_control) {
                return Err("text without control characters".into());
            }
            value.as_bytes().to_vec()
        }
        Kind::U8 => vec![number::<u8>(value, "a number from 0 to 255")?],
        Kind::U16 => number::<u16>(value, "a number from 0 to 65535")?
            .to_be_bytes()
            .to_vec(),
        Kind::U32 => number::<u32>(value, "a number from 0 to 4294967295")?
            .to_be_bytes()
            .to_vec(),
        Kind::I32 => number::<i32>(value, "a number of seconds (may be negative)")?
            .to_be_bytes()
            .to_vec(),
        Kind::Bool => match value.trim() {
            "true" | "1" | "yes" | "on" => vec![1],
            "false" | "0" | "no" | "off" => vec![0],
            other => return Err(format!("{other:?} is not true or false")),
        },
        Kind::Domains => {
            let mut out = Vec::new();
            for name in list(value) {
                domain_wire(name, &mut out)?;
            }
            if out.is_empty() {
                return Err("give at least one domain".into());
            }
            out
        }
        Kind::Routes => routes_wire(value)?,
        Kind::Hex => hex(value)?,
    })
}

impl DhcpOptionSetting {
    /// Reads an option given by its code or name (`ntp-servers`, `42`)
    /// and its value, refusing what the server sets itself and values
    /// that do not fit the option.
    pub fn parse(option: &str, value: &str) -> Result<Self, String> {
        let option = option.trim();
        let code = match option.parse::<u8>() {
            Ok(c) => c,
            Err(_) => KNOWN
                .iter()
                .find(|(_, name, _)| name.eq_ignore_ascii_case(option))
                .map(|(c, _, _)| *c)
                .ok_or_else(|| {
                    format!(
                        "unknown option {option:?}: give its code (1 to 254) or one of: {}",
                        KNOWN
                            .iter()
                            .map(|(_, n, _)| *n)
                            .collect::<Vec<_>>()
                            .join(", ")
                    )
                })?,
        };
        if let Some((_, what)) = MANAGED.iter().find(|(c, _)| *c == code) {
            return Err(format!(
                "option {code} is {what}, which bootloader sets itself"
            ));
        }
        let (name, kind) = kind_of(code);
        let value = value.trim().to_string();
        let bytes = encode_kind(kind, &value)?;
        if bytes.len() > 255 {
            return Err(format!(
                "the value takes {} bytes; an option holds at most 255",
                bytes.len()
            ));
        }
        Ok(Self {
            code,
            name: name.to_string(),
            value,
        })
    }

    /// The option's bytes in a reply.
    pub fn encode(&self) -> Result<Vec<u8>, String> {
        encode_kind(kind_of(self.code).1, &self.value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bytes(option: &str, value: &str) -> Result<Vec<u8>, String> {
        DhcpOptionSetting::parse(option, value).and_then(|o| o.encode())
    }

    #[test]
    fn values_encode_as_their_options_want() {
        let table: &[(&str, &str, &[u8])] = &[
            (
                "ntp-servers",
                "10.0.0.5, 10.0.0.6",
                &[10, 0, 0, 5, 10, 0, 0, 6],
            ),
            ("42", "10.0.0.5", &[10, 0, 0, 5]),
            ("NTP-Servers", "10.0.0.5", &[10, 0, 0, 5]),
            ("interface-mtu", "9000", &[0x23, 0x28]),
            ("time-offset", "-3600", &[0xff, 0xff, 0xf1, 0xf0]),
            ("ip-forwarding", "false", &[0]),
            ("tzdb-timezone", "Europe/Berlin", b"Europe/Berlin"),
            (
                "domain-search",
                "dc1.example.com example.com",
                b"\x03dc1\x07example\x03com\x00\x07example\x03com\x00",
            ),
            (
                "classless-static-routes",
                "10.1.0.0/16 10.0.0.1, 0.0.0.0/0 10.0.0.254",
                &[16, 10, 1, 10, 0, 0, 1, 0, 10, 0, 0, 254],
            ),
            ("224", "01:02:0a", &[1, 2, 10]),
            ("224", "01020a", &[1, 2, 10]),
        ];
        for (option, value, expected) in table {
            assert_eq!(
                bytes(option, value).as_deref(),
                Ok(*expected),
                "{option} {value}"
            );
        }
    }

    #[test]
    fn mistakes_are_named() {
        for (option, value, says) in [
            ("3", "10.0.0.1", "the router"),
            ("router", "10.0.0.1", "unknown option"),
            ("67", "x", "boot file"),
            ("ntp-servers", "ntp.example.com", "not an IPv4 address"),
            ("ntp-servers", "", "at least one"),
            ("interface-mtu", "70000", "not a number from 0 to 65535"),
            ("domain-search", "bad..name", "not a domain name"),
            (
                "classless-static-routes",
                "10.1.0.5/16 10.0.0.1",
                "host bits",
            ),
            (
                "classless-static-routes",
                "10.1.0.0/16",
                "destination/length router",
            ),
            ("224", "zz", "not hex"),
            ("root-path", "a\nb", "control characters"),
            ("224", &"00".repeat(256), "at most 255"),
            ("300", "1", "unknown option"),
        ] {
            let e = bytes(option, value).unwrap_err();
            assert!(e.contains(says), "{option} {value:?}: {e}");
        }
    }

    #[test]
    fn a_setting_keeps_its_name() {
        let o = DhcpOptionSetting::parse("42", " 10.0.0.5 ").unwrap();
        assert_eq!(
            o,
            DhcpOptionSetting {
                code: 42,
                name: "ntp-servers".into(),
                value: "10.0.0.5".into()
            }
        );
        assert_eq!(DhcpOptionSetting::parse("224", "ff").unwrap().name, "");
    }
}
