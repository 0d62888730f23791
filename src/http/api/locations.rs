//! `/locations` and `/labels`: named groupings of servers.

use axum::Json;
use axum::extract::{OriginalUri, State};
use axum::http::StatusCode;
use serde::Deserialize;
use utoipa::ToSchema;

use super::error::{ApiError, ErrorBody, Validator};
use super::extract::{JsonBody, PageQuery, Paginated, Path, Query, Reader, Staff, path_key};
use crate::http::AppState;
use bootloader_core::model::Name;
use bootloader_store::{Label, Location, LocationPatch, NewLocation};

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LocationInput {
    /// Unique name, e.g. `dc1`.
    pub name: Option<String>,
    pub description: Option<String>,
}

#[utoipa::path(get, path = "/locations", tag = "locations", params(PageQuery),
    responses((status = 200, body = Paginated<Location>), (status = 401, body = ErrorBody)))]
pub async fn list_locations(
    State(state): State<AppState>,
    OriginalUri(uri): OriginalUri,
    _: Reader,
    Query(q): Query<PageQuery>,
) -> Result<Json<Paginated<Location>>, ApiError> {
    let page = q.page(&state)?;
    let listing = state.store.list_locations(page).await?;
    Ok(Json(Paginated::new(listing, page, &uri, |l| l)))
}

#[utoipa::path(post, path = "/locations", tag = "locations", request_body = LocationInput,
    responses((status = 201, body = Location), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn create_location(
    State(state): State<AppState>,
    _: Staff,
    JsonBody(input): JsonBody<LocationInput>,
) -> Result<(StatusCode, Json<Location>), ApiError> {
    let mut v = Validator::default();
    let name = match &input.name {
        Some(n) => v.parse("name", n.parse::<Name>()),
        None => {
            v.error("name", "is required");
            None
        }
    };
    if let Some(d) = &input.description {
        super::extract::check_text(&mut v, "description", d, 1000);
    }
    v.finish()?;
    let Some(name) = name else {
        return Err(ApiError::invalid_field("name", "is required"));
    };
    let location = state
        .store
        .create_location(NewLocation {
            name,
            description: input.description.unwrap_or_default(),
        })
        .await?;
    Ok((StatusCode::CREATED, Json(location)))
}

#[utoipa::path(get, path = "/locations/{name}", tag = "locations",
    responses((status = 200, body = Location), (status = 404, body = ErrorBody)))]
pub async fn get_location(
    State(state): State<AppState>,
    _: Reader,
    Path(name): Path<String>,
) -> Result<Json<Location>, ApiError> {
    let name: Name = path_key("location", &name)?;
    Ok(Json(state.store.location(&name).await?))
}

#[utoipa::path(patch, path = "/locations/{name}", tag = "locations", request_body = LocationInput,
    responses((status = 200, body = Location), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn update_location(
    State(state): State<AppState>,
    _: Staff,
    Path(name): Path<String>,
    JsonBody(input): JsonBody<LocationInput>,
) -> Result<Json<Location>, ApiError> {
    let name: Name = path_key("location", &name)?;
    let mut v = Validator::default();
    let new_name = input
        .name
        .as_deref()
        .and_then(|n| v.parse("name", n.parse::<Name>()));
    if let Some(d) = &input.description {
        super::extract::check_text(&mut v, "description", d, 1000);
    }
    v.finish()?;
    let patch = LocationPatch {
        name: new_name,
        description: input.description,
    };
    Ok(Json(state.store.update_location(&name, patch).await?))
}

#[utoipa::path(delete, path = "/locations/{name}", tag = "locations",
    responses((status = 204), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn delete_location(
    State(state): State<AppState>,
    _: Staff,
    Path(name): Path<String>,
) -> Result<StatusCode, ApiError> {
    let name: Name = path_key("location", &name)?;
    state.store.delete_location(&name).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LabelInput {
    pub name: Option<String>,
    pub description: Option<String>,
}

#[utoipa::path(get, path = "/labels", tag = "labels", params(PageQuery),
    responses((status = 200, body = Paginated<Label>)))]
pub async fn list_labels(
    State(state): State<AppState>,
    OriginalUri(uri): OriginalUri,
    _: Reader,
    Query(q): Query<PageQuery>,
) -> Result<Json<Paginated<Label>>, ApiError> {
    let page = q.page(&state)?;
    let listing = state.store.list_labels(page).await?;
    Ok(Json(Paginated::new(listing, page, &uri, |l| l)))
}

fn label_name(v: &mut Validator, input: &LabelInput, required: bool) -> Option<Name> {
    match &input.name {
        Some(n) => v.parse("name", n.parse::<Name>()),
        None if required => {
            v.error("name", "is required");
            None
        }
        None => None,
    }
}

#[utoipa::path(post, path = "/labels", tag = "labels", request_body = LabelInput,
    responses((status = 201, body = Label), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn create_label(
    State(state): State<AppState>,
    _: Staff,
    JsonBody(input): JsonBody<LabelInput>,
) -> Result<(StatusCode, Json<Label>), ApiError> {
    let mut v = Validator::default();
    let name = label_name(&mut v, &input, true);
    if let Some(d) = &input.description {
        super::extract::check_text(&mut v, "description", d, 1000);
    }
    v.finish()?;
    let name = name.ok_or_else(|| ApiError::invalid_field("name", "is required"))?;
    let label = state
        .store
        .create_label(&name, input.description.as_deref().unwrap_or(""))
        .await?;
    Ok((StatusCode::CREATED, Json(label)))
}

#[utoipa::path(get, path = "/labels/{name}", tag = "labels",
    responses((status = 200, body = Label), (status = 404, body = ErrorBody)))]
pub async fn get_label(
    State(state): State<AppState>,
    _: Reader,
    Path(name): Path<String>,
) -> Result<Json<Label>, ApiError> {
    let name: Name = path_key("label", &name)?;
    Ok(Json(state.store.label(&name).await?))
}

#[utoipa::path(patch, path = "/labels/{name}", tag = "labels", request_body = LabelInput,
    responses((status = 200, body = Label), (status = 404, body = ErrorBody)))]
pub async fn update_label(
    State(state): State<AppState>,
    _: Staff,
    Path(name): Path<String>,
    JsonBody(input): JsonBody<LabelInput>,
) -> Result<Json<Label>, ApiError> {
    let name: Name = path_key("label", &name)?;
    let mut v = Validator::default();
    let new_name = label_name(&mut v, &input, false);
    if let Some(d) = &input.description {
        super::extract::check_text(&mut v, "description", d, 1000);
    }
    v.finish()?;
    let current = state.store.label(&name).await?;
    let label = state
        .store
        .update_label(
            &name,
            new_name.as_ref().unwrap_or(&name),
            input.description.as_deref().unwrap_or(&current.description),
        )
        .await?;
    Ok(Json(label))
}

#[utoipa::path(delete, path = "/labels/{name}", tag = "labels",
    responses((status = 204), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn delete_label(
    State(state): State<AppState>,
    _: Staff,
    Path(name): Path<String>,
) -> Result<StatusCode, ApiError> {
    let name: Name = path_key("label", &name)?;
    state.store.delete_label(&name).await?;
    Ok(StatusCode::NO_CONTENT)
}
