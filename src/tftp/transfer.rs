//! One read transfer: its file (a deployment's, or the root's), its
//! negotiation, and the loop that drives the core's `Transfer` over its
//! socket (`wire.rs`), on the runtime or, for a long lock-step transfer,
//! on a thread of its own.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use tokio::net::UdpSocket;
use tokio::sync::Semaphore;
use tracing::{debug, info, warn};

use super::root_files::{self, RootFiles};
use super::server::TftpConfig;
use super::wire::{OnRuntime, Wire};
use crate::files::Refusal;
use bootloader_core::dhcp::quirks;
use bootloader_core::model::{Outcome as TimelineOutcome, Via};
use bootloader_core::tftp::packet::{self, ErrorCode, Mode, Packet, Request};
use bootloader_core::tftp::transfer::{Outcome, Transfer, Transmit, negotiate};

/// A lock-step transfer of at least this many blocks gets a thread of its
/// own while one is free: a kernel or an initrd that pxelinux or an old
/// PXE ROM fetches, not an NBP.
const LONG_LOCKSTEP_BLOCKS: u64 = 1024;

/// Threads for long lock-step transfers. The server holds the first
/// value; when it drops it (the server stopped, or was cancelled), the
/// transfers on threads are cut off within a second, as those on the
/// runtime end with it.
pub(super) struct Threads {
    slots: Arc<Semaphore>,
    cut: Arc<AtomicBool>,
    /// Whether dropping this value cuts the transfers off.
    owner: bool,
}

impl Threads {
    pub(super) fn new(count: usize) -> Self {
        Self {
            slots: Arc::new(Semaphore::new(count)),
            cut: Arc::default(),
            owner: true,
        }
    }

    /// A handle for one transfer.
    pub(super) fn handle(&self) -> Self {
        Self {
            slots: self.slots.clone(),
            cut: self.cut.clone(),
            owner: false,
        }
    }
}

impl Drop for Threads {
    fn drop(&mut self) {
        if self.owner {
            self.cut.store(true, Ordering::Relaxed);
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

pub(super) async fn run_transfer(
    local: SocketAddr,
    peer: SocketAddr,
    request: Request,
    config: Arc<TftpConfig>,
    root_files: &RootFiles,
    threads: &Threads,
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
    let mut wire = OnRuntime::new(socket);
    let (mut source, size, origin) = match open_source(&config, root_files, &request.filename).await
    {
        Ok(x) => x,
        Err((code, message)) => {
            info!(%message, "TFTP request refused");
            config.record(peer, &asked, TimelineOutcome::Refused, message.clone());
            send_error(&mut wire, code, &message).await;
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
    let transfer = Transfer::new(negotiated, size, &limits);
    let chunk_size = (usize::from(blksize) * usize::from(windowsize)).clamp(MIN_CHUNK, CHUNK);
    if let Source::File(reader) = &mut source {
        reader.chunk_size = chunk_size;
    }
    let job = Job {
        peer,
        asked,
        origin,
        size,
        blksize,
        windowsize,
        transfer,
        source,
    };
    let long = windowsize == 1 && size / u64::from(blksize) >= LONG_LOCKSTEP_BLOCKS;
    if long && let Ok(slot) = threads.slots.clone().try_acquire_owned() {
        let wire = match wire.into_blocking(threads.cut.clone()) {
            Ok(w) => w,
            Err(e) => {
                // The client asks again, and gets a new transfer.
                warn!(error = %e, "cannot hand a TFTP transfer to a thread");
                return;
            }
        };
        debug!("a long lock-step transfer: on a thread of its own");
        let runtime = tokio::runtime::Handle::current();
        let span = tracing::Span::current();
        let done = tokio::task::spawn_blocking(move || {
            let _slot = slot;
            // Nothing in the loop waits on the runtime but the file's
            // chunk reads (one per 256 KiB), which go to the blocking pool.
            span.in_scope(|| runtime.block_on(job.drive(wire, &config)))
        })
        .await;
        if let Err(e) = done {
            warn!(error = %e, "a TFTP transfer's thread failed");
        }
        return;
    }
    job.drive(wire, &config).await;
}

/// A transfer ready to run: what it sends, and what the timeline says of it.
struct Job {
    peer: SocketAddr,
    asked: String,
    origin: &'static str,
    size: u64,
    blksize: u16,
    windowsize: u16,
    transfer: Transfer,
    source: Source,
}

impl Job {
    async fn drive(self, mut wire: impl Wire, config: &TftpConfig) {
        let Job {
            peer,
            asked,
            origin,
            size,
            blksize,
            windowsize,
            mut transfer,
            mut source,
        } = self;
        let mut out = Vec::with_capacity(usize::from(blksize) + 4);
        // Clients send only ACK and ERROR, both small.
        let mut buf = vec![0u8; 2048];
        let started = Instant::now();
        // Bytes of DATA sent, retransmissions included.
        let mut sent: u64 = 0;
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
                            send_error(&mut wire, ErrorCode::NotDefined, "file changed").await;
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
                            send_error(&mut wire, ErrorCode::NotDefined, "read error").await;
                            return;
                        }
                    },
                }
                if let Err(e) = wire.send(&out).await {
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
                        format!(
                            "timed out after {elapsed_ms} ms: the client stopped acknowledging"
                        ),
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
                    Outcome::ProtocolError(m) => {
                        warn!(%m, "TFTP transfer ended on a protocol error")
                    }
                }
                return;
            }
            if wire.cut() {
                warn!("TFTP transfer cut off: the server stops");
                config.record(
                    peer,
                    &asked,
                    TimelineOutcome::Failed,
                    "cut off: the server stopped".into(),
                );
                return;
            }
            match wire.recv(&mut buf, transfer.poll_timeout()).await {
                None => transfer.handle_timeout(Instant::now()),
                Some(Ok(n)) => match packet::decode(&buf[..n]) {
                    Ok(p) => transfer.handle_packet(&p),
                    Err(e) => debug!(error = %e, "malformed packet in transfer ignored"),
                },
                Some(Err(e)) => debug!(error = %e, "TFTP transfer receive error"),
            }
        }
    }
}

/// An ERROR packet.
pub(super) fn error_packet(code: ErrorCode, message: &str) -> Vec<u8> {
    let mut out = Vec::new();
    packet::encode(
        &Packet::Error {
            code,
            message: message.to_string(),
        },
        &mut out,
    );
    out
}

/// An ERROR to the client; a failure to send it is only logged.
async fn send_error(wire: &mut impl Wire, code: ErrorCode, message: &str) {
    if let Err(e) = wire.send(&error_packet(code, message)).await {
        debug!(error = %e, "could not send TFTP error");
    }
}
