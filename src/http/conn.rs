//! The HTTP accept loop and what it bounds: connections at once (globally,
//! where the connection idle longest makes room for a newcomer, and per
//! source address, refused at accept), the time a request head may take,
//! and a connection on which nothing moves. Plain HTTP and HTTPS both use
//! it; the boot path (`/ipxe`, `/static`) shares the listener with the API,
//! so these bounds are what keeps machines booting while someone holds
//! thousands of idle or slowloris connections.

use std::collections::HashMap;
use std::future::Future;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::Notify;
use tokio::time::{Instant, Sleep};

use super::Front;

/// The bounds one listener applies.
#[derive(Debug, Clone)]
pub struct ConnLimits {
    pub max: usize,
    pub per_source: usize,
    pub header_timeout: Duration,
    pub idle_timeout: Duration,
}

impl ConnLimits {
    pub fn from_config(l: &crate::config::Limits) -> Self {
        Self {
            max: l.http_connections,
            per_source: l.http_connections_per_source,
            header_timeout: l.http_header_timeout,
            idle_timeout: l.http_idle_timeout,
        }
    }
}

/// The connections a listener holds.
pub struct Tracker {
    limits: ConnLimits,
    epoch: Instant,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    next: u64,
    conns: HashMap<u64, Entry>,
    per_source: HashMap<IpAddr, usize>,
}

struct Entry {
    source: IpAddr,
    /// Milliseconds since `epoch` when a byte last moved.
    activity: Arc<AtomicU64>,
    evict: Arc<Notify>,
}

/// Why a connection was not admitted.
#[derive(Debug, PartialEq, Eq)]
pub enum Refused {
    PerSource,
}

/// One admitted connection; dropping it frees its place.
pub struct Slot {
    tracker: Arc<Tracker>,
    id: u64,
    activity: Arc<AtomicU64>,
    evict: Arc<Notify>,
}

impl Tracker {
    pub fn new(limits: ConnLimits) -> Arc<Self> {
        Arc::new(Self {
            limits,
            epoch: Instant::now(),
            state: Mutex::new(State::default()),
        })
    }

    fn now_ms(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64
    }

    /// Connections held now.
    pub fn open(&self) -> usize {
        self.state.lock().map(|s| s.conns.len()).unwrap_or(0)
    }

    /// Admits a connection from `source`: refused when the source holds
    /// its share; at the global cap, the connection idle longest is told
    /// to close.
    pub fn admit(self: &Arc<Self>, source: IpAddr) -> Result<Slot, Refused> {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let held = state.per_source.get(&source).copied().unwrap_or(0);
        if held >= self.limits.per_source {
            return Err(Refused::PerSource);
        }
        if state.conns.len() >= self.limits.max {
            let oldest = state
                .conns
                .iter()
                .min_by_key(|(_, e)| e.activity.load(Ordering::Relaxed))
                .map(|(id, _)| *id);
            if let Some(id) = oldest
                && let Some(entry) = state.conns.remove(&id)
            {
                release(&mut state.per_source, entry.source);
                entry.evict.notify_one();
                crate::telemetry::http_connection_closed("evicted");
            }
        }
        state.next += 1;
        let id = state.next;
        let activity = Arc::new(AtomicU64::new(self.now_ms()));
        let evict = Arc::new(Notify::new());
        state.conns.insert(
            id,
            Entry {
                source,
                activity: activity.clone(),
                evict: evict.clone(),
            },
        );
        *state.per_source.entry(source).or_insert(0) += 1;
        crate::telemetry::http_connections(state.conns.len());
        Ok(Slot {
            tracker: self.clone(),
            id,
            activity,
            evict,
        })
    }
}

fn release(per_source: &mut HashMap<IpAddr, usize>, source: IpAddr) {
    if let Some(n) = per_source.get_mut(&source) {
        *n -= 1;
        if *n == 0 {
            per_source.remove(&source);
        }
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut state = self.tracker.state.lock().unwrap_or_else(|e| e.into_inner());
        // An evicted connection was removed already.
        if let Some(entry) = state.conns.remove(&self.id) {
            release(&mut state.per_source, entry.source);
        }
        crate::telemetry::http_connections(state.conns.len());
    }
}

/// A stream that records when bytes move and fails once none has moved
/// for `idle` while the connection waits on it.
struct Watched<T> {
    inner: T,
    idle: Duration,
    last: Instant,
    deadline: Pin<Box<Sleep>>,
    tracker: Arc<Tracker>,
    activity: Arc<AtomicU64>,
}

impl<T> Watched<T> {
    fn new(inner: T, idle: Duration, slot: &Slot) -> Self {
        let now = Instant::now();
        Self {
            inner,
            idle,
            last: now,
            deadline: Box::pin(tokio::time::sleep_until(now + idle)),
            tracker: slot.tracker.clone(),
            activity: slot.activity.clone(),
        }
    }

    fn moved(&mut self) {
        self.last = Instant::now();
        self.activity
            .store(self.tracker.now_ms(), Ordering::Relaxed);
    }

    /// Called when the stream is not ready: an error once it has been
    /// still for `idle`. The timer is moved forward lazily, only when it
    /// fires early.
    fn still(&mut self, cx: &mut Context<'_>) -> Poll<io::Error> {
        loop {
            if self.deadline.as_mut().poll(cx).is_pending() {
                return Poll::Pending;
            }
            let due = self.last + self.idle;
            if Instant::now() >= due {
                crate::telemetry::http_connection_closed("idle_timeout");
                return Poll::Ready(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "no bytes moved within the idle timeout",
                ));
            }
            self.deadline.as_mut().reset(due);
        }
    }
}

impl<T> Watched<T> {
    /// After a write: bytes moved, or the stream is still.
    fn wrote(
        &mut self,
        cx: &mut Context<'_>,
        r: Poll<io::Result<usize>>,
    ) -> Poll<io::Result<usize>> {
        match r {
            Poll::Ready(Ok(n)) => {
                if n > 0 {
                    self.moved();
                }
                Poll::Ready(Ok(n))
            }
            Poll::Pending => self.still(cx).map(Err),
            other => other,
        }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for Watched<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        match Pin::new(&mut this.inner).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                if buf.filled().len() > before {
                    this.moved();
                }
                Poll::Ready(Ok(()))
            }
            Poll::Pending => this.still(cx).map(Err),
            other => other,
        }
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Watched<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let r = Pin::new(&mut this.inner).poll_write(cx, data);
        this.wrote(cx, r)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        match Pin::new(&mut this.inner).poll_flush(cx) {
            Poll::Pending => this.still(cx).map(Err),
            other => other,
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let r = Pin::new(&mut this.inner).poll_write_vectored(cx, bufs);
        this.wrote(cx, r)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

/// Serves one admitted connection with `front` until it ends, is
/// evicted, or the server stops (then the request under way finishes).
pub async fn serve_connection<T>(
    io: T,
    peer: SocketAddr,
    slot: Slot,
    limits: &ConnLimits,
    front: Front,
    watcher: hyper_util::server::graceful::Watcher,
) where
    T: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let io = Watched::new(io, limits.idle_timeout, &slot);
    let service = hyper::service::service_fn(move |req| {
        let front = front.clone();
        async move { Ok::<_, std::convert::Infallible>(front.answer(peer, req).await) }
    });
    let connection = hyper::server::conn::http1::Builder::new()
        .timer(hyper_util::rt::TokioTimer::new())
        .header_read_timeout(limits.header_timeout)
        .max_buf_size(64 * 1024)
        .serve_connection(TokioIo::new(io), service);
    let evict = slot.evict.clone();
    tokio::select! {
        r = watcher.watch(connection) => {
            if let Err(e) = r {
                if e.is_timeout() {
                    crate::telemetry::http_connection_closed("header_timeout");
                }
                tracing::debug!(%peer, error = %e, "HTTP connection ended");
            }
        }
        () = evict.notified() => {
            tracing::debug!(%peer, "HTTP connection closed for a newer one (connection limit)");
        }
    }
    drop(slot);
}

/// Accepts on `listener` until `shutdown` resolves, handing each admitted
/// connection (after `upgrade`, e.g. a TLS handshake) to
/// `serve_connection`; then stops accepting and waits for the requests
/// under way.
pub async fn serve<T, U, F>(
    listener: tokio::net::TcpListener,
    front: Front,
    limits: ConnLimits,
    upgrade: U,
    shutdown: impl Future<Output = ()>,
) where
    T: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    U: Fn(tokio::net::TcpStream, SocketAddr) -> F + Clone + Send + 'static,
    F: Future<Output = Option<T>> + Send + 'static,
{
    let tracker = Tracker::new(limits.clone());
    let limits = Arc::new(limits);
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    tokio::pin!(shutdown);
    let mut accept_errors = 0u64;
    loop {
        let (tcp, peer) = tokio::select! {
            r = listener.accept() => match r {
                Ok(c) => c,
                Err(e) => {
                    // Out of file descriptors (or the like): say so now and
                    // then, and give the connections in hand time to end
                    // rather than spinning on accept.
                    accept_errors += 1;
                    if accept_errors.is_power_of_two() {
                        tracing::warn!(error = %e, errors = accept_errors, "HTTP accept failed");
                    }
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let slot = match tracker.admit(peer.ip()) {
            Ok(s) => s,
            Err(Refused::PerSource) => {
                crate::telemetry::http_connection_closed("per_source");
                tracing::debug!(%peer, "HTTP connection refused: its address holds its share");
                drop(tcp);
                continue;
            }
        };
        // Small answers (boot scripts, API replies) go out at once.
        let _ = tcp.set_nodelay(true);
        let front = front.clone();
        let limits = limits.clone();
        let watcher = graceful.watcher();
        let upgrade = upgrade.clone();
        tokio::spawn(async move {
            if let Some(io) = upgrade(tcp, peer).await {
                serve_connection(io, peer, slot, &limits, front, watcher).await;
            }
        });
    }
    graceful.shutdown().await;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(max: usize, per_source: usize) -> ConnLimits {
        ConnLimits {
            max,
            per_source,
            header_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
        }
    }

    #[tokio::test]
    async fn a_source_gets_its_share_and_the_longest_idle_makes_room() {
        let tracker = Tracker::new(limits(3, 2));
        let a: IpAddr = [10, 0, 0, 1].into();
        let b: IpAddr = [10, 0, 0, 2].into();
        let a1 = tracker.admit(a).unwrap();
        let _a2 = tracker.admit(a).unwrap();
        assert_eq!(tracker.admit(a).err(), Some(Refused::PerSource));
        // a1 was busy a moment ago; a2 has been idle longest.
        a1.activity.store(1_000_000, Ordering::Relaxed);
        let b1 = tracker.admit(b).unwrap();
        b1.activity.store(500_000, Ordering::Relaxed);
        assert_eq!(tracker.open(), 3);
        let b2 = tracker.admit(b).unwrap();
        assert_eq!(tracker.open(), 3, "one was evicted for the newcomer");
        // a's evicted connection freed its share: a may connect again.
        let _a3 = tracker.admit(a).unwrap();
        drop(b2);
        drop(a1);
        assert_eq!(tracker.open(), 2);
        let state = tracker.state.lock().unwrap();
        assert_eq!(state.per_source.get(&a), Some(&1));
        assert_eq!(state.per_source.get(&b), Some(&1));
    }
}
