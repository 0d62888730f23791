//! Power control: `/servers/{fqdn}/power` (status; on, off, cycle, reset,
//! soft), `/servers/{fqdn}/bootdev`, `/servers/{fqdn}/power/health` and the
//! boot-storm queue at `/power/queue`. Every command goes into the server's
//! boot timeline and the outbox (`power.<action>`).

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

use super::error::{ApiError, ErrorBody};
use super::extract::{JsonBody, Path, Reader, Staff, path_key};
use crate::http::AppState;
use crate::ops::Actor;
use crate::ops::power::{self, PowerInput, PowerQuery, PowerResult};
use crate::power::service::{PowerCommand, QueueStatus};
use bootloader_core::model::Fqdn;
use bootloader_core::power::BootRequest;
use bootloader_store::power::PowerHealth;

impl IntoResponse for PowerResult {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.status()).unwrap_or(StatusCode::BAD_GATEWAY);
        (status, Json(self)).into_response()
    }
}

/// A live answer for a staff token with write scope; the last known one
/// for everyone else.
async fn live_or_known(
    state: &AppState,
    actor: Actor,
    raw: &str,
    command: PowerCommand,
) -> Result<Response, ApiError> {
    let server: Fqdn = path_key("server", raw)?;
    Ok(
        match power::query(&state.ops, &actor, server, command).await? {
            PowerQuery::Live(result) => (*result).into_response(),
            PowerQuery::Known(known) => Json(known).into_response(),
        },
    )
}

async fn run(
    state: &AppState,
    actor: Actor,
    raw: &str,
    command: PowerCommand,
) -> Result<PowerResult, ApiError> {
    let server: Fqdn = path_key("server", raw)?;
    power::execute(&state.ops, &actor, server, command).await
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
    live_or_known(&state, Actor::User(principal), &fqdn, PowerCommand::Status).await
}

#[utoipa::path(post, path = "/servers/{fqdn}/power", tag = "power", request_body = PowerInput,
    responses((status = 200, body = PowerResult), (status = 502, body = PowerResult),
        (status = 504, body = PowerResult), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn power_action(
    State(state): State<AppState>,
    Staff(principal): Staff,
    Path(fqdn): Path<String>,
    JsonBody(input): JsonBody<PowerInput>,
) -> Result<PowerResult, ApiError> {
    let command = PowerCommand::Power(input.action);
    run(&state, Actor::User(principal), &fqdn, command).await
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
    live_or_known(
        &state,
        Actor::User(principal),
        &fqdn,
        PowerCommand::GetBootDevice,
    )
    .await
}

#[utoipa::path(post, path = "/servers/{fqdn}/bootdev", tag = "power", request_body = BootRequest,
    responses((status = 200, body = PowerResult), (status = 502, body = PowerResult),
        (status = 504, body = PowerResult), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn set_bootdev(
    State(state): State<AppState>,
    Staff(principal): Staff,
    Path(fqdn): Path<String>,
    JsonBody(input): JsonBody<BootRequest>,
) -> Result<PowerResult, ApiError> {
    let command = PowerCommand::SetBootDevice(input);
    run(&state, Actor::User(principal), &fqdn, command).await
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
    Ok(Json(state.ops.power.health(&fqdn).await?))
}

/// The boot-storm queue: power-on and cycle commands waiting and in flight.
#[utoipa::path(get, path = "/power/queue", tag = "power",
    responses((status = 200, body = QueueStatus)))]
pub async fn power_queue(State(state): State<AppState>, _: Reader) -> Json<QueueStatus> {
    Json(state.ops.power.queue())
}
