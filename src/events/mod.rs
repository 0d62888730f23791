//! Events for the web layer and other tools: the outbox relay to RabbitMQ
//! (`relay.rs`), the command queue (`commands.rs`), and notifications to
//! Slack and email (`notify.rs`). Only this module knows AMQP and SMTP.

pub mod commands;
pub mod notify;
pub mod relay;

use std::sync::{Arc, Mutex};

/// A part's status, shared between its task (which updates it) and the
/// API (which reads a copy).
#[derive(Debug, Default)]
pub struct StatusCell<T>(Arc<Mutex<T>>);

impl<T> Clone for StatusCell<T> {
    fn clone(&self) -> Self {
        Self(Arc::clone(&self.0))
    }
}

impl<T: Clone> StatusCell<T> {
    pub fn get(&self) -> T {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    pub fn update(&self, f: impl FnOnce(&mut T)) {
        f(&mut self.0.lock().unwrap_or_else(|e| e.into_inner()));
    }
}

/// AMQP heartbeats, in seconds, unless the broker URL names its own
/// (`?heartbeat=N`): a broker that stops answering (a silent partition,
/// packets dropped rather than refused) is noticed within about twice this.
pub const HEARTBEAT_SECS: u16 = 10;

/// The broker URL with `heartbeat=HEARTBEAT_SECS` added when it names none.
pub fn with_heartbeat(url: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (url, None),
    };
    match query {
        Some(q) if q.split('&').any(|p| p.starts_with("heartbeat=")) => url.to_string(),
        Some(q) if !q.is_empty() => format!("{base}?{q}&heartbeat={HEARTBEAT_SECS}"),
        _ => format!("{base}?heartbeat={HEARTBEAT_SECS}"),
    }
}

/// Reconnection delays: from `FIRST`, doubling to `LAST`; back to `FIRST`
/// once a session got connected, so that a short blip after a long outage
/// costs half a second, not the long outage's delay.
#[derive(Debug)]
pub struct Backoff {
    next: std::time::Duration,
}

impl Backoff {
    const FIRST: std::time::Duration = std::time::Duration::from_millis(500);
    const LAST: std::time::Duration = std::time::Duration::from_secs(30);

    pub fn new() -> Self {
        Self { next: Self::FIRST }
    }

    /// The delay before the next attempt, after a session that did or did
    /// not get connected.
    pub fn after(&mut self, connected: bool) -> std::time::Duration {
        if connected {
            self.next = Self::FIRST;
        }
        let delay = self.next;
        self.next = (self.next * 2).min(Self::LAST);
        delay
    }
}

impl Default for Backoff {
    fn default() -> Self {
        Self::new()
    }
}

/// Deletes outbox rows older than `retention` once they are done with
/// (published, or always when no broker is configured; and notified), at
/// start and every hour, until `shutdown`.
pub async fn prune_outbox(
    store: std::sync::Arc<dyn bootloader_store::OutboxStore>,
    retention: std::time::Duration,
    no_broker: bool,
    shutdown: impl std::future::Future<Output = ()>,
) {
    tokio::pin!(shutdown);
    let mut tick = tokio::time::interval(std::time::Duration::from_secs(3600));
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            () = &mut shutdown => return,
        }
        let before = time::OffsetDateTime::now_utc() - retention;
        match store.prune_outbox(before, no_broker).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(deleted = n, "pruned old outbox rows"),
            Err(e) => tracing::warn!(error = %e, "cannot prune the outbox"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn backoff_doubles_and_starts_over_after_a_good_session() {
        let mut b = Backoff::new();
        let delays: Vec<u128> = (0..8).map(|_| b.after(false).as_millis()).collect();
        assert_eq!(delays, [500, 1000, 2000, 4000, 8000, 16000, 30000, 30000]);
        assert_eq!(b.after(true), Duration::from_millis(500));
        assert_eq!(b.after(false), Duration::from_millis(1000));
    }

    #[test]
    fn heartbeat_is_added_unless_given() {
        assert_eq!(with_heartbeat("amqp://h/%2f"), "amqp://h/%2f?heartbeat=10");
        assert_eq!(
            with_heartbeat("amqp://h/%2f?frame_max=4096"),
            "amqp://h/%2f?frame_max=4096&heartbeat=10"
        );
        assert_eq!(
            with_heartbeat("amqp://h?heartbeat=30"),
            "amqp://h?heartbeat=30"
        );
    }
}
