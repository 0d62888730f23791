//! How a request, its boot answer and the reply read in the timeline and
//! the logs.

use super::*;

/// The MAC of a packet too broken to classify, if it has one.
pub(super) fn raw_mac(bytes: &[u8]) -> Option<MacAddr> {
    // htype 1 (Ethernet), hlen 6, chaddr at offset 28.
    if bytes.len() >= 34 && bytes[1] == 1 && bytes[2] == 6 {
        let mut m = [0u8; 6];
        m.copy_from_slice(&bytes[28..34]);
        Some(MacAddr::new(m))
    } else {
        None
    }
}

/// How a request reads in the timeline.
pub fn describe(client: &ClientInfo) -> String {
    let kind = match client.kind {
        MessageKind::Discover => "DHCPDISCOVER",
        MessageKind::Request => "DHCPREQUEST",
        MessageKind::Decline => "DHCPDECLINE",
        MessageKind::Release => "DHCPRELEASE",
        MessageKind::Inform => "DHCPINFORM",
    };
    let mut s = kind.to_string();
    if let Some(firmware) = client.firmware {
        s.push_str(&format!(" arch={}", firmware.label()));
    }
    match &client.vendor_class {
        VendorClass::PxeClient => s.push_str(" vendor=PXEClient"),
        VendorClass::HttpClient => s.push_str(" vendor=HTTPClient"),
        VendorClass::Other(v) => s.push_str(&format!(" vendor={v:?}")),
        VendorClass::Absent => {}
    }
    if client.is_ipxe {
        s.push_str(" ipxe");
    }
    if let Some(ip) = client.requested_ip {
        s.push_str(&format!(" requested={ip}"));
    }
    if let Some(ip) = client.ciaddr {
        s.push_str(&format!(" ciaddr={ip}"));
    }
    if let Some(ip) = client.server_id {
        s.push_str(&format!(" server={ip}"));
    }
    if let Some(ip) = client.giaddr {
        s.push_str(&format!(" relay={ip}"));
    }
    if let Some(ip) = client.subnet_selection {
        s.push_str(&format!(" subnet={ip}"));
    }
    s
}

pub(super) fn describe_answer(answer: &BootAnswer, purpose: Purpose) -> String {
    let why = match purpose {
        Purpose::Deploy => "deployment",
        Purpose::LocalBoot => "local boot",
    };
    match answer {
        BootAnswer::Tftp { filename } => format!("tftp {filename} ({why})"),
        BootAnswer::HttpUrl { url } => format!("http boot {url} ({why})"),
        BootAnswer::Script { url } => format!("ipxe script {url} ({why})"),
    }
}

pub(super) fn kind_name(msg: &Message) -> &'static str {
    use dhcproto::v4::MessageType;
    match msg.opts().msg_type() {
        Some(MessageType::Offer) => "OFFER",
        Some(MessageType::Ack) => "ACK",
        Some(MessageType::Nak) => "NAK",
        _ => "reply",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn raw_mac_only_from_ethernet_packets() {
        let mut p = vec![0u8; 240];
        p[1] = 1;
        p[2] = 6;
        p[28..34].copy_from_slice(&[0x52, 0x54, 0, 1, 2, 3]);
        assert_eq!(raw_mac(&p).unwrap().to_string(), "52:54:00:01:02:03");
        p[1] = 6;
        assert_eq!(raw_mac(&p), None);
        assert_eq!(raw_mac(&p[..20]), None);
    }
}
