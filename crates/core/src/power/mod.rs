//! Power control's vocabulary (actions, states, boot devices, the errors a
//! BMC gives) and its messages as bytes.
//!
//! - `ipmi.rs`: the IPMI messages (chassis control, status, boot options,
//!   session privilege) as bytes, and what answers mean.
//! - `ipmitool_output.rs`: reading what `ipmitool raw` printed.
//!
//! The drivers that send them live in the daemon (`src/power/`).

pub mod ipmi;
pub mod ipmitool_output;

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::model::Secret;

/// A change of power state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum PowerAction {
    On,
    /// Hard power off.
    Off,
    /// Off, then on.
    Cycle,
    /// Hard reset.
    Reset,
    /// ACPI soft shutdown: the OS is asked to shut down.
    Soft,
    /// A diagnostic interrupt (NMI): the OS dumps or panics as it is set.
    Diag,
}

impl PowerAction {
    pub const ALL: [PowerAction; 6] = [
        PowerAction::On,
        PowerAction::Off,
        PowerAction::Cycle,
        PowerAction::Reset,
        PowerAction::Soft,
        PowerAction::Diag,
    ];

    pub const fn as_str(self) -> &'static str {
        match self {
            Self::On => "on",
            Self::Off => "off",
            Self::Cycle => "cycle",
            Self::Reset => "reset",
            Self::Soft => "soft",
            Self::Diag => "diag",
        }
    }

    /// Actions that draw inrush current and start a network boot: paced in
    /// a boot storm.
    pub const fn is_paced(self) -> bool {
        matches!(self, Self::On | Self::Cycle)
    }
}

impl FromStr for PowerAction {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Self::ALL
            .into_iter()
            .find(|a| a.as_str() == s)
            .ok_or_else(|| {
                format!("unknown power action {s:?} (expected on, off, cycle, reset, soft or diag)")
            })
    }
}

impl fmt::Display for PowerAction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum PowerState {
    On,
    Off,
}

/// The device the next boot (or every boot) starts from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum BootDevice {
    Pxe,
    Disk,
    /// The default disk, in the firmware's safe mode.
    Safe,
    /// Firmware setup.
    Bios,
    Cdrom,
    /// Floppy or the primary removable medium.
    Floppy,
    /// No override: the firmware's own boot order.
    Default,
}

impl BootDevice {
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Pxe => "pxe",
            Self::Disk => "disk",
            Self::Safe => "safe",
            Self::Bios => "bios",
            Self::Cdrom => "cdrom",
            Self::Floppy => "floppy",
            Self::Default => "default",
        }
    }
}

/// A boot device request: the device, for the next boot only or for every
/// boot, with legacy (BIOS) or EFI boot.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct BootRequest {
    pub device: BootDevice,
    #[serde(default)]
    pub persistent: bool,
    #[serde(default)]
    pub efi: bool,
}

/// What power control can fail with. Each names the condition an operator
/// acts on differently.
/// A command for one server's BMC.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PowerCommand {
    Status,
    Power(PowerAction),
    SetBootDevice(BootRequest),
    GetBootDevice,
}

impl PowerCommand {
    /// The outbox routing key's last part.
    pub fn action(self) -> &'static str {
        match self {
            Self::Status => "status",
            Self::Power(a) => a.as_str(),
            Self::SetBootDevice(_) => "bootdev",
            Self::GetBootDevice => "bootdev-get",
        }
    }

    /// What was asked, as the timeline and the API show it.
    pub fn describe(self) -> String {
        match self {
            Self::Status => "power status".into(),
            Self::Power(a) => format!("power {a}"),
            Self::SetBootDevice(r) => format!(
                "bootdev {} ({}, {})",
                r.device.as_str(),
                if r.efi { "efi" } else { "legacy" },
                if r.persistent {
                    "persistent"
                } else {
                    "next boot"
                }
            ),
            Self::GetBootDevice => "bootdev get".into(),
        }
    }

    /// Whether sending it twice does no harm. A timed-out cycle may have
    /// happened; sending it again would cut the boot it started.
    pub fn is_idempotent(self) -> bool {
        !matches!(
            self,
            Self::Power(
                PowerAction::Cycle | PowerAction::Reset | PowerAction::Soft | PowerAction::Diag
            )
        )
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PowerError {
    /// Wrong user name or password, or a role the user may not take.
    #[error("authentication failed: {0}")]
    Auth(String),
    /// No route, port closed, name does not resolve.
    #[error("BMC unreachable: {0}")]
    Unreachable(String),
    /// The BMC did not answer in time.
    #[error("timed out: {0}")]
    Timeout(String),
    /// The BMC answered with a non-zero completion code.
    #[error("the BMC refused: {message}")]
    Refused { code: u8, message: String },
    /// The BMC or the driver cannot do this.
    #[error("unsupported: {0}")]
    Unsupported(String),
    /// The server has no BMC address or credentials.
    #[error("not configured: {0}")]
    NotConfigured(String),
    /// An answer that makes no sense, or the driver itself failed.
    #[error("{0}")]
    Protocol(String),
}

impl PowerError {
    /// A short name for APIs and events.
    pub const fn kind(&self) -> &'static str {
        match self {
            Self::Auth(_) => "auth",
            Self::Unreachable(_) => "unreachable",
            Self::Timeout(_) => "timeout",
            Self::Refused { .. } => "refused",
            Self::Unsupported(_) => "unsupported",
            Self::NotConfigured(_) => "not_configured",
            Self::Protocol(_) => "protocol",
        }
    }

    /// Whether the same command may succeed if sent again shortly.
    pub fn is_transient(&self) -> bool {
        match self {
            Self::Timeout(_) | Self::Unreachable(_) | Self::Protocol(_) => true,
            Self::Refused { code, .. } => ipmi::completion_code_is_transient(*code),
            Self::Auth(_) | Self::Unsupported(_) | Self::NotConfigured(_) => false,
        }
    }
}

/// How to reach one BMC.
#[derive(Clone)]
pub struct BmcLogin {
    pub host: String,
    pub port: u16,
    pub username: String,
    pub password: Secret,
}

impl fmt::Debug for BmcLogin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}@{}:{}", self.username, self.host, self.port)
    }
}
