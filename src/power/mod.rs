//! Power control of servers through their BMCs.
//!
//! The vocabulary (actions, states, errors) and the IPMI messages as bytes
//! are in the core crate (`bootloader_core::power`); this module sends them.
//!
//! - `native.rs`: the `native` driver, RMCP+ through ipmi-rs (cipher suite 3).
//! - `ipmitool.rs`: the `ipmitool` driver, `ipmitool -I lanplus` as a
//!   subprocess (cipher suite configurable, 17 by default).
//! - `service.rs`: what the rest of the daemon calls: one session at a time
//!   per BMC, a global cap on operations in flight, retries with jittered
//!   backoff, boot-storm pacing of power-on and cycle, the health record,
//!   the timeline and outbox.

mod ipmitool;
mod native;
pub mod service;

use async_trait::async_trait;
use bootloader_core::power::ipmi;
use bootloader_core::power::{BmcLogin, BootRequest, PowerAction, PowerError, PowerState};

pub use ipmitool::IpmitoolDriver;
pub use native::NativeDriver;
pub use service::{PowerService, PowerSettings};

/// A way to talk to BMCs. The service makes sure one BMC sees one command
/// at a time.
#[async_trait]
pub trait PowerDriver: Send + Sync + 'static {
    fn name(&self) -> &'static str;
    async fn status(&self, bmc: &BmcLogin) -> Result<PowerState, PowerError>;
    async fn power(&self, bmc: &BmcLogin, action: PowerAction) -> Result<(), PowerError>;
    async fn set_boot_device(&self, bmc: &BmcLogin, req: BootRequest) -> Result<(), PowerError>;
    /// The boot flags the BMC holds.
    async fn boot_device(&self, bmc: &BmcLogin) -> Result<ipmi::BootFlags, PowerError>;
}
