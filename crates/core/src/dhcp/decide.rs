//! The boot decision: from what a request says (`classify`) and what the
//! inventory knows of its MAC, which answer to give, or why to stay
//! silent. Pure: `decide(&Policy, &ClientInfo, Known) -> DhcpDecision`.

use super::classify::{ClientInfo, Firmware, VendorClass};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// We hand out addresses and boot information.
    Authoritative,
    /// Another server hands out addresses; we answer PXE clients only.
    Proxy,
}

impl Mode {
    /// As `dhcp.mode` spells it.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Authoritative => "authoritative",
            Self::Proxy => "proxy",
        }
    }
}

/// What to do with a MAC the inventory does not know.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UnknownPolicy {
    /// Stay silent (the default: never answer machines that are not ours).
    Ignore,
    /// Chain to iPXE, whose script boots the local disk.
    Local,
}

/// Which iPXE build x86-64 UEFI machines get.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EfiBinary {
    /// `ipxe.efi`: iPXE's own drivers.
    IpxeEfi,
    /// `snponly.efi`: the firmware's network driver (for NICs iPXE lacks).
    SnpOnly,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    pub mode: Mode,
    pub unknown: UnknownPolicy,
    pub efi_x64: EfiBinary,
    /// File name of the arm64 EFI iPXE binary, when one is installed.
    pub arm64_binary: Option<String>,
    /// Base URL of our HTTP server as machines reach it, no trailing slash.
    pub http_base: String,
}

/// What the inventory knows of the MAC.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Known {
    Unknown,
    /// A known server without an active deployment.
    Idle,
    /// A known server with an active deployment.
    Deploying,
    /// A known server whose active deployment serves a `pxelinux.cfg/`
    /// file over TFTP, as the older system's profiles do: BIOS firmware
    /// boots pxelinux (`lpxelinux.0`) instead of iPXE.
    DeployingPxelinux,
}

/// Why the machine boots.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    Deploy,
    /// Its iPXE script will boot the local disk.
    LocalBoot,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BootAnswer {
    /// Load this iPXE binary over TFTP (options 66/67, siaddr).
    Tftp { filename: String },
    /// UEFI HTTP boot: load the EFI binary from this URL; option 60 must
    /// say `HTTPClient` in the reply.
    HttpUrl { url: String },
    /// The client already runs iPXE: give it the script URL, so it never
    /// loads iPXE again.
    Script { url: String },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DhcpDecision {
    /// No reply. The reason goes into the boot timeline.
    Silent { reason: String },
    /// An address without boot information (authoritative mode only).
    AddressOnly,
    Boot {
        answer: BootAnswer,
        purpose: Purpose,
    },
}

/// The pxelinux that fetches its files by TFTP or HTTP (Debian's
/// `pxelinux` package), as the older system's agent handed out.
pub const PXELINUX: &str = "lpxelinux.0";

fn silent(reason: impl Into<String>) -> DhcpDecision {
    DhcpDecision::Silent {
        reason: reason.into(),
    }
}

/// Decides the answer to one request.
pub fn decide(policy: &Policy, client: &ClientInfo, known: Known) -> DhcpDecision {
    let purpose = match (known, policy.unknown) {
        (Known::Deploying | Known::DeployingPxelinux, _) => Purpose::Deploy,
        (Known::Idle, _) => Purpose::LocalBoot,
        (Known::Unknown, UnknownPolicy::Local) => Purpose::LocalBoot,
        (Known::Unknown, UnknownPolicy::Ignore) => {
            // An authoritative server is the network's DHCP server: every
            // client gets an address, but only known machines boot.
            return match policy.mode {
                Mode::Authoritative => DhcpDecision::AddressOnly,
                Mode::Proxy => silent("unknown MAC and the unknown-machine policy is ignore"),
            };
        }
    };
    if !client.is_boot_client() {
        return match policy.mode {
            Mode::Authoritative => DhcpDecision::AddressOnly,
            Mode::Proxy => silent("not a PXE client (no PXEClient or HTTPClient vendor class)"),
        };
    }
    let http_boot = client.vendor_class == VendorClass::HttpClient
        || client.firmware.is_some_and(Firmware::is_http_boot);
    // pxelinux runs on BIOS firmware's PXE stack, iPXE's included (an
    // iPXE ROM loads it like any NBP); UEFI machines keep iPXE.
    if known == Known::DeployingPxelinux
        && !http_boot
        && matches!(client.firmware, None | Some(Firmware::Bios))
    {
        return DhcpDecision::Boot {
            answer: BootAnswer::Tftp {
                filename: PXELINUX.to_string(),
            },
            purpose,
        };
    }
    if client.is_ipxe {
        return DhcpDecision::Boot {
            answer: BootAnswer::Script {
                url: format!("{}/boot.ipxe", policy.http_base),
            },
            purpose,
        };
    }
    let efi_x64 = match policy.efi_x64 {
        EfiBinary::IpxeEfi => "ipxe.efi",
        EfiBinary::SnpOnly => "snponly.efi",
    };
    let binary = match client.firmware {
        None | Some(Firmware::Bios) if !http_boot => "undionly.kpxe".to_string(),
        None | Some(Firmware::Bios) => {
            return silent("HTTP boot without an architecture (option 93)");
        }
        Some(Firmware::EfiX64) | Some(Firmware::EfiHttpX64) => efi_x64.to_string(),
        Some(Firmware::EfiArm64) | Some(Firmware::EfiHttpArm64) => match &policy.arm64_binary {
            Some(b) => b.clone(),
            None => return silent("arm64 UEFI client, but no arm64 iPXE binary is configured"),
        },
        Some(Firmware::EfiIa32) => return silent("32-bit UEFI client: no iPXE binary for it"),
        Some(Firmware::Other(code)) => {
            return silent(format!(
                "client architecture {code} (option 93) is not supported"
            ));
        }
    };
    let answer = if http_boot {
        BootAnswer::HttpUrl {
            url: format!("{}/boot/{binary}", policy.http_base),
        }
    } else {
        BootAnswer::Tftp { filename: binary }
    };
    DhcpDecision::Boot { answer, purpose }
}

#[cfg(test)]
mod tests {
    use super::super::classify::classify;
    use super::super::classify::tests::{discover, pxe};
    use super::*;
    use dhcproto::v4::DhcpOption;

    const MAC: [u8; 6] = [0x52, 0x54, 0, 0xab, 0xcd, 0xef];

    fn policy(mode: Mode, unknown: UnknownPolicy) -> Policy {
        Policy {
            mode,
            unknown,
            efi_x64: EfiBinary::IpxeEfi,
            arm64_binary: None,
            http_base: "http://10.0.0.5:8080".into(),
        }
    }

    fn tftp(file: &str, purpose: Purpose) -> DhcpDecision {
        DhcpDecision::Boot {
            answer: BootAnswer::Tftp {
                filename: file.into(),
            },
            purpose,
        }
    }

    fn check(policy: &Policy, msg: dhcproto::v4::Message, known: Known, expected: DhcpDecision) {
        let client = classify(&msg).unwrap();
        assert_eq!(
            decide(policy, &client, known),
            expected,
            "{client:?} {known:?}"
        );
    }

    #[test]
    fn decision_table() {
        let auth = policy(Mode::Authoritative, UnknownPolicy::Ignore);
        let proxy = policy(Mode::Proxy, UnknownPolicy::Ignore);
        let bios = || pxe(MAC, 0, "PXEClient:Arch:00000:UNDI:002001");
        let uefi = || pxe(MAC, 7, "PXEClient:Arch:00007:UNDI:003016");
        let ipxe = || {
            let mut m = bios();
            m.opts_mut().insert(DhcpOption::UserClass(b"iPXE".to_vec()));
            m
        };
        check(
            &auth,
            bios(),
            Known::Deploying,
            tftp("undionly.kpxe", Purpose::Deploy),
        );
        check(
            &auth,
            bios(),
            Known::Idle,
            tftp("undionly.kpxe", Purpose::LocalBoot),
        );
        check(
            &auth,
            uefi(),
            Known::Deploying,
            tftp("ipxe.efi", Purpose::Deploy),
        );
        let snp = Policy {
            efi_x64: EfiBinary::SnpOnly,
            ..auth.clone()
        };
        check(
            &snp,
            uefi(),
            Known::Deploying,
            tftp("snponly.efi", Purpose::Deploy),
        );
        // Already iPXE: the script, never iPXE again.
        check(
            &proxy,
            ipxe(),
            Known::Deploying,
            DhcpDecision::Boot {
                answer: BootAnswer::Script {
                    url: "http://10.0.0.5:8080/boot.ipxe".into(),
                },
                purpose: Purpose::Deploy,
            },
        );
        // A deployment serving a pxelinux config: BIOS firmware, an iPXE
        // ROM's included, gets pxelinux; UEFI keeps iPXE.
        check(
            &auth,
            bios(),
            Known::DeployingPxelinux,
            tftp("lpxelinux.0", Purpose::Deploy),
        );
        check(
            &proxy,
            ipxe(),
            Known::DeployingPxelinux,
            tftp("lpxelinux.0", Purpose::Deploy),
        );
        check(
            &auth,
            uefi(),
            Known::DeployingPxelinux,
            tftp("ipxe.efi", Purpose::Deploy),
        );
        // UEFI HTTP boot gets a URL to the EFI binary.
        check(
            &auth,
            pxe(MAC, 16, "HTTPClient:Arch:00016:UNDI:003001"),
            Known::Deploying,
            DhcpDecision::Boot {
                answer: BootAnswer::HttpUrl {
                    url: "http://10.0.0.5:8080/boot/ipxe.efi".into(),
                },
                purpose: Purpose::Deploy,
            },
        );
        // Unknown machines: no boot by default (an address only from an
        // authoritative server, silence from a proxy), local boot by policy.
        check(&auth, bios(), Known::Unknown, DhcpDecision::AddressOnly);
        assert!(matches!(
            decide(&proxy, &classify(&bios()).unwrap(), Known::Unknown),
            DhcpDecision::Silent { .. }
        ));
        let local = policy(Mode::Proxy, UnknownPolicy::Local);
        check(
            &local,
            bios(),
            Known::Unknown,
            tftp("undionly.kpxe", Purpose::LocalBoot),
        );
        // Non-PXE clients: an address from an authoritative server, nothing from a proxy.
        check(&auth, discover(MAC), Known::Idle, DhcpDecision::AddressOnly);
        assert!(matches!(
            decide(&proxy, &classify(&discover(MAC)).unwrap(), Known::Idle),
            DhcpDecision::Silent { .. }
        ));
        // Architectures without a binary are silent with a reason.
        for (arch, vendor) in [
            (11, "PXEClient:Arch:00011"),
            (6, "PXEClient:Arch:00006"),
            (2, "PXEClient:Arch:00002"),
        ] {
            match decide(
                &auth,
                &classify(&pxe(MAC, arch, vendor)).unwrap(),
                Known::Deploying,
            ) {
                DhcpDecision::Silent { reason } => assert!(!reason.is_empty()),
                other => panic!("arch {arch}: {other:?}"),
            }
        }
        let arm = Policy {
            arm64_binary: Some("ipxe-arm64.efi".into()),
            ..auth.clone()
        };
        check(
            &arm,
            pxe(MAC, 11, "PXEClient:Arch:00011:UNDI:003000"),
            Known::Deploying,
            tftp("ipxe-arm64.efi", Purpose::Deploy),
        );
    }
}
