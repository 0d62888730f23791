//! Notifications: Slack (an incoming webhook) and email (SMTP) when a
//! deployment is created, completes or fails. They are read from the
//! outbox, like the relay's events, and marked there once every channel
//! took them, so a restart or an outage of Slack or the mail server loses
//! none: a channel that fails for a while (connection, 5xx, 429, a
//! temporary SMTP reply) is retried with backoff, in order; one that
//! refuses for good (another 4xx, a permanent SMTP reply) is logged and
//! skipped for that event. One daemon at a time sends (the store's
//! `notify` lock). Events older than a day when first seen (notifications
//! were off, say) are marked without being sent.

use std::sync::Arc;
use std::time::Duration;

use lettre::message::Mailbox;
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use serde::Serialize;
use serde_json::Value;
use tracing::{info, warn};
use utoipa::ToSchema;

use crate::config::Config;
use bootloader_store::{LockStore, OutboxEvent, OutboxStore};

const LOCK: &str = "notify";
const HOLD: Duration = Duration::from_secs(30);
const RENEW: Duration = Duration::from_secs(10);
/// How long one attempt may take.
const ATTEMPT: Duration = Duration::from_secs(15);
/// Older events are not sent.
const MAX_AGE: time::Duration = time::Duration::DAY;

/// A notification's words.
#[derive(Debug, PartialEq)]
pub struct Note {
    pub subject: String,
    pub text: String,
}

/// What to say about `event`, if it is one notifications are sent for.
pub fn note(event: &OutboxEvent, public_url: &str, location: Option<&str>) -> Option<Note> {
    let verb = match event.routing_key.as_str() {
        "deployment.new" => "started",
        "deployment.complete" => "completed",
        "deployment.error" => "failed",
        _ => return None,
    };
    let d = &event.payload;
    let text_of = |v: &Value| v.as_str().unwrap_or("?").to_string();
    let id = d["id"].as_i64().map_or("?".to_string(), |i| i.to_string());
    let server = text_of(&d["server"]);
    let profile = text_of(&d["profile"]);
    let subject = format!("{server}: deployment {id} ({profile}) {verb}");
    let mut text = subject.clone();
    if let Some(where_) = location {
        text.push_str(&format!(" in {where_}"));
    }
    text.push('.');
    if event.routing_key == "deployment.error" {
        match d["error"].as_str() {
            Some(e) => text.push_str(&format!("\nWhy: {e}")),
            None => text.push_str("\nWhy: cancelled or stopped without a reason"),
        }
    }
    let api = format!(
        "{}/api/v1/deployments/{id}",
        public_url.trim_end_matches('/')
    );
    text.push_str(&format!("\nLog: {api}/log\nTimeline: {api}/timeline"));
    Some(Note { subject, text })
}

/// How a channel's attempt ended.
#[derive(Debug)]
enum Failure {
    /// Try again later.
    Transient(String),
    /// It will not take this one.
    Permanent(String),
}

struct Slack {
    url: String,
    channel: Option<String>,
    client: reqwest::Client,
}

impl Slack {
    async fn send(&self, note: &Note) -> Result<(), Failure> {
        let mut body = serde_json::json!({ "text": note.text, "username": "bootloader" });
        if let Some(c) = &self.channel {
            body["channel"] = Value::String(c.clone());
        }
        let response = self
            .client
            .post(&self.url)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(body.to_string())
            .timeout(ATTEMPT)
            .send()
            .await
            .map_err(|e| Failure::Transient(format!("slack: {}", without_url(&e))))?;
        let status = response.status();
        if status.is_success() {
            return Ok(());
        }
        let reply: String = response
            .text()
            .await
            .unwrap_or_default()
            .chars()
            .take(200)
            .collect();
        let message = format!("slack answered {status}: {reply}");
        if status.is_client_error() && status.as_u16() != 408 && status.as_u16() != 429 {
            Err(Failure::Permanent(message))
        } else {
            Err(Failure::Transient(message))
        }
    }
}

/// A reqwest error without the URL, which holds the webhook's secret.
fn without_url(e: &reqwest::Error) -> String {
    let mut text = e.to_string();
    if let Some(url) = e.url() {
        text = text.replace(url.as_str(), "<hook url>");
    }
    text
}

struct Email {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    from: Mailbox,
    to: Vec<Mailbox>,
}

impl Email {
    async fn send(&self, note: &Note) -> Result<(), Failure> {
        let mut builder = Message::builder()
            .from(self.from.clone())
            .subject(format!("[bootloader] {}", note.subject));
        for to in &self.to {
            builder = builder.to(to.clone());
        }
        let message = builder
            .body(note.text.clone())
            .map_err(|e| Failure::Permanent(format!("email: {e}")))?;
        match self.transport.send(message).await {
            Ok(_) => Ok(()),
            Err(e) if e.is_permanent() => Err(Failure::Permanent(format!("email: {e}"))),
            Err(e) => Err(Failure::Transient(format!("email: {e}"))),
        }
    }
}

/// What the notifier reports about itself.
#[derive(Debug, Clone, Default, Serialize, ToSchema)]
pub struct NotifyStatus {
    pub slack: bool,
    pub email: bool,
    /// Notifications delivered (per channel).
    pub sent: u64,
    /// Given up: a channel refused them for good.
    pub refused: u64,
    /// Another daemon on this database sends them.
    pub standby: bool,
    pub last_error: Option<String>,
}

/// The status the API shows.
pub type NotifyHandle = super::StatusCell<NotifyStatus>;

pub struct Notifier {
    slack: Option<Slack>,
    email: Option<Email>,
    public_url: String,
    location: Option<String>,
    instance: String,
}

impl Notifier {
    /// From `[slack]` and `[email]`; `None` when neither is configured. An
    /// address or SMTP URL that does not parse is an error naming it.
    pub fn from_config(config: &Config, instance: &str) -> anyhow::Result<Option<Self>> {
        let slack = match &config.slack_hook_url {
            Some(url) => Some(Slack {
                url: url.expose().to_string(),
                channel: config.slack_channel.clone(),
                client: reqwest::Client::builder()
                    .build()
                    .map_err(|e| anyhow::anyhow!("slack: no HTTP client: {e}"))?,
            }),
            None => None,
        };
        let email = match &config.email {
            Some(e) => {
                let transport = AsyncSmtpTransport::<Tokio1Executor>::from_url(e.smtp_url.expose())
                    .map_err(|err| anyhow::anyhow!("email.smtp_url: {err}"))?
                    .timeout(Some(ATTEMPT))
                    .build();
                let from: Mailbox = e
                    .from
                    .parse()
                    .map_err(|err| anyhow::anyhow!("email.from {:?}: {err}", e.from))?;
                let to =
                    e.to.iter()
                        .map(|a| {
                            a.parse::<Mailbox>()
                                .map_err(|err| anyhow::anyhow!("email.to {a:?}: {err}"))
                        })
                        .collect::<anyhow::Result<Vec<_>>>()?;
                Some(Email {
                    transport,
                    from,
                    to,
                })
            }
            None => None,
        };
        if slack.is_none() && email.is_none() {
            return Ok(None);
        }
        Ok(Some(Self {
            slack,
            email,
            public_url: config.public_url.clone(),
            location: config
                .boot
                .dhcp
                .location
                .as_ref()
                .map(|l| l.as_str().to_string()),
            instance: instance.to_string(),
        }))
    }

    /// Sends until `shutdown` resolves.
    pub async fn run<S: OutboxStore + LockStore + ?Sized>(
        self: Arc<Self>,
        store: Arc<S>,
        handle: NotifyHandle,
        shutdown: impl std::future::Future<Output = ()>,
    ) {
        handle.update(|s| {
            s.slack = self.slack.is_some();
            s.email = self.email.is_some();
        });
        tokio::pin!(shutdown);
        tokio::select! {
            () = self.work(&store, &handle) => {}
            () = &mut shutdown => {}
        }
        let _ = store.release_lock(LOCK, &self.instance).await;
    }

    async fn work<S: OutboxStore + LockStore + ?Sized>(
        &self,
        store: &Arc<S>,
        handle: &NotifyHandle,
    ) {
        let mut held: Option<std::time::Instant> = None;
        loop {
            if held.is_none_or(|at| at.elapsed() >= RENEW) {
                let now = time::OffsetDateTime::now_utc().unix_timestamp();
                match store
                    .hold_lock(LOCK, &self.instance, now, now + HOLD.as_secs() as i64)
                    .await
                {
                    Ok(true) => held = Some(std::time::Instant::now()),
                    Ok(false) => {
                        held = None;
                        handle.update(|s| s.standby = true);
                        tokio::time::sleep(Duration::from_secs(2)).await;
                        continue;
                    }
                    Err(e) => {
                        warn!(error = %e, "notifications: cannot reach the store");
                        tokio::time::sleep(Duration::from_secs(2)).await;
                        continue;
                    }
                }
                handle.update(|s| s.standby = false);
            }
            let events = match store.pending_notifications(50).await {
                Ok(e) => e,
                Err(e) => {
                    warn!(error = %e, "notifications: cannot read the outbox");
                    tokio::time::sleep(Duration::from_secs(2)).await;
                    continue;
                }
            };
            if events.is_empty() {
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
            for event in &events {
                self.deliver(event, handle).await;
                // Marked once every channel took it (or refused it for
                // good); until the store takes the mark, it stays pending.
                while let Err(e) = store.mark_notified(event.id).await {
                    warn!(error = %e, "notifications: cannot mark an event sent");
                    tokio::time::sleep(Duration::from_secs(2)).await;
                }
                if held.is_some_and(|at| at.elapsed() >= RENEW) {
                    break;
                }
            }
        }
    }

    /// Sends `event` on every channel, retrying what fails for a while.
    async fn deliver(&self, event: &OutboxEvent, handle: &NotifyHandle) {
        if time::OffsetDateTime::now_utc() - event.created_at > MAX_AGE {
            info!(event = event.id, "notifications: too old to send; skipped");
            return;
        }
        let Some(note) = note(event, &self.public_url, self.location.as_deref()) else {
            return;
        };
        let mut pending: Vec<Channel> = [
            self.slack.as_ref().map(|_| Channel::Slack),
            self.email.as_ref().map(|_| Channel::Email),
        ]
        .into_iter()
        .flatten()
        .collect();
        let mut backoff = Duration::from_secs(1);
        loop {
            let mut again = Vec::new();
            for channel in pending {
                match self.send(channel, &note).await {
                    Ok(()) => handle.update(|s| s.sent += 1),
                    Err(Failure::Permanent(m)) => {
                        warn!(event = event.id, error = %m, "notification refused; not retried");
                        handle.update(|s| {
                            s.refused += 1;
                            s.last_error = Some(m);
                        });
                    }
                    Err(Failure::Transient(m)) => {
                        warn!(event = event.id, error = %m,
                            "notification failed; retrying in {} s", backoff.as_secs());
                        handle.update(|s| s.last_error = Some(m));
                        again.push(channel);
                    }
                }
            }
            if again.is_empty() {
                return;
            }
            pending = again;
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(Duration::from_secs(300));
        }
    }

    async fn send(&self, channel: Channel, note: &Note) -> Result<(), Failure> {
        match (channel, &self.slack, &self.email) {
            (Channel::Slack, Some(slack), _) => slack.send(note).await,
            (Channel::Email, _, Some(email)) => email.send(note).await,
            _ => Ok(()),
        }
    }
}

#[derive(Debug, Clone, Copy)]
enum Channel {
    Slack,
    Email,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(key: &str, payload: Value) -> OutboxEvent {
        OutboxEvent {
            seq: None,
            id: 7,
            routing_key: key.into(),
            payload,
            created_at: time::OffsetDateTime::UNIX_EPOCH,
        }
    }

    #[test]
    fn notes_for_deployment_events_only() {
        let d = serde_json::json!({"id": 12, "server": "n1.dc1.example.com",
            "profile": "payload==1.0", "error": "installing #1 expect_callback: timed out"});
        let n = note(
            &event("deployment.error", d.clone()),
            "http://10.0.0.1:8080/",
            Some("dc1"),
        )
        .unwrap();
        assert_eq!(
            n.subject,
            "n1.dc1.example.com: deployment 12 (payload==1.0) failed"
        );
        assert!(n.text.contains(" in dc1."), "{}", n.text);
        assert!(
            n.text
                .contains("Why: installing #1 expect_callback: timed out")
        );
        assert!(
            n.text
                .contains("http://10.0.0.1:8080/api/v1/deployments/12/log")
        );
        let n = note(&event("deployment.complete", d.clone()), "http://x", None).unwrap();
        assert!(n.subject.ends_with("completed") && !n.text.contains("Why"));
        assert!(
            note(&event("deployment.new", d.clone()), "http://x", None)
                .unwrap()
                .subject
                .ends_with("started")
        );
        for key in ["deployment.installing", "server.created", "power.cycle"] {
            assert_eq!(
                note(&event(key, d.clone()), "http://x", None),
                None,
                "{key}"
            );
        }
    }
}
