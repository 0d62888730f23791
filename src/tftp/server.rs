//! The TFTP server: a listening socket that admits read requests, each
//! then a transfer on its own socket (a new transfer id, RFC 1350; see
//! `transfer.rs`). Decisions are the core's `transfer.rs`'s; this file
//! only moves bytes.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::{Mutex, MutexGuard};

use tokio::net::UdpSocket;
use tokio::sync::Semaphore;
use tracing::{Instrument, debug, info, info_span, warn};

use super::root_files::RootFiles;
use super::transfer::{Threads, error_packet, run_transfer};
use crate::timeline::Timeline;
use bootloader_core::model::{Outcome as TimelineOutcome, Phase};
use bootloader_core::tftp::packet::{self, ErrorCode, Packet, Request};
use bootloader_core::tftp::transfer::Limits;
use bootloader_store::BootStore;

/// How the server behaves.
#[derive(Clone)]
pub struct TftpConfig {
    pub root: PathBuf,
    /// Searched after `root` for what is not there: pxelinux and its
    /// modules, for deployments that boot through pxelinux.
    pub extra_roots: Vec<PathBuf>,
    pub limits: Limits,
    /// Transfers in flight at most; more are refused with an error.
    pub max_transfers: usize,
    /// Files of active deployments (`serve_file via: tftp`), looked up
    /// before the root directory.
    pub store: Option<Arc<dyn BootStore>>,
    pub timeline: Option<Timeline>,
    /// Firmware quirks: a `tftp_blksize` caps the block size offered to
    /// clients whose MAC (learned from DHCP or ARP) matches.
    pub quirks: bootloader_core::dhcp::quirks::QuirkRules,
    /// The data dir: never served, whatever links the root holds.
    pub private_dir: Option<PathBuf>,
    /// Transfers one address may have at once.
    pub per_source: usize,
}

impl TftpConfig {
    pub(super) fn record(
        &self,
        peer: SocketAddr,
        request: &str,
        outcome: TimelineOutcome,
        detail: String,
    ) {
        if let Some(t) = &self.timeline {
            t.record(
                Phase::Tftp,
                t.mac_of(peer.ip()),
                peer,
                request,
                outcome,
                detail,
            );
        }
    }
}

fn lock(live: &Mutex<HashSet<SocketAddr>>) -> MutexGuard<'_, HashSet<SocketAddr>> {
    // The set holds plain addresses; a panic elsewhere cannot leave it torn.
    live.lock().unwrap_or_else(|e| e.into_inner())
}

async fn send_error(socket: &UdpSocket, to: SocketAddr, code: ErrorCode, message: &str) {
    if let Err(e) = socket.send_to(&error_packet(code, message), to).await {
        debug!(%to, error = %e, "could not send TFTP error");
    }
}

/// How often at most the log says that every transfer slot is taken.
const FULL_LOGGED_EVERY: std::time::Duration = std::time::Duration::from_secs(10);

/// How long transfers under way may take to finish once the server stops.
pub const DRAIN: std::time::Duration = std::time::Duration::from_secs(15);

/// Long lock-step transfers on threads of their own at once; the rest stay
/// on the runtime, so that a storm of them is not a storm of threads.
const LOCKSTEP_THREADS: usize = 4;

/// Waits until every transfer slot is free again, or `DRAIN` has passed.
async fn drain(slots: &Semaphore, total: usize) {
    let busy = total - slots.available_permits();
    if busy == 0 {
        return;
    }
    info!(busy, "TFTP: waiting for the transfers under way");
    let all = u32::try_from(total).unwrap_or(u32::MAX);
    match tokio::time::timeout(DRAIN, slots.acquire_many(all)).await {
        Ok(_) => info!("TFTP: every transfer finished"),
        Err(_) => warn!(
            busy = total - slots.available_permits(),
            "TFTP: transfers still under way were cut off at shutdown"
        ),
    }
}

/// Serves on `socket` until `shutdown` resolves, then waits (up to
/// `DRAIN`) for the transfers under way to finish.
pub async fn serve(
    socket: UdpSocket,
    config: TftpConfig,
    shutdown: impl std::future::Future<Output = ()>,
) -> std::io::Result<()> {
    let local = socket.local_addr()?;
    let config = Arc::new(config);
    let slots = Arc::new(Semaphore::new(config.max_transfers.max(1)));
    // Clients whose transfer is under way: a repeated RRQ from the same
    // address and port is a retransmission, not a second transfer.
    let live: Arc<Mutex<HashSet<SocketAddr>>> = Arc::default();
    let root_files: Arc<RootFiles> = Arc::default();
    // Dropped when this returns or is cancelled: transfers still under
    // way on threads then end within a second (those on the runtime end
    // with it).
    let threads = Threads::new(LOCKSTEP_THREADS);
    let mut buf = vec![0u8; 65536];
    tokio::pin!(shutdown);
    info!(%local, root = %config.root.display(), "TFTP serving");
    let mut full = false;
    // At the limit a storm may fill and free the slots many times a
    // second: said in the log at most every `FULL_LOGGED_EVERY`, counted
    // every time.
    let mut full_logged: Option<std::time::Instant> = None;
    loop {
        // With every slot taken, read requests wait in the socket's queue,
        // unanswered, until one comes free: a PXE ROM sends its request
        // again when it gets no answer, but gives up on an ERROR (its boot
        // fails), so a full server makes machines wait, not fail. dnsmasq
        // stops reading its TFTP socket at its limit too.
        if slots.available_permits() == 0 && !full {
            full = true;
            crate::telemetry::tftp_slots_full();
            if full_logged.is_none_or(|t| t.elapsed() >= FULL_LOGGED_EVERY) {
                full_logged = Some(std::time::Instant::now());
                info!(
                    transfers = config.max_transfers,
                    "TFTP: every transfer slot is taken; read requests wait for one"
                );
            }
        }
        let permit = tokio::select! {
            () = &mut shutdown => {
                drain(&slots, config.max_transfers.max(1)).await;
                return Ok(());
            }
            p = slots.clone().acquire_owned() => match p {
                Ok(p) => p,
                // Never closed.
                Err(_) => return Ok(()),
            },
        };
        if full && slots.available_permits() > 0 {
            full = false;
        }
        let (n, peer) = tokio::select! {
            () = &mut shutdown => {
                drop(permit);
                drain(&slots, config.max_transfers.max(1)).await;
                return Ok(());
            }
            r = socket.recv_from(&mut buf) => match r {
                Ok(x) => x,
                Err(e) => {
                    // ICMP errors from earlier sends surface here; keep serving.
                    debug!(error = %e, "TFTP receive error");
                    continue;
                }
            },
        };
        match packet::decode(&buf[..n]) {
            Ok(Packet::Rrq(request)) => {
                // An address gets its share of the slots, so that one
                // machine (or one spoofer) cannot take them all.
                let admitted = {
                    let mut live = lock(&live);
                    if live.contains(&peer) {
                        Err(None)
                    } else {
                        let held = live.iter().filter(|p| p.ip() == peer.ip()).count();
                        if held >= config.per_source.max(1) {
                            Err(Some(held))
                        } else {
                            live.insert(peer);
                            Ok(())
                        }
                    }
                };
                match admitted {
                    Ok(()) => {}
                    Err(None) => {
                        debug!(%peer, "repeated RRQ for a transfer under way ignored");
                        continue;
                    }
                    Err(Some(held)) => {
                        crate::telemetry::tftp_per_source_refused();
                        debug!(%peer, held, "TFTP transfer refused: the address holds its share");
                        let why =
                            format!("server busy: {held} transfers of this address in flight");
                        refuse_busy(&socket, &config, peer, &request, why).await;
                        continue;
                    }
                }
                let config = config.clone();
                let live = live.clone();
                let root_files = root_files.clone();
                let threads = threads.handle();
                let span = info_span!("tftp", %peer, file = ?request.filename,
                    mac = tracing::field::Empty, deployment = tracing::field::Empty);
                tokio::spawn(
                    async move {
                        run_transfer(local, peer, request, config, &root_files, &threads).await;
                        lock(&live).remove(&peer);
                        drop(permit);
                    }
                    .instrument(span),
                );
            }
            Ok(Packet::Wrq(request)) => {
                info!(%peer, file = ?request.filename, "TFTP write refused");
                config.record(
                    peer,
                    &format!("WRQ {}", request.filename),
                    TimelineOutcome::Refused,
                    "this server is read-only".into(),
                );
                send_error(
                    &socket,
                    peer,
                    ErrorCode::AccessViolation,
                    "this server is read-only",
                )
                .await;
            }
            // Never answer anything else here, ERRORs least of all: two
            // servers answering each other's errors would loop forever.
            Ok(_) => debug!(%peer, "non-request packet on the TFTP port dropped"),
            Err(e) => {
                debug!(%peer, error = %e, "malformed TFTP request");
                // A broken read request gets a short fixed answer, so the
                // reply is never larger than what provoked it.
                if buf[..n].starts_with(&[0, 1]) {
                    send_error(
                        &socket,
                        peer,
                        ErrorCode::IllegalOperation,
                        "malformed request",
                    )
                    .await;
                }
            }
        }
    }
}

/// "server busy" to a request that gets no transfer now, and why in the
/// timeline.
async fn refuse_busy(
    socket: &UdpSocket,
    config: &TftpConfig,
    peer: SocketAddr,
    request: &Request,
    why: String,
) {
    config.record(
        peer,
        &format!("RRQ {}", request.filename),
        TimelineOutcome::Refused,
        why,
    );
    send_error(
        socket,
        peer,
        ErrorCode::NotDefined,
        "server busy, try again",
    )
    .await;
}
