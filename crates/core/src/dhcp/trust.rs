//! What a DHCP request may claim about where it comes from: which relays
//! may choose a subnet (option 118) or relay at all, and who may release an
//! address. Pure: the server calls these before it decides anything.

use std::net::{Ipv4Addr, SocketAddr};

use super::classify::ClientInfo;

/// What a request may say about its link: option 118 (subnet selection)
/// is a relay's to give, so a client on the boot VLAN cannot pick another
/// location's network with it; with `trusted` relays configured, requests
/// relayed by others are refused.
pub fn trust_relay(client: &mut ClientInfo, trusted: &[Ipv4Addr]) -> Result<(), String> {
    match client.giaddr {
        None => {
            client.subnet_selection = None;
            Ok(())
        }
        Some(relay) if !trusted.is_empty() && !trusted.contains(&relay) => Err(format!(
            "relayed by {relay}, which is not in dhcp.trusted_relays: ignored"
        )),
        Some(_) => Ok(()),
    }
}

/// A client releases from the address it holds (RFC 2131 4.4.6: the
/// RELEASE is unicast from ciaddr); only a relay speaks for another.
pub fn release_source(client: &ClientInfo, ip: Ipv4Addr, src: SocketAddr) -> Result<(), String> {
    if client.giaddr.is_none() && src.ip() != std::net::IpAddr::V4(ip) {
        return Err(format!(
            "RELEASE of {ip} sent from {}: ignored (a client releases from its own address)",
            src.ip()
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use dhcproto::v4::{Flags, Message};

    fn request(giaddr: Ipv4Addr, ciaddr: Ipv4Addr) -> Message {
        let mut m = Message::default();
        m.set_giaddr(giaddr)
            .set_ciaddr(ciaddr)
            .set_flags(Flags::default());
        m
    }

    #[test]
    fn only_relays_select_a_subnet_and_untrusted_relays_are_refused() {
        let mut m = request(Ipv4Addr::UNSPECIFIED, Ipv4Addr::UNSPECIFIED);
        m.set_chaddr(&[0x52, 0x54, 0, 1, 2, 3]);
        m.opts_mut().insert(dhcproto::v4::DhcpOption::MessageType(
            dhcproto::v4::MessageType::Discover,
        ));
        m.opts_mut()
            .insert(dhcproto::v4::DhcpOption::SubnetSelection(Ipv4Addr::new(
                10, 9, 0, 0,
            )));
        let direct = crate::dhcp::classify::classify(&m).unwrap();
        let relay = Ipv4Addr::new(10, 1, 0, 1);
        m.set_giaddr(relay);
        let relayed = crate::dhcp::classify::classify(&m).unwrap();

        let mut c = direct.clone();
        assert_eq!(trust_relay(&mut c, &[]), Ok(()));
        assert_eq!(c.subnet_selection, None, "a client's own 118 is ignored");
        let mut c = relayed.clone();
        assert_eq!(trust_relay(&mut c, &[]), Ok(()));
        assert_eq!(c.subnet_selection, Some(Ipv4Addr::new(10, 9, 0, 0)));
        let mut c = relayed.clone();
        assert_eq!(trust_relay(&mut c, &[relay]), Ok(()));
        let mut c = relayed;
        assert!(trust_relay(&mut c, &[Ipv4Addr::new(10, 2, 0, 1)]).is_err());
        let mut c = direct;
        assert_eq!(
            trust_relay(&mut c, &[relay]),
            Ok(()),
            "direct clients are served"
        );
    }

    #[test]
    fn a_release_comes_from_its_address_or_a_relay() {
        let mut m = request(Ipv4Addr::UNSPECIFIED, Ipv4Addr::new(10, 0, 0, 50));
        m.set_chaddr(&[0x52, 0x54, 0, 1, 2, 3]);
        m.opts_mut().insert(dhcproto::v4::DhcpOption::MessageType(
            dhcproto::v4::MessageType::Release,
        ));
        let direct = crate::dhcp::classify::classify(&m).unwrap();
        m.set_giaddr(Ipv4Addr::new(10, 1, 0, 1));
        let relayed = crate::dhcp::classify::classify(&m).unwrap();
        let ip = Ipv4Addr::new(10, 0, 0, 50);
        let own: SocketAddr = "10.0.0.50:68".parse().unwrap();
        let other: SocketAddr = "10.0.0.77:68".parse().unwrap();
        let relay: SocketAddr = "10.1.0.1:67".parse().unwrap();
        assert_eq!(release_source(&direct, ip, own), Ok(()));
        assert!(release_source(&direct, ip, other).is_err());
        assert_eq!(release_source(&relayed, ip, relay), Ok(()));
    }
}
