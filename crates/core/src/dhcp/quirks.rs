//! Firmware quirks as configuration: rules that match a client by MAC
//! prefix, architecture (option 93) or vendor class (option 60) and change
//! how it is answered. Pure: `matching` picks the rule, `apply` edits the
//! classified request.

use super::classify::{ClientInfo, Firmware, VendorClass};
use super::decide::Mode;
use crate::model::MacAddr;

/// One rule, as validated from `[[dhcp.quirk]]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Quirk {
    pub name: String,
    /// Leading bytes of the MAC (an OUI is three).
    pub mac_prefix: Option<Vec<u8>>,
    /// Option 93, compared by family (7 and 9 are both x64 UEFI).
    pub arch: Option<u16>,
    /// Prefix of option 60, e.g. `PXEClient:Arch:00007`.
    pub vendor_class: Option<String>,
    /// Treat the client as this architecture (for firmware that sends a
    /// wrong option 93).
    pub set_arch: Option<u16>,
    /// Answer this client in this mode whatever the server's mode: `Proxy`
    /// (boot information only) or `Authoritative` (address and boot).
    pub answer: Option<Mode>,
    /// Largest TFTP block size offered to this client.
    pub tftp_blksize: Option<u16>,
}

/// The quirk rules in force, shared by DHCP and TFTP and replaced whole
/// when the configuration is reloaded (SIGHUP).
#[derive(Debug, Clone, Default)]
pub struct QuirkRules(std::sync::Arc<std::sync::RwLock<std::sync::Arc<Vec<Quirk>>>>);

impl QuirkRules {
    pub fn new(rules: Vec<Quirk>) -> Self {
        Self(std::sync::Arc::new(std::sync::RwLock::new(
            std::sync::Arc::new(rules),
        )))
    }

    /// The rules now (a cheap handle: a later replace does not change it).
    pub fn current(&self) -> std::sync::Arc<Vec<Quirk>> {
        self.0.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    pub fn replace(&self, rules: Vec<Quirk>) {
        *self.0.write().unwrap_or_else(|e| e.into_inner()) = std::sync::Arc::new(rules);
    }
}

/// Parses `52:54:00` (or `52-54-00`, `525400`) into bytes.
pub fn parse_mac_prefix(s: &str) -> Result<Vec<u8>, String> {
    let hex: String = s
        .chars()
        .filter(|c| !matches!(c, ':' | '-' | '.'))
        .collect();
    if hex.is_empty() || !hex.len().is_multiple_of(2) || hex.len() > 12 {
        return Err(format!("{s:?} is not a MAC prefix such as 52:54:00"));
    }
    (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).map_err(|_| format!("{s:?} is not hex")))
        .collect()
}

impl Quirk {
    pub fn matches_mac(&self, mac: &MacAddr) -> bool {
        self.mac_prefix
            .as_ref()
            .is_none_or(|p| mac.octets().starts_with(p))
    }

    fn matches(&self, client: &ClientInfo, vendor: Option<&str>) -> bool {
        self.matches_mac(&client.mac)
            // By family: 7 and 9 both mean x64 UEFI.
            && self
                .arch
                .is_none_or(|a| client.firmware == Some(Firmware::from_arch(a)))
            && self
                .vendor_class
                .as_ref()
                .is_none_or(|v| vendor.is_some_and(|got| got.starts_with(v.as_str())))
    }
}

/// The first rule that matches, in configuration order. `vendor` is the
/// raw option 60.
pub fn matching<'a>(
    quirks: &'a [Quirk],
    client: &ClientInfo,
    vendor: Option<&str>,
) -> Option<&'a Quirk> {
    quirks.iter().find(|q| q.matches(client, vendor))
}

/// Applies a rule's changes to the request as classified.
pub fn apply(quirk: &Quirk, client: &mut ClientInfo) {
    if let Some(code) = quirk.set_arch {
        client.firmware = Some(Firmware::from_arch(code));
        // An HTTP-boot architecture code implies the HTTPClient class.
        if Firmware::from_arch(code).is_http_boot() && client.vendor_class == VendorClass::Absent {
            client.vendor_class = VendorClass::HttpClient;
        }
    }
}

/// The TFTP block size cap for a client, by the first rule matching its MAC
/// that sets one.
pub fn tftp_blksize(quirks: &[Quirk], mac: &MacAddr) -> Option<u16> {
    quirks
        .iter()
        .filter(|q| q.matches_mac(mac))
        .find_map(|q| q.tftp_blksize)
}

#[cfg(test)]
mod tests {
    use super::super::classify::classify;
    use super::super::classify::tests::pxe;
    use super::*;

    fn quirk(name: &str) -> Quirk {
        Quirk {
            name: name.into(),
            mac_prefix: None,
            arch: None,
            vendor_class: None,
            set_arch: None,
            answer: None,
            tftp_blksize: None,
        }
    }

    #[test]
    fn prefixes_parse() {
        assert_eq!(parse_mac_prefix("52:54:00").unwrap(), vec![0x52, 0x54, 0]);
        assert_eq!(parse_mac_prefix("00-1B-21").unwrap(), vec![0, 0x1b, 0x21]);
        assert!(parse_mac_prefix("5").is_err());
        assert!(parse_mac_prefix("zz:00").is_err());
        assert!(parse_mac_prefix("").is_err());
    }

    #[test]
    fn first_matching_rule_wins_and_every_condition_must_hold() {
        let mac = [0x52, 0x54, 0, 1, 2, 3];
        let uefi = classify(&pxe(mac, 7, "PXEClient:Arch:00007:UNDI:003016")).unwrap();
        let bios = classify(&pxe(mac, 0, "PXEClient:Arch:00000:UNDI:002001")).unwrap();
        let rules = vec![
            Quirk {
                mac_prefix: Some(vec![0x00, 0x1b, 0x21]),
                ..quirk("intel")
            },
            Quirk {
                mac_prefix: Some(vec![0x52, 0x54, 0]),
                arch: Some(7),
                ..quirk("qemu-uefi")
            },
            Quirk {
                vendor_class: Some("PXEClient:Arch:00000".into()),
                ..quirk("any-bios")
            },
        ];
        let got = |c: &ClientInfo, v: &str| matching(&rules, c, Some(v)).map(|q| q.name.clone());
        assert_eq!(
            got(&uefi, "PXEClient:Arch:00007:UNDI:003016").as_deref(),
            Some("qemu-uefi")
        );
        assert_eq!(
            got(&bios, "PXEClient:Arch:00000:UNDI:002001").as_deref(),
            Some("any-bios")
        );
        assert_eq!(matching(&rules, &bios, None), None);
    }

    #[test]
    fn set_arch_overrides_the_firmware() {
        let mut c = classify(&pxe([0x52, 0x54, 0, 1, 2, 3], 9, "PXEClient")).unwrap();
        let q = Quirk {
            set_arch: Some(0),
            ..quirk("liar")
        };
        apply(&q, &mut c);
        assert_eq!(c.firmware, Some(Firmware::Bios));
    }

    #[test]
    fn blksize_by_mac() {
        let rules = vec![
            Quirk {
                mac_prefix: Some(vec![0x52, 0x54]),
                ..quirk("no-cap")
            },
            Quirk {
                mac_prefix: Some(vec![0x52]),
                tftp_blksize: Some(512),
                ..quirk("old-rom")
            },
        ];
        let mac = MacAddr::new([0x52, 0x54, 0, 0, 0, 1]);
        assert_eq!(tftp_blksize(&rules, &mac), Some(512));
        assert_eq!(tftp_blksize(&rules, &MacAddr::new([0; 6])), None);
    }
}
