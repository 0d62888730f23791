//! Power control: `/servers/{fqdn}/power` (status; on, off, cycle, reset,
//! soft), `/servers/{fqdn}/bootdev`, `/servers/{fqdn}/power/health` and the
//! boot-storm queue at `/power/queue`. Every command goes into the server's
//! boot timeline and the outbox (`power.<action>`).

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::error::{ApiError, ErrorBody};
use super::extract::{JsonBody, Path, Reader, Staff, path_key};
use crate::http::AppState;
use crate::power::service::{PowerAnswer, PowerCommand, PowerReport, QueueStatus};
use bootloader_core::model::Fqdn;
use bootloader_core::power::{BootRequest, PowerAction, PowerError};
use bootloader_store::power::PowerHealth;

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

/// 200 when the BMC did it; 422 when the server has no BMC settings; 504
/// when the BMC did not answer in time; 502 for the other BMC failures.
impl IntoResponse for PowerResult {
    fn into_response(self) -> Response {
        let status = match self.error_kind {
            None => StatusCode::OK,
            Some("not_configured") => StatusCode::UNPROCESSABLE_ENTITY,
            Some("timeout") => StatusCode::GATEWAY_TIMEOUT,
            Some(_) => StatusCode::BAD_GATEWAY,
        };
        (status, Json(self)).into_response()
    }
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

async fn run(state: &AppState, raw: &str, command: PowerCommand) -> Result<PowerResult, ApiError> {
    let fqdn: Fqdn = path_key("server", raw)?;
    let report = state.power.execute(&fqdn, command).await?;
    Ok(result(fqdn, command, report))
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

/// A live answer for a staff token with write scope; the last known one
/// for everyone else.
async fn live_or_known(
    state: &AppState,
    principal: &bootloader_store::Principal,
    raw: &str,
    command: PowerCommand,
) -> Result<Response, ApiError> {
    if principal.is_staff && principal.scope == bootloader_core::model::TokenScope::Write {
        return Ok(run(state, raw, command).await?.into_response());
    }
    let fqdn: Fqdn = path_key("server", raw)?;
    let health = state.power.health(&fqdn).await?;
    let (known, as_of) = match command {
        PowerCommand::Status => (health.last_state, health.last_state_at),
        _ => (health.last_bootdev, health.last_bootdev_at),
    };
    Ok(Json(KnownPower {
        server: fqdn,
        live: false,
        known,
        as_of,
        age_seconds: as_of.map(|t| (time::OffsetDateTime::now_utc() - t).whole_seconds()),
        note: "the BMC's last answer; a live query needs a staff token with write scope",
    })
    .into_response())
}

/// Staff (write scope): the BMC is asked now. Others: its last answer.
#[utoipa::path(get, path = "/servers/{fqdn}/power", tag = "power",
    responses((status = 200, body = PowerResult), (status = 502, body = PowerResult),
        (status = 504, body = PowerResult), (status = 404, body = ErrorBody)))]
pub async fn power_status(
    State(state): State<AppState>,
    Reader(principal): Reader,
    Path(fqdn): Path<String>,
) -> Result<Response, ApiError> {
    live_or_known(&state, &principal, &fqdn, PowerCommand::Status).await
}

#[utoipa::path(post, path = "/servers/{fqdn}/power", tag = "power", request_body = PowerInput,
    responses((status = 200, body = PowerResult), (status = 502, body = PowerResult),
        (status = 504, body = PowerResult), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn power_action(
    State(state): State<AppState>,
    _: Staff,
    Path(fqdn): Path<String>,
    JsonBody(input): JsonBody<PowerInput>,
) -> Result<PowerResult, ApiError> {
    run(&state, &fqdn, PowerCommand::Power(input.action)).await
}

/// Staff (write scope): the BMC is asked now. Others: its last answer.
#[utoipa::path(get, path = "/servers/{fqdn}/bootdev", tag = "power",
    responses((status = 200, body = PowerResult), (status = 502, body = PowerResult),
        (status = 504, body = PowerResult), (status = 404, body = ErrorBody)))]
pub async fn get_bootdev(
    State(state): State<AppState>,
    Reader(principal): Reader,
    Path(fqdn): Path<String>,
) -> Result<Response, ApiError> {
    live_or_known(&state, &principal, &fqdn, PowerCommand::GetBootDevice).await
}

#[utoipa::path(post, path = "/servers/{fqdn}/bootdev", tag = "power", request_body = BootRequest,
    responses((status = 200, body = PowerResult), (status = 502, body = PowerResult),
        (status = 504, body = PowerResult), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn set_bootdev(
    State(state): State<AppState>,
    _: Staff,
    Path(fqdn): Path<String>,
    JsonBody(input): JsonBody<BootRequest>,
) -> Result<PowerResult, ApiError> {
    run(&state, &fqdn, PowerCommand::SetBootDevice(input)).await
}

/// The server's BMC health, without contacting the BMC.
#[utoipa::path(get, path = "/servers/{fqdn}/power/health", tag = "power",
    responses((status = 200, body = PowerHealth), (status = 404, body = ErrorBody)))]
pub async fn power_health(
    State(state): State<AppState>,
    _: Reader,
    Path(fqdn): Path<String>,
) -> Result<Json<PowerHealth>, ApiError> {
    let fqdn: Fqdn = path_key("server", &fqdn)?;
    Ok(Json(state.power.health(&fqdn).await?))
}

/// The boot-storm queue: power-on and cycle commands waiting and in flight.
#[utoipa::path(get, path = "/power/queue", tag = "power",
    responses((status = 200, body = QueueStatus)))]
pub async fn power_queue(State(state): State<AppState>, _: Reader) -> Json<QueueStatus> {
    Json(state.power.queue())
}
