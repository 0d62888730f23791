//! `/networks`: the subnets servers live on, with optional DHCP pools,
//! through `ops::networks`.

use axum::Json;
use axum::extract::{OriginalUri, State};
use axum::http::StatusCode;
use serde::Deserialize;

use super::error::{ApiError, ErrorBody};
use super::extract::{JsonBody, PageQuery, Paginated, Path, Query, Reader, Staff};
use crate::http::AppState;
use crate::ops::Actor;
use crate::ops::networks::{self as ops, NetworkInput};
use bootloader_core::model::Name;
use bootloader_store::Network;

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct NetworkQuery {
    /// Only networks of this location.
    pub location: Option<String>,
    pub limit: Option<u32>,
    pub offset: Option<u64>,
}

#[utoipa::path(get, path = "/networks", tag = "networks", params(NetworkQuery),
    responses((status = 200, body = Paginated<Network>)))]
pub async fn list_networks(
    State(state): State<AppState>,
    OriginalUri(uri): OriginalUri,
    Reader(principal): Reader,
    Query(q): Query<NetworkQuery>,
) -> Result<Json<Paginated<Network>>, ApiError> {
    let page = PageQuery {
        limit: q.limit,
        offset: q.offset,
    }
    .page(&state)?;
    let location = match q.location {
        Some(l) => Some(
            l.parse::<Name>()
                .map_err(|e| ApiError::invalid_field("location", e.to_string()))?,
        ),
        None => None,
    };
    let actor = Actor::User(principal);
    let listing = ops::list(&state.ops, &actor, location.as_ref(), page).await?;
    Ok(Json(Paginated::new(listing, page, &uri, |n| n)))
}

#[utoipa::path(post, path = "/networks", tag = "networks", request_body = NetworkInput,
    responses((status = 201, body = Network), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn create_network(
    State(state): State<AppState>,
    Staff(principal): Staff,
    JsonBody(input): JsonBody<NetworkInput>,
) -> Result<(StatusCode, Json<Network>), ApiError> {
    let network = ops::create(&state.ops, &Actor::User(principal), input).await?;
    Ok((StatusCode::CREATED, Json(network)))
}

#[utoipa::path(get, path = "/networks/{id}", tag = "networks",
    responses((status = 200, body = Network), (status = 404, body = ErrorBody)))]
pub async fn get_network(
    State(state): State<AppState>,
    Reader(principal): Reader,
    Path(id): Path<i64>,
) -> Result<Json<Network>, ApiError> {
    Ok(Json(
        ops::get(&state.ops, &Actor::User(principal), id).await?,
    ))
}

#[utoipa::path(patch, path = "/networks/{id}", tag = "networks", request_body = NetworkInput,
    responses((status = 200, body = Network), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn update_network(
    State(state): State<AppState>,
    Staff(principal): Staff,
    Path(id): Path<i64>,
    JsonBody(input): JsonBody<NetworkInput>,
) -> Result<Json<Network>, ApiError> {
    let actor = Actor::User(principal);
    Ok(Json(ops::update(&state.ops, &actor, id, input).await?))
}

#[utoipa::path(delete, path = "/networks/{id}", tag = "networks",
    responses((status = 204), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn delete_network(
    State(state): State<AppState>,
    Staff(principal): Staff,
    Path(id): Path<i64>,
) -> Result<StatusCode, ApiError> {
    ops::delete(&state.ops, &Actor::User(principal), id).await?;
    Ok(StatusCode::NO_CONTENT)
}
