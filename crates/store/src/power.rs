//! Store operations of power control: each server's BMC health, and one
//! transaction per command that updates it, adds the command to the boot
//! timeline and writes a `power.<action>` outbox event. The SQL is in
//! `power_sql.rs`, expanded for both backends.

use async_trait::async_trait;
use serde::Serialize;
use time::OffsetDateTime;
use utoipa::ToSchema;

use super::Result;
use bootloader_core::model::{Fqdn, MacAddr};

/// How a server's BMC has been answering.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, ToSchema)]
pub struct PowerHealth {
    #[serde(with = "time::serde::rfc3339::option")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub last_success_at: Option<OffsetDateTime>,
    #[serde(with = "time::serde::rfc3339::option")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub last_failure_at: Option<OffsetDateTime>,
    /// Failed commands since the last success.
    pub consecutive_failures: u32,
    /// The last failure's kind: auth, unreachable, timeout, refused,
    /// unsupported, not_configured, protocol.
    pub last_error_kind: Option<String>,
    pub last_error: Option<String>,
    /// The last command sent, e.g. `power cycle`.
    pub last_command: Option<String>,
    /// What the BMC last answered to a power status query
    /// (`{"state": "on"}`), and when.
    #[schema(value_type = Option<Object>)]
    pub last_state: Option<serde_json::Value>,
    #[serde(with = "time::serde::rfc3339::option")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub last_state_at: Option<OffsetDateTime>,
    /// What the BMC last said of the boot device (`{"boot": {...}}`), and
    /// when.
    #[schema(value_type = Option<Object>)]
    pub last_bootdev: Option<serde_json::Value>,
    #[serde(with = "time::serde::rfc3339::option")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub last_bootdev_at: Option<OffsetDateTime>,
}

/// One finished power command, as it is recorded.
#[derive(Debug, Clone)]
pub struct PowerRecord {
    pub server: Fqdn,
    /// The server's first interface, under which the timeline files it.
    pub mac: Option<MacAddr>,
    /// `host:port` of the BMC.
    pub bmc: String,
    /// `on`, `off`, `cycle`, `reset`, `soft`, `status`, `bootdev`,
    /// `bootdev-get`: the outbox routing key is `power.<action>`.
    pub action: String,
    /// What was asked, e.g. `power cycle` or `bootdev pxe (efi, once)`.
    pub command: String,
    pub driver: String,
    pub attempts: u32,
    pub duration_ms: u64,
    /// What the BMC answered, or the error's kind and message.
    pub result: std::result::Result<String, (String, String)>,
    /// The answer itself when it tells the power state (`status`) or the
    /// boot device (`bootdev-get`): kept as the last known one.
    pub known: Option<serde_json::Value>,
    pub at: OffsetDateTime,
}

#[async_trait]
pub trait PowerStore: Send + Sync + 'static {
    /// Updates the server's health, adds the command to the boot timeline
    /// and writes its outbox event, in one transaction.
    async fn record_power(&self, record: &PowerRecord) -> Result<PowerHealth>;
    /// The server's health (all empty if no command was ever sent).
    async fn power_health(&self, server: &Fqdn) -> Result<PowerHealth>;
}
