//! `/servers` (by FQDN) and `/interfaces`, through `ops::servers`.

use axum::Json;
use axum::extract::{OriginalUri, State};
use axum::http::StatusCode;
use serde::Deserialize;

use super::error::{ApiError, ErrorBody};
use super::extract::{JsonBody, PageQuery, Paginated, Path, Query, Reader, Staff, path_key};
use crate::http::AppState;
use crate::ops::Actor;
use crate::ops::servers::{self as ops, InterfaceCreate, InterfaceInput, ServerInput};
use bootloader_core::model::Fqdn;
use bootloader_store::{Interface, Server};

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct ServerQuery {
    /// Only servers of this location.
    pub location: Option<String>,
    /// Only servers carrying this label.
    pub label: Option<String>,
    /// Only servers whose FQDN, serial or a MAC contains this, any case.
    pub search: Option<String>,
    /// Only servers whose latest deployment is in this state.
    pub state: Option<String>,
    pub limit: Option<u32>,
    pub offset: Option<u64>,
}

#[utoipa::path(get, path = "/servers", tag = "servers", params(ServerQuery),
    responses((status = 200, body = Paginated<Server>)))]
pub async fn list_servers(
    State(state): State<AppState>,
    OriginalUri(uri): OriginalUri,
    Reader(principal): Reader,
    Query(q): Query<ServerQuery>,
) -> Result<Json<Paginated<Server>>, ApiError> {
    let page = PageQuery {
        limit: q.limit,
        offset: q.offset,
    }
    .page(&state)?;
    let actor = Actor::User(principal);
    let search = ops::ServerSearch {
        location: q.location,
        label: q.label,
        search: q.search,
        state: q.state,
    };
    let listing = ops::list(&state.ops, &actor, search, page).await?;
    Ok(Json(Paginated::new(listing, page, &uri, |s| s)))
}

#[utoipa::path(post, path = "/servers", tag = "servers", request_body = ServerInput,
    responses((status = 201, body = Server), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn create_server(
    State(state): State<AppState>,
    Staff(principal): Staff,
    JsonBody(input): JsonBody<ServerInput>,
) -> Result<(StatusCode, Json<Server>), ApiError> {
    let server = ops::create(&state.ops, &Actor::User(principal), input).await?;
    Ok((StatusCode::CREATED, Json(server)))
}

#[utoipa::path(get, path = "/servers/{fqdn}", tag = "servers",
    responses((status = 200, body = Server), (status = 404, body = ErrorBody)))]
pub async fn get_server(
    State(state): State<AppState>,
    Reader(principal): Reader,
    Path(fqdn): Path<String>,
) -> Result<Json<Server>, ApiError> {
    let fqdn: Fqdn = path_key("server", &fqdn)?;
    Ok(Json(
        ops::get(&state.ops, &Actor::User(principal), &fqdn).await?,
    ))
}

#[utoipa::path(patch, path = "/servers/{fqdn}", tag = "servers", request_body = ServerInput,
    responses((status = 200, body = Server), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn update_server(
    State(state): State<AppState>,
    Staff(principal): Staff,
    Path(fqdn): Path<String>,
    JsonBody(input): JsonBody<ServerInput>,
) -> Result<Json<Server>, ApiError> {
    let fqdn: Fqdn = path_key("server", &fqdn)?;
    let actor = Actor::User(principal);
    Ok(Json(ops::update(&state.ops, &actor, &fqdn, input).await?))
}

#[utoipa::path(delete, path = "/servers/{fqdn}", tag = "servers",
    responses((status = 204), (status = 404, body = ErrorBody)))]
pub async fn delete_server(
    State(state): State<AppState>,
    Staff(principal): Staff,
    Path(fqdn): Path<String>,
) -> Result<StatusCode, ApiError> {
    let fqdn: Fqdn = path_key("server", &fqdn)?;
    ops::delete(&state.ops, &Actor::User(principal), &fqdn).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct InterfaceQuery {
    /// Only interfaces of this server (FQDN).
    pub server: Option<String>,
    pub limit: Option<u32>,
    pub offset: Option<u64>,
}

#[utoipa::path(get, path = "/interfaces", tag = "interfaces", params(InterfaceQuery),
    responses((status = 200, body = Paginated<Interface>)))]
pub async fn list_interfaces(
    State(state): State<AppState>,
    OriginalUri(uri): OriginalUri,
    Reader(principal): Reader,
    Query(q): Query<InterfaceQuery>,
) -> Result<Json<Paginated<Interface>>, ApiError> {
    let page = PageQuery {
        limit: q.limit,
        offset: q.offset,
    }
    .page(&state)?;
    let actor = Actor::User(principal);
    let listing = ops::list_interfaces(&state.ops, &actor, q.server, page).await?;
    Ok(Json(Paginated::new(listing, page, &uri, |i| i)))
}

#[utoipa::path(post, path = "/interfaces", tag = "interfaces", request_body = InterfaceCreate,
    responses((status = 201, body = Interface), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn create_interface(
    State(state): State<AppState>,
    Staff(principal): Staff,
    JsonBody(input): JsonBody<InterfaceCreate>,
) -> Result<(StatusCode, Json<Interface>), ApiError> {
    let interface = ops::create_interface(&state.ops, &Actor::User(principal), input).await?;
    Ok((StatusCode::CREATED, Json(interface)))
}

#[utoipa::path(get, path = "/interfaces/{id}", tag = "interfaces",
    responses((status = 200, body = Interface), (status = 404, body = ErrorBody)))]
pub async fn get_interface(
    State(state): State<AppState>,
    Reader(principal): Reader,
    Path(id): Path<i64>,
) -> Result<Json<Interface>, ApiError> {
    Ok(Json(
        ops::interface(&state.ops, &Actor::User(principal), id).await?,
    ))
}

#[utoipa::path(patch, path = "/interfaces/{id}", tag = "interfaces", request_body = InterfaceInput,
    responses((status = 200, body = Interface), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn update_interface(
    State(state): State<AppState>,
    Staff(principal): Staff,
    Path(id): Path<i64>,
    JsonBody(input): JsonBody<InterfaceInput>,
) -> Result<Json<Interface>, ApiError> {
    let actor = Actor::User(principal);
    Ok(Json(
        ops::update_interface(&state.ops, &actor, id, input).await?,
    ))
}

#[utoipa::path(delete, path = "/interfaces/{id}", tag = "interfaces",
    responses((status = 204), (status = 404, body = ErrorBody)))]
pub async fn delete_interface(
    State(state): State<AppState>,
    Staff(principal): Staff,
    Path(id): Path<i64>,
) -> Result<StatusCode, ApiError> {
    ops::delete_interface(&state.ops, &Actor::User(principal), id).await?;
    Ok(StatusCode::NO_CONTENT)
}
