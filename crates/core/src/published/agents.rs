//! The daemons sharing a database, each its location's agent, as
//! published: what each last reported of itself and whether it still does.

use serde::{Deserialize, Serialize};
use time::{Duration, OffsetDateTime};

/// How often a running daemon reports itself.
pub const REPORT_EVERY: Duration = Duration::seconds(30);

/// A daemon that has not reported for this long is gone (three reports
/// missed: a short store outage does not make it so).
pub const GONE_AFTER: Duration = Duration::seconds(90);

/// A daemon serving boot requests for a location (or for every location
/// when none is configured).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Agent {
    pub id: i64,
    /// The daemon's instance name (host name and a suffix kept in its data
    /// dir).
    pub name: String,
    /// The location it serves; `null`: every location.
    pub location: Option<String>,
    /// Its public URL: where machines and people reach it.
    pub url: String,
    /// Its version.
    pub version: String,
    #[serde(with = "time::serde::rfc3339")]
    #[cfg_attr(feature = "openapi", schema(value_type = String, format = DateTime))]
    pub started_at: OffsetDateTime,
    /// When it last reported (every 30 s while it runs).
    #[serde(with = "time::serde::rfc3339")]
    #[cfg_attr(feature = "openapi", schema(value_type = String, format = DateTime))]
    pub last_seen: OffsetDateTime,
    /// When it said it was stopping, if it did since it last started.
    #[serde(with = "time::serde::rfc3339::option")]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>, format = DateTime))]
    pub stopped_at: Option<OffsetDateTime>,
    pub state: AgentState,
    /// Its sockets as last reported.
    pub listeners: Vec<AgentListener>,
    /// Its services that were not running when it last reported.
    pub services_down: Vec<String>,
}

/// One socket a daemon serves on, and whether its service ran.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AgentListener {
    /// `http`, `https`, `tftp` or `dhcp`.
    pub name: String,
    pub address: String,
    /// The boot interface a DHCP socket is bound to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interface: Option<String>,
    pub up: bool,
}

/// Whether a daemon is serving, as its reports show at a moment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum AgentState {
    /// Reporting, every listener and service running.
    Up,
    /// Reporting, but a listener or a service is down.
    Degraded,
    /// It said it was stopping.
    Stopped,
    /// It stopped reporting without saying so.
    Gone,
}

impl AgentState {
    /// The state at `now` of a daemon last seen at `last_seen`.
    pub fn at(
        now: OffsetDateTime,
        last_seen: OffsetDateTime,
        stopped: bool,
        all_running: bool,
    ) -> Self {
        if stopped {
            AgentState::Stopped
        } else if now - last_seen > GONE_AFTER {
            AgentState::Gone
        } else if all_running {
            AgentState::Up
        } else {
            AgentState::Degraded
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            AgentState::Up => "up",
            AgentState::Degraded => "degraded",
            AgentState::Stopped => "stopped",
            AgentState::Gone => "gone",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_by_report() {
        let now = OffsetDateTime::UNIX_EPOCH + Duration::days(20_000);
        let check = |ago: i64, stopped, running, expected| {
            let seen = now - Duration::seconds(ago);
            assert_eq!(
                AgentState::at(now, seen, stopped, running),
                expected,
                "{ago}s ago, stopped {stopped}, running {running}"
            );
        };
        check(0, false, true, AgentState::Up);
        check(90, false, true, AgentState::Up);
        check(91, false, true, AgentState::Gone);
        check(10, false, false, AgentState::Degraded);
        check(500, false, false, AgentState::Gone);
        check(10, true, true, AgentState::Stopped);
        check(500, true, false, AgentState::Stopped);
    }
}
