//! Store operations of power control: each server's BMC health, and one
//! transaction per command that updates it, adds the command to the boot
//! timeline and writes a `power.<action>` outbox event. The SQL is in
//! `power_sql.rs`, expanded for both backends.

use async_trait::async_trait;
use time::OffsetDateTime;

use super::Result;
use bootloader_core::model::{Fqdn, MacAddr};
pub use bootloader_core::published::power::PowerHealth;

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
    /// Servers whose last BMC command failed, the longest failing first.
    async fn failing_bmcs(&self, limit: u32) -> Result<Vec<(Fqdn, PowerHealth)>>;
}
