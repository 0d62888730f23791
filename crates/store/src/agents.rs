//! Store operations of the daemons sharing a database: each reports itself
//! as its location's agent while it runs (`report_agent`), says when it
//! stops, and is listed with its state at the moment of reading. A start,
//! a stop and a removal write their outbox events; the periodic reports
//! between them write none.

use async_trait::async_trait;
use time::OffsetDateTime;

use super::{Result, StoreError};
pub use bootloader_core::published::agents::{Agent, AgentListener, AgentState};

/// What a running daemon says of itself.
#[derive(Debug, Clone)]
pub struct AgentReport {
    pub name: String,
    pub location: Option<String>,
    pub url: String,
    pub version: String,
    /// When this run of the daemon started: a report with a new one is a
    /// start, published as `agent.started`.
    pub started_at: OffsetDateTime,
    pub listeners: Vec<AgentListener>,
    pub services_down: Vec<String>,
    pub at: OffsetDateTime,
}

#[async_trait]
pub trait AgentStore: Send + Sync + 'static {
    /// Records the report (creating the agent on its first); returns the
    /// agent as stored.
    async fn report_agent(&self, report: &AgentReport) -> Result<Agent>;
    /// Records that the daemon stopped at `at` (`agent.stopped`).
    async fn agent_stopped(&self, name: &str, at: OffsetDateTime) -> Result<()>;
    /// Every agent, by location then name, with its state at `now`.
    async fn list_agents(&self, now: OffsetDateTime) -> Result<Vec<Agent>>;
    async fn agent(&self, name: &str, now: OffsetDateTime) -> Result<Agent>;
    /// Forgets an agent (`agent.deleted`); a daemon still running
    /// registers again at its next report.
    async fn delete_agent(&self, name: &str, now: OffsetDateTime) -> Result<Agent>;
}

pub(crate) mod rows {
    use super::*;

    #[derive(sqlx::FromRow)]
    pub struct AgentRow {
        pub id: i64,
        pub name: String,
        pub location: Option<String>,
        pub url: String,
        pub version: String,
        pub started_at: OffsetDateTime,
        pub seen_at: OffsetDateTime,
        pub stopped_at: Option<OffsetDateTime>,
        pub listeners: String,
        pub services_down: String,
    }

    pub const AGENT_SELECT: &str = "SELECT id, name, location, url, version, started_at, seen_at, \
         stopped_at, listeners, services_down FROM agents";

    impl AgentRow {
        /// The agent as published, its state judged at `now`.
        pub fn at(self, now: OffsetDateTime) -> Result<Agent> {
            let listeners: Vec<AgentListener> = serde_json::from_str(&self.listeners)
                .map_err(|e| StoreError::Corrupt(format!("agent {} listeners: {e}", self.name)))?;
            let services_down: Vec<String> = serde_json::from_str(&self.services_down)
                .map_err(|e| StoreError::Corrupt(format!("agent {} services: {e}", self.name)))?;
            let running = listeners.iter().all(|l| l.up) && services_down.is_empty();
            Ok(Agent {
                state: AgentState::at(now, self.seen_at, self.stopped_at.is_some(), running),
                id: self.id,
                name: self.name,
                location: self.location,
                url: self.url,
                version: self.version,
                started_at: self.started_at,
                last_seen: self.seen_at,
                stopped_at: self.stopped_at,
                listeners,
                services_down,
            })
        }
    }
}
