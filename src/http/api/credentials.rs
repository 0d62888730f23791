//! `/credentials`: named BMC logins shared by many servers. The password is
//! write-only.

use axum::Json;
use axum::extract::{OriginalUri, State};
use axum::http::StatusCode;
use serde::Deserialize;
use utoipa::ToSchema;

use super::error::{ApiError, ErrorBody, Validator};
use super::extract::{JsonBody, PageQuery, Paginated, Path, Query, Staff, StaffReader, path_key};
use crate::http::AppState;
use bootloader_core::model::{Name, Secret};
use bootloader_store::{Credential, CredentialSpec};

#[derive(Debug, Default, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CredentialInput {
    pub name: Option<String>,
    pub username: Option<String>,
    /// Write-only; stored encrypted and never returned.
    pub password: Option<Secret>,
    pub description: Option<String>,
}

pub fn credential_spec(
    input: CredentialInput,
    current: Option<&Credential>,
) -> Result<CredentialSpec, ApiError> {
    let mut v = Validator::default();
    let name = match (input.name, current) {
        (Some(n), _) => v.parse("name", n.parse::<Name>()),
        (None, Some(c)) => Some(c.name.clone()),
        (None, None) => {
            v.error("name", "is required");
            None
        }
    };
    let username = match (input.username, current) {
        (Some(u), _) => Some(u),
        (None, Some(c)) => Some(c.username.clone()),
        (None, None) => None,
    };
    match &username {
        Some(u) if u.is_empty() || u.len() > 64 || u.chars().any(char::is_control) => {
            v.error("username", "1 to 64 printable characters")
        }
        None => v.error("username", "is required"),
        _ => {}
    }
    match (&input.password, current) {
        (Some(p), _) if p.is_empty() || p.len() > 64 || p.chars().any(char::is_control) => {
            v.error("password", "1 to 64 printable characters")
        }
        (None, None) => v.error("password", "is required"),
        _ => {}
    }
    if let Some(d) = &input.description {
        super::extract::check_text(&mut v, "description", d, 1000);
    }
    v.finish()?;
    match (name, username) {
        (Some(name), Some(username)) => Ok(CredentialSpec {
            name,
            username,
            description: input
                .description
                .or_else(|| current.map(|c| c.description.clone()))
                .unwrap_or_default(),
            password: input.password,
        }),
        _ => Err(ApiError::invalid_field("name", "is required")),
    }
}

#[utoipa::path(get, path = "/credentials", tag = "credentials", params(PageQuery),
    responses((status = 200, body = Paginated<Credential>)))]
pub async fn list_credentials(
    State(state): State<AppState>,
    OriginalUri(uri): OriginalUri,
    _: StaffReader,
    Query(q): Query<PageQuery>,
) -> Result<Json<Paginated<Credential>>, ApiError> {
    let page = q.page(&state)?;
    let listing = state.store.list_credentials(page).await?;
    Ok(Json(Paginated::new(listing, page, &uri, |c| c)))
}

#[utoipa::path(post, path = "/credentials", tag = "credentials", request_body = CredentialInput,
    responses((status = 201, body = Credential), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn create_credential(
    State(state): State<AppState>,
    _: Staff,
    JsonBody(input): JsonBody<CredentialInput>,
) -> Result<(StatusCode, Json<Credential>), ApiError> {
    let spec = credential_spec(input, None)?;
    Ok((
        StatusCode::CREATED,
        Json(state.store.create_credential(spec).await?),
    ))
}

#[utoipa::path(get, path = "/credentials/{name}", tag = "credentials",
    responses((status = 200, body = Credential), (status = 404, body = ErrorBody)))]
pub async fn get_credential(
    State(state): State<AppState>,
    _: StaffReader,
    Path(name): Path<String>,
) -> Result<Json<Credential>, ApiError> {
    let name: Name = path_key("credential", &name)?;
    Ok(Json(state.store.credential(&name).await?))
}

#[utoipa::path(patch, path = "/credentials/{name}", tag = "credentials", request_body = CredentialInput,
    responses((status = 200, body = Credential), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn update_credential(
    State(state): State<AppState>,
    _: Staff,
    Path(name): Path<String>,
    JsonBody(input): JsonBody<CredentialInput>,
) -> Result<Json<Credential>, ApiError> {
    let name: Name = path_key("credential", &name)?;
    let updated = super::update_fresh(|| async {
        let current = state.store.credential(&name).await?;
        let spec = credential_spec(input.clone(), Some(&current))?;
        Ok(state
            .store
            .update_credential(&name, spec, current.updated_at)
            .await)
    })
    .await?;
    Ok(Json(updated))
}

#[utoipa::path(delete, path = "/credentials/{name}", tag = "credentials",
    responses((status = 204), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn delete_credential(
    State(state): State<AppState>,
    _: Staff,
    Path(name): Path<String>,
) -> Result<StatusCode, ApiError> {
    let name: Name = path_key("credential", &name)?;
    state.store.delete_credential(&name).await?;
    Ok(StatusCode::NO_CONTENT)
}
