//! Builds the reply to a request from the decision (`decide.rs`) and, in
//! authoritative mode, the lease. Pure: a `Message` in, a `Message` out.

use std::net::Ipv4Addr;

use dhcproto::v4::{self, DhcpOption, Message, OptionCode};

use super::classify::{ClientInfo, MessageKind};
use super::decide::{BootAnswer, DhcpDecision};

/// An address handed out in authoritative mode, with its network.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaseOffer {
    pub ip: Ipv4Addr,
    pub prefix_len: u8,
    pub router: Option<Ipv4Addr>,
    pub dns: Vec<Ipv4Addr>,
    pub domain: Option<String>,
    pub lease_secs: u32,
    /// The network's own options (`options.rs`), encoded: sent when the
    /// client asks for them (option 55), or to a client that lists none.
    pub options: Vec<(u8, Vec<u8>)>,
}

/// What the reply needs besides the request and the decision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplyContext {
    /// Our address on the boot network: server identifier and TFTP server.
    pub server_ip: Ipv4Addr,
    /// `Some` in authoritative mode; `None` for ProxyDHCP (no address).
    pub lease: Option<LeaseOffer>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReplyError {
    /// The BOOTP `file` field holds 127 bytes and a NUL.
    #[error("boot file name of {0} bytes does not fit the 128-byte file field")]
    FileTooLong(usize),
    #[error("a {0:?} gets no reply")]
    NoReplyFor(MessageKind),
}

fn netmask(prefix_len: u8) -> Ipv4Addr {
    let bits = if prefix_len == 0 {
        0
    } else {
        u32::MAX << (32 - u32::from(prefix_len.min(32)))
    };
    Ipv4Addr::from(bits)
}

/// The reply to `request`, or `None` when the decision is to stay silent.
pub fn reply(
    request: &Message,
    client: &ClientInfo,
    decision: &DhcpDecision,
    ctx: &ReplyContext,
) -> Result<Option<Message>, ReplyError> {
    let answer = match decision {
        DhcpDecision::Silent { .. } => return Ok(None),
        DhcpDecision::AddressOnly => None,
        DhcpDecision::Boot { answer, .. } => Some(answer),
    };
    if answer.is_none() && ctx.lease.is_none() {
        // Nothing to say: no address to give and no boot information.
        return Ok(None);
    }
    let msg_type = match client.kind {
        MessageKind::Discover => v4::MessageType::Offer,
        MessageKind::Request | MessageKind::Inform => v4::MessageType::Ack,
        other => return Err(ReplyError::NoReplyFor(other)),
    };
    let mut msg = Message::default();
    msg.set_opcode(v4::Opcode::BootReply)
        .set_htype(request.htype())
        .set_xid(request.xid())
        .set_flags(request.flags())
        .set_giaddr(request.giaddr())
        .set_chaddr(request.chaddr())
        .set_ciaddr(request.ciaddr());
    let opts = msg.opts_mut();
    opts.insert(DhcpOption::MessageType(msg_type));
    opts.insert(DhcpOption::ServerIdentifier(ctx.server_ip));

    // INFORM (RFC 2131 3.4): the network's options, no lease times.
    if let Some(lease) = &ctx.lease {
        let mask = netmask(lease.prefix_len);
        let broadcast = Ipv4Addr::from(u32::from(lease.ip) | !u32::from(mask));
        opts.insert(DhcpOption::SubnetMask(mask));
        opts.insert(DhcpOption::BroadcastAddr(broadcast));
        if let Some(router) = lease.router {
            opts.insert(DhcpOption::Router(vec![router]));
        }
        if !lease.dns.is_empty() {
            opts.insert(DhcpOption::DomainNameServer(lease.dns.clone()));
        }
        if let Some(domain) = &lease.domain {
            opts.insert(DhcpOption::DomainName(domain.clone()));
        }
        let asked = match request.opts().get(OptionCode::ParameterRequestList) {
            Some(DhcpOption::ParameterRequestList(codes)) => Some(codes),
            _ => None,
        };
        for (code, bytes) in &lease.options {
            let code = OptionCode::from(*code);
            if asked.is_none_or(|codes| codes.contains(&code)) {
                opts.insert(DhcpOption::Unknown(v4::UnknownOption::new(
                    code,
                    bytes.clone(),
                )));
            }
        }
        if client.kind != MessageKind::Inform {
            opts.insert(DhcpOption::AddressLeaseTime(lease.lease_secs));
            opts.insert(DhcpOption::Renewal(lease.lease_secs / 2));
            opts.insert(DhcpOption::Rebinding(
                (u64::from(lease.lease_secs) * 7 / 8) as u32,
            ));
        }
    }

    let mut file: Option<String> = None;
    match answer {
        Some(BootAnswer::Tftp { filename }) => {
            opts.insert(DhcpOption::ClassIdentifier(b"PXEClient".to_vec()));
            opts.insert(DhcpOption::TFTPServerName(
                ctx.server_ip.to_string().into_bytes(),
            ));
            opts.insert(DhcpOption::BootfileName(filename.clone().into_bytes()));
            // PXE discovery control: boot the file named here, skip boot
            // server discovery (strict BIOS ROMs want this in ProxyDHCP).
            opts.insert(DhcpOption::VendorExtensions(vec![6, 1, 8, 255]));
            file = Some(filename.clone());
        }
        Some(BootAnswer::HttpUrl { url }) => {
            // UEFI HTTP boot only accepts an offer that says HTTPClient.
            opts.insert(DhcpOption::ClassIdentifier(b"HTTPClient".to_vec()));
            opts.insert(DhcpOption::BootfileName(url.clone().into_bytes()));
            file = Some(url.clone());
        }
        Some(BootAnswer::Script { url }) => {
            if ctx.lease.is_none() {
                // iPXE takes an offer without an address as ProxyDHCP only
                // when it says PXEClient.
                opts.insert(DhcpOption::ClassIdentifier(b"PXEClient".to_vec()));
            }
            opts.insert(DhcpOption::BootfileName(url.clone().into_bytes()));
            file = Some(url.clone());
        }
        None => {}
    }
    // PXE clients expect their machine id back.
    if let Some(uuid) = &client.uuid {
        opts.insert(DhcpOption::ClientMachineIdentifier(uuid.clone()));
    }
    // A relay's option 82 goes back to it unchanged (RFC 3046), and so
    // does its subnet selection (RFC 3011).
    if let Some(relay) = request.opts().get(OptionCode::RelayAgentInformation) {
        opts.insert(relay.clone());
    }
    if let Some(subnet) = request.opts().get(OptionCode::SubnetSelection) {
        opts.insert(subnet.clone());
    }
    if let Some(lease) = &ctx.lease
        && client.kind != MessageKind::Inform
    {
        msg.set_yiaddr(lease.ip);
    }
    if let Some(file) = file {
        if file.len() > 127 {
            return Err(ReplyError::FileTooLong(file.len()));
        }
        // siaddr with a file name are "PXE options": with them a ProxyDHCP
        // client boots from this offer without asking port 4011.
        if matches!(answer, Some(BootAnswer::Tftp { .. }))
            || (ctx.lease.is_none() && matches!(answer, Some(BootAnswer::Script { .. })))
        {
            msg.set_siaddr(ctx.server_ip);
        }
        msg.set_fname_str(&file);
    }
    Ok(Some(msg))
}

/// A DHCPNAK to `request`: no address, no boot information, broadcast to
/// the client (or through its relay), with `message` (option 56) saying why.
pub fn nak(request: &Message, server_ip: Ipv4Addr, message: &str) -> Message {
    let mut msg = Message::default();
    msg.set_opcode(v4::Opcode::BootReply)
        .set_htype(request.htype())
        .set_xid(request.xid())
        .set_giaddr(request.giaddr())
        .set_chaddr(request.chaddr());
    if !request.giaddr().is_unspecified() {
        // The relay must broadcast it: the client's address is not valid.
        msg.set_flags(request.flags().set_broadcast());
    }
    let opts = msg.opts_mut();
    opts.insert(DhcpOption::MessageType(v4::MessageType::Nak));
    opts.insert(DhcpOption::ServerIdentifier(server_ip));
    let mut text = message.as_bytes().to_vec();
    text.truncate(250);
    opts.insert(DhcpOption::Message(
        String::from_utf8_lossy(&text).into_owned(),
    ));
    if let Some(relay) = request.opts().get(OptionCode::RelayAgentInformation) {
        opts.insert(relay.clone());
    }
    msg
}

#[cfg(test)]
mod tests {
    use super::super::classify::tests::{discover, pxe};
    use super::super::classify::{classify, decode, file_field};
    use super::super::decide::Purpose;
    use super::*;
    use dhcproto::Encodable;

    const MAC: [u8; 6] = [0x52, 0x54, 0, 0x11, 0x22, 0x33];
    const SERVER: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 5);

    fn boot(answer: BootAnswer) -> DhcpDecision {
        DhcpDecision::Boot {
            answer,
            purpose: Purpose::Deploy,
        }
    }

    fn lease() -> LeaseOffer {
        LeaseOffer {
            ip: Ipv4Addr::new(10, 0, 0, 100),
            prefix_len: 24,
            router: Some(Ipv4Addr::new(10, 0, 0, 1)),
            dns: vec![Ipv4Addr::new(10, 0, 0, 2)],
            domain: Some("dc1.example.com".into()),
            lease_secs: 3600,
            options: vec![(42, vec![10, 0, 0, 5]), (26, vec![0x23, 0x28])],
        }
    }

    /// Encodes and decodes the reply, as the client will see it.
    fn wire(msg: Message) -> Message {
        decode(&msg.to_vec().unwrap()).unwrap()
    }

    #[test]
    fn proxy_offer_for_bios_pxe() {
        let mut req = pxe(MAC, 0, "PXEClient:Arch:00000:UNDI:002001");
        req.opts_mut()
            .insert(DhcpOption::ClientMachineIdentifier(vec![0; 17]));
        let client = classify(&req).unwrap();
        let ctx = ReplyContext {
            server_ip: SERVER,
            lease: None,
        };
        let decision = boot(BootAnswer::Tftp {
            filename: "undionly.kpxe".into(),
        });
        let out = wire(reply(&req, &client, &decision, &ctx).unwrap().unwrap());
        assert_eq!(out.opcode(), v4::Opcode::BootReply);
        assert_eq!(out.xid(), req.xid());
        assert_eq!(out.chaddr(), &MAC);
        assert_eq!(
            out.yiaddr(),
            Ipv4Addr::UNSPECIFIED,
            "ProxyDHCP gives no address"
        );
        assert_eq!(out.siaddr(), SERVER);
        assert_eq!(file_field(&out), Some(&b"undionly.kpxe"[..]));
        let o = out.opts();
        assert_eq!(o.msg_type(), Some(v4::MessageType::Offer));
        assert_eq!(
            o.get(OptionCode::ServerIdentifier),
            Some(&DhcpOption::ServerIdentifier(SERVER))
        );
        assert_eq!(
            o.get(OptionCode::ClassIdentifier),
            Some(&DhcpOption::ClassIdentifier(b"PXEClient".to_vec()))
        );
        assert_eq!(
            o.get(OptionCode::VendorExtensions),
            Some(&DhcpOption::VendorExtensions(vec![6, 1, 8, 255]))
        );
        assert!(o.get(OptionCode::ClientMachineIdentifier).is_some());
        assert!(o.get(OptionCode::SubnetMask).is_none());
    }

    #[test]
    fn authoritative_ack_carries_the_lease() {
        let mut req = pxe(MAC, 7, "PXEClient:Arch:00007:UNDI:003016");
        req.opts_mut()
            .insert(DhcpOption::MessageType(v4::MessageType::Request));
        req.set_giaddr(Ipv4Addr::new(10, 0, 0, 1));
        let client = classify(&req).unwrap();
        let ctx = ReplyContext {
            server_ip: SERVER,
            lease: Some(lease()),
        };
        let out = wire(
            reply(
                &req,
                &client,
                &boot(BootAnswer::Tftp {
                    filename: "ipxe.efi".into(),
                }),
                &ctx,
            )
            .unwrap()
            .unwrap(),
        );
        assert_eq!(out.opts().msg_type(), Some(v4::MessageType::Ack));
        assert_eq!(out.yiaddr(), Ipv4Addr::new(10, 0, 0, 100));
        assert_eq!(
            out.giaddr(),
            Ipv4Addr::new(10, 0, 0, 1),
            "relayed replies keep giaddr"
        );
        let o = out.opts();
        assert_eq!(
            o.get(OptionCode::SubnetMask),
            Some(&DhcpOption::SubnetMask(Ipv4Addr::new(255, 255, 255, 0)))
        );
        assert_eq!(
            o.get(OptionCode::BroadcastAddr),
            Some(&DhcpOption::BroadcastAddr(Ipv4Addr::new(10, 0, 0, 255)))
        );
        assert_eq!(
            o.get(OptionCode::AddressLeaseTime),
            Some(&DhcpOption::AddressLeaseTime(3600))
        );
        assert_eq!(o.get(OptionCode::Renewal), Some(&DhcpOption::Renewal(1800)));
        assert_eq!(
            o.get(OptionCode::Rebinding),
            Some(&DhcpOption::Rebinding(3150))
        );
        assert_eq!(
            o.get(OptionCode::DomainName),
            Some(&DhcpOption::DomainName("dc1.example.com".into()))
        );
        // The network's own options, to a client that lists none it wants.
        assert_eq!(
            o.get(OptionCode::NtpServers),
            Some(&DhcpOption::NtpServers(vec![Ipv4Addr::new(10, 0, 0, 5)]))
        );
        assert_eq!(
            o.get(OptionCode::InterfaceMtu),
            Some(&DhcpOption::InterfaceMtu(9000))
        );
    }

    #[test]
    fn network_options_go_to_clients_that_ask_for_them() {
        let mut req = discover(MAC);
        req.opts_mut().insert(DhcpOption::ParameterRequestList(vec![
            OptionCode::SubnetMask,
            OptionCode::Router,
            OptionCode::NtpServers,
        ]));
        let client = classify(&req).unwrap();
        let ctx = ReplyContext {
            server_ip: SERVER,
            lease: Some(lease()),
        };
        let out = wire(
            reply(&req, &client, &DhcpDecision::AddressOnly, &ctx)
                .unwrap()
                .unwrap(),
        );
        let o = out.opts();
        assert!(o.get(OptionCode::NtpServers).is_some(), "asked for");
        assert!(o.get(OptionCode::InterfaceMtu).is_none(), "not asked for");
    }

    #[test]
    fn http_boot_and_ipxe_get_urls() {
        let req = pxe(MAC, 16, "HTTPClient:Arch:00016:UNDI:003001");
        let client = classify(&req).unwrap();
        let ctx = ReplyContext {
            server_ip: SERVER,
            lease: Some(lease()),
        };
        let url = "http://10.0.0.5:8080/boot/ipxe.efi";
        let out = wire(
            reply(
                &req,
                &client,
                &boot(BootAnswer::HttpUrl { url: url.into() }),
                &ctx,
            )
            .unwrap()
            .unwrap(),
        );
        assert_eq!(
            out.opts().get(OptionCode::ClassIdentifier),
            Some(&DhcpOption::ClassIdentifier(b"HTTPClient".to_vec()))
        );
        assert_eq!(file_field(&out), Some(url.as_bytes()));
        assert_eq!(out.siaddr(), Ipv4Addr::UNSPECIFIED);
        let long = format!("http://10.0.0.5:8080/{}", "x".repeat(200));
        assert_eq!(
            reply(
                &req,
                &client,
                &boot(BootAnswer::Script { url: long.clone() }),
                &ctx
            ),
            Err(ReplyError::FileTooLong(long.len()))
        );
    }

    #[test]
    fn silence_and_address_only() {
        let req = pxe(MAC, 0, "PXEClient");
        let client = classify(&req).unwrap();
        let proxy = ReplyContext {
            server_ip: SERVER,
            lease: None,
        };
        let silent = DhcpDecision::Silent { reason: "x".into() };
        assert_eq!(reply(&req, &client, &silent, &proxy), Ok(None));
        assert_eq!(
            reply(&req, &client, &DhcpDecision::AddressOnly, &proxy),
            Ok(None)
        );
        let auth = ReplyContext {
            server_ip: SERVER,
            lease: Some(lease()),
        };
        let out = reply(&req, &client, &DhcpDecision::AddressOnly, &auth)
            .unwrap()
            .unwrap();
        assert!(out.opts().get(OptionCode::BootfileName).is_none());
        assert_eq!(out.yiaddr(), Ipv4Addr::new(10, 0, 0, 100));
        assert_eq!(netmask(0), Ipv4Addr::UNSPECIFIED);
        assert_eq!(netmask(32), Ipv4Addr::BROADCAST);
    }

    #[test]
    fn nak_says_why_and_carries_no_address() {
        let mut req = pxe(MAC, 0, "PXEClient");
        req.set_giaddr(Ipv4Addr::new(10, 1, 0, 1));
        let msg = wire(nak(&req, SERVER, "10.9.9.9 is not on network 10.0.0.0/24"));
        assert_eq!(msg.opts().msg_type(), Some(v4::MessageType::Nak));
        assert!(msg.yiaddr().is_unspecified());
        assert!(msg.flags().broadcast());
        assert_eq!(msg.xid(), req.xid());
        match msg.opts().get(OptionCode::Message) {
            Some(DhcpOption::Message(m)) => assert!(m.contains("not on network")),
            other => panic!("{other:?}"),
        }
    }
}
