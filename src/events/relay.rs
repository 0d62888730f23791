//! The outbox relay: numbers the outbox's rows as they become visible
//! (`seq`) and publishes them in that order to a durable topic exchange on
//! RabbitMQ with publisher confirms, and marks a row sent only after the
//! broker acknowledged it. Any error drops the connection; the relay
//! connects again from scratch after a backoff (it does not rely on the
//! library's recovery). A message may be published twice (acked by the
//! broker, then the daemon died before marking it): consumers dedupe on
//! `message_id`, the row's publish number.
//!
//! Daemons sharing a database share its outbox: one relay at a time
//! publishes (it holds the store's `relay` lock, renewed while it is
//! connected), so that the events keep their order; the others stand by
//! and take over when the holder stops renewing.

use std::sync::Arc;
use std::time::Duration;

use lapin::options::{BasicPublishOptions, ConfirmSelectOptions, ExchangeDeclareOptions};
use lapin::types::FieldTable;
use lapin::{BasicProperties, Channel, Connection, ConnectionProperties, ExchangeKind};
use serde::Serialize;
use tokio::sync::Notify;
use tracing::{info, warn};
use utoipa::ToSchema;

use bootloader_store::{LockStore, OutboxEvent, OutboxStore};

/// The version of the message body's shape. 2: `id` is the publish
/// number, which only grows (1 had the outbox row id, which could go back
/// with writers side by side on PostgreSQL); `outbox_id` is the row.
pub const SCHEMA_VERSION: u32 = bootloader_core::published::SCHEMA_VERSION;

/// Rows published per round.
const BATCH: u32 = 200;

/// The store lock that makes one relay at a time publish, held for `HOLD`
/// and renewed every `RENEW` while connected.
const LOCK: &str = "relay";
const HOLD: Duration = Duration::from_secs(30);
const RENEW: Duration = Duration::from_secs(10);

#[derive(Debug, Clone)]
pub struct RelaySettings {
    pub url: String,
    pub exchange: String,
    /// The daemon's location, carried in every message.
    pub location: Option<String>,
    /// This daemon's name, for the relay lock.
    pub instance: String,
}

/// What the relay reports about itself.
#[derive(Debug, Clone, Default, Serialize, ToSchema)]
pub struct RelayStatus {
    /// Whether a broker is configured.
    pub enabled: bool,
    pub connected: bool,
    /// Another daemon on this database publishes the outbox; this one
    /// takes over if that one stops.
    pub standby: bool,
    pub published: u64,
    pub last_error: Option<String>,
    /// Events published and not yet confirmed by the broker, and since
    /// when the oldest has waited: a broker that stopped answering shows
    /// here before the confirm timeout reconnects.
    pub awaiting_confirms: u32,
    #[serde(with = "time::serde::rfc3339::option")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub awaiting_since: Option<time::OffsetDateTime>,
    /// Sessions ended because confirms did not come in time.
    pub confirm_timeouts: u64,
}

#[derive(Clone, Default)]
pub struct RelayHandle {
    status: super::StatusCell<RelayStatus>,
    wake: Arc<Notify>,
}

impl RelayHandle {
    pub fn status(&self) -> RelayStatus {
        self.status.get()
    }

    /// Something was written to the outbox: publish it soon.
    pub fn wake(&self) {
        self.wake.notify_one();
    }

    fn update(&self, f: impl FnOnce(&mut RelayStatus)) {
        self.status.update(f);
    }
}

/// The message body: the row's event with its envelope.
#[derive(Serialize)]
struct Envelope<'a> {
    schema_version: u32,
    id: i64,
    outbox_id: i64,
    routing_key: &'a str,
    #[serde(with = "time::serde::rfc3339")]
    created_at: time::OffsetDateTime,
    location: Option<&'a str>,
    data: &'a serde_json::Value,
}

/// How long a stopping daemon waits for the round under way (its confirms
/// and marks) before it lets go.
const FLUSH: Duration = Duration::from_secs(5);

/// Runs the relay until `shutdown` resolves; then finishes the round under
/// way, within `FLUSH`, so that what the broker confirmed is marked sent.
pub async fn run<S: OutboxStore + LockStore + ?Sized>(
    store: Arc<S>,
    settings: RelaySettings,
    handle: RelayHandle,
    shutdown: impl std::future::Future<Output = ()>,
) {
    handle.update(|s| s.enabled = true);
    tokio::pin!(shutdown);
    let mut backoff = super::Backoff::new();
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    loop {
        let running = session(&store, &settings, &handle, stop_rx.clone());
        tokio::pin!(running);
        let session = tokio::select! {
            r = &mut running => r,
            () = &mut shutdown => {
                stop_tx.send_replace(true);
                if tokio::time::timeout(FLUSH, &mut running).await.is_err() {
                    warn!("event relay: the round under way did not finish in time; \
                        its events are published again at the next start");
                }
                let _ = store.release_lock(LOCK, &settings.instance).await;
                return;
            }
        };
        let Err(e) = session else {
            let _ = store.release_lock(LOCK, &settings.instance).await;
            return;
        };
        let delay = backoff.after(handle.status().connected);
        warn!(error = %e, "event relay: broker session ended; reconnecting in {} ms", delay.as_millis());
        handle.update(|s| {
            s.connected = false;
            s.last_error = Some(e.clone());
            s.awaiting_confirms = 0;
            s.awaiting_since = None;
        });
        crate::telemetry::events_unconfirmed(0);
        tokio::select! {
            () = tokio::time::sleep(delay) => {}
            () = &mut shutdown => {
                let _ = store.release_lock(LOCK, &settings.instance).await;
                return;
            }
        }
    }
}

/// One connection's life: connect, declare, publish until an error.
async fn session<S: OutboxStore + LockStore + ?Sized>(
    store: &Arc<S>,
    settings: &RelaySettings,
    handle: &RelayHandle,
    mut stop: tokio::sync::watch::Receiver<bool>,
) -> Result<(), String> {
    let url = super::with_heartbeat(&settings.url);
    let conn = Connection::connect(&url, ConnectionProperties::default())
        .await
        .map_err(|e| format!("connect: {e}"))?;
    let channel = conn
        .create_channel()
        .await
        .map_err(|e| format!("channel: {e}"))?;
    channel
        .exchange_declare(
            settings.exchange.as_str().into(),
            ExchangeKind::Topic,
            ExchangeDeclareOptions {
                durable: true,
                ..ExchangeDeclareOptions::default()
            },
            FieldTable::default(),
        )
        .await
        .map_err(|e| format!("declare exchange {}: {e}", settings.exchange))?;
    channel
        .confirm_select(ConfirmSelectOptions::default())
        .await
        .map_err(|e| format!("confirm mode: {e}"))?;
    info!(exchange = %settings.exchange, "event relay connected");
    handle.update(|s| {
        s.connected = true;
        s.last_error = None;
    });
    // When the lock was last renewed.
    let mut held: Option<std::time::Instant> = None;
    loop {
        if *stop.borrow() {
            return Ok(());
        }
        if held.is_none_or(|at| at.elapsed() >= RENEW) {
            let now = time::OffsetDateTime::now_utc().unix_timestamp();
            let mine = store
                .hold_lock(LOCK, &settings.instance, now, now + HOLD.as_secs() as i64)
                .await
                .map_err(|e| format!("take the relay lock: {e}"))?;
            handle.update(|s| s.standby = !mine);
            if !mine {
                if held.take().is_some() {
                    warn!("event relay: another daemon publishes the outbox now");
                }
                tokio::time::sleep(Duration::from_secs(2)).await;
                if !conn.status().connected() {
                    return Err("the connection closed".into());
                }
                continue;
            }
            if held.is_none() {
                info!("event relay: this daemon publishes the outbox");
            }
            held = Some(std::time::Instant::now());
        }
        let events = store
            .pending_events(BATCH)
            .await
            .map_err(|e| format!("read the outbox: {e}"))?;
        if events.is_empty() {
            // New rows wake the relay; the poll covers rows other
            // processes wrote.
            tokio::select! {
                _ = tokio::time::timeout(Duration::from_millis(500), handle.wake.notified()) => {}
                _ = stop.changed() => {}
            }
            if !conn.status().connected() {
                return Err("the connection closed".into());
            }
            continue;
        }
        let sent = publish(&channel, settings, handle, &events).await?;
        store
            .mark_events_sent(&sent)
            .await
            .map_err(|e| format!("mark events sent: {e}"))?;
        handle.update(|s| s.published += sent.len() as u64);
    }
}

/// Publishes `events` in order and waits for the broker's confirms;
/// returns the ids it acknowledged (all, or an error).
async fn publish(
    channel: &Channel,
    settings: &RelaySettings,
    handle: &RelayHandle,
    events: &[OutboxEvent],
) -> Result<Vec<i64>, String> {
    handle.update(|s| {
        s.awaiting_confirms = events.len() as u32;
        s.awaiting_since = Some(time::OffsetDateTime::now_utc());
    });
    crate::telemetry::events_unconfirmed(events.len());
    // A broker that takes the messages and never confirms them (a silent
    // partition) ends the session: the rows stay unsent and go again.
    let result = tokio::time::timeout(
        CONFIRM_TIMEOUT,
        publish_and_confirm(channel, settings, events),
    )
    .await
    .unwrap_or_else(|_| {
        handle.update(|s| s.confirm_timeouts += 1);
        crate::telemetry::events_confirm_timeout();
        Err(format!(
            "no confirm from the broker within {} s for {} events",
            CONFIRM_TIMEOUT.as_secs(),
            events.len()
        ))
    });
    handle.update(|s| {
        s.awaiting_confirms = 0;
        s.awaiting_since = None;
    });
    crate::telemetry::events_unconfirmed(0);
    result
}

/// How long a round's publishes and confirms may take.
const CONFIRM_TIMEOUT: Duration = Duration::from_secs(15);

async fn publish_and_confirm(
    channel: &Channel,
    settings: &RelaySettings,
    events: &[OutboxEvent],
) -> Result<Vec<i64>, String> {
    let mut confirms = Vec::with_capacity(events.len());
    for e in events {
        let number = e.seq.unwrap_or(e.id);
        let body = serde_json::to_vec(&Envelope {
            schema_version: SCHEMA_VERSION,
            id: number,
            outbox_id: e.id,
            routing_key: &e.routing_key,
            created_at: e.created_at,
            location: settings.location.as_deref(),
            data: &e.payload,
        })
        .map_err(|err| format!("encode event {}: {err}", e.id))?;
        let properties = BasicProperties::default()
            .with_message_id(number.to_string().into())
            .with_content_type("application/json".into())
            .with_delivery_mode(2)
            .with_timestamp(e.created_at.unix_timestamp().max(0) as u64)
            .with_type(e.routing_key.as_str().into());
        let confirm = channel
            .basic_publish(
                settings.exchange.as_str().into(),
                e.routing_key.as_str().into(),
                BasicPublishOptions::default(),
                &body,
                properties,
            )
            .await
            .map_err(|err| format!("publish event {}: {err}", e.id))?;
        confirms.push((e.id, confirm));
    }
    let mut acked = Vec::with_capacity(confirms.len());
    for (id, confirm) in confirms {
        let c = confirm
            .await
            .map_err(|err| format!("confirm of event {id}: {err}"))?;
        if !c.is_ack() {
            return Err(format!("the broker refused event {id} (nack)"));
        }
        acked.push(id);
    }
    Ok(acked)
}
