//! How a transfer's packets move on its connected socket: on the runtime
//! (every transfer by default), or on a thread of its own that blocks in
//! `recv` (a long lock-step transfer, where the runtime's path from
//! `epoll_wait` to the task is a large part of each block's cost:
//! BENCHMARKS.md). The transfer's loop (`transfer.rs`) is the same for
//! both.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// A transfer's socket, connected to its client.
pub(super) trait Wire {
    async fn send(&mut self, packet: &[u8]) -> io::Result<()>;

    /// The next datagram from the client, or `None` once `deadline` has
    /// passed. It may come back early: the transfer looks at its own
    /// deadline, and asks again.
    async fn recv(
        &mut self,
        buf: &mut [u8],
        deadline: Option<Instant>,
    ) -> Option<io::Result<usize>>;

    /// Whether the server has stopped and cut this transfer off.
    fn cut(&self) -> bool {
        false
    }
}

/// On the runtime, with one timer for the transfer, armed lazily: the
/// deadline moves with every ACK (one per block in lock-step), the timer
/// only when it would fire late. Firing early is harmless.
pub(super) struct OnRuntime {
    socket: tokio::net::UdpSocket,
    timer: Pin<Box<tokio::time::Sleep>>,
    armed: Option<Instant>,
}

impl OnRuntime {
    pub(super) fn new(socket: tokio::net::UdpSocket) -> Self {
        Self {
            socket,
            timer: Box::pin(tokio::time::sleep_until(tokio::time::Instant::now())),
            armed: None,
        }
    }

    /// The socket, to be driven on a thread instead.
    pub(super) fn into_blocking(self, cut: Arc<AtomicBool>) -> io::Result<OnThread> {
        let socket = self.socket.into_std()?;
        socket.set_nonblocking(false)?;
        Ok(OnThread {
            socket,
            waits: None,
            cut,
        })
    }
}

impl Wire for OnRuntime {
    async fn send(&mut self, packet: &[u8]) -> io::Result<()> {
        self.socket.send(packet).await.map(drop)
    }

    async fn recv(
        &mut self,
        buf: &mut [u8],
        deadline: Option<Instant>,
    ) -> Option<io::Result<usize>> {
        if let Some(deadline) = deadline
            && self.armed.is_none_or(|a| a > deadline)
        {
            self.timer
                .as_mut()
                .reset(tokio::time::Instant::from_std(deadline));
            self.armed = Some(deadline);
        }
        tokio::select! {
            r = self.socket.recv(buf) => Some(r),
            () = self.timer.as_mut(), if self.armed.is_some() => {
                self.armed = None;
                None
            }
        }
    }
}

/// The longest a thread waits in `recv` before it looks at `cut`.
const LONGEST_WAIT: Duration = Duration::from_secs(1);
/// How much later than its deadline a receive may give up: the socket's
/// timeout is set again only past this, not at every block.
const SLACK: Duration = Duration::from_millis(5);

/// On a thread of its own, blocking in `recv` with the socket's receive
/// timeout as the transfer's timer.
pub(super) struct OnThread {
    socket: std::net::UdpSocket,
    /// The receive timeout the socket has now.
    waits: Option<Duration>,
    cut: Arc<AtomicBool>,
}

impl Wire for OnThread {
    async fn send(&mut self, packet: &[u8]) -> io::Result<()> {
        self.socket.send(packet).map(drop)
    }

    async fn recv(
        &mut self,
        buf: &mut [u8],
        deadline: Option<Instant>,
    ) -> Option<io::Result<usize>> {
        let wait = deadline
            .map_or(LONGEST_WAIT, |d| {
                d.saturating_duration_since(Instant::now())
            })
            .min(LONGEST_WAIT);
        if wait.is_zero() {
            return None;
        }
        // A lock-step transfer asks with nearly the same wait every block:
        // one `setsockopt` per transfer, not per block.
        if self.waits.is_none_or(|w| w > wait + SLACK || w < wait / 2) {
            if let Err(e) = self.socket.set_read_timeout(Some(wait)) {
                return Some(Err(e));
            }
            self.waits = Some(wait);
        }
        match self.socket.recv(buf) {
            Ok(n) => Some(Ok(n)),
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                None
            }
            Err(e) => Some(Err(e)),
        }
    }

    fn cut(&self) -> bool {
        self.cut.load(Ordering::Relaxed)
    }
}
