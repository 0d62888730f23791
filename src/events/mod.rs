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

/// Deletes outbox rows older than `retention` once they are done with
/// (published, or always when no broker is configured; and notified), at
/// start and every hour, until `shutdown`.
pub async fn prune_outbox(
    store: std::sync::Arc<dyn crate::store::Store>,
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
