//! What a DHCP request tells about its sender: message type, MAC, firmware
//! (option 93), PXE or HTTP boot (option 60), whether it is already iPXE
//! (options 77 and 175), relay (giaddr, option 82). Pure.

use std::net::Ipv4Addr;

use dhcproto::v4::{self, DhcpOption, Message, OptionCode};

use crate::model::MacAddr;

/// The DHCP message types a server acts on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MessageKind {
    Discover,
    Request,
    Decline,
    Release,
    Inform,
}

/// The firmware family from option 93 (RFC 4578, IANA processor
/// architecture types).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Firmware {
    /// x86 BIOS PXE (0).
    Bios,
    /// x86 32-bit UEFI (6).
    EfiIa32,
    /// x86-64 UEFI (7, and 9 which firmware uses for the same).
    EfiX64,
    /// arm64 UEFI (11).
    EfiArm64,
    /// x86-64 UEFI HTTP boot (16).
    EfiHttpX64,
    /// arm64 UEFI HTTP boot (19).
    EfiHttpArm64,
    /// Any other code: answered by policy, never guessed.
    Other(u16),
}

impl Firmware {
    pub fn from_arch(code: u16) -> Self {
        match code {
            0 => Self::Bios,
            6 => Self::EfiIa32,
            7 | 9 => Self::EfiX64,
            11 => Self::EfiArm64,
            16 => Self::EfiHttpX64,
            19 => Self::EfiHttpArm64,
            other => Self::Other(other),
        }
    }

    pub fn is_http_boot(self) -> bool {
        matches!(self, Self::EfiHttpX64 | Self::EfiHttpArm64)
    }

    /// Whether the firmware boots the machine in UEFI mode (`None`: a code
    /// we do not know).
    pub fn is_efi(self) -> Option<bool> {
        match self {
            Self::Bios => Some(false),
            Self::Other(_) => None,
            _ => Some(true),
        }
    }

    /// How the timeline writes it, after `arch=`.
    pub fn label(self) -> String {
        match self {
            Self::Bios => "bios".into(),
            Self::EfiIa32 => "efi-ia32".into(),
            Self::EfiX64 => "efi-x64".into(),
            Self::EfiArm64 => "efi-arm64".into(),
            Self::EfiHttpX64 => "efi-http-x64".into(),
            Self::EfiHttpArm64 => "efi-http-arm64".into(),
            Self::Other(code) => code.to_string(),
        }
    }

    /// The firmware a timeline request names with `arch=` (as
    /// [`Firmware::label`] wrote it), if it names one.
    pub fn in_request(request: &str) -> Option<Self> {
        let label = request
            .split_whitespace()
            .find_map(|word| word.strip_prefix("arch="))?;
        [
            Self::Bios,
            Self::EfiIa32,
            Self::EfiX64,
            Self::EfiArm64,
            Self::EfiHttpX64,
            Self::EfiHttpArm64,
        ]
        .into_iter()
        .find(|f| f.label() == label)
        .or_else(|| label.parse().ok().map(Self::Other))
    }
}

/// Option 60 as far as booting is concerned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VendorClass {
    PxeClient,
    HttpClient,
    Other(String),
    Absent,
}

/// Everything the decision needs about one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientInfo {
    pub kind: MessageKind,
    pub xid: u32,
    pub mac: MacAddr,
    pub vendor_class: VendorClass,
    /// Option 93; `None` when absent.
    pub firmware: Option<Firmware>,
    /// Option 77 says `iPXE` or option 175 (iPXE's encapsulated options)
    /// is present: the client already runs iPXE and must get a script URL,
    /// not iPXE again.
    pub is_ipxe: bool,
    /// The relay that forwarded the request, if any.
    pub giaddr: Option<Ipv4Addr>,
    /// Option 82 is present and must be echoed.
    pub has_relay_info: bool,
    pub ciaddr: Option<Ipv4Addr>,
    /// Option 50.
    pub requested_ip: Option<Ipv4Addr>,
    /// Option 54.
    pub server_id: Option<Ipv4Addr>,
    /// Option 97 (machine UUID), raw.
    pub uuid: Option<Vec<u8>>,
    /// Option 118 (RFC 3011): the subnet a relay asks us to allocate in,
    /// when giaddr is not on the client's link.
    pub subnet_selection: Option<Ipv4Addr>,
}

impl ClientInfo {
    /// A firmware asking to network-boot (PXE or UEFI HTTP boot).
    pub fn is_boot_client(&self) -> bool {
        matches!(
            self.vendor_class,
            VendorClass::PxeClient | VendorClass::HttpClient
        ) || self.is_ipxe
    }
}

/// Why a packet is dropped before any decision.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ClassifyError {
    #[error("not a BOOTREQUEST")]
    NotARequest,
    #[error("hardware type is not Ethernet with 6-byte addresses")]
    NotEthernet,
    #[error("no DHCP message type (plain BOOTP is not served)")]
    NoMessageType,
    #[error("message type {0} is not one a server acts on")]
    IgnoredType(String),
}

/// Why a datagram is not even a DHCP message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("{0} bytes is shorter than a DHCP header")]
    TooShort(usize),
    #[error("no DHCP magic cookie")]
    NoMagicCookie,
    #[error("option {code} runs past the end of the packet")]
    Truncated { code: u8 },
    #[error("option {code} has length {len}, expected {expected}")]
    BadLength {
        code: u8,
        len: usize,
        expected: usize,
    },
    /// A fixed-length option given twice would be concatenated (RFC 3396)
    /// into a length its decoder does not expect.
    #[error("option {0} appears more than once")]
    Repeated(u8),
    /// Option 52 moves options into `sname`/`file`; no boot client needs
    /// it in a request, and those fields are not checked here.
    #[error("option overload (52) is not accepted in requests")]
    Overload,
    #[error("{0}")]
    Dhcproto(String),
}

/// Options whose length dhcproto assumes rather than checks; a wrong
/// length there would desynchronise (or, in debug builds, panic) it.
const FIXED_LENGTHS: &[(u8, usize)] = &[
    (50, 4),
    (51, 4),
    (53, 1),
    (54, 4),
    (57, 2),
    (58, 4),
    (59, 4),
    (80, 0),
    (91, 4),
    (93, 2),
    (94, 3),
    (118, 4),
    (152, 4),
    (153, 4),
    (154, 4),
    (155, 4),
];
/// Options with a minimum length (81, client FQDN: flags and two rcodes).
const MIN_LENGTHS: &[(u8, usize)] = &[(81, 3)];

/// Decodes a datagram, checking the option layout first so that a hostile
/// packet is a clean error and never reaches dhcproto's assumptions.
pub fn decode(bytes: &[u8]) -> Result<Message, DecodeError> {
    use dhcproto::{Decodable, Decoder};
    const HEADER: usize = 236;
    if bytes.len() < HEADER + 4 {
        return Err(DecodeError::TooShort(bytes.len()));
    }
    if bytes[HEADER..HEADER + 4] != [99, 130, 83, 99] {
        return Err(DecodeError::NoMagicCookie);
    }
    let mut i = HEADER + 4;
    let mut seen = [false; 256];
    while i < bytes.len() {
        let code = bytes[i];
        match code {
            0 => i += 1,
            255 => break,
            52 => return Err(DecodeError::Overload),
            _ => {
                let checked = FIXED_LENGTHS
                    .iter()
                    .chain(MIN_LENGTHS)
                    .any(|(c, _)| *c == code);
                if checked && std::mem::replace(&mut seen[usize::from(code)], true) {
                    return Err(DecodeError::Repeated(code));
                }
                let len = *bytes.get(i + 1).ok_or(DecodeError::Truncated { code })? as usize;
                if i + 2 + len > bytes.len() {
                    return Err(DecodeError::Truncated { code });
                }
                if let Some((_, expected)) = FIXED_LENGTHS.iter().find(|(c, _)| *c == code)
                    && len != *expected
                {
                    return Err(DecodeError::BadLength {
                        code,
                        len,
                        expected: *expected,
                    });
                }
                if let Some((_, min)) = MIN_LENGTHS.iter().find(|(c, _)| *c == code)
                    && len < *min
                {
                    return Err(DecodeError::BadLength {
                        code,
                        len,
                        expected: *min,
                    });
                }
                i += 2 + len;
            }
        }
    }
    // The checks above cover the assertions known in dhcproto 0.15; should
    // another one fire, it costs this packet, not the server.
    let decoded = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        Message::decode(&mut Decoder::new(bytes))
    }));
    match decoded {
        Ok(result) => result.map_err(|e| DecodeError::Dhcproto(e.to_string())),
        Err(_) => Err(DecodeError::Dhcproto("the decoder panicked".to_string())),
    }
}

/// The BOOTP `file` field without the NUL padding dhcproto leaves on it.
pub fn file_field(msg: &Message) -> Option<&[u8]> {
    let raw = msg.fname()?;
    let end = raw.iter().position(|&b| b == 0).unwrap_or(raw.len());
    Some(&raw[..end]).filter(|f| !f.is_empty())
}

fn nonzero(ip: Ipv4Addr) -> Option<Ipv4Addr> {
    (!ip.is_unspecified()).then_some(ip)
}

/// Classifies a decoded request.
pub fn classify(msg: &Message) -> Result<ClientInfo, ClassifyError> {
    if msg.opcode() != v4::Opcode::BootRequest {
        return Err(ClassifyError::NotARequest);
    }
    if msg.htype() != v4::HType::Eth || msg.hlen() != 6 || msg.chaddr().len() < 6 {
        return Err(ClassifyError::NotEthernet);
    }
    let opts = msg.opts();
    let kind = match opts.msg_type().ok_or(ClassifyError::NoMessageType)? {
        v4::MessageType::Discover => MessageKind::Discover,
        v4::MessageType::Request => MessageKind::Request,
        v4::MessageType::Decline => MessageKind::Decline,
        v4::MessageType::Release => MessageKind::Release,
        v4::MessageType::Inform => MessageKind::Inform,
        other => return Err(ClassifyError::IgnoredType(format!("{other:?}"))),
    };
    let mut mac = [0u8; 6];
    mac.copy_from_slice(&msg.chaddr()[..6]);
    let vendor_class = match opts.get(OptionCode::ClassIdentifier) {
        Some(DhcpOption::ClassIdentifier(raw)) => {
            let text = String::from_utf8_lossy(raw);
            if text.starts_with("PXEClient") {
                VendorClass::PxeClient
            } else if text.starts_with("HTTPClient") {
                VendorClass::HttpClient
            } else {
                VendorClass::Other(text.into_owned())
            }
        }
        _ => VendorClass::Absent,
    };
    let firmware = match opts.get(OptionCode::ClientSystemArchitecture) {
        Some(DhcpOption::ClientSystemArchitecture(arch)) => Some(Firmware::from_arch(arch.0)),
        _ => None,
    };
    let user_class_ipxe = match opts.get(OptionCode::UserClass) {
        // RFC 3004 user classes are length-prefixed; iPXE sends "iPXE" either
        // bare or prefixed, so look for the word.
        Some(DhcpOption::UserClass(raw)) => raw.windows(4).any(|w| w == b"iPXE"),
        _ => false,
    };
    let has_175 = opts.get(OptionCode::Unknown(175)).is_some();
    let requested_ip = match opts.get(OptionCode::RequestedIpAddress) {
        Some(DhcpOption::RequestedIpAddress(ip)) => Some(*ip),
        _ => None,
    };
    let server_id = match opts.get(OptionCode::ServerIdentifier) {
        Some(DhcpOption::ServerIdentifier(ip)) => Some(*ip),
        _ => None,
    };
    let uuid = match opts.get(OptionCode::ClientMachineIdentifier) {
        Some(DhcpOption::ClientMachineIdentifier(raw)) => Some(raw.clone()),
        _ => None,
    };
    let subnet_selection = match opts.get(OptionCode::SubnetSelection) {
        Some(DhcpOption::SubnetSelection(ip)) if !ip.is_unspecified() => Some(*ip),
        _ => None,
    };
    Ok(ClientInfo {
        kind,
        xid: msg.xid(),
        mac: MacAddr::new(mac),
        vendor_class,
        firmware,
        is_ipxe: user_class_ipxe || has_175,
        giaddr: nonzero(msg.giaddr()),
        has_relay_info: opts.get(OptionCode::RelayAgentInformation).is_some(),
        ciaddr: nonzero(msg.ciaddr()),
        requested_ip,
        server_id,
        uuid,
        subnet_selection,
    })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use dhcproto::v4::{Architecture, UnknownOption};

    /// A DISCOVER as firmware sends it, to be adjusted per case.
    pub(crate) fn discover(mac: [u8; 6]) -> Message {
        let mut msg = Message::default();
        msg.set_chaddr(&mac).set_xid(0x1234_5678);
        msg.opts_mut()
            .insert(DhcpOption::MessageType(v4::MessageType::Discover));
        msg
    }

    pub(crate) fn pxe(mac: [u8; 6], arch: u16, vendor: &str) -> Message {
        let mut msg = discover(mac);
        msg.opts_mut()
            .insert(DhcpOption::ClassIdentifier(vendor.as_bytes().to_vec()));
        msg.opts_mut()
            .insert(DhcpOption::ClientSystemArchitecture(Architecture(arch)));
        msg
    }

    #[test]
    fn classifies_firmware_requests() {
        let mac = [0x52, 0x54, 0, 0x12, 0x34, 0x56];
        let bios = classify(&pxe(mac, 0, "PXEClient:Arch:00000:UNDI:002001")).unwrap();
        assert_eq!(bios.mac.to_string(), "52:54:00:12:34:56");
        assert_eq!(
            (bios.kind, bios.firmware, bios.is_ipxe),
            (MessageKind::Discover, Some(Firmware::Bios), false)
        );
        assert_eq!(bios.vendor_class, VendorClass::PxeClient);
        assert!(bios.is_boot_client());

        let uefi = classify(&pxe(mac, 7, "PXEClient:Arch:00007:UNDI:003016")).unwrap();
        assert_eq!(uefi.firmware, Some(Firmware::EfiX64));
        let http = classify(&pxe(mac, 16, "HTTPClient:Arch:00016:UNDI:003001")).unwrap();
        assert_eq!(
            (http.vendor_class.clone(), http.firmware),
            (VendorClass::HttpClient, Some(Firmware::EfiHttpX64))
        );

        let mut ipxe = pxe(mac, 0, "PXEClient:Arch:00000:UNDI:002001");
        ipxe.opts_mut()
            .insert(DhcpOption::UserClass(b"iPXE".to_vec()));
        assert!(classify(&ipxe).unwrap().is_ipxe);
        let mut ipxe175 = pxe(mac, 7, "PXEClient:Arch:00007:UNDI:003016");
        ipxe175
            .opts_mut()
            .insert(DhcpOption::Unknown(UnknownOption::new(
                OptionCode::Unknown(175),
                vec![0xb1, 1, 1],
            )));
        assert!(classify(&ipxe175).unwrap().is_ipxe);

        let plain = classify(&discover(mac)).unwrap();
        assert_eq!(
            (plain.vendor_class.clone(), plain.firmware),
            (VendorClass::Absent, None)
        );
        assert!(!plain.is_boot_client());

        let mut relayed = discover(mac);
        relayed.set_giaddr(Ipv4Addr::new(10, 0, 0, 1));
        assert_eq!(
            classify(&relayed).unwrap().giaddr,
            Some(Ipv4Addr::new(10, 0, 0, 1))
        );
    }

    #[test]
    fn decode_refuses_malformed_options() {
        use dhcproto::Encodable;
        let good = pxe([0x52, 0x54, 0, 0, 0, 9], 7, "PXEClient")
            .to_vec()
            .unwrap();
        assert!(decode(&good).is_ok());
        assert_eq!(decode(&good[..100]), Err(DecodeError::TooShort(100)));
        let mut no_cookie = good.clone();
        no_cookie[236] = 0;
        assert_eq!(decode(&no_cookie), Err(DecodeError::NoMagicCookie));
        // Option 94 with length 1, which dhcproto would read as 3 bytes.
        let mut bad = good[..240].to_vec();
        bad.extend_from_slice(&[53, 1, 1, 94, 1, 1, 255]);
        assert_eq!(
            decode(&bad),
            Err(DecodeError::BadLength {
                code: 94,
                len: 1,
                expected: 3
            })
        );
        let mut cut = good[..240].to_vec();
        cut.extend_from_slice(&[60, 9, b'P']);
        assert_eq!(decode(&cut), Err(DecodeError::Truncated { code: 60 }));
    }

    #[test]
    fn drops_what_is_not_a_dhcp_request() {
        let mac = [0x52, 0x54, 0, 0, 0, 1];
        let mut reply = discover(mac);
        reply.set_opcode(v4::Opcode::BootReply);
        assert_eq!(classify(&reply), Err(ClassifyError::NotARequest));
        let mut bootp = discover(mac);
        bootp.opts_mut().remove(OptionCode::MessageType);
        assert_eq!(classify(&bootp), Err(ClassifyError::NoMessageType));
        let mut offer = discover(mac);
        offer
            .opts_mut()
            .insert(DhcpOption::MessageType(v4::MessageType::Offer));
        assert!(matches!(
            classify(&offer),
            Err(ClassifyError::IgnoredType(_))
        ));
        let mut ib = discover(mac);
        ib.set_htype(v4::HType::IEEE802);
        assert_eq!(classify(&ib), Err(ClassifyError::NotEthernet));
    }

    #[test]
    fn firmware_reads_back_from_the_timeline() {
        for code in [0u16, 6, 7, 9, 11, 16, 19, 42] {
            let f = Firmware::from_arch(code);
            let request = format!("DHCPDISCOVER arch={} vendor=PXEClient", f.label());
            assert_eq!(Firmware::in_request(&request), Some(f), "{request}");
        }
        assert_eq!(Firmware::in_request("DHCPREQUEST vendor=PXEClient"), None);
        assert_eq!(Firmware::from_arch(0).is_efi(), Some(false));
        assert_eq!(Firmware::from_arch(7).is_efi(), Some(true));
        assert_eq!(Firmware::from_arch(42).is_efi(), None);
    }
}
