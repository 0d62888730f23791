//! The DHCP server over loopback, as a relay would speak to it (giaddr
//! set, unicast), against SQLite and PostgreSQL: the whole exchange,
//! reservations, pool exhaustion, NAKs, release, decline, ProxyDHCP on
//! 4011, and the timeline an operator reads afterwards. Broadcast and real
//! firmware are in `boot_e2e.rs` and `dhcp_clients.rs` (network
//! namespaces).

use crate::common;

use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use common::{Backend, Daemon, TestStore};
use dhcproto::v4::{Architecture, DhcpOption, Flags, Message, MessageType, Opcode, OptionCode};
use dhcproto::{Decodable, Encodable};
use reqwest::StatusCode;
use serde_json::{Value, json};
use tokio::net::UdpSocket;

/// The relay's address, where replies go: loopback only.
const RELAY: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 1);
/// The client link the relay selects with option 118 (RFC 3011). No
/// packet is ever sent to it.
const LINK: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 1);

fn free_udp_port() -> u16 {
    let s = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    s.local_addr().unwrap().port()
}

struct Env {
    ts: TestStore,
    d: Daemon,
    server: SocketAddr,
    proxy: SocketAddr,
    relay: UdpSocket,
}

async fn start(backend: Backend, mode: &str) -> Env {
    start_with(backend, mode, "").await
}

/// `config` is the config file's text (for what the environment cannot
/// say, such as quirk rules).
async fn start_with(backend: Backend, mode: &str, config: &str) -> Env {
    let mut ts = TestStore::new(backend).await;
    std::fs::write(ts.dir.path().join("bootloader.toml"), config).unwrap();
    let port = free_udp_port();
    let proxy_port = free_udp_port();
    for (k, v) in [
        ("BOOTLOADER_DHCP_MODE", mode.to_string()),
        ("BOOTLOADER_DHCP_LISTEN", "127.0.0.1".to_string()),
        ("BOOTLOADER_DHCP_PORT", port.to_string()),
        ("BOOTLOADER_DHCP_PROXY_PORT", proxy_port.to_string()),
        ("BOOTLOADER_DHCP_LEASE_TIME", "600".to_string()),
        ("BOOTLOADER_URL", "http://127.0.0.1:8080".to_string()),
    ] {
        ts.env.insert(k.to_string(), v);
    }
    let d = Daemon::start(&ts, None).await;
    let (s, b) = d.post("/locations", json!({"name": "lab"})).await;
    assert_eq!(s, StatusCode::CREATED, "{b}");
    let (s, b) = d
        .post(
            "/networks",
            json!({"location": "lab", "cidr": "10.0.0.0/24", "gateway": "10.0.0.1",
                "nameservers": ["10.0.0.53"], "domain": "lab.example.com",
                "pool": {"start": "10.0.0.100", "end": "10.0.0.103"}}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{b}");
    let relay = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    Env {
        ts,
        d,
        server: SocketAddr::from((RELAY, port)),
        proxy: SocketAddr::from((RELAY, proxy_port)),
        relay,
    }
}

impl Env {
    async fn stop(self) {
        self.d.stop().await;
        self.ts.drop_database().await;
    }

    /// Sends `msg` to `to` and waits for one answer, or `None` after a
    /// second of silence.
    async fn exchange(&self, to: SocketAddr, msg: &Message) -> Option<Message> {
        self.relay
            .send_to(&msg.to_vec().unwrap(), to)
            .await
            .unwrap();
        let mut buf = [0u8; 1500];
        match tokio::time::timeout(Duration::from_secs(1), self.relay.recv_from(&mut buf)).await {
            Ok(Ok((n, _))) => {
                Some(Message::decode(&mut dhcproto::Decoder::new(&buf[..n])).unwrap())
            }
            _ => None,
        }
    }

    async fn send(&self, msg: &Message) -> Option<Message> {
        self.exchange(self.server, msg).await
    }

    async fn timeline(&self, mac: &str) -> Vec<Value> {
        let (s, b) = self.d.get(&format!("/timeline?mac={mac}")).await;
        assert_eq!(s, StatusCode::OK, "{b}");
        b["events"].as_array().cloned().unwrap_or_default()
    }

    /// Waits until the timeline of `mac` has `n` events (it is written
    /// asynchronously) and returns them, newest first.
    async fn wait_timeline(&self, mac: &str, n: usize) -> Vec<Value> {
        for _ in 0..100 {
            let events = self.timeline(mac).await;
            if events.len() >= n {
                return events;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!(
            "timeline of {mac} never reached {n} events: {:?}",
            self.timeline(mac).await
        );
    }
}

fn mac_bytes(mac: &str) -> Vec<u8> {
    mac.split(':')
        .map(|h| u8::from_str_radix(h, 16).unwrap())
        .collect()
}

fn base(kind: MessageType, mac: &str, xid: u32) -> Message {
    let mut m = Message::default();
    m.set_opcode(Opcode::BootRequest)
        .set_xid(xid)
        .set_flags(Flags::default())
        .set_giaddr(RELAY)
        .set_chaddr(&mac_bytes(mac));
    m.opts_mut().insert(DhcpOption::MessageType(kind));
    m.opts_mut().insert(DhcpOption::SubnetSelection(LINK));
    m
}

fn pxe(kind: MessageType, mac: &str, xid: u32, arch: u16) -> Message {
    let mut m = base(kind, mac, xid);
    m.opts_mut().insert(DhcpOption::ClassIdentifier(
        format!("PXEClient:Arch:{arch:05}:UNDI:002001").into_bytes(),
    ));
    m.opts_mut()
        .insert(DhcpOption::ClientSystemArchitecture(Architecture::from(
            arch,
        )));
    m
}

fn request_for(offer: &Message, mut req: Message) -> Message {
    req.opts_mut()
        .insert(DhcpOption::RequestedIpAddress(offer.yiaddr()));
    if let Some(DhcpOption::ServerIdentifier(sid)) = offer.opts().get(OptionCode::ServerIdentifier)
    {
        req.opts_mut().insert(DhcpOption::ServerIdentifier(*sid));
    }
    req
}

fn file(m: &Message) -> String {
    let f = m.fname().unwrap_or_default();
    let end = f.iter().position(|b| *b == 0).unwrap_or(f.len());
    String::from_utf8_lossy(&f[..end]).into_owned()
}

async fn add_server(d: &Daemon, fqdn: &str, mac: &str, ipv4: Option<&str>) {
    let mut iface = json!({"name": "eth0", "mac": mac});
    if let Some(ip) = ipv4 {
        iface["ipv4"] = json!(ip);
    }
    let (s, b) = d
        .post(
            "/servers",
            json!({"fqdn": fqdn, "location": "lab", "interfaces": [iface]}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{b}");
}

/// Gives the server an active deployment, as the engine will.
async fn deploy(d: &Daemon, fqdn: &str) -> i64 {
    let profile = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("profiles/payload-1.0.yaml"),
    )
    .unwrap();
    let (s, b) = d.post_text("/profiles", &profile, "application/yaml").await;
    assert!(s == StatusCode::CREATED || s == StatusCode::CONFLICT, "{b}");
    let p = d
        .store
        .profile_by_name_version("payload", "1.0")
        .await
        .unwrap();
    let token = bootloader_core::model::TokenHash(format!("test-token-{fqdn}"));
    d.store
        .create_deployment(&fqdn.parse().unwrap(), p.id, &token)
        .await
        .unwrap()
        .id
}

async fn authoritative_exchange(backend: Backend) {
    let env = start(backend, "authoritative").await;
    let known = "52:54:00:00:00:01";
    add_server(&env.d, "n1.lab.example.com", known, None).await;
    deploy(&env.d, "n1.lab.example.com").await;

    // DISCOVER -> OFFER from the pool with the BIOS boot file.
    let offer = env
        .send(&pxe(MessageType::Discover, known, 1, 0))
        .await
        .expect("an offer");
    assert_eq!(offer.opts().msg_type(), Some(MessageType::Offer));
    let ip = offer.yiaddr();
    assert!((100..=103).contains(&ip.octets()[3]), "{ip}");
    assert_eq!(file(&offer), "undionly.kpxe");
    assert_eq!(offer.siaddr(), RELAY);
    assert_eq!(offer.xid(), 1);
    assert!(matches!(
        offer.opts().get(OptionCode::Router),
        Some(DhcpOption::Router(r)) if r == &vec![LINK]
    ));
    assert!(matches!(
        offer.opts().get(OptionCode::AddressLeaseTime),
        Some(DhcpOption::AddressLeaseTime(600))
    ));

    // REQUEST -> ACK, and the lease is bound in the store.
    let ack = env
        .send(&request_for(&offer, pxe(MessageType::Request, known, 2, 0)))
        .await
        .expect("an ack");
    assert_eq!(ack.opts().msg_type(), Some(MessageType::Ack));
    assert_eq!(ack.yiaddr(), ip);
    let (_, leases) = env.d.get("/leases").await;
    assert_eq!(leases["count"], 1, "{leases}");
    assert_eq!(leases["results"][0]["mac"], known);
    assert_eq!(leases["results"][0]["ip"], ip.to_string());
    assert_eq!(leases["results"][0]["state"], "bound");

    // The same client asking again gets the same address.
    let again = env
        .send(&pxe(MessageType::Discover, known, 3, 0))
        .await
        .unwrap();
    assert_eq!(again.yiaddr(), ip);

    // Renewing (ciaddr set, no server id) is acknowledged.
    let mut renew = base(MessageType::Request, known, 4);
    renew.set_ciaddr(ip);
    let renewed = env.send(&renew).await.expect("renewal ack");
    assert_eq!(renewed.opts().msg_type(), Some(MessageType::Ack));

    // A UEFI client gets ipxe.efi; an iPXE client the script URL.
    let uefi = env
        .send(&pxe(MessageType::Discover, known, 5, 7))
        .await
        .unwrap();
    assert_eq!(file(&uefi), "ipxe.efi");
    let mut ipxe = pxe(MessageType::Discover, known, 6, 0);
    ipxe.opts_mut()
        .insert(DhcpOption::UserClass(b"iPXE".to_vec()));
    let script = env.send(&ipxe).await.unwrap();
    assert_eq!(file(&script), "http://127.0.0.1:8080/boot.ipxe");

    // An unknown client gets an address but no boot file.
    let stranger = "52:54:00:00:00:99";
    let o2 = env
        .send(&pxe(MessageType::Discover, stranger, 7, 0))
        .await
        .unwrap();
    assert_ne!(o2.yiaddr(), ip, "never one address for two clients");
    assert_eq!(file(&o2), "");
    // It may not take the first client's address.
    let mut steal = pxe(MessageType::Request, stranger, 8, 0);
    steal.opts_mut().insert(DhcpOption::RequestedIpAddress(ip));
    let nak = env.send(&steal).await.expect("a NAK");
    assert_eq!(nak.opts().msg_type(), Some(MessageType::Nak));
    // Nor an address outside the network.
    let mut outside = base(MessageType::Request, stranger, 9);
    outside
        .opts_mut()
        .insert(DhcpOption::RequestedIpAddress(Ipv4Addr::new(10, 9, 9, 9)));
    assert_eq!(
        env.send(&outside).await.unwrap().opts().msg_type(),
        Some(MessageType::Nak)
    );
    // A REQUEST for another server's offer gets silence.
    let mut other = request_for(&o2, pxe(MessageType::Request, stranger, 10, 0));
    other
        .opts_mut()
        .insert(DhcpOption::ServerIdentifier(Ipv4Addr::new(127, 0, 0, 9)));
    assert!(env.send(&other).await.is_none());

    // RELEASE frees the address for others.
    let mut release = base(MessageType::Release, known, 11);
    release.set_ciaddr(ip);
    release
        .opts_mut()
        .insert(DhcpOption::ServerIdentifier(RELAY));
    assert!(env.send(&release).await.is_none());
    let l = env.d.store.lease_at(1, ip).await.unwrap().unwrap();
    assert_eq!(l.state, bootloader_core::model::LeaseState::Released);

    // The timeline tells the story, newest first, with reasons.
    let events = env.wait_timeline(known, 7).await;
    let requests: Vec<&str> = events
        .iter()
        .map(|e| e["request"].as_str().unwrap())
        .collect();
    assert!(
        requests.iter().any(|r| r.starts_with("DHCPRELEASE")),
        "{requests:?}"
    );
    let first = events.last().unwrap();
    assert_eq!(first["phase"], "dhcp");
    assert_eq!(first["outcome"], "answered");
    assert!(
        first["detail"].as_str().unwrap().contains("undionly.kpxe"),
        "{first}"
    );
    let (s, by_server) = env.d.get("/servers/n1.lab.example.com/timeline").await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(by_server["events"].as_array().unwrap().len(), events.len());
    let stranger_events = env.wait_timeline(stranger, 1).await;
    assert!(!stranger_events.is_empty());
    let (_, unknown) = env.d.get("/timeline/unknown").await;
    assert_eq!(unknown[0]["mac"], stranger, "{unknown}");
    env.stop().await;
}

async fn reservations_and_exhaustion(backend: Backend) {
    let env = start(backend, "authoritative").await;
    let reserved = "52:54:00:00:01:01";
    add_server(&env.d, "r1.lab.example.com", reserved, Some("10.0.0.20")).await;
    let offer = env
        .send(&pxe(MessageType::Discover, reserved, 1, 0))
        .await
        .unwrap();
    assert_eq!(offer.yiaddr(), Ipv4Addr::new(10, 0, 0, 20));
    // A known machine without a deployment boots iPXE for local boot.
    assert_eq!(file(&offer), "undionly.kpxe");
    // Asking for a pool address instead is refused: it has its own.
    let mut wrong = base(MessageType::Request, reserved, 2);
    wrong
        .opts_mut()
        .insert(DhcpOption::RequestedIpAddress(Ipv4Addr::new(10, 0, 0, 100)));
    assert_eq!(
        env.send(&wrong).await.unwrap().opts().msg_type(),
        Some(MessageType::Nak)
    );

    // The pool has 4 addresses: 4 clients get 4 different ones, the 5th
    // gets silence (with a reason in its timeline).
    let mut given = Vec::new();
    for i in 0..4u32 {
        let mac = format!("52:54:00:00:02:{i:02x}");
        let o = env
            .send(&base(MessageType::Discover, &mac, 100 + i))
            .await
            .expect("offer");
        assert!(
            !given.contains(&o.yiaddr()),
            "address given twice: {}",
            o.yiaddr()
        );
        given.push(o.yiaddr());
    }
    let last = "52:54:00:00:02:ff";
    assert!(
        env.send(&base(MessageType::Discover, last, 200))
            .await
            .is_none()
    );
    let events = env.wait_timeline(last, 1).await;
    assert!(
        events[0]["detail"]
            .as_str()
            .unwrap()
            .contains("no free address"),
        "{events:?}"
    );

    // DECLINE keeps an address out of the pool, also one only offered
    // (which a daemon alone on its database holds in memory only).
    let decliner = "52:54:00:00:02:00";
    let held = given[0];
    let mut decline = base(MessageType::Decline, decliner, 300);
    decline
        .opts_mut()
        .insert(DhcpOption::RequestedIpAddress(held));
    decline
        .opts_mut()
        .insert(DhcpOption::ServerIdentifier(RELAY));
    assert!(env.send(&decline).await.is_none());
    let l = env.d.store.lease_at(1, held).await.unwrap().unwrap();
    assert_eq!(l.state, bootloader_core::model::LeaseState::Declined);
    let retry = env.send(&base(MessageType::Discover, decliner, 301)).await;
    assert!(
        retry.is_none() || retry.unwrap().yiaddr() != held,
        "a declined address is not offered again"
    );
    env.stop().await;
}

async fn malformed_packets_are_dropped(backend: Backend) {
    let env = start(backend, "authoritative").await;
    for junk in [vec![], vec![1u8; 3], vec![0xff; 300], {
        // A BOOTREQUEST whose option 93 has the wrong length.
        let mut m = base(MessageType::Discover, "52:54:00:00:03:01", 1)
            .to_vec()
            .unwrap();
        let end = m.len() - 1;
        m.splice(end..end, [93u8, 1, 0]);
        m
    }] {
        env.relay.send_to(&junk, env.server).await.unwrap();
    }
    // The server still answers everyone else.
    let o = env
        .send(&base(MessageType::Discover, "52:54:00:00:03:02", 2))
        .await;
    assert!(o.is_some(), "the server stopped answering after junk");
    // Counted by type and result in /metrics (the recorder is the
    // process's, shared by the tests beside this one: counts only grow).
    let text = reqwest::get(format!("{}/metrics", env.d.base))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let count = |labels: &[&str]| -> f64 {
        text.lines()
            .filter(|l| l.starts_with("bootloader_dhcp_packets_total{"))
            .filter(|l| labels.iter().all(|want| l.contains(want)))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    };
    assert!(count(&["type=\"malformed\""]) >= 1.0, "{text}");
    assert!(
        count(&["type=\"discover\"", "result=\"answered\""]) >= 1.0,
        "{text}"
    );
    env.stop().await;
}

async fn proxy_answers_boot_clients_only(backend: Backend) {
    let env = start(backend, "proxy").await;
    let known = "52:54:00:00:04:01";
    add_server(&env.d, "p1.lab.example.com", known, None).await;
    deploy(&env.d, "p1.lab.example.com").await;

    // A PXE DISCOVER gets a proxy offer: no address, PXEClient, boot file.
    let offer = env
        .send(&pxe(MessageType::Discover, known, 1, 0))
        .await
        .expect("proxy offer");
    assert_eq!(offer.yiaddr(), Ipv4Addr::UNSPECIFIED);
    assert_eq!(file(&offer), "undionly.kpxe");
    assert!(matches!(
        offer.opts().get(OptionCode::ClassIdentifier),
        Some(DhcpOption::ClassIdentifier(v)) if v == b"PXEClient"
    ));
    // A plain client, or an unknown one, gets nothing from a proxy.
    assert!(
        env.send(&base(MessageType::Discover, known, 2))
            .await
            .is_none()
    );
    assert!(
        env.send(&pxe(MessageType::Discover, "52:54:00:00:04:99", 3, 0))
            .await
            .is_none()
    );
    // The REQUEST on port 4011 gets an ACK with the boot file, from 4011.
    let mut req = pxe(MessageType::Request, known, 4, 7);
    req.set_giaddr(Ipv4Addr::UNSPECIFIED).set_ciaddr(RELAY);
    req.opts_mut().insert(DhcpOption::ServerIdentifier(RELAY));
    env.relay
        .send_to(&req.to_vec().unwrap(), env.proxy)
        .await
        .unwrap();
    let mut buf = [0u8; 1500];
    let (n, from) = tokio::time::timeout(Duration::from_secs(2), env.relay.recv_from(&mut buf))
        .await
        .expect("a 4011 answer")
        .unwrap();
    assert_eq!(from, env.proxy, "answered from port 4011");
    let ack = Message::decode(&mut dhcproto::Decoder::new(&buf[..n])).unwrap();
    assert_eq!(ack.opts().msg_type(), Some(MessageType::Ack));
    assert_eq!(file(&ack), "ipxe.efi");
    assert_eq!(ack.siaddr(), RELAY);
    assert_eq!(ack.yiaddr(), Ipv4Addr::UNSPECIFIED);
    // No leases in proxy mode.
    let (_, leases) = env.d.get("/leases").await;
    assert_eq!(leases["count"], 0);
    env.stop().await;
}

/// A reloaded configuration (SIGHUP) brings new quirk rules into force at
/// once; a changed lease time waits for a restart.
async fn quirks_reload_without_a_restart(backend: Backend) {
    let env = start(backend, "authoritative").await;
    let liar = "52:54:00:00:08:01";
    add_server(&env.d, "r1.lab.example.com", liar, None).await;
    deploy(&env.d, "r1.lab.example.com").await;
    let o = env
        .send(&pxe(MessageType::Discover, liar, 1, 9))
        .await
        .unwrap();
    assert_eq!(file(&o), "ipxe.efi");

    std::fs::write(
        env.ts.dir.path().join("bootloader.toml"),
        "[dhcp]\nlease_time = 900\n\n[[dhcp.quirk]]\nname = \"lying-uefi\"\nmac_prefix = \"52:54:00:00:08\"\nset_arch = 0\n",
    )
    .unwrap();
    env.d.reload.send(env.ts.config()).await.unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let o = loop {
        let o = env
            .send(&pxe(MessageType::Discover, liar, 2, 9))
            .await
            .unwrap();
        if file(&o) == "undionly.kpxe" {
            break o;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the new rule never applied"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    // The lease time is the one the daemon started with.
    let lease = o.opts().iter().find_map(|(_, opt)| match opt {
        dhcproto::v4::DhcpOption::AddressLeaseTime(t) => Some(*t),
        _ => None,
    });
    assert_eq!(lease, Some(600));
    env.stop().await;
}

/// Quirk rules change answers for the clients they match, and say so in
/// the timeline.
async fn quirks_apply_to_matching_clients(backend: Backend) {
    let env = start_with(
        backend,
        "authoritative",
        r#"
[[dhcp.quirk]]
name = "lying-uefi"
mac_prefix = "52:54:00:00:05"
arch = 9
set_arch = 0

[[dhcp.quirk]]
name = "site-dhcp-owns-these"
mac_prefix = "52:54:00:00:06"
answer = "proxy"
"#,
    )
    .await;
    let liar = "52:54:00:00:05:01";
    let proxied = "52:54:00:00:06:01";
    for (fqdn, mac) in [
        ("q1.lab.example.com", liar),
        ("q2.lab.example.com", proxied),
    ] {
        add_server(&env.d, fqdn, mac, None).await;
        deploy(&env.d, fqdn).await;
    }
    // Option 93 says 9 (x64 UEFI) but the rule says BIOS.
    let o = env
        .send(&pxe(MessageType::Discover, liar, 1, 9))
        .await
        .unwrap();
    assert_eq!(file(&o), "undionly.kpxe");
    // The same request from a MAC the rule does not match.
    add_server(&env.d, "q3.lab.example.com", "52:54:00:00:07:01", None).await;
    deploy(&env.d, "q3.lab.example.com").await;
    let o = env
        .send(&pxe(MessageType::Discover, "52:54:00:00:07:01", 2, 9))
        .await
        .unwrap();
    assert_eq!(file(&o), "ipxe.efi");
    // An authoritative server answering like a proxy: boot, no address.
    let o = env
        .send(&pxe(MessageType::Discover, proxied, 3, 0))
        .await
        .unwrap();
    assert_eq!(o.yiaddr(), Ipv4Addr::UNSPECIFIED);
    assert_eq!(file(&o), "undionly.kpxe");
    let events = env.wait_timeline(liar, 1).await;
    assert!(
        events[0]["request"]
            .as_str()
            .unwrap()
            .contains("[quirk \"lying-uefi\"]"),
        "{events:?}"
    );
    env.stop().await;
}

/// Leases are in the store: after a restart a client keeps its address
/// and another client cannot take it. INFORM gets options, no address.
async fn leases_survive_a_restart_and_inform(backend: Backend) {
    let env = start(backend, "authoritative").await;
    let mac = "52:54:00:00:08:01";
    let offer = env
        .send(&base(MessageType::Discover, mac, 1))
        .await
        .unwrap();
    let ack = env
        .send(&request_for(&offer, base(MessageType::Request, mac, 2)))
        .await
        .unwrap();
    assert_eq!(ack.opts().msg_type(), Some(MessageType::Ack));
    let ip = ack.yiaddr();

    let Env {
        ts,
        d,
        server,
        proxy,
        relay,
    } = env;
    let token = d.stop().await;
    let d = Daemon::start(&ts, Some(token)).await;
    let env = Env {
        ts,
        d,
        server,
        proxy,
        relay,
    };
    let mut again = None;
    for _ in 0..20 {
        again = env.send(&base(MessageType::Discover, mac, 3)).await;
        if again.is_some() {
            break;
        }
    }
    assert_eq!(again.expect("an offer after restart").yiaddr(), ip);
    // That DISCOVER left the lease as it was: bound, for its whole time
    // (not rewritten to a 30 s offer that would lapse without a REQUEST).
    let (_, leases) = env.d.get("/leases").await;
    let lease = leases["results"]
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["mac"] == mac)
        .cloned()
        .unwrap();
    assert_eq!(lease["state"], "bound", "{lease}");
    // This daemon's lease time is 600 s, its offer hold 30 s.
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    assert!(lease["expires_at"].as_i64().unwrap() > now + 300, "{lease}");
    let mut steal = base(MessageType::Request, "52:54:00:00:08:02", 4);
    steal.opts_mut().insert(DhcpOption::RequestedIpAddress(ip));
    assert_eq!(
        env.send(&steal).await.unwrap().opts().msg_type(),
        Some(MessageType::Nak)
    );

    let mut inform = base(MessageType::Inform, mac, 5);
    inform.set_ciaddr(ip);
    let reply = env.send(&inform).await.expect("an ACK to INFORM");
    assert_eq!(reply.opts().msg_type(), Some(MessageType::Ack));
    assert_eq!(reply.yiaddr(), Ipv4Addr::UNSPECIFIED);
    assert!(reply.opts().get(OptionCode::AddressLeaseTime).is_none());
    assert!(matches!(
        reply.opts().get(OptionCode::Router),
        Some(DhcpOption::Router(r)) if r == &vec![LINK]
    ));
    env.stop().await;
}

on_both_backends!(
    spoofed_subnet_selection_decline_and_release,
    authoritative_exchange,
    reservations_and_exhaustion,
    malformed_packets_are_dropped,
    proxy_answers_boot_clients_only,
    quirks_apply_to_matching_clients,
    quirks_reload_without_a_restart,
    leases_survive_a_restart_and_inform,
);

/// The real binary on SQLite, killed with SIGKILL right after its last
/// ACK: every lease it acknowledged is in the store after the restart,
/// bound to the address its client was given (the lease journal is applied
/// before the daemon serves), and each client's next DISCOVER is offered
/// that address again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_leases_survive_sigkill() {
    let port = free_udp_port().to_string();
    let proxy_port = free_udp_port().to_string();
    let mut daemon = common::binary::Binary::start(&[
        ("BOOTLOADER_DHCP_MODE", "authoritative"),
        ("BOOTLOADER_DHCP_LISTEN", "127.0.0.1"),
        ("BOOTLOADER_DHCP_PORT", &port),
        ("BOOTLOADER_DHCP_PROXY_PORT", &proxy_port),
    ])
    .await;
    daemon.create("/locations", json!({"name": "lab"})).await;
    daemon
        .create(
            "/networks",
            json!({"location": "lab", "cidr": "10.0.0.0/24", "gateway": "10.0.0.1",
                "pool": {"start": "10.0.0.100", "end": "10.0.0.199"}}),
        )
        .await;
    let relay = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let server = SocketAddr::from((RELAY, port.parse::<u16>().unwrap()));
    let ask = |msg: Message| {
        let relay = &relay;
        async move {
            for _ in 0..5 {
                relay.send_to(&msg.to_vec().unwrap(), server).await.unwrap();
                let mut buf = [0u8; 1500];
                if let Ok(Ok((n, _))) =
                    tokio::time::timeout(Duration::from_secs(1), relay.recv_from(&mut buf)).await
                {
                    let reply = Message::decode(&mut dhcproto::Decoder::new(&buf[..n])).unwrap();
                    if reply.xid() == msg.xid() {
                        return reply;
                    }
                }
            }
            panic!("no answer to {:?}", msg.opts().msg_type());
        }
    };
    let mut given = Vec::new();
    for i in 0..40u32 {
        let mac = format!("52:54:00:00:09:{i:02x}");
        let offer = ask(base(MessageType::Discover, &mac, 2 * i + 1)).await;
        let ack = ask(request_for(
            &offer,
            base(MessageType::Request, &mac, 2 * i + 2),
        ))
        .await;
        assert_eq!(ack.opts().msg_type(), Some(MessageType::Ack), "{mac}");
        given.push((mac, ack.yiaddr()));
    }
    daemon.kill();
    daemon.restart().await;
    let leases = daemon.get("/leases?limit=1000").await;
    let stored: std::collections::HashMap<String, (String, String)> = leases["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| {
            (
                l["mac"].as_str().unwrap().to_string(),
                (
                    l["ip"].as_str().unwrap().to_string(),
                    l["state"].as_str().unwrap().to_string(),
                ),
            )
        })
        .collect();
    for (mac, ip) in &given {
        assert_eq!(
            stored.get(mac),
            Some(&(ip.to_string(), "bound".to_string())),
            "{mac} was acknowledged {ip}; the store after the restart holds {leases}"
        );
    }
    for (i, (mac, ip)) in given.iter().enumerate() {
        let offer = ask(base(MessageType::Discover, mac, 1000 + i as u32)).await;
        assert_eq!(offer.yiaddr(), *ip, "{mac}");
    }
}

/// 100,000 packets without a message type from one relay: the timeline
/// keeps a few rows and a count, the store grows by less than 1 MB, and
/// the server answers the next client.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_junk_flood_writes_a_count_not_rows() {
    let env = start(Backend::Sqlite, "authoritative").await;
    // Settle the start's own writes first.
    env.send(&base(MessageType::Discover, "52:54:00:00:04:01", 1))
        .await
        .expect("an answer before the flood");
    tokio::time::sleep(Duration::from_millis(500)).await;
    let before = common::store_bytes(env.ts.dir.path());
    let mut junk = base(MessageType::Discover, "52:54:00:00:04:02", 2)
        .to_vec()
        .unwrap();
    let at = (240..junk.len() - 2)
        .find(|&i| junk[i] == 53 && junk[i + 1] == 1)
        .expect("option 53");
    junk.drain(at..at + 3);
    let mut sent = 0;
    for _ in 0..100_000 {
        if env.relay.send_to(&junk, env.server).await.is_ok() {
            sent += 1;
        }
        if sent % 2_000 == 0 {
            // Let the server keep up a little: more of the flood arrives.
            tokio::task::yield_now().await;
        }
    }
    assert_eq!(sent, 100_000);
    // The flood overflows the socket's buffer: a client's first DISCOVER
    // may be lost with it, and, as firmware does, it asks again.
    let mut answered = false;
    for xid in 3..13 {
        if env
            .send(&base(MessageType::Discover, "52:54:00:00:04:03", xid))
            .await
            .is_some()
        {
            answered = true;
            break;
        }
    }
    assert!(answered, "the server stopped answering after the flood");
    // The writer flushes its queue; the stop stores the minute's counts.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let store = env.d.store.clone();
    let dir = env.ts.dir.path().to_path_buf();
    let d = env.d;
    d.stop().await;
    let grown = common::store_bytes(&dir).saturating_sub(before);
    assert!(grown < 1024 * 1024, "the store grew by {grown} bytes");
    let events = store.boot_events(&[], None, 10_000).await.unwrap();
    let junk_rows: Vec<_> = events
        .iter()
        .filter(|(_, e)| !e.request.starts_with("DHCPDISCOVER"))
        .collect();
    assert!(
        junk_rows.len() <= 2 * 20 + 4,
        "{} junk rows stored",
        junk_rows.len()
    );
    assert!(
        junk_rows
            .iter()
            .any(|(_, e)| e.detail.contains("more like this")),
        "no count of the flood: {:?}",
        junk_rows.iter().map(|(_, e)| &e.detail).collect::<Vec<_>>()
    );
}

/// What a client on the boot VLAN could do by spoofing: choose another
/// network with option 118 without a relay, take a machine's reserved
/// address out of service with a DECLINE in its name, release another
/// machine's lease. None of it works.
async fn spoofed_subnet_selection_decline_and_release(backend: Backend) {
    let env = start(backend, "authoritative").await;
    // Not relayed (giaddr 0) but naming the lab's network in option 118.
    let spoofer = "52:54:00:00:05:01";
    let mut direct = base(MessageType::Discover, spoofer, 1);
    direct.set_giaddr(Ipv4Addr::UNSPECIFIED);
    env.relay
        .send_to(&direct.to_vec().unwrap(), env.server)
        .await
        .unwrap();
    let events = env.wait_timeline(spoofer, 1).await;
    assert_eq!(events[0]["outcome"], "silent", "{events:?}");
    assert!(
        events[0]["detail"]
            .as_str()
            .unwrap()
            .contains("no network in the inventory contains 127.0.0.1"),
        "{events:?}"
    );
    assert!(
        env.d
            .store
            .lease_of(1, spoofer.parse().unwrap())
            .await
            .unwrap()
            .is_none(),
        "an address was held for a client that chose its own subnet"
    );

    // A reserved machine gets its address; a DECLINE in its name does not
    // take the address away.
    let owner = "52:54:00:00:05:02";
    add_server(&env.d, "r5.lab.example.com", owner, Some("10.0.0.21")).await;
    let offer = env
        .send(&base(MessageType::Discover, owner, 2))
        .await
        .unwrap();
    assert_eq!(offer.yiaddr(), Ipv4Addr::new(10, 0, 0, 21));
    let ack = env
        .send(&request_for(&offer, base(MessageType::Request, owner, 3)))
        .await
        .unwrap();
    assert_eq!(ack.opts().msg_type(), Some(MessageType::Ack));
    let mut decline = base(MessageType::Decline, owner, 4);
    decline
        .opts_mut()
        .insert(DhcpOption::RequestedIpAddress(Ipv4Addr::new(10, 0, 0, 21)));
    assert!(env.send(&decline).await.is_none());
    let again = env.send(&base(MessageType::Discover, owner, 5)).await;
    assert_eq!(
        again.map(|o| o.yiaddr()),
        Some(Ipv4Addr::new(10, 0, 0, 21)),
        "the reservation is still offered to its owner"
    );
    let events = env.wait_timeline(owner, 4).await;
    assert!(
        events.iter().any(|e| e["detail"]
            .as_str()
            .unwrap()
            .contains("the reservation stays")),
        "{events:?}"
    );

    // A DECLINE naming another client's address changes nothing.
    let pool_client = "52:54:00:00:05:03";
    let offer = env
        .send(&base(MessageType::Discover, pool_client, 6))
        .await
        .unwrap();
    let held = offer.yiaddr();
    env.send(&request_for(
        &offer,
        base(MessageType::Request, pool_client, 7),
    ))
    .await
    .unwrap();
    let mut foreign = base(MessageType::Decline, "52:54:00:00:05:04", 9);
    foreign
        .opts_mut()
        .insert(DhcpOption::RequestedIpAddress(held));
    assert!(env.send(&foreign).await.is_none());
    let lease = env.d.store.lease_at(1, held).await.unwrap().expect("lease");
    assert_eq!(lease.state, bootloader_core::model::LeaseState::Bound);
    assert_eq!(lease.mac.to_string(), pool_client);

    env.stop().await;
}
