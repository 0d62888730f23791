//! A server's BMC health, as published.

use serde::Serialize;
use time::OffsetDateTime;

/// How a server's BMC has been answering.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PowerHealth {
    #[serde(with = "time::serde::rfc3339::option")]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>, format = DateTime))]
    pub last_success_at: Option<OffsetDateTime>,
    #[serde(with = "time::serde::rfc3339::option")]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>, format = DateTime))]
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
    #[cfg_attr(feature = "openapi", schema(value_type = Option<Object>))]
    pub last_state: Option<serde_json::Value>,
    #[serde(with = "time::serde::rfc3339::option")]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>, format = DateTime))]
    pub last_state_at: Option<OffsetDateTime>,
    /// What the BMC last said of the boot device (`{"boot": {...}}`), and
    /// when.
    #[cfg_attr(feature = "openapi", schema(value_type = Option<Object>))]
    pub last_bootdev: Option<serde_json::Value>,
    #[serde(with = "time::serde::rfc3339::option")]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>, format = DateTime))]
    pub last_bootdev_at: Option<OffsetDateTime>,
}
