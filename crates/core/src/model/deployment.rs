//! The life of a deployment, as every layer names it.

use std::fmt;
use std::str::FromStr;

use serde::Serialize;

/// A deployment's state, as PRODUCT.md lists them, plus `cancelled`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum DeploymentState {
    New,
    Preparing,
    Installing,
    Configuring,
    Postconfiguring,
    Complete,
    Error,
    Cancelled,
}

impl DeploymentState {
    pub const ALL: [Self; 8] = [
        Self::New,
        Self::Preparing,
        Self::Installing,
        Self::Configuring,
        Self::Postconfiguring,
        Self::Complete,
        Self::Error,
        Self::Cancelled,
    ];

    pub const fn as_str(self) -> &'static str {
        match self {
            Self::New => "new",
            Self::Preparing => "preparing",
            Self::Installing => "installing",
            Self::Configuring => "configuring",
            Self::Postconfiguring => "postconfiguring",
            Self::Complete => "complete",
            Self::Error => "error",
            Self::Cancelled => "cancelled",
        }
    }

    /// Final states: nothing is served and nothing runs any more.
    pub const fn is_final(self) -> bool {
        matches!(self, Self::Complete | Self::Error | Self::Cancelled)
    }
}

impl fmt::Display for DeploymentState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for DeploymentState {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Ok(match s {
            "new" => Self::New,
            "preparing" => Self::Preparing,
            "installing" => Self::Installing,
            "configuring" => Self::Configuring,
            "postconfiguring" => Self::Postconfiguring,
            "complete" => Self::Complete,
            "error" => Self::Error,
            "cancelled" => Self::Cancelled,
            other => return Err(format!("unknown deployment state {other:?}")),
        })
    }
}

/// How much a deployment log line matters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum LogLevel {
    Info,
    Warn,
    Error,
}

impl LogLevel {
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Info => "info",
            Self::Warn => "warn",
            Self::Error => "error",
        }
    }
}
