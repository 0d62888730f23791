//! `/credentials`: named BMC logins shared by many servers. The password is
//! write-only.

use axum::Json;
use axum::extract::{OriginalUri, State};
use axum::http::StatusCode;

use super::error::{ApiError, ErrorBody};
use super::extract::{JsonBody, PageQuery, Paginated, Path, Query, Staff, StaffReader, path_key};
use crate::http::AppState;
use crate::ops::Actor;
use crate::ops::credentials::{self as ops, CredentialInput};
use bootloader_core::model::Name;
use bootloader_store::Credential;

#[utoipa::path(get, path = "/credentials", tag = "credentials", params(PageQuery),
    responses((status = 200, body = Paginated<Credential>)))]
pub async fn list_credentials(
    State(state): State<AppState>,
    OriginalUri(uri): OriginalUri,
    StaffReader(principal): StaffReader,
    Query(q): Query<PageQuery>,
) -> Result<Json<Paginated<Credential>>, ApiError> {
    let page = q.page(&state)?;
    let listing = ops::list(&state.ops, &Actor::User(principal), page).await?;
    Ok(Json(Paginated::new(listing, page, &uri, |c| c)))
}

#[utoipa::path(post, path = "/credentials", tag = "credentials", request_body = CredentialInput,
    responses((status = 201, body = Credential), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn create_credential(
    State(state): State<AppState>,
    Staff(principal): Staff,
    JsonBody(input): JsonBody<CredentialInput>,
) -> Result<(StatusCode, Json<Credential>), ApiError> {
    let credential = ops::create(&state.ops, &Actor::User(principal), input).await?;
    Ok((StatusCode::CREATED, Json(credential)))
}

#[utoipa::path(get, path = "/credentials/{name}", tag = "credentials",
    responses((status = 200, body = Credential), (status = 404, body = ErrorBody)))]
pub async fn get_credential(
    State(state): State<AppState>,
    StaffReader(principal): StaffReader,
    Path(name): Path<String>,
) -> Result<Json<Credential>, ApiError> {
    let name: Name = path_key("credential", &name)?;
    Ok(Json(
        ops::get(&state.ops, &Actor::User(principal), &name).await?,
    ))
}

#[utoipa::path(patch, path = "/credentials/{name}", tag = "credentials", request_body = CredentialInput,
    responses((status = 200, body = Credential), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn update_credential(
    State(state): State<AppState>,
    Staff(principal): Staff,
    Path(name): Path<String>,
    JsonBody(input): JsonBody<CredentialInput>,
) -> Result<Json<Credential>, ApiError> {
    let name: Name = path_key("credential", &name)?;
    let actor = Actor::User(principal);
    Ok(Json(ops::update(&state.ops, &actor, &name, input).await?))
}

#[utoipa::path(delete, path = "/credentials/{name}", tag = "credentials",
    responses((status = 204), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn delete_credential(
    State(state): State<AppState>,
    Staff(principal): Staff,
    Path(name): Path<String>,
) -> Result<StatusCode, ApiError> {
    let name: Name = path_key("credential", &name)?;
    ops::delete(&state.ops, &Actor::User(principal), &name).await?;
    Ok(StatusCode::NO_CONTENT)
}
