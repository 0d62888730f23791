//! Carries out what the plan (`bootloader_core::workflow::plan`) asks of a
//! deployment: renders and serves its files, downloads url sources into
//! the cache, stops serving files, sends commands to the server's BMC,
//! renders echo messages, reads the callbacks that arrived, and says what
//! the machine did last when an action times out. One attempt per call:
//! retries, deadlines and cancels are the driver's (`engine/drive.rs`).

use std::sync::Arc;

use async_trait::async_trait;

use super::download::DownloadCache;
use super::templates::{Subject, Templates};
use crate::power::service::{PowerCommand, PowerService};
use bootloader_core::dhcp::classify::Firmware;
use bootloader_core::model::{Phase, Via};
use bootloader_core::power::BootRequest;
use bootloader_core::profile::FileSource;
use bootloader_core::published::boot::BootEvent;
use bootloader_core::workflow::plan::Work;
use bootloader_store::{BootStore, InventoryStore, StoreError, TimelineStore};

/// How much of a callback's body goes into the log.
const CALLBACK_BODY_IN_LOG: usize = 4096;

/// Why an attempt failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    /// Another attempt would fail the same way.
    Final(String),
    /// Another attempt may succeed (a download, a BMC that did not
    /// answer): `error` is what this attempt met, `reason` what the action
    /// fails with when no attempt is left.
    Transient { error: String, reason: String },
    /// The store was down or busy: the attempt is made again once it
    /// answers, without counting against the action's retries (the
    /// action's deadline still holds).
    Store(String),
}

impl Failure {
    /// What store error `e` makes of an attempt, `what` saying what could
    /// not be done: the store down or busy is `Store`; anything else (the
    /// server deleted, say) is the action's failure.
    pub fn of_store(what: &str, e: StoreError) -> Self {
        let line = format!("{what}: {e}");
        match e {
            StoreError::Unavailable(_) => Self::Store(line),
            _ => Self::Final(line),
        }
    }
}

#[async_trait]
pub trait Executor: Send + Sync + 'static {
    /// Makes one attempt at `work` for `subject`; `Ok` says what was done.
    async fn perform(&self, subject: Subject<'_>, work: Work<'_>) -> Result<String, Failure>;
    /// The callbacks of deployment `id` that have arrived: each name with
    /// the log line it gives (`callback_said`).
    async fn callbacks(&self, id: i64) -> Result<Vec<(String, String)>, StoreError>;
    /// What the machine did last, for the reason of a timeout (`None` if
    /// nothing is known).
    async fn last_seen(&self, subject: Subject<'_>) -> Option<String>;
}

/// The executor of the daemon: the store, the power service and the
/// download cache.
pub struct StoreExecutor {
    pub templates: Arc<Templates>,
    pub inventory: Arc<dyn InventoryStore>,
    pub boot: Arc<dyn BootStore>,
    pub timeline: Arc<dyn TimelineStore>,
    pub power: Arc<PowerService>,
    /// `Err`: why downloads cannot work here (no TLS roots, say).
    pub downloads: Result<DownloadCache, String>,
}

#[async_trait]
impl Executor for StoreExecutor {
    async fn perform(&self, subject: Subject<'_>, work: Work<'_>) -> Result<String, Failure> {
        match work {
            Work::Echo { message } => {
                let facts = self
                    .templates
                    .facts(subject.deployment)
                    .await
                    .map_err(|e| Failure::of_store("cannot read the server", e))?;
                let ctx = self.templates.context(subject, &facts, 0);
                subject
                    .profile
                    .render_inline(message, &ctx, time::OffsetDateTime::now_utc())
                    .map_err(|e| Failure::Final(format!("message: {e}")))
            }
            Work::Serve {
                via,
                filename,
                source: FileSource::Template { name },
            } => self.serve_template(subject, via, filename, name).await,
            Work::Serve {
                via,
                filename,
                source: FileSource::Url { url, sha256 },
            } => {
                self.serve_download(subject, via, filename, url, sha256.as_deref())
                    .await
            }
            Work::Unserve { on, filename } => self.unserve(subject, on, filename).await,
            Work::Power(command) => self.power(subject, command).await,
            Work::Bootdev {
                device,
                persistent,
                efi,
            } => {
                // Not said by the profile: as the machine last PXE-booted,
                // so a UEFI machine is not sent to a legacy boot.
                let (efi, how) = match efi {
                    Some(efi) => (efi, ""),
                    None => match self.last_firmware(subject).await {
                        Some(true) => (true, " (EFI: the machine last PXE-booted so)"),
                        Some(false) => (false, " (legacy: the machine last PXE-booted so)"),
                        None => (false, " (legacy: the machine was not seen PXE-booting)"),
                    },
                };
                let request = BootRequest {
                    device,
                    persistent,
                    efi,
                };
                let said = self
                    .power(subject, PowerCommand::SetBootDevice(request))
                    .await?;
                Ok(format!("{said}{how}"))
            }
        }
    }

    async fn callbacks(&self, id: i64) -> Result<Vec<(String, String)>, StoreError> {
        let calls = self.boot.callbacks(id).await?;
        Ok(calls
            .into_iter()
            .map(|c| {
                let said = callback_said(&c.name, &c.method, &c.body);
                (c.name, said)
            })
            .collect())
    }

    async fn last_seen(&self, subject: Subject<'_>) -> Option<String> {
        let events = self.recent_events(subject, 1).await?;
        Some(match events.first() {
            Some((_, e)) => format!(
                "the machine's last boot event: {} {} {} -> {} {}",
                e.at.format(&time::format_description::well_known::Rfc3339)
                    .unwrap_or_default(),
                e.phase.as_str(),
                e.request,
                e.outcome.as_str(),
                e.detail
            ),
            None => "the machine was never seen on the boot network".into(),
        })
    }
}

impl StoreExecutor {
    /// The newest `limit` timeline events of the deployment's server's
    /// MACs (`None`: the server cannot be read or has no interface).
    async fn recent_events(
        &self,
        subject: Subject<'_>,
        limit: u32,
    ) -> Option<Vec<(i64, BootEvent)>> {
        let server = self
            .inventory
            .server(&subject.deployment.server)
            .await
            .ok()?;
        let macs: Vec<_> = server.interfaces.iter().map(|i| i.mac).collect();
        if macs.is_empty() {
            return None;
        }
        self.timeline.boot_events(&macs, None, limit).await.ok()
    }

    /// Whether the server's interfaces last PXE-booted in UEFI mode, by the
    /// firmware the latest DHCP request in their timeline named (`None`:
    /// no such request among their last 200 events).
    async fn last_firmware(&self, subject: Subject<'_>) -> Option<bool> {
        self.recent_events(subject, 200)
            .await?
            .iter()
            .filter(|(_, e)| e.phase == Phase::Dhcp)
            .find_map(|(_, e)| Firmware::in_request(&e.request))
            .and_then(Firmware::is_efi)
    }

    async fn serve_template(
        &self,
        subject: Subject<'_>,
        via: Via,
        filename: &str,
        name: &str,
    ) -> Result<String, Failure> {
        let mut served = Vec::new();
        for (ctx, path) in self.templates.per_interface(subject, filename).await? {
            let content = subject
                .profile
                .render(name, &ctx, time::OffsetDateTime::now_utc())
                .map_err(|e| Failure::Final(format!("template {name}: {e}")))?;
            self.boot
                .serve_file(subject.deployment.id, via, &path, content.as_bytes())
                .await
                .map_err(|e| Failure::of_store(&format!("cannot serve {path}"), e))?;
            served.push(format!("{} {path} ({} bytes)", via.as_str(), content.len()));
        }
        Ok(format!("serving {}", served.join(", ")))
    }

    /// A url source is downloaded once into the cache (resuming where an
    /// earlier attempt stopped), then served from there under the
    /// rendered name, once per interface.
    async fn serve_download(
        &self,
        subject: Subject<'_>,
        via: Via,
        filename: &str,
        url: &str,
        sha256: Option<&str>,
    ) -> Result<String, Failure> {
        let downloads = self
            .downloads
            .as_ref()
            .map_err(|e| Failure::Final(e.clone()))?;
        let cached = downloads
            .fetch(url, sha256)
            .await
            .map_err(|e| Failure::Transient {
                error: e.clone(),
                reason: e,
            })?;
        let mut served = Vec::new();
        for (_, path) in self.templates.per_interface(subject, filename).await? {
            self.boot
                .serve_cached_file(subject.deployment.id, via, &path, &cached.path)
                .await
                .map_err(|e| Failure::of_store(&format!("cannot serve {path}"), e))?;
            served.push(format!("{} {path}", via.as_str()));
        }
        Ok(format!(
            "serving {} from {url} ({} bytes, sha256 {}, {})",
            served.join(", "),
            cached.size,
            cached.sha256,
            if cached.fetched {
                "downloaded"
            } else {
                "from the cache"
            }
        ))
    }

    async fn unserve(
        &self,
        subject: Subject<'_>,
        on: Via,
        filename: &str,
    ) -> Result<String, Failure> {
        let mut removed = Vec::new();
        for (_, path) in self.templates.per_interface(subject, filename).await? {
            let was = self
                .boot
                .unserve_file(subject.deployment.id, on, &path)
                .await
                .map_err(|e| Failure::of_store(&format!("cannot stop serving {path}"), e))?;
            removed.push(format!(
                "{} {path}{}",
                on.as_str(),
                if was { "" } else { " (was not served)" }
            ));
        }
        Ok(format!("stopped serving {}", removed.join(", ")))
    }

    async fn power(&self, subject: Subject<'_>, command: PowerCommand) -> Result<String, Failure> {
        let report = self
            .power
            .execute(&subject.deployment.server, command)
            .await
            .map_err(|e| Failure::of_store("cannot read the server's BMC", e))?;
        match report.result {
            Ok(_) => Ok(format!("{} via {}", command.describe(), report.driver)),
            Err(e) => Err(Failure::Transient {
                error: e.to_string(),
                reason: format!("{} failed: {e}", command.describe()),
            }),
        }
    }
}

/// The deployment log's line for a callback that arrived.
pub fn callback_said(name: &str, method: &str, body: &str) -> String {
    let mut said = format!("callback {name} received ({method})");
    if !body.is_empty() {
        said.push_str(&format!(": {}", excerpt(body, CALLBACK_BODY_IN_LOG)));
    }
    said
}

/// The first `max` bytes of `text` (on a character boundary), marked when
/// cut.
fn excerpt(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_string();
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}... ({} bytes in all)", &text[..end], text.len())
}
