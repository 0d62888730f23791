//! Power actions and boot devices on a server's BMC, through the power
//! service (pacing, one session per BMC, retries, the health record).

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use bootloader_core::model::Fqdn;
use bootloader_core::power::{PowerAction, PowerError};
use bootloader_store::power::PowerHealth;

use super::{Actor, Error, Ops};
use crate::power::service::{PowerAnswer, PowerCommand, PowerReport};

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PowerInput {
    /// on, off, cycle, reset or soft.
    pub action: PowerAction,
}

/// What the BMC answered, or why it did not do what was asked.
#[derive(Debug, Serialize, ToSchema)]
pub struct PowerResult {
    #[schema(value_type = String)]
    pub server: Fqdn,
    /// What was sent, e.g. `power cycle`.
    pub command: String,
    pub ok: bool,
    /// The answer (`state`, `done` or `boot`) when `ok`.
    pub answer: Option<PowerAnswer>,
    /// auth, unreachable, timeout, refused, unsupported, not_configured or
    /// protocol, when not `ok`.
    pub error_kind: Option<&'static str>,
    pub error: Option<String>,
    /// The BMC's completion code, for `refused`.
    pub completion_code: Option<u8>,
    pub driver: &'static str,
    pub attempts: u32,
    pub duration_ms: u64,
    /// The server's BMC health after this command.
    pub health: Option<PowerHealth>,
}

fn result(fqdn: Fqdn, command: PowerCommand, report: PowerReport) -> PowerResult {
    let (answer, error) = match report.result {
        Ok(a) => (Some(a), None),
        Err(e) => (None, Some(e)),
    };
    PowerResult {
        server: fqdn,
        command: command.describe(),
        ok: error.is_none(),
        answer,
        error_kind: error.as_ref().map(PowerError::kind),
        completion_code: match &error {
            Some(PowerError::Refused { code, .. }) => Some(*code),
            _ => None,
        },
        error: error.map(|e| e.to_string()),
        driver: report.driver,
        attempts: report.attempts,
        duration_ms: report.duration.as_millis() as u64,
        health: report.health,
    }
}

/// What a reader gets instead of a live BMC query: the BMC's last answer
/// and its age. Opening a BMC session is a staff token's (write scope).
#[derive(Debug, Serialize, ToSchema)]
pub struct KnownPower {
    #[schema(value_type = String)]
    pub server: Fqdn,
    /// Always false here: nobody asked the BMC for this answer.
    pub live: bool,
    /// The last answer (`{"state": "on"}` or `{"boot": {...}}`), if any.
    #[schema(value_type = Option<Object>)]
    pub known: Option<serde_json::Value>,
    #[serde(with = "time::serde::rfc3339::option")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub as_of: Option<time::OffsetDateTime>,
    pub age_seconds: Option<i64>,
    pub note: &'static str,
}

impl PowerResult {
    /// 200 when the BMC did it; 422 when the server has no BMC settings;
    /// 504 when the BMC did not answer in time; 502 for the other BMC
    /// failures.
    pub fn status(&self) -> u16 {
        match self.error_kind {
            None => 200,
            Some("not_configured") => 422,
            Some("timeout") => 504,
            Some(_) => 502,
        }
    }
}

/// Sends `command` to the server's BMC now. A BMC that fails is a
/// `PowerResult` that says so; a server that does not exist, an `Error`.
pub async fn execute(
    ops: &Ops,
    actor: &Actor,
    server: Fqdn,
    command: PowerCommand,
) -> Result<PowerResult, Error> {
    actor.require_write()?;
    let report = ops.power.execute(&server, command).await?;
    Ok(result(server, command, report))
}

/// What the actor may know of the server's power state or boot device:
/// a live answer from the BMC for one who may write (opening a BMC
/// session is theirs), the BMC's last answer for everyone else.
pub async fn query(
    ops: &Ops,
    actor: &Actor,
    server: Fqdn,
    command: PowerCommand,
) -> Result<PowerQuery, Error> {
    if actor.may_write() {
        let result = execute(ops, actor, server, command).await?;
        return Ok(PowerQuery::Live(Box::new(result)));
    }
    let health = ops.power.health(&server).await?;
    let (known, as_of) = match command {
        PowerCommand::Status => (health.last_state, health.last_state_at),
        _ => (health.last_bootdev, health.last_bootdev_at),
    };
    Ok(PowerQuery::Known(KnownPower {
        server,
        live: false,
        known,
        as_of,
        age_seconds: as_of.map(|t| (time::OffsetDateTime::now_utc() - t).whole_seconds()),
        note: "the BMC's last answer; a live query needs a staff token with write scope",
    }))
}

/// A live answer, or the last known one.
#[derive(Debug)]
pub enum PowerQuery {
    Live(Box<PowerResult>),
    Known(KnownPower),
}
