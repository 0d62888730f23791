//! The DHCP server: reading the bound sockets (`sockets.rs`) and, per
//! packet, decode -> classify -> what the store knows of the MAC -> decide
//! -> lease (authoritative) -> reply, with each step's outcome written to
//! the boot timeline.

use std::future::Future;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use dhcproto::Encodable;
use dhcproto::v4::{Message, Opcode};
use tokio::net::UdpSocket;
use tokio::sync::RwLock;
use tracing::Instrument;

use super::lease::{LeaseTimes, Leases, RequestAnswer};
use super::sockets::{DhcpSocket, Port, destination, neighbour};
use crate::config::DhcpSettings;
use crate::timeline::Timeline;
use bootloader_core::dhcp::classify::{ClientInfo, MessageKind, VendorClass, classify, decode};
use bootloader_core::dhcp::decide::{
    BootAnswer, DhcpDecision, Known, Mode, Policy, Purpose, decide,
};
use bootloader_core::dhcp::quirks;
use bootloader_core::dhcp::reply::{LeaseOffer, ReplyContext, nak, reply};
use bootloader_core::model::MacAddr;
use bootloader_core::model::{Outcome, Phase};
use bootloader_store::{BootStore, InventoryStore, LeaseStore, LockStore, Network, Page};

mod authoritative;
mod describe;

pub use describe::describe;
use describe::{describe_answer, kind_name, raw_mac};

/// The networks this daemon answers for, re-read from the store now and
/// then so that API changes take effect without a restart. One request at
/// a time reads them again; the others go on with what was read before
/// (under a storm, every worker reading them at once when they aged held
/// every answer back behind the store for seconds).
struct Networks {
    location: Option<bootloader_core::model::Name>,
    cached: RwLock<(Option<Instant>, Vec<Network>)>,
    reading: tokio::sync::Mutex<()>,
}

const NETWORKS_TTL: Duration = Duration::from_secs(10);

impl Networks {
    async fn containing(
        &self,
        store: &dyn InventoryStore,
        ip: Ipv4Addr,
    ) -> anyhow::Result<Option<Network>> {
        let find = |nets: &[Network]| nets.iter().find(|n| n.cidr.contains(&ip)).cloned();
        let _reading = {
            let cached = self.cached.read().await;
            match &*cached {
                (Some(at), nets) if at.elapsed() < NETWORKS_TTL => return Ok(find(nets)),
                // Aged: another request is reading them, use these.
                (Some(_), nets) => match self.reading.try_lock() {
                    Ok(guard) => guard,
                    Err(_) => return Ok(find(nets)),
                },
                // Never read: wait for whoever reads them.
                (None, _) => {
                    drop(cached);
                    let guard = self.reading.lock().await;
                    let cached = self.cached.read().await;
                    if let (Some(at), nets) = &*cached
                        && at.elapsed() < NETWORKS_TTL
                    {
                        return Ok(find(nets));
                    }
                    guard
                }
            }
        };
        let page = Page {
            limit: 100_000,
            offset: 0,
        };
        let nets = match store.list_networks(self.location.as_ref(), page).await {
            Ok(listing) => listing.items,
            Err(e) => {
                let cached = self.cached.read().await;
                if cached.0.is_none() {
                    return Err(e.into());
                }
                // Those read before stand until the store answers.
                tracing::warn!(error = %e, "cannot read the networks again; answering from those read before");
                return Ok(find(&cached.1));
            }
        };
        let found = find(&nets);
        *self.cached.write().await = (Some(Instant::now()), nets);
        Ok(found)
    }
}

/// The store areas the DHCP server reads and writes.
pub struct DhcpStores {
    pub boot: Arc<dyn BootStore>,
    pub inventory: Arc<dyn InventoryStore>,
    pub leases: Arc<dyn LeaseStore>,
    /// Other daemons may write to the same database (PostgreSQL).
    pub shared: bool,
    /// Where pool slices are held when shared, and this daemon's name.
    pub locks: Arc<dyn LockStore>,
    pub instance: String,
    /// Alone on the database: the lease journal changes are committed
    /// through.
    pub journal: Option<Arc<super::journal::Journal>>,
}

/// Everything a packet's handling needs.
pub struct DhcpService {
    /// What the inventory knows of a MAC.
    boot: Arc<dyn BootStore>,
    /// The networks this daemon answers for.
    inventory: Arc<dyn InventoryStore>,
    policy: Policy,
    leases: Option<Leases>,
    timeline: Timeline,
    networks: Networks,
    client_port: u16,
    quirks: bootloader_core::dhcp::quirks::QuirkRules,
    /// Unicast replies through an ARP entry instead of broadcasting.
    unicast: bool,
    trusted_relays: Vec<Ipv4Addr>,
    dropped: std::sync::atomic::AtomicU64,
}

impl DhcpService {
    pub fn new(
        settings: &DhcpSettings,
        http_base: &str,
        stores: DhcpStores,
        timeline: Timeline,
        quirks: &bootloader_core::dhcp::quirks::QuirkRules,
    ) -> Self {
        let mode = settings.mode.unwrap_or(Mode::Authoritative);
        // A proxy-mode server keeps leases too: a quirk may ask for an
        // authoritative answer to some clients.
        let leases = Some({
            Leases::new(
                stores.leases.clone(),
                LeaseTimes {
                    lease: settings.lease_time,
                    offer_hold: settings.offer_hold,
                    decline_hold: settings.decline_hold,
                },
                stores.shared.then(|| {
                    super::slices::Slices::new(
                        stores.locks.clone(),
                        stores.leases.clone(),
                        stores.instance.clone(),
                        settings.offer_hold,
                    )
                }),
                stores.journal.clone(),
            )
        });
        Self {
            boot: stores.boot,
            inventory: stores.inventory,
            policy: Policy {
                mode,
                unknown: settings.unknown,
                efi_x64: settings.efi_x64,
                arm64_binary: settings.arm64_binary.clone(),
                http_base: http_base.trim_end_matches('/').to_string(),
            },
            leases,
            timeline,
            networks: Networks {
                location: settings.location.clone(),
                cached: RwLock::new((None, Vec::new())),
                reading: tokio::sync::Mutex::new(()),
            },
            client_port: settings.client_port,
            quirks: quirks.clone(),
            unicast: settings.unicast,
            trusted_relays: settings.trusted_relays.clone(),
            dropped: std::sync::atomic::AtomicU64::new(0),
        }
    }
}

/// Requests handled at once (each mostly waits on the store).
const WORKERS: usize = 64;
/// Requests waiting for a worker; beyond this, new ones are dropped.
const QUEUE: usize = 1024;
/// A request that waited longer than this is dropped unanswered: its client
/// has retransmitted or moved on, and answering it would only delay the
/// fresh ones. This keeps an overloaded server answering at its capacity
/// instead of answering everything too late.
const MAX_AGE: Duration = Duration::from_millis(800);

/// A received datagram waiting for a worker.
struct Job {
    info: Arc<SocketInfo>,
    packet: Vec<u8>,
    src: SocketAddr,
    received: Instant,
}

/// Serves every socket until `shutdown` resolves: one reader per socket
/// that never waits on the store, a bounded queue, and a pool of workers.
pub async fn serve(
    sockets: Vec<DhcpSocket>,
    service: Arc<DhcpService>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) {
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let lease_writer = service
        .leases
        .as_ref()
        .and_then(|l| l.writer())
        .map(tokio::spawn);
    let (job_tx, job_rx) = tokio::sync::mpsc::channel::<Job>(QUEUE);
    let job_rx = Arc::new(tokio::sync::Mutex::new(job_rx));
    let mut workers = Vec::new();
    let mut readers = Vec::new();
    for _ in 0..WORKERS {
        let service = service.clone();
        let job_rx = job_rx.clone();
        workers.push(tokio::spawn(async move {
            loop {
                let job = { job_rx.lock().await.recv().await };
                let Some(job) = job else { return };
                let waited = job.received.elapsed();
                crate::telemetry::dhcp_queue_wait(waited);
                if waited > MAX_AGE {
                    service.overloaded(&job, waited);
                    continue;
                }
                if let Some((reply, dest)) = service.handle(&job.info, &job.packet, job.src).await
                    && let Err(e) = job.info.socket.send_to(&reply, dest).await
                {
                    tracing::warn!(error = %e, %dest, "cannot send DHCP reply");
                }
            }
        }));
    }
    for s in sockets {
        let service = service.clone();
        let job_tx = job_tx.clone();
        let mut stop = stop_rx.clone();
        readers.push(tokio::spawn(async move {
            let info = Arc::new(SocketInfo {
                socket: s.socket,
                interface: s.interface,
                server_ip: s.server_ip,
                port: s.port,
            });
            tracing::info!(
                interface = info.interface.as_deref().unwrap_or("-"),
                server_ip = %info.server_ip,
                local = %info
                    .socket
                    .local_addr()
                    .map(|a| a.to_string())
                    .unwrap_or_else(|_| "-".into()),
                port = ?info.port,
                "DHCP serving"
            );
            let mut buf = vec![0u8; 4096];
            loop {
                let received = tokio::select! {
                    r = info.socket.recv_from(&mut buf) => r,
                    _ = stop.wait_for(|s| *s) => return,
                };
                let (n, src) = match received {
                    Ok(x) => x,
                    Err(e) => {
                        tracing::warn!(error = %e, "DHCP receive failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let job = Job {
                    info: info.clone(),
                    packet: buf[..n].to_vec(),
                    src,
                    received: Instant::now(),
                };
                if let Err(tokio::sync::mpsc::error::TrySendError::Full(job)) = job_tx.try_send(job)
                {
                    service.overloaded(&job, Duration::ZERO);
                }
            }
        }));
    }
    drop(job_tx);
    shutdown.await;
    let _ = stop_tx.send(true);
    for t in readers {
        let _ = t.await;
    }
    // The queue is closed now: workers finish what is in it, within a bound.
    // A request cut off mid-way loses only its uncommitted transaction.
    let drain = async {
        for t in &mut workers {
            let _ = t.await;
        }
    };
    if tokio::time::timeout(Duration::from_secs(5), drain)
        .await
        .is_err()
    {
        for t in &workers {
            t.abort();
        }
    }
    // Every request has its answer: nothing waits on the writer now.
    if let Some(w) = lease_writer {
        w.abort();
    }
}

struct SocketInfo {
    socket: UdpSocket,
    interface: Option<String>,
    server_ip: Ipv4Addr,
    port: Port,
}

fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

enum Answer {
    Silent(String),
    Reply {
        msg: Message,
        detail: String,
        refused: bool,
    },
}

fn silent(reason: impl Into<String>) -> Answer {
    Answer::Silent(reason.into())
}

impl DhcpService {
    /// Counts (and now and then logs) a request dropped for overload. The
    /// timeline is not told: under a flood it would only add to the load.
    fn overloaded(&self, job: &Job, waited: Duration) {
        crate::telemetry::dhcp_overloaded();
        let n = self
            .dropped
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed)
            + 1;
        if n.is_power_of_two() {
            tracing::warn!(
                dropped = n,
                waited_ms = waited.as_millis() as u64,
                from = %job.src,
                "DHCP overloaded: requests dropped unanswered (clients retransmit)"
            );
        }
    }

    /// Requests dropped because the server was behind.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(std::sync::atomic::Ordering::Relaxed)
    }

    async fn handle(
        &self,
        sock: &SocketInfo,
        bytes: &[u8],
        src: SocketAddr,
    ) -> Option<(Vec<u8>, SocketAddr)> {
        let msg = match decode(bytes) {
            Ok(m) => m,
            Err(e) => {
                self.timeline.record(
                    Phase::Dhcp,
                    raw_mac(bytes),
                    src,
                    format!("malformed packet ({} bytes)", bytes.len()),
                    Outcome::Silent,
                    e.to_string(),
                );
                return None;
            }
        };
        if msg.opcode() != Opcode::BootRequest {
            return None;
        }
        let mut client = match classify(&msg) {
            Ok(c) => c,
            Err(e) => {
                self.timeline.record(
                    Phase::Dhcp,
                    raw_mac(bytes),
                    src,
                    "DHCP packet",
                    Outcome::Silent,
                    e.to_string(),
                );
                return None;
            }
        };
        let vendor = match msg.opts().get(dhcproto::v4::OptionCode::ClassIdentifier) {
            Some(dhcproto::v4::DhcpOption::ClassIdentifier(v)) => {
                Some(String::from_utf8_lossy(v).into_owned())
            }
            _ => None,
        };
        let rules = self.quirks.current();
        let quirk = quirks::matching(&rules, &client, vendor.as_deref());
        let mut request = describe(&client);
        if let Some(q) = quirk {
            quirks::apply(q, &mut client);
            request.push_str(&format!(" [quirk {:?}]", q.name));
        }
        if let Err(why) =
            bootloader_core::dhcp::trust::trust_relay(&mut client, &self.trusted_relays)
        {
            self.timeline.record(
                Phase::Dhcp,
                Some(client.mac),
                src,
                request,
                Outcome::Refused,
                why,
            );
            return None;
        }
        let mode = quirk.and_then(|q| q.answer).unwrap_or(self.policy.mode);
        let span = tracing::info_span!("dhcp", mac = %client.mac, xid = client.xid,
            deployment = tracing::field::Empty);
        let started = Instant::now();
        let answered = self
            .answer(sock, &msg, &client, mode, src)
            .instrument(span)
            .await;
        crate::telemetry::dhcp_answer(client.kind, started.elapsed());
        let answer = match answered {
            Ok(a) => a,
            Err(e) => {
                tracing::warn!(error = %e, request, "DHCP request failed");
                self.timeline.record(
                    Phase::Dhcp,
                    Some(client.mac),
                    src,
                    request,
                    Outcome::Failed,
                    format!("{e:#}"),
                );
                return None;
            }
        };
        match answer {
            Answer::Silent(reason) => {
                tracing::debug!(request, reason, "DHCP silent");
                self.timeline.record(
                    Phase::Dhcp,
                    Some(client.mac),
                    src,
                    request,
                    Outcome::Silent,
                    reason,
                );
                None
            }
            Answer::Reply {
                msg: out,
                detail,
                refused,
            } => {
                let bytes = match out.to_vec() {
                    Ok(b) => b,
                    Err(e) => {
                        self.timeline.record(
                            Phase::Dhcp,
                            Some(client.mac),
                            src,
                            request,
                            Outcome::Failed,
                            format!("cannot encode the reply: {e}"),
                        );
                        return None;
                    }
                };
                if !out.yiaddr().is_unspecified() {
                    self.timeline.learn(out.yiaddr(), client.mac);
                }
                if let (Port::Proxy, SocketAddr::V4(s)) = (sock.port, src)
                    && !s.ip().is_unspecified()
                {
                    self.timeline.learn(*s.ip(), client.mac);
                }
                let mut dest = destination(&msg, src, sock.port, refused, self.client_port);
                if self.unicast
                    && dest.ip() == std::net::IpAddr::V4(Ipv4Addr::BROADCAST)
                    && !refused
                    && !msg.flags().broadcast()
                    && !out.yiaddr().is_unspecified()
                    && let Some(interface) = &sock.interface
                {
                    // The client has no address yet: teach the kernel its
                    // MAC for the one we give, then send to it directly.
                    match neighbour(interface, out.yiaddr(), client.mac).await {
                        Ok(()) => dest = SocketAddr::from((out.yiaddr(), self.client_port)),
                        Err(e) => {
                            tracing::warn!(error = %e, "ARP entry failed; broadcasting instead")
                        }
                    }
                }
                tracing::debug!(request, detail, %dest, "DHCP reply");
                self.timeline.record(
                    Phase::Dhcp,
                    Some(client.mac),
                    src,
                    request,
                    if refused {
                        Outcome::Refused
                    } else {
                        Outcome::Answered
                    },
                    format!("{detail} -> {dest}"),
                );
                Some((bytes, dest))
            }
        }
    }

    async fn answer(
        &self,
        sock: &SocketInfo,
        msg: &Message,
        client: &ClientInfo,
        mode: Mode,
        src: SocketAddr,
    ) -> anyhow::Result<Answer> {
        let started = std::time::Instant::now();
        let target = self.boot.boot_target(client.mac).await;
        crate::telemetry::store_op("boot_target", started.elapsed());
        let target = target?;
        if let Some(deployment) = target.as_ref().and_then(|t| t.deployment) {
            tracing::Span::current().record("deployment", deployment);
        }
        let known = match &target {
            None => Known::Unknown,
            Some(t) if t.deployment.is_some() && t.pxelinux => Known::DeployingPxelinux,
            Some(t) if t.deployment.is_some() => Known::Deploying,
            Some(_) => Known::Idle,
        };
        let server_ip = sock.server_ip;
        let policy = if mode == self.policy.mode {
            std::borrow::Cow::Borrowed(&self.policy)
        } else {
            std::borrow::Cow::Owned(Policy {
                mode,
                ..self.policy.clone()
            })
        };
        match (mode, sock.port) {
            (_, Port::Proxy) => {
                if !matches!(client.kind, MessageKind::Request | MessageKind::Inform) {
                    return Ok(silent("port 4011 answers REQUEST and INFORM only"));
                }
                self.boot_only(&policy, msg, client, known, server_ip)
            }
            (Mode::Proxy, Port::Main) => {
                if client.kind != MessageKind::Discover {
                    return Ok(silent(
                        "proxy mode: the site's DHCP server answers this (boot information goes with DISCOVER here and REQUEST on port 4011)",
                    ));
                }
                self.boot_only(&policy, msg, client, known, server_ip)
            }
            (Mode::Authoritative, Port::Main) => {
                let reservation = target.as_ref().and_then(|t| t.reservation);
                self.authoritative(&policy, (msg, client, src), known, server_ip, reservation)
                    .await
            }
        }
    }

    /// A ProxyDHCP answer: boot information, no address.
    fn boot_only(
        &self,
        policy: &Policy,
        msg: &Message,
        client: &ClientInfo,
        known: Known,
        server_ip: Ipv4Addr,
    ) -> anyhow::Result<Answer> {
        let decision = decide(policy, client, known);
        let detail = match &decision {
            DhcpDecision::Silent { reason } => return Ok(silent(reason.clone())),
            DhcpDecision::AddressOnly => return Ok(silent("no boot information for this client")),
            DhcpDecision::Boot { answer, purpose } => describe_answer(answer, *purpose),
        };
        let ctx = ReplyContext {
            server_ip,
            lease: None,
        };
        match reply(msg, client, &decision, &ctx)? {
            Some(out) => Ok(Answer::Reply {
                detail: format!("{} {detail}", kind_name(&out)),
                msg: out,
                refused: false,
            }),
            None => Ok(silent("nothing to answer")),
        }
    }
}
