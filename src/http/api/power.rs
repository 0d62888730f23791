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
use crate::model::Fqdn;
use crate::power::service::{PowerAnswer, PowerCommand, PowerReport, QueueStatus};
use crate::power::{BootRequest, PowerAction, PowerError};
use crate::store::power::PowerHealth;

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

#[utoipa::path(get, path = "/servers/{fqdn}/power", tag = "power",
    responses((status = 200, body = PowerResult), (status = 502, body = PowerResult),
        (status = 504, body = PowerResult), (status = 404, body = ErrorBody)))]
pub async fn power_status(
    State(state): State<AppState>,
    _: Reader,
    Path(fqdn): Path<String>,
) -> Result<PowerResult, ApiError> {
    run(&state, &fqdn, PowerCommand::Status).await
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

#[utoipa::path(get, path = "/servers/{fqdn}/bootdev", tag = "power",
    responses((status = 200, body = PowerResult), (status = 502, body = PowerResult),
        (status = 504, body = PowerResult), (status = 404, body = ErrorBody)))]
pub async fn get_bootdev(
    State(state): State<AppState>,
    _: Reader,
    Path(fqdn): Path<String>,
) -> Result<PowerResult, ApiError> {
    run(&state, &fqdn, PowerCommand::GetBootDevice).await
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
