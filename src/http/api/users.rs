//! `/users`, `/tokens` and `/ssh_authorized_keys`, through `ops::users`.

use axum::Json;
use axum::extract::{OriginalUri, State};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::error::{ApiError, ErrorBody};
use super::extract::{JsonBody, PageQuery, Paginated, Path, Query, Reader, Staff, path_key};
use crate::http::AppState;
use crate::ops::Actor;
use crate::ops::users::{self as ops, SshKeyInput, TokenInput, UserInput};
use bootloader_core::model::Name;
use bootloader_store::{ApiToken, SshKey, User};

#[utoipa::path(get, path = "/users", tag = "users", params(PageQuery),
    responses((status = 200, body = Paginated<User>)))]
pub async fn list_users(
    State(state): State<AppState>,
    OriginalUri(uri): OriginalUri,
    Reader(principal): Reader,
    Query(q): Query<PageQuery>,
) -> Result<Json<Paginated<User>>, ApiError> {
    let page = q.page(&state)?;
    let listing = ops::list(&*state.ops.users, &Actor::User(principal), page).await?;
    Ok(Json(Paginated::new(listing, page, &uri, |u| u)))
}

#[utoipa::path(post, path = "/users", tag = "users", request_body = UserInput,
    responses((status = 201, body = User), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn create_user(
    State(state): State<AppState>,
    Staff(principal): Staff,
    JsonBody(input): JsonBody<UserInput>,
) -> Result<(StatusCode, Json<User>), ApiError> {
    let user = ops::create(&*state.ops.users, &Actor::User(principal), input).await?;
    Ok((StatusCode::CREATED, Json(user)))
}

#[utoipa::path(get, path = "/users/{name}", tag = "users",
    responses((status = 200, body = User), (status = 404, body = ErrorBody)))]
pub async fn get_user(
    State(state): State<AppState>,
    Reader(principal): Reader,
    Path(name): Path<String>,
) -> Result<Json<User>, ApiError> {
    let name: Name = path_key("user", &name)?;
    Ok(Json(
        ops::get(&*state.ops.users, &Actor::User(principal), &name).await?,
    ))
}

#[utoipa::path(patch, path = "/users/{name}", tag = "users", request_body = UserInput,
    responses((status = 200, body = User), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn update_user(
    State(state): State<AppState>,
    Staff(me): Staff,
    Path(name): Path<String>,
    JsonBody(input): JsonBody<UserInput>,
) -> Result<Json<User>, ApiError> {
    let name: Name = path_key("user", &name)?;
    let actor = Actor::User(me);
    Ok(Json(
        ops::update(&*state.ops.users, &actor, &name, input).await?,
    ))
}

#[utoipa::path(delete, path = "/users/{name}", tag = "users",
    responses((status = 204), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn delete_user(
    State(state): State<AppState>,
    Staff(me): Staff,
    Path(name): Path<String>,
) -> Result<StatusCode, ApiError> {
    let name: Name = path_key("user", &name)?;
    ops::delete(&*state.ops.users, &Actor::User(me), &name).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// A new token: the secret appears here once and is never shown again.
#[derive(Debug, Serialize, ToSchema)]
pub struct CreatedToken {
    pub token: String,
    #[serde(flatten)]
    pub info: ApiToken,
}

#[utoipa::path(post, path = "/tokens", tag = "tokens", request_body = TokenInput,
    responses((status = 201, body = CreatedToken), (status = 422, body = ErrorBody)))]
pub async fn create_token(
    State(state): State<AppState>,
    Reader(principal): Reader,
    JsonBody(input): JsonBody<TokenInput>,
) -> Result<(StatusCode, Json<CreatedToken>), ApiError> {
    let (secret, info) =
        ops::create_token(&*state.ops.users, &Actor::User(principal), input).await?;
    Ok((
        StatusCode::CREATED,
        Json(CreatedToken {
            token: secret.expose().to_string(),
            info,
        }),
    ))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct UserFilterQuery {
    /// Only items of this user.
    pub user: Option<String>,
    pub limit: Option<u32>,
    pub offset: Option<u64>,
}

impl UserFilterQuery {
    fn page(&self, state: &AppState) -> Result<bootloader_store::Page, ApiError> {
        PageQuery {
            limit: self.limit,
            offset: self.offset,
        }
        .page(state)
    }
}

#[utoipa::path(get, path = "/tokens", tag = "tokens", params(UserFilterQuery),
    responses((status = 200, body = Paginated<ApiToken>)))]
pub async fn list_tokens(
    State(state): State<AppState>,
    OriginalUri(uri): OriginalUri,
    Reader(me): Reader,
    Query(q): Query<UserFilterQuery>,
) -> Result<Json<Paginated<ApiToken>>, ApiError> {
    let page = q.page(&state)?;
    let actor = Actor::User(me);
    let listing = ops::list_tokens(&*state.ops.users, &actor, q.user.as_deref(), page).await?;
    Ok(Json(Paginated::new(listing, page, &uri, |t| t)))
}

#[utoipa::path(delete, path = "/tokens/{id}", tag = "tokens",
    responses((status = 204), (status = 404, body = ErrorBody)))]
pub async fn revoke_token(
    State(state): State<AppState>,
    Reader(principal): Reader,
    Path(id): Path<i64>,
) -> Result<StatusCode, ApiError> {
    ops::revoke_token(&*state.ops.users, &Actor::User(principal), &id.to_string()).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(get, path = "/ssh_authorized_keys", tag = "ssh_authorized_keys", params(UserFilterQuery),
    responses((status = 200, body = Paginated<SshKey>)))]
pub async fn list_ssh_keys(
    State(state): State<AppState>,
    OriginalUri(uri): OriginalUri,
    Reader(principal): Reader,
    Query(q): Query<UserFilterQuery>,
) -> Result<Json<Paginated<SshKey>>, ApiError> {
    let page = q.page(&state)?;
    let actor = Actor::User(principal);
    let listing = ops::list_ssh_keys(&*state.ops.users, &actor, q.user.as_deref(), page).await?;
    Ok(Json(Paginated::new(listing, page, &uri, |k| k)))
}

#[utoipa::path(post, path = "/ssh_authorized_keys", tag = "ssh_authorized_keys", request_body = SshKeyInput,
    responses((status = 201, body = SshKey), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn create_ssh_key(
    State(state): State<AppState>,
    Reader(principal): Reader,
    JsonBody(input): JsonBody<SshKeyInput>,
) -> Result<(StatusCode, Json<SshKey>), ApiError> {
    let created = ops::add_ssh_key(&*state.ops.users, &Actor::User(principal), input).await?;
    Ok((StatusCode::CREATED, Json(created)))
}

#[utoipa::path(get, path = "/ssh_authorized_keys/{id}", tag = "ssh_authorized_keys",
    responses((status = 200, body = SshKey), (status = 404, body = ErrorBody)))]
pub async fn get_ssh_key(
    State(state): State<AppState>,
    Reader(principal): Reader,
    Path(id): Path<i64>,
) -> Result<Json<SshKey>, ApiError> {
    Ok(Json(
        ops::ssh_key(&*state.ops.users, &Actor::User(principal), id).await?,
    ))
}

#[utoipa::path(delete, path = "/ssh_authorized_keys/{id}", tag = "ssh_authorized_keys",
    responses((status = 204), (status = 404, body = ErrorBody)))]
pub async fn delete_ssh_key(
    State(state): State<AppState>,
    Reader(principal): Reader,
    Path(id): Path<i64>,
) -> Result<StatusCode, ApiError> {
    ops::delete_ssh_key(&*state.ops.users, &Actor::User(principal), id).await?;
    Ok(StatusCode::NO_CONTENT)
}
