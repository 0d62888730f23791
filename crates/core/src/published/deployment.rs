//! Deployments, their log and their callbacks, as published.

use serde::Serialize;
use time::OffsetDateTime;

use crate::model::{DeploymentState, Fqdn, LogLevel};

/// A deployment as the API shows it.
#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct DeploymentRecord {
    pub id: i64,
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub server: Fqdn,
    pub profile_id: i64,
    /// `name==version`: the profile version the deployment is pinned to.
    pub profile: String,
    pub state: DeploymentState,
    /// Finished actions over all actions of the six main steps; 100 once
    /// complete.
    pub progress: u8,
    /// The step whose action runs next, and its index; absent once nothing
    /// is left to run.
    pub step: Option<String>,
    pub action_index: u32,
    /// Why it failed (state `error`).
    pub error: Option<String>,
    /// The deployment this one repeats.
    pub repeat_of: Option<i64>,
    #[serde(with = "time::serde::rfc3339")]
    #[cfg_attr(feature = "openapi", schema(value_type = String, format = DateTime))]
    pub created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    #[cfg_attr(feature = "openapi", schema(value_type = String, format = DateTime))]
    pub updated_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339::option")]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>, format = DateTime))]
    pub finished_at: Option<OffsetDateTime>,
    /// The daemon whose engine runs (or last ran) its steps.
    pub runner: Option<String>,
}

/// A callback as stored.
#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct CallbackRecord {
    pub name: String,
    pub method: String,
    pub body: String,
    #[serde(with = "time::serde::rfc3339")]
    #[cfg_attr(feature = "openapi", schema(value_type = String, format = DateTime))]
    pub received_at: OffsetDateTime,
}

#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct LogEntry {
    pub id: i64,
    #[serde(with = "time::serde::rfc3339")]
    #[cfg_attr(feature = "openapi", schema(value_type = String, format = DateTime))]
    pub at: OffsetDateTime,
    pub level: LogLevel,
    pub message: String,
}
