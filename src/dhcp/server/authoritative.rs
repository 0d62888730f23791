//! The authoritative server's answer to one request: the network the
//! client is on, the boot decision, the lease (`super::super::lease`)
//! offered, bound, released or declined, and the reply.

use super::*;

impl DhcpService {
    pub(super) async fn authoritative(
        &self,
        policy: &Policy,
        (msg, client, src): (&Message, &ClientInfo, SocketAddr),
        known: Known,
        server_ip: Ipv4Addr,
        reservation: Option<(i64, Ipv4Addr)>,
    ) -> anyhow::Result<Answer> {
        let Some(leases) = &self.leases else {
            return Ok(silent("no lease store"));
        };
        // The link the client is on: what the relay selects (option 118),
        // else the relay's address, else ours on the receiving interface.
        let (on, what) = match (client.subnet_selection, client.giaddr) {
            (Some(ip), _) => (ip, "the subnet selected by the relay (option 118)"),
            (None, Some(ip)) => (ip, "the relay"),
            (None, None) => (server_ip, "our address on this interface"),
        };
        let Some(net) = self.networks.containing(&*self.inventory, on).await? else {
            return Ok(silent(format!(
                "no network in the inventory contains {on} ({what})"
            )));
        };
        let reserved = reservation.filter(|(n, _)| *n == net.id).map(|(_, ip)| ip);
        let now = unix_now();
        let decision = decide(policy, client, known);
        let boot_detail = match &decision {
            DhcpDecision::Silent { reason } => Some(Err(reason.clone())),
            DhcpDecision::AddressOnly => None,
            DhcpDecision::Boot { answer, purpose } => Some(Ok(describe_answer(answer, *purpose))),
        };
        let boot_detail = match boot_detail {
            Some(Err(reason)) => {
                if matches!(client.kind, MessageKind::Release | MessageKind::Decline) {
                    None
                } else {
                    return Ok(silent(reason));
                }
            }
            Some(Ok(d)) => Some(d),
            None => None,
        };
        // Checked when the network was written; one that no longer
        // encodes is left out rather than sent wrong.
        let options: Vec<(u8, Vec<u8>)> = net
            .dhcp_options
            .iter()
            .filter_map(|o| match o.encode() {
                Ok(bytes) => Some((o.code, bytes)),
                Err(e) => {
                    tracing::warn!(network = %net.cidr, option = o.code, error = %e, "a DHCP option of the network is left out");
                    None
                }
            })
            .collect();
        let offer = |ip: Ipv4Addr| LeaseOffer {
            ip,
            prefix_len: net.cidr.prefix_len(),
            router: net.gateway,
            dns: net.nameservers.clone(),
            domain: net.domain.clone(),
            lease_secs: leases.times().lease,
            options: options.clone(),
        };
        let boot_text = boot_detail
            .map(|d| format!(", {d}"))
            .unwrap_or_else(|| ", no boot information".to_string());
        let ip = match client.kind {
            MessageKind::Discover => {
                match leases
                    .offer(
                        &net,
                        server_ip,
                        client.mac,
                        reserved,
                        client.requested_ip,
                        now,
                    )
                    .await?
                {
                    Some(ip) => ip,
                    None => {
                        return Ok(silent(format!(
                            "no free address in network {} (pool exhausted or no pool)",
                            net.cidr
                        )));
                    }
                }
            }
            MessageKind::Request => {
                if let Some(chosen) = client.server_id
                    && chosen != server_ip
                {
                    // The client took another server's offer: free ours.
                    if let Some(ip) = leases.offered_to(&net, client.mac).await? {
                        leases.release(&net, ip, client.mac, now).await?;
                    }
                    return Ok(silent(format!("the client chose server {chosen}")));
                }
                let Some(ip) = client.requested_ip.or(client.ciaddr) else {
                    return Ok(silent("REQUEST names no address (no option 50, no ciaddr)"));
                };
                match leases
                    .request(&net, server_ip, client.mac, reserved, ip, now)
                    .await?
                {
                    RequestAnswer::Ack(ip) => ip,
                    RequestAnswer::Nak(why) => {
                        return Ok(Answer::Reply {
                            msg: nak(msg, server_ip, &why),
                            detail: format!("NAK: {why}"),
                            refused: true,
                        });
                    }
                }
            }
            MessageKind::Release => {
                if client.server_id.is_some_and(|s| s != server_ip) {
                    return Ok(silent("RELEASE for another server"));
                }
                let Some(ip) = client.ciaddr else {
                    return Ok(silent("RELEASE without ciaddr"));
                };
                if let Err(why) = bootloader_core::dhcp::trust::release_source(client, ip, src) {
                    return Ok(silent(why));
                }
                let released = leases.release(&net, ip, client.mac, now).await?;
                return Ok(silent(if released {
                    format!("released {ip}")
                } else {
                    format!("RELEASE of {ip}, which this client does not hold")
                }));
            }
            MessageKind::Decline => {
                if client.server_id.is_some_and(|s| s != server_ip) {
                    return Ok(silent("DECLINE for another server"));
                }
                let Some(ip) = client.requested_ip else {
                    return Ok(silent("DECLINE without option 50"));
                };
                if reserved == Some(ip) {
                    // Anyone can send a DECLINE with the owner's MAC; a
                    // reservation is the machine's whatever it says.
                    tracing::warn!(mac = %client.mac, %ip, "DECLINE of a reserved address: it stays reserved (is another host using it?)");
                    return Ok(silent(format!(
                        "DECLINE of {ip}, this client's reserved address: the reservation stays (check for an address conflict)"
                    )));
                }
                let declined = leases.decline(&net, ip, client.mac, now).await?;
                return Ok(silent(if declined {
                    format!("{ip} declined (in use on the network); kept out of the pool")
                } else {
                    format!("DECLINE of {ip}, which this client does not hold")
                }));
            }
            MessageKind::Inform => client.ciaddr.unwrap_or(Ipv4Addr::UNSPECIFIED),
        };
        let ctx = ReplyContext {
            server_ip,
            lease: Some(offer(ip)),
        };
        match reply(msg, client, &decision, &ctx)? {
            Some(out) => Ok(Answer::Reply {
                detail: format!("{} {ip}{boot_text}", kind_name(&out)),
                msg: out,
                refused: false,
            }),
            None => Ok(silent("nothing to answer")),
        }
    }
}
