//! This daemon as its location's agent: it reports itself to the store
//! when it starts and every 30 s (its public URL, version, and whether each
//! listener and service runs, as `/readyz` sees them), and says when it
//! stops. Other daemons, the API's `/agents` and the console read these
//! reports; one that stops coming shows the daemon as gone.

use std::sync::Arc;

use time::OffsetDateTime;

use crate::http::health::Listener;
use crate::supervisor::{Services, Shutdown};
use bootloader_core::published::agents::REPORT_EVERY;
use bootloader_store::{AgentListener, AgentReport, AgentStore};

/// Who this daemon is, and where to read its health.
#[derive(Clone)]
pub struct Presence {
    pub store: Arc<dyn AgentStore>,
    pub name: String,
    pub location: Option<String>,
    pub url: String,
    pub started_at: OffsetDateTime,
    pub listeners: Vec<Listener>,
    pub services: Services,
}

impl Presence {
    /// The report as of now.
    fn report(&self) -> AgentReport {
        AgentReport {
            name: self.name.clone(),
            location: self.location.clone(),
            url: self.url.clone(),
            version: env!("CARGO_PKG_VERSION").to_string(),
            started_at: self.started_at,
            listeners: self
                .listeners
                .iter()
                .map(|l| AgentListener {
                    name: l.name.to_string(),
                    address: l.address.clone(),
                    interface: l.interface.clone(),
                    up: self.services.is_up(l.name),
                })
                .collect(),
            services_down: self
                .services
                .reports()
                .into_iter()
                .filter(|s| !s.up)
                .map(|s| s.name.to_string())
                .collect(),
            at: OffsetDateTime::now_utc(),
        }
    }

    /// Reports until `stop`, then records the stop. A report the store
    /// refuses is logged and the next one tried on time.
    pub async fn run(self, stop: Shutdown) {
        let every = std::time::Duration::from_secs(REPORT_EVERY.whole_seconds().max(1) as u64);
        let mut ticks = tokio::time::interval(every);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let stopped = stop.wait();
        tokio::pin!(stopped);
        let mut failing = false;
        loop {
            tokio::select! {
                _ = ticks.tick() => {}
                () = &mut stopped => break,
            }
            match self.store.report_agent(&self.report()).await {
                Ok(_) if failing => {
                    tracing::info!(agent = %self.name, "agent report stored again");
                    failing = false;
                }
                Ok(_) => {}
                Err(e) if !failing => {
                    tracing::warn!(agent = %self.name, error = %e, "cannot store this daemon's agent report");
                    failing = true;
                }
                Err(e) => {
                    tracing::debug!(agent = %self.name, error = %e, "agent report not stored")
                }
            }
        }
        if let Err(e) = self
            .store
            .agent_stopped(&self.name, OffsetDateTime::now_utc())
            .await
        {
            tracing::warn!(agent = %self.name, error = %e, "cannot record that this daemon stops");
        }
    }
}
