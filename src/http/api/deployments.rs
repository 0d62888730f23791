//! Deployments: start one (server by FQDN, profile by id or
//! `name==version`), list, read, cancel, repeat, and read its log and
//! timeline. The engine (`workflow/`) walks each through its profile.

use axum::Json;
use axum::extract::{OriginalUri, State};
use axum::http::StatusCode;
use serde::Deserialize;
use utoipa::IntoParams;

use super::error::{ApiError, ErrorBody};
use super::extract::{JsonBody, PageQuery, Paginated, Path, Query, Reader, Staff};
use crate::http::AppState;
use crate::ops::Actor;
use crate::ops::deployments::{self, DeploymentInput};
use crate::ops::input::deployment_id;
use bootloader_core::model::DeploymentState;
use bootloader_core::model::Fqdn;
use bootloader_store::boot::DeploymentRecord;
use bootloader_store::engine::LogEntry;

#[utoipa::path(post, path = "/deployments", tag = "deployments", request_body = DeploymentInput,
    responses((status = 201, body = DeploymentRecord), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn create_deployment(
    State(state): State<AppState>,
    Staff(principal): Staff,
    JsonBody(input): JsonBody<DeploymentInput>,
) -> Result<(StatusCode, Json<DeploymentRecord>), ApiError> {
    let record = deployments::create(&state.ops, &Actor::User(principal), input).await?;
    Ok((StatusCode::CREATED, Json(record)))
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct DeploymentQuery {
    /// Only this server's deployments.
    pub server: Option<String>,
    /// Only deployments in this state.
    pub state: Option<String>,
    pub limit: Option<u32>,
    pub offset: Option<u64>,
}

#[utoipa::path(get, path = "/deployments", tag = "deployments", params(DeploymentQuery),
    responses((status = 200, body = Paginated<DeploymentRecord>)))]
pub async fn list_deployments(
    State(state): State<AppState>,
    OriginalUri(uri): OriginalUri,
    Reader(principal): Reader,
    Query(q): Query<DeploymentQuery>,
) -> Result<Json<Paginated<DeploymentRecord>>, ApiError> {
    let page = PageQuery {
        limit: q.limit,
        offset: q.offset,
    }
    .page(&state)?;
    let server: Option<Fqdn> = match q.server {
        Some(s) => Some(s.parse().map_err(|e: bootloader_core::model::NameError| {
            ApiError::invalid_field("server", e.to_string())
        })?),
        None => None,
    };
    let wanted: Option<DeploymentState> = match q.state {
        Some(s) => Some(
            s.parse()
                .map_err(|e: String| ApiError::invalid_field("state", e))?,
        ),
        None => None,
    };
    let actor = Actor::User(principal);
    let listing = deployments::list(&state.ops, &actor, server.as_ref(), wanted, page).await?;
    Ok(Json(Paginated::new(listing, page, &uri, |d| d)))
}

#[utoipa::path(get, path = "/deployments/{id}", tag = "deployments",
    responses((status = 200, body = DeploymentRecord), (status = 404, body = ErrorBody)))]
pub async fn get_deployment(
    State(state): State<AppState>,
    Reader(principal): Reader,
    Path(id): Path<String>,
) -> Result<Json<DeploymentRecord>, ApiError> {
    let actor = Actor::User(principal);
    Ok(Json(
        deployments::get(&state.ops, &actor, deployment_id(&id)?).await?,
    ))
}

/// Stops an active deployment: its files stop being served, no more BMC
/// commands are sent, the profile's `cleanup` step runs if it has one.
#[utoipa::path(post, path = "/deployments/{id}/cancel", tag = "deployments",
    responses((status = 200, body = DeploymentRecord), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn cancel_deployment(
    State(state): State<AppState>,
    Staff(principal): Staff,
    Path(id): Path<String>,
) -> Result<Json<DeploymentRecord>, ApiError> {
    let id = deployment_id(&id)?;
    Ok(Json(
        deployments::cancel(&state.ops, &Actor::User(principal), id).await?,
    ))
}

/// Deploys the same server again with the same pinned profile version and
/// a new callback token.
#[utoipa::path(post, path = "/deployments/{id}/repeat", tag = "deployments",
    responses((status = 201, body = DeploymentRecord), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn repeat_deployment(
    State(state): State<AppState>,
    Staff(principal): Staff,
    Path(id): Path<String>,
) -> Result<(StatusCode, Json<DeploymentRecord>), ApiError> {
    let id = deployment_id(&id)?;
    let record = deployments::repeat(&state.ops, &Actor::User(principal), id).await?;
    Ok((StatusCode::CREATED, Json(record)))
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct LogQuery {
    /// Entries after this id (the last one read), for following a log.
    pub after: Option<i64>,
    /// At most this many (default and maximum 1000).
    pub limit: Option<u32>,
}

/// Every action's start, result and duration, state changes and errors,
/// oldest first.
#[utoipa::path(get, path = "/deployments/{id}/log", tag = "deployments", params(LogQuery),
    responses((status = 200, body = Vec<LogEntry>), (status = 404, body = ErrorBody)))]
pub async fn deployment_log(
    State(state): State<AppState>,
    Reader(principal): Reader,
    Path(id): Path<String>,
    Query(q): Query<LogQuery>,
) -> Result<Json<Vec<LogEntry>>, ApiError> {
    let actor = Actor::User(principal);
    let id = deployment_id(&id)?;
    Ok(Json(
        deployments::log(&state.ops, &actor, id, q.after, q.limit).await?,
    ))
}

/// The boot timeline of the deployment's server while the deployment ran
/// (newest first): what the machine did, what it was answered.
#[utoipa::path(get, path = "/deployments/{id}/timeline", tag = "deployments",
    params(super::boot::TimelineQuery),
    responses((status = 200, body = super::boot::Timeline), (status = 404, body = ErrorBody)))]
pub async fn deployment_timeline(
    State(state): State<AppState>,
    Reader(principal): Reader,
    Path(id): Path<String>,
    Query(q): Query<super::boot::TimelineQuery>,
) -> Result<Json<super::boot::Timeline>, ApiError> {
    let actor = Actor::User(principal);
    let id = deployment_id(&id)?;
    Ok(Json(
        crate::ops::timeline::of_deployment(&state.ops, &actor, id, q.page()).await?,
    ))
}
