//! `/locations` and `/labels`: named groupings of servers, through
//! `ops::locations`.

use axum::Json;
use axum::extract::{OriginalUri, State};
use axum::http::StatusCode;

use super::error::{ApiError, ErrorBody};
use super::extract::{JsonBody, PageQuery, Paginated, Path, Query, Reader, Staff, path_key};
use crate::http::AppState;
use crate::ops::Actor;
use crate::ops::locations::{self as ops, LabelInput, LocationInput};
use bootloader_core::model::Name;
use bootloader_store::{Label, Location};

#[utoipa::path(get, path = "/locations", tag = "locations", params(PageQuery),
    responses((status = 200, body = Paginated<Location>), (status = 401, body = ErrorBody)))]
pub async fn list_locations(
    State(state): State<AppState>,
    OriginalUri(uri): OriginalUri,
    Reader(principal): Reader,
    Query(q): Query<PageQuery>,
) -> Result<Json<Paginated<Location>>, ApiError> {
    let page = q.page(&state)?;
    let listing = ops::list_locations(&state.ops, &Actor::User(principal), page).await?;
    Ok(Json(Paginated::new(listing, page, &uri, |l| l)))
}

#[utoipa::path(post, path = "/locations", tag = "locations", request_body = LocationInput,
    responses((status = 201, body = Location), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn create_location(
    State(state): State<AppState>,
    Staff(principal): Staff,
    JsonBody(input): JsonBody<LocationInput>,
) -> Result<(StatusCode, Json<Location>), ApiError> {
    let location = ops::create_location(&state.ops, &Actor::User(principal), input).await?;
    Ok((StatusCode::CREATED, Json(location)))
}

#[utoipa::path(get, path = "/locations/{name}", tag = "locations",
    responses((status = 200, body = Location), (status = 404, body = ErrorBody)))]
pub async fn get_location(
    State(state): State<AppState>,
    Reader(principal): Reader,
    Path(name): Path<String>,
) -> Result<Json<Location>, ApiError> {
    let name: Name = path_key("location", &name)?;
    Ok(Json(
        ops::location(&state.ops, &Actor::User(principal), &name).await?,
    ))
}

#[utoipa::path(patch, path = "/locations/{name}", tag = "locations", request_body = LocationInput,
    responses((status = 200, body = Location), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn update_location(
    State(state): State<AppState>,
    Staff(principal): Staff,
    Path(name): Path<String>,
    JsonBody(input): JsonBody<LocationInput>,
) -> Result<Json<Location>, ApiError> {
    let name: Name = path_key("location", &name)?;
    let actor = Actor::User(principal);
    Ok(Json(
        ops::update_location(&state.ops, &actor, &name, input).await?,
    ))
}

#[utoipa::path(delete, path = "/locations/{name}", tag = "locations",
    responses((status = 204), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn delete_location(
    State(state): State<AppState>,
    Staff(principal): Staff,
    Path(name): Path<String>,
) -> Result<StatusCode, ApiError> {
    let name: Name = path_key("location", &name)?;
    ops::delete_location(&state.ops, &Actor::User(principal), &name).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(get, path = "/labels", tag = "labels", params(PageQuery),
    responses((status = 200, body = Paginated<Label>)))]
pub async fn list_labels(
    State(state): State<AppState>,
    OriginalUri(uri): OriginalUri,
    Reader(principal): Reader,
    Query(q): Query<PageQuery>,
) -> Result<Json<Paginated<Label>>, ApiError> {
    let page = q.page(&state)?;
    let listing = ops::list_labels(&state.ops, &Actor::User(principal), page).await?;
    Ok(Json(Paginated::new(listing, page, &uri, |l| l)))
}

#[utoipa::path(post, path = "/labels", tag = "labels", request_body = LabelInput,
    responses((status = 201, body = Label), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn create_label(
    State(state): State<AppState>,
    Staff(principal): Staff,
    JsonBody(input): JsonBody<LabelInput>,
) -> Result<(StatusCode, Json<Label>), ApiError> {
    let label = ops::create_label(&state.ops, &Actor::User(principal), input).await?;
    Ok((StatusCode::CREATED, Json(label)))
}

#[utoipa::path(get, path = "/labels/{name}", tag = "labels",
    responses((status = 200, body = Label), (status = 404, body = ErrorBody)))]
pub async fn get_label(
    State(state): State<AppState>,
    Reader(principal): Reader,
    Path(name): Path<String>,
) -> Result<Json<Label>, ApiError> {
    let name: Name = path_key("label", &name)?;
    Ok(Json(
        ops::label(&state.ops, &Actor::User(principal), &name).await?,
    ))
}

#[utoipa::path(patch, path = "/labels/{name}", tag = "labels", request_body = LabelInput,
    responses((status = 200, body = Label), (status = 404, body = ErrorBody)))]
pub async fn update_label(
    State(state): State<AppState>,
    Staff(principal): Staff,
    Path(name): Path<String>,
    JsonBody(input): JsonBody<LabelInput>,
) -> Result<Json<Label>, ApiError> {
    let name: Name = path_key("label", &name)?;
    let actor = Actor::User(principal);
    Ok(Json(
        ops::update_label(&state.ops, &actor, &name, input).await?,
    ))
}

#[utoipa::path(delete, path = "/labels/{name}", tag = "labels",
    responses((status = 204), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn delete_label(
    State(state): State<AppState>,
    Staff(principal): Staff,
    Path(name): Path<String>,
) -> Result<StatusCode, ApiError> {
    let name: Name = path_key("label", &name)?;
    ops::delete_label(&state.ops, &Actor::User(principal), &name).await?;
    Ok(StatusCode::NO_CONTENT)
}
