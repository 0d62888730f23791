//! The DHCP sockets: port 67 on each boot interface (SO_BINDTODEVICE), and
//! 4011 in proxy mode, all bound before anything serves; where a reply is
//! sent, and the ARP entry that lets it be unicast.

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::time::Duration;

use anyhow::{Context, bail};
use dhcproto::v4::Message;
use socket2::{Domain, Protocol, Socket, Type};
use tokio::net::UdpSocket;

use crate::config::DhcpSettings;
use bootloader_core::dhcp::decide::Mode;
use bootloader_core::model::MacAddr;

/// Which of the two DHCP ports a socket serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Port {
    /// 67: DISCOVER/REQUEST/... from clients and relays.
    Main,
    /// 4011: PXE clients asking a ProxyDHCP server for boot information.
    Proxy,
}

/// One bound socket and what it stands for.
pub struct DhcpSocket {
    pub socket: UdpSocket,
    pub interface: Option<String>,
    /// Our address on that interface: server identifier and next-server.
    pub server_ip: Ipv4Addr,
    pub port: Port,
}

fn bind_one(interface: Option<&str>, addr: SocketAddrV4, what: &str) -> anyhow::Result<UdpSocket> {
    let hint = |e: &std::io::Error| match e.kind() {
        std::io::ErrorKind::PermissionDenied => {
            "; ports below 1024 and binding to an interface need root, or CAP_NET_BIND_SERVICE and CAP_NET_RAW"
        }
        std::io::ErrorKind::AddrInUse => {
            "; another DHCP server (dnsmasq, isc-dhcp-server, kea) holds it"
        }
        _ => "",
    };
    let on = interface.map(|i| format!(" on {i}")).unwrap_or_default();
    let fail =
        |e: std::io::Error| anyhow::anyhow!("cannot bind {what} {addr}{on}: {e}{}", hint(&e));
    let socket = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP)).map_err(fail)?;
    socket.set_reuse_address(true).map_err(fail)?;
    socket.set_broadcast(true).map_err(fail)?;
    if let Some(name) = interface {
        socket.bind_device(Some(name.as_bytes())).map_err(fail)?;
    }
    socket.bind(&SocketAddr::V4(addr).into()).map_err(fail)?;
    socket.set_nonblocking(true).map_err(fail)?;
    UdpSocket::from_std(socket.into()).map_err(|e| anyhow::anyhow!("{what}: {e}"))
}

/// The first IPv4 address of `interface`, or an error naming the problem.
fn interface_address(interface: &str) -> anyhow::Result<Option<Ipv4Addr>> {
    let addrs = nix::ifaddrs::getifaddrs().context("cannot list network interfaces")?;
    let mut exists = false;
    for a in addrs.filter(|a| a.interface_name == interface) {
        exists = true;
        if let Some(sin) = a.address.as_ref().and_then(|s| s.as_sockaddr_in()) {
            return Ok(Some(sin.ip()));
        }
    }
    if !exists {
        bail!("dhcp.interfaces: interface {interface:?} does not exist (see `ip link`)");
    }
    Ok(None)
}

/// Binds every DHCP socket the settings ask for, before anything serves.
pub fn bind(settings: &DhcpSettings) -> anyhow::Result<Vec<DhcpSocket>> {
    let Some(mode) = settings.mode else {
        return Ok(Vec::new());
    };
    let mut out = Vec::new();
    let mut targets: Vec<(Option<String>, Ipv4Addr)> = Vec::new();
    if settings.interfaces.is_empty() {
        let ip = settings.server_address.unwrap_or(settings.listen);
        targets.push((None, ip));
    }
    for name in &settings.interfaces {
        let ip = match (settings.server_address, interface_address(name)?) {
            (Some(ip), _) | (None, Some(ip)) => ip,
            (None, None) => bail!(
                "dhcp.interfaces: {name} has no IPv4 address; give it one or set dhcp.server_address"
            ),
        };
        targets.push((Some(name.clone()), ip));
    }
    for (interface, server_ip) in targets {
        let main = bind_one(
            interface.as_deref(),
            SocketAddrV4::new(settings.listen, settings.port),
            "DHCP (dhcp.port)",
        )?;
        out.push(DhcpSocket {
            socket: main,
            interface: interface.clone(),
            server_ip,
            port: Port::Main,
        });
        if mode == Mode::Proxy {
            let proxy = bind_one(
                interface.as_deref(),
                SocketAddrV4::new(settings.listen, settings.proxy_port),
                "ProxyDHCP (dhcp.proxy_port)",
            )?;
            out.push(DhcpSocket {
                socket: proxy,
                interface,
                server_ip,
                port: Port::Proxy,
            });
        }
    }
    Ok(out)
}

/// Where a reply goes (RFC 2131 4.1): to the relay, to the client's
/// address when it has one, else broadcast on the interface.
pub(super) fn destination(
    request: &Message,
    src: SocketAddr,
    port: Port,
    is_nak: bool,
    client_port: u16,
) -> SocketAddr {
    if port == Port::Proxy {
        return src;
    }
    let giaddr = request.giaddr();
    if !giaddr.is_unspecified() {
        // Relays send from port 67; a relay that uses another port
        // (RFC 8357) gets the answer there.
        let port = match src {
            SocketAddr::V4(s) if *s.ip() == giaddr => s.port(),
            _ => 67,
        };
        return SocketAddr::from((giaddr, port));
    }
    if !is_nak && !request.ciaddr().is_unspecified() {
        return SocketAddr::from((request.ciaddr(), client_port));
    }
    SocketAddr::from((Ipv4Addr::BROADCAST, client_port))
}

/// Adds (or refreshes) the ARP entry `ip -> mac` on `interface`, so that a
/// reply can be unicast to a client that has no address yet. Needs
/// CAP_NET_ADMIN; bounded in time.
pub(super) async fn neighbour(interface: &str, ip: Ipv4Addr, mac: MacAddr) -> anyhow::Result<()> {
    let mut cmd = tokio::process::Command::new("ip");
    cmd.args([
        "neigh",
        "replace",
        &ip.to_string(),
        "lladdr",
        &mac.to_string(),
    ])
    .args(["dev", interface, "nud", "reachable"])
    .stdin(std::process::Stdio::null())
    .kill_on_drop(true);
    let out = tokio::time::timeout(Duration::from_secs(2), cmd.output())
        .await
        .context("`ip neigh replace` timed out")?
        .context("cannot run `ip`")?;
    if !out.status.success() {
        bail!(
            "`ip neigh replace` failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use dhcproto::v4::Flags;

    fn request(giaddr: Ipv4Addr, ciaddr: Ipv4Addr) -> Message {
        let mut m = Message::default();
        m.set_giaddr(giaddr)
            .set_ciaddr(ciaddr)
            .set_flags(Flags::default());
        m
    }

    #[test]
    fn replies_go_to_the_relay_the_client_or_broadcast() {
        let zero = Ipv4Addr::UNSPECIFIED;
        let relay = Ipv4Addr::new(10, 1, 0, 1);
        let client = Ipv4Addr::new(10, 0, 0, 50);
        let src67: SocketAddr = "10.1.0.1:67".parse().unwrap();
        let from_client: SocketAddr = "10.0.0.50:68".parse().unwrap();
        let bcast: SocketAddr = "255.255.255.255:68".parse().unwrap();
        let cases = [
            (request(relay, zero), src67, Port::Main, false, src67),
            // A relay on another port (RFC 8357, or a test) gets it there.
            (
                request(relay, zero),
                "10.1.0.1:16767".parse().unwrap(),
                Port::Main,
                false,
                "10.1.0.1:16767".parse().unwrap(),
            ),
            (
                request(zero, zero),
                "0.0.0.0:68".parse().unwrap(),
                Port::Main,
                false,
                bcast,
            ),
            (
                request(zero, client),
                from_client,
                Port::Main,
                false,
                from_client,
            ),
            // A NAK to a renewing client is broadcast: its address is void.
            (request(zero, client), from_client, Port::Main, true, bcast),
            // Port 4011 answers where the request came from.
            (
                request(zero, client),
                "10.0.0.50:4011".parse().unwrap(),
                Port::Proxy,
                false,
                "10.0.0.50:4011".parse().unwrap(),
            ),
        ];
        for (req, src, port, nak, want) in cases {
            assert_eq!(
                destination(&req, src, port, nak, 68),
                want,
                "{src} {port:?} {nak}"
            );
        }
    }
}
