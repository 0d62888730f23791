//! The machines' DHCP: one socket for relayed rounds (we play the relay
//! agent, giaddr set, as a switch's DHCP relay would) and one for broadcast
//! rounds on the client link, shared by every machine; answers are handed
//! to the machine waiting for their xid.

use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use dhcproto::v4::{
    Architecture, DhcpOption, Flags, Message, MessageType, Opcode, OptionCode, UnknownOption,
};
use dhcproto::{Decodable, Decoder, Encodable};
use tokio::net::UdpSocket;
use tokio::sync::mpsc;

/// Who is asking: the firmware's PXE ROM, or iPXE once it runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Asker {
    PxeRom,
    Ipxe,
}

/// How the machine's packets reach the server.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Path {
    Relayed,
    Broadcast,
}

/// What a finished DHCP round gave the machine.
#[derive(Debug)]
pub struct Lease {
    pub ip: Ipv4Addr,
    pub next_server: Ipv4Addr,
    pub file: String,
    pub retransmits: u32,
    /// NAKs that sent the machine back to DISCOVER.
    pub naks: u32,
}

pub struct Dhcp {
    relayed: Option<(UdpSocket, Ipv4Addr, SocketAddr)>,
    broadcast: Option<UdpSocket>,
    waiting: Mutex<HashMap<u32, mpsc::UnboundedSender<Message>>>,
    /// Replies no machine was waiting for (late duplicates, other xids).
    pub stray: AtomicU64,
}

impl Dhcp {
    /// `relay`: our relay agent's address (bound on port 67) and the
    /// server's; `broadcast`: the interface to broadcast on (bound on 68).
    pub fn open(
        relay: Option<(Ipv4Addr, SocketAddr)>,
        broadcast: Option<&str>,
    ) -> Result<Arc<Dhcp>, String> {
        let relayed = match relay {
            Some((agent, server)) => {
                let s = bound(SocketAddrV4::new(agent, 67), None)?;
                Some((s, agent, server))
            }
            None => None,
        };
        let broadcast = match broadcast {
            Some(iface) => Some(bound(
                SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 68),
                Some(iface),
            )?),
            None => None,
        };
        let dhcp = Arc::new(Dhcp {
            relayed,
            broadcast,
            waiting: Mutex::new(HashMap::new()),
            stray: AtomicU64::new(0),
        });
        for which in [Path::Relayed, Path::Broadcast] {
            if dhcp.socket(which).is_some() {
                let d = Arc::clone(&dhcp);
                tokio::spawn(async move { d.receive(which).await });
            }
        }
        Ok(dhcp)
    }

    fn socket(&self, path: Path) -> Option<&UdpSocket> {
        match path {
            Path::Relayed => self.relayed.as_ref().map(|(s, _, _)| s),
            Path::Broadcast => self.broadcast.as_ref(),
        }
    }

    async fn receive(&self, path: Path) {
        let Some(socket) = self.socket(path) else {
            return;
        };
        let mut buf = vec![0u8; 4096];
        loop {
            let Ok((n, _)) = socket.recv_from(&mut buf).await else {
                continue;
            };
            let Ok(msg) = Message::decode(&mut Decoder::new(&buf[..n])) else {
                self.stray.fetch_add(1, Ordering::Relaxed);
                continue;
            };
            if msg.opcode() != Opcode::BootReply {
                continue;
            }
            let waiting = self.waiting.lock().unwrap_or_else(|e| e.into_inner());
            match waiting.get(&msg.xid()) {
                Some(tx) if tx.send(msg).is_ok() => {}
                _ => {
                    self.stray.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
    }

    /// One DISCOVER/OFFER/REQUEST/ACK exchange, retransmitting after each
    /// of `waits` as the firmware does; a NAK starts over.
    pub async fn dora(
        &self,
        mac: [u8; 6],
        xid: u32,
        asker: Asker,
        path: Path,
        waits: &[Duration],
    ) -> Result<Lease, String> {
        let (tx, mut rx) = mpsc::unbounded_channel();
        self.waiting
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(xid, tx);
        let outcome = self.exchange(mac, xid, asker, path, waits, &mut rx).await;
        self.waiting
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&xid);
        outcome
    }

    async fn exchange(
        &self,
        mac: [u8; 6],
        xid: u32,
        asker: Asker,
        path: Path,
        waits: &[Duration],
        rx: &mut mpsc::UnboundedReceiver<Message>,
    ) -> Result<Lease, String> {
        // A NAK sends the firmware back to DISCOVER, for as long as its
        // retransmissions would have taken in all.
        let give_up = tokio::time::Instant::now() + waits.iter().sum::<Duration>();
        let (mut retransmits, mut naks) = (0, 0);
        loop {
            let discover = self.message(mac, xid, asker, path, MessageType::Discover);
            let offer = self
                .ask(
                    &discover,
                    MessageType::Offer,
                    mac,
                    path,
                    waits,
                    rx,
                    &mut retransmits,
                )
                .await
                .map_err(|e| format!("DISCOVER: {e}"))?;
            let mut request = self.message(mac, xid, asker, path, MessageType::Request);
            request
                .opts_mut()
                .insert(DhcpOption::RequestedIpAddress(offer.yiaddr()));
            if let Some(DhcpOption::ServerIdentifier(sid)) =
                offer.opts().get(OptionCode::ServerIdentifier)
            {
                request
                    .opts_mut()
                    .insert(DhcpOption::ServerIdentifier(*sid));
            }
            let ack = self
                .ask(
                    &request,
                    MessageType::Ack,
                    mac,
                    path,
                    waits,
                    rx,
                    &mut retransmits,
                )
                .await
                .map_err(|e| format!("REQUEST: {e}"))?;
            if ack.opts().msg_type() != Some(MessageType::Nak) {
                return Ok(lease(&ack, &offer, retransmits, naks));
            }
            naks += 1;
            if tokio::time::Instant::now() >= give_up {
                let said = match ack.opts().get(OptionCode::Message) {
                    Some(DhcpOption::Message(m)) => m.clone(),
                    _ => String::new(),
                };
                return Err(format!("NAK {naks} times (last: {said})"));
            }
        }
    }

    /// Sends `msg` and waits for a reply of `want` (or a NAK, for a
    /// REQUEST) for our MAC, sending again after each wait.
    #[allow(clippy::too_many_arguments)]
    async fn ask(
        &self,
        msg: &Message,
        want: MessageType,
        mac: [u8; 6],
        path: Path,
        waits: &[Duration],
        rx: &mut mpsc::UnboundedReceiver<Message>,
        retransmits: &mut u32,
    ) -> Result<Message, String> {
        let bytes = msg.to_vec().map_err(|e| format!("encode: {e}"))?;
        for (n, wait) in waits.iter().enumerate() {
            if n > 0 {
                *retransmits += 1;
            }
            self.send(&bytes, path).await?;
            let deadline = tokio::time::Instant::now() + *wait;
            loop {
                match tokio::time::timeout_at(deadline, rx.recv()).await {
                    Err(_) => break,
                    Ok(None) => return Err("receiver gone".into()),
                    Ok(Some(reply)) => {
                        let kind = reply.opts().msg_type();
                        let ours = reply.chaddr().get(..6) == Some(&mac[..]);
                        let nak = want == MessageType::Ack && kind == Some(MessageType::Nak);
                        if ours && (kind == Some(want) || nak) {
                            return Ok(reply);
                        }
                    }
                }
            }
        }
        Err(format!("no answer after {} tries", waits.len()))
    }

    async fn send(&self, bytes: &[u8], path: Path) -> Result<(), String> {
        let sent = match path {
            Path::Relayed => match &self.relayed {
                Some((s, _, server)) => s.send_to(bytes, server).await,
                None => return Err("no relay socket".into()),
            },
            Path::Broadcast => match &self.broadcast {
                Some(s) => s.send_to(bytes, (Ipv4Addr::BROADCAST, 67)).await,
                None => return Err("no broadcast socket".into()),
            },
        };
        sent.map(|_| ()).map_err(|e| format!("send: {e}"))
    }

    /// The packet a PXE ROM or iPXE sends, with the options they send.
    fn message(
        &self,
        mac: [u8; 6],
        xid: u32,
        asker: Asker,
        path: Path,
        kind: MessageType,
    ) -> Message {
        let mut m = Message::default();
        m.set_opcode(Opcode::BootRequest)
            .set_xid(xid)
            .set_chaddr(&mac);
        match (path, &self.relayed) {
            (Path::Relayed, Some((_, agent, _))) => {
                m.set_giaddr(*agent).set_hops(1).set_flags(Flags::default());
            }
            _ => {
                m.set_flags(Flags::default().set_broadcast());
            }
        }
        let opts = m.opts_mut();
        opts.insert(DhcpOption::MessageType(kind));
        opts.insert(DhcpOption::ClassIdentifier(
            b"PXEClient:Arch:00000:UNDI:002001".to_vec(),
        ));
        opts.insert(DhcpOption::ClientSystemArchitecture(Architecture::from(0)));
        opts.insert(DhcpOption::ClientNetworkInterface(1, 2, 1));
        let mut guid = vec![0u8; 17];
        guid[11..].copy_from_slice(&mac);
        opts.insert(DhcpOption::ClientMachineIdentifier(guid));
        let wanted: &[u8] = match asker {
            Asker::PxeRom => &[
                1, 3, 6, 43, 54, 60, 66, 67, 128, 129, 130, 131, 132, 133, 134, 135,
            ],
            Asker::Ipxe => &[1, 3, 6, 7, 12, 15, 17, 26, 43, 60, 66, 67, 119, 175, 203],
        };
        opts.insert(DhcpOption::ParameterRequestList(
            wanted.iter().map(|c| OptionCode::from(*c)).collect(),
        ));
        match asker {
            Asker::PxeRom => {
                opts.insert(DhcpOption::MaxMessageSize(1260));
            }
            Asker::Ipxe => {
                opts.insert(DhcpOption::MaxMessageSize(1472));
                opts.insert(DhcpOption::UserClass(b"iPXE".to_vec()));
                // iPXE's feature list: HTTP (0x13) and DNS (0x17).
                opts.insert(DhcpOption::Unknown(UnknownOption::new(
                    OptionCode::from(175),
                    vec![0x13, 1, 1, 0x17, 1, 1],
                )));
            }
        }
        m
    }
}

fn lease(ack: &Message, offer: &Message, retransmits: u32, naks: u32) -> Lease {
    let text = |b: &[u8]| {
        let end = b.iter().position(|c| *c == 0).unwrap_or(b.len());
        String::from_utf8_lossy(&b[..end]).into_owned()
    };
    // The boot file and server as the firmware takes them: the header's
    // fields, else options 67 and 66, from the ACK or else the OFFER.
    let file = [ack, offer]
        .iter()
        .map(|m| match m.fname().map(text).filter(|f| !f.is_empty()) {
            Some(f) => f,
            None => match m.opts().get(OptionCode::BootfileName) {
                Some(DhcpOption::BootfileName(b)) => text(b),
                _ => String::new(),
            },
        })
        .find(|f| !f.is_empty())
        .unwrap_or_default();
    let next_server = [ack, offer]
        .iter()
        .find_map(|m| {
            if !m.siaddr().is_unspecified() {
                return Some(m.siaddr());
            }
            match m.opts().get(OptionCode::TFTPServerName) {
                Some(DhcpOption::TFTPServerName(b)) => text(b).parse().ok(),
                _ => None,
            }
        })
        .unwrap_or(Ipv4Addr::UNSPECIFIED);
    Lease {
        ip: ack.yiaddr(),
        next_server,
        file,
        retransmits,
        naks,
    }
}

fn bound(addr: SocketAddrV4, device: Option<&str>) -> Result<UdpSocket, String> {
    use socket2::{Domain, Protocol, Socket, Type};
    let s = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP))
        .map_err(|e| format!("socket: {e}"))?;
    s.set_reuse_address(true).map_err(|e| e.to_string())?;
    if let Some(dev) = device {
        s.set_broadcast(true).map_err(|e| e.to_string())?;
        s.bind_device(Some(dev.as_bytes()))
            .map_err(|e| format!("bind to device {dev}: {e}"))?;
    }
    // Many machines' answers can arrive at once.
    let _ = s.set_recv_buffer_size(8 << 20);
    s.bind(&addr.into())
        .map_err(|e| format!("bind {addr}: {e}"))?;
    s.set_nonblocking(true).map_err(|e| e.to_string())?;
    UdpSocket::from_std(s.into()).map_err(|e| e.to_string())
}
