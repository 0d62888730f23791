//! The TFTP server: a listening socket, one task per read transfer on its
//! own socket (a new transfer id, RFC 1350), files read from a root
//! directory. Decisions are `transfer.rs`'s; this file only moves bytes.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::{Mutex, MutexGuard};
use std::time::Instant;

use tokio::net::UdpSocket;
use tokio::sync::Semaphore;
use tracing::{Instrument, debug, info, info_span, warn};

use super::root_files::{self, RootFiles};
use crate::files::Refusal;
use crate::timeline::Timeline;
use bootloader_core::dhcp::quirks;
use bootloader_core::model::{Outcome as TimelineOutcome, Phase, Via};
use bootloader_core::tftp::packet::{self, ErrorCode, Mode, Packet, Request};
use bootloader_core::tftp::transfer::{Limits, Outcome, Transfer, Transmit, negotiate};
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
    fn record(&self, peer: SocketAddr, request: &str, outcome: TimelineOutcome, detail: String) {
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

/// Where a transfer's bytes come from.
enum Source {
    File(Reader),
    /// A file rendered for a deployment (shared with every other reader).
    Memory(bytes::Bytes),
}

impl Source {
    async fn read(&mut self, offset: u64, len: usize) -> std::io::Result<&[u8]> {
        match self {
            Self::File(r) => r.read(offset, len).await,
            Self::Memory(bytes) => {
                let from = (offset as usize).min(bytes.len());
                let to = (from + len).min(bytes.len());
                Ok(&bytes[from..to])
            }
        }
    }
}

/// Reads file ranges through a cache of one chunk, so that a window of
/// blocks, or dozens of lock-step blocks, cost one read: a positional read
/// on the blocking pool, one trip per chunk. Lock-step is what PXE ROMs and
/// most iPXE builds use, so the chunk never shrinks to one block.
struct Reader {
    file: Arc<std::fs::File>,
    size: u64,
    chunk_start: u64,
    chunk: Vec<u8>,
    chunk_size: usize,
}

/// The most one transfer keeps cached.
const CHUNK: usize = 256 * 1024;
/// The least one read fetches (less only at the end of the file).
const MIN_CHUNK: usize = 64 * 1024;

impl Reader {
    async fn read(&mut self, offset: u64, len: usize) -> std::io::Result<&[u8]> {
        let end = offset + len as u64;
        let cached_end = self.chunk_start + self.chunk.len() as u64;
        if offset < self.chunk_start || end > cached_end {
            let want = self
                .chunk_size
                .max(len)
                .min(self.size.saturating_sub(offset) as usize);
            let file = Arc::clone(&self.file);
            let mut chunk = std::mem::take(&mut self.chunk);
            let (chunk, result) = tokio::task::spawn_blocking(move || {
                use std::os::unix::fs::FileExt;
                chunk.resize(want, 0);
                let mut filled = 0;
                let result = loop {
                    if filled == chunk.len() {
                        break Ok(());
                    }
                    match file.read_at(&mut chunk[filled..], offset + filled as u64) {
                        Ok(0) => break Ok(()),
                        Ok(n) => filled += n,
                        Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                        Err(e) => break Err(e),
                    }
                };
                chunk.truncate(filled);
                (chunk, result)
            })
            .await
            .map_err(std::io::Error::other)?;
            self.chunk = chunk;
            self.chunk_start = offset;
            result?;
        }
        let from = (offset - self.chunk_start) as usize;
        let to = (from + len).min(self.chunk.len());
        Ok(&self.chunk[from..to])
    }
}

fn lock(live: &Mutex<HashSet<SocketAddr>>) -> MutexGuard<'_, HashSet<SocketAddr>> {
    // The set holds plain addresses; a panic elsewhere cannot leave it torn.
    live.lock().unwrap_or_else(|e| e.into_inner())
}

async fn send_error(socket: &UdpSocket, to: SocketAddr, code: ErrorCode, message: &str) {
    let mut out = Vec::new();
    packet::encode(
        &Packet::Error {
            code,
            message: message.to_string(),
        },
        &mut out,
    );
    if let Err(e) = socket.send_to(&out, to).await {
        debug!(%to, error = %e, "could not send TFTP error");
    }
}

/// How often at most the log says that every transfer slot is taken.
const FULL_LOGGED_EVERY: std::time::Duration = std::time::Duration::from_secs(10);

/// How long transfers under way may take to finish once the server stops.
pub const DRAIN: std::time::Duration = std::time::Duration::from_secs(15);

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
                let span = info_span!("tftp", %peer, file = ?request.filename,
                    mac = tracing::field::Empty, deployment = tracing::field::Empty);
                tokio::spawn(
                    async move {
                        run_transfer(local, peer, request, &config, &root_files).await;
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

/// Opens the requested file, refusing paths that leave the root (also
/// through symlinks) and anything but a regular file.
async fn open(
    root: &Path,
    filename: &str,
    private: Option<&Path>,
) -> Result<(std::fs::File, u64), (ErrorCode, String)> {
    // The root is trusted: only its owner should write there (the daemon
    // never does), or a swapped symlink could race these checks.
    let opened = crate::files::open(root, filename, private)
        .await
        .map_err(|e| match e {
            Refusal::NotFound => (ErrorCode::FileNotFound, format!("{filename}: not found")),
            other => (ErrorCode::AccessViolation, other.to_string()),
        })?;
    opened
        .into_file()
        .map_err(|e| (ErrorCode::NotDefined, format!("{filename}: {e}")))
}

fn describe(request: &Request) -> String {
    let mut s = format!("RRQ {}", request.filename);
    for (k, v) in &request.options {
        s.push_str(&format!(" {k}={v}"));
    }
    s
}

/// A deployment's file if one serves this path, else the root's file
/// (from memory if it is small and was read a moment ago).
async fn open_source(
    config: &TftpConfig,
    root_files: &RootFiles,
    filename: &str,
) -> Result<(Source, u64, &'static str), (ErrorCode, String)> {
    if let Some(store) = &config.store {
        let path = filename.trim_start_matches('/');
        match store.served_file(Via::Tftp, path).await {
            Ok(Some(f)) => {
                tracing::Span::current().record("deployment", f.deployment_id);
                if let Some(cached) = f.file {
                    // A downloaded file, served from the download cache.
                    let file = tokio::fs::File::open(&cached).await.map_err(|e| {
                        warn!(file = %cached.display(), error = %e, "a served file is missing from the download cache");
                        (ErrorCode::NotDefined, "server error, try again".to_string())
                    })?;
                    let size = file
                        .metadata()
                        .await
                        .map_err(|_| {
                            (ErrorCode::NotDefined, "server error, try again".to_string())
                        })?
                        .len();
                    let reader = Reader {
                        file: Arc::new(file.into_std().await),
                        size,
                        chunk_start: 0,
                        chunk: Vec::new(),
                        chunk_size: CHUNK,
                    };
                    return Ok((Source::File(reader), size, "a deployment (download cache)"));
                }
                let size = f.content.len() as u64;
                return Ok((Source::Memory(f.content), size, "a deployment"));
            }
            Ok(None) => {}
            Err(e) => {
                warn!(error = %e, "cannot look up deployment files");
                return Err((ErrorCode::NotDefined, "server error, try again".into()));
            }
        }
    }
    const ROOT: &str = "the TFTP root";
    let now = Instant::now();
    if let Some(bytes) = root_files.get(filename, now) {
        let size = bytes.len() as u64;
        return Ok((Source::Memory(bytes), size, ROOT));
    }
    let private = config.private_dir.as_deref();
    let mut opened = open(&config.root, filename, private).await;
    for extra in &config.extra_roots {
        match &opened {
            Err((ErrorCode::FileNotFound, _)) => opened = open(extra, filename, private).await,
            _ => break,
        }
    }
    let (file, size) = opened?;
    if size <= root_files::MAX_FILE {
        let bytes = read_whole(file, size).await.map_err(|e| {
            warn!(file = filename, error = %e, "cannot read a file of the TFTP root");
            (ErrorCode::NotDefined, "server error, try again".to_string())
        })?;
        root_files.keep(filename, bytes.clone(), now);
        let size = bytes.len() as u64;
        return Ok((Source::Memory(bytes), size, ROOT));
    }
    let reader = Reader {
        file: Arc::new(file),
        size,
        chunk_start: 0,
        chunk: Vec::new(),
        chunk_size: CHUNK,
    };
    Ok((Source::File(reader), size, ROOT))
}

/// A small file whole, in one trip to the blocking pool.
async fn read_whole(file: std::fs::File, size: u64) -> std::io::Result<bytes::Bytes> {
    tokio::task::spawn_blocking(move || {
        use std::io::Read;
        let mut bytes = Vec::with_capacity(size as usize);
        (&file).read_to_end(&mut bytes)?;
        Ok(bytes::Bytes::from(bytes))
    })
    .await
    .map_err(std::io::Error::other)?
}

async fn run_transfer(
    local: SocketAddr,
    peer: SocketAddr,
    request: Request,
    config: &TftpConfig,
    root_files: &RootFiles,
) {
    // A new socket on the server's address is this transfer's id.
    let bind = SocketAddr::new(local.ip(), 0);
    let socket = match UdpSocket::bind(bind).await {
        Ok(s) => s,
        Err(e) => {
            warn!(error = %e, "cannot open a TFTP transfer socket");
            return;
        }
    };
    // Connected to the client: the kernel keeps the route and hands this
    // socket nothing from anyone else. A stranger's packet to this port
    // gets the kernel's port unreachable, where RFC 1350 suggests an
    // ERROR 5; tftpd-hpa does the same. About 3 % off each lock-step
    // block's cost (BENCHMARKS.md).
    if let Err(e) = socket.connect(peer).await {
        warn!(error = %e, "cannot connect a TFTP transfer socket");
        return;
    }
    if request.mode == Mode::Netascii {
        debug!("netascii requested; serving octets");
    }
    let asked = describe(&request);
    let (mut source, size, origin) = match open_source(config, root_files, &request.filename).await
    {
        Ok(x) => x,
        Err((code, message)) => {
            info!(%message, "TFTP request refused");
            config.record(peer, &asked, TimelineOutcome::Refused, message.clone());
            send_error(&socket, peer, code, &message).await;
            return;
        }
    };
    let mut limits = config.limits.clone();
    let mac = config.timeline.as_ref().and_then(|t| t.mac_of(peer.ip()));
    if let Some(mac) = mac {
        tracing::Span::current().record("mac", tracing::field::display(mac));
    }
    if let Some(cap) = mac.and_then(|mac| quirks::tftp_blksize(&config.quirks.current(), &mac)) {
        debug!(cap, "block size capped by a firmware quirk");
        limits.max_blksize = limits.max_blksize.min(cap);
    }
    let negotiated = negotiate(&request.options, size, &limits);
    let blksize = negotiated.blksize;
    let windowsize = negotiated.windowsize;
    let mut transfer = Transfer::new(negotiated, size, &limits);
    let chunk_size = (usize::from(blksize) * usize::from(windowsize)).clamp(MIN_CHUNK, CHUNK);
    if let Source::File(reader) = &mut source {
        reader.chunk_size = chunk_size;
    }
    let mut out = Vec::with_capacity(usize::from(blksize) + 4);
    // Clients send only ACK and ERROR, both small.
    let mut buf = vec![0u8; 2048];
    let started = Instant::now();
    // Bytes of DATA sent, retransmissions included.
    let mut sent: u64 = 0;
    // One timer for the transfer, armed lazily: the deadline moves with
    // every ACK (one per block in lock-step), the timer only when it
    // would fire late. Firing early is harmless: `handle_timeout` looks at
    // the transfer's own deadline, and the timer is armed again.
    let timer = tokio::time::sleep_until(tokio::time::Instant::now());
    tokio::pin!(timer);
    let mut armed: Option<Instant> = None;
    loop {
        let now = Instant::now();
        while let Some(tx) = transfer.poll_transmit(now) {
            out.clear();
            match tx {
                Transmit::Oack(options) => packet::encode(&Packet::Oack { options }, &mut out),
                Transmit::Error { code, message } => {
                    packet::encode(&Packet::Error { code, message }, &mut out)
                }
                Transmit::Data { block, offset, len } => match source.read(offset, len).await {
                    Ok(data) if data.len() == len => {
                        sent += data.len() as u64;
                        packet::encode(&Packet::Data { block, data }, &mut out)
                    }
                    Ok(_) => {
                        // The file shrank under us: a short block would end
                        // the transfer early with a truncated file.
                        warn!("file changed during the transfer");
                        config.record(
                            peer,
                            &asked,
                            TimelineOutcome::Failed,
                            "file changed during the transfer".into(),
                        );
                        send_error(&socket, peer, ErrorCode::NotDefined, "file changed").await;
                        return;
                    }
                    Err(e) => {
                        warn!(error = %e, "TFTP read failed");
                        config.record(
                            peer,
                            &asked,
                            TimelineOutcome::Failed,
                            format!("read error: {e}"),
                        );
                        send_error(&socket, peer, ErrorCode::NotDefined, "read error").await;
                        return;
                    }
                },
            }
            if let Err(e) = socket.send(&out).await {
                debug!(error = %e, "TFTP send failed");
            }
        }
        if let Some(outcome) = transfer.outcome() {
            let elapsed_ms = started.elapsed().as_millis() as u64;
            let (recorded, detail) = match &outcome {
                Outcome::Complete => (
                    TimelineOutcome::Done,
                    format!(
                        "sent {size} bytes from {origin} in {elapsed_ms} ms (blksize {blksize}, windowsize {windowsize}, {} retransmits)",
                        transfer.retransmits()
                    ),
                ),
                Outcome::Aborted { code, message } => (
                    TimelineOutcome::Done,
                    format!(
                        "client ended the transfer: error {} {message:?}",
                        code.as_u16()
                    ),
                ),
                Outcome::TimedOut => (
                    TimelineOutcome::Failed,
                    format!("timed out after {elapsed_ms} ms: the client stopped acknowledging"),
                ),
                Outcome::ProtocolError(m) => {
                    (TimelineOutcome::Failed, format!("protocol error: {m}"))
                }
            };
            config.record(peer, &asked, recorded, detail);
            let result = match &outcome {
                Outcome::Complete => "complete",
                Outcome::Aborted { .. } => "aborted",
                Outcome::TimedOut => "timed_out",
                Outcome::ProtocolError(_) => "failed",
            };
            crate::telemetry::tftp_transfer(result, sent, transfer.retransmits());
            match outcome {
                Outcome::Complete => info!(
                    size,
                    blksize,
                    windowsize,
                    elapsed_ms,
                    retransmits = transfer.retransmits(),
                    "TFTP transfer complete"
                ),
                Outcome::Aborted { code, message } => {
                    info!(code = code.as_u16(), %message, "TFTP transfer aborted by the client")
                }
                Outcome::TimedOut => warn!(elapsed_ms, "TFTP transfer timed out"),
                Outcome::ProtocolError(m) => warn!(%m, "TFTP transfer ended on a protocol error"),
            }
            return;
        }
        if let Some(deadline) = transfer.poll_timeout()
            && armed.is_none_or(|a| a > deadline)
        {
            timer
                .as_mut()
                .reset(tokio::time::Instant::from_std(deadline));
            armed = Some(deadline);
        }
        let received = tokio::select! {
            r = socket.recv(&mut buf) => Some(r),
            () = &mut timer, if armed.is_some() => None,
        };
        match received {
            None => {
                armed = None;
                transfer.handle_timeout(Instant::now());
            }
            Some(Ok(n)) => match packet::decode(&buf[..n]) {
                Ok(p) => transfer.handle_packet(&p),
                Err(e) => debug!(error = %e, "malformed packet in transfer ignored"),
            },
            Some(Err(e)) => debug!(error = %e, "TFTP transfer receive error"),
        }
    }
}
