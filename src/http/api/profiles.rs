//! `/profiles`: upload (YAML or JSON body), validated and stored immutably.
//! A profile is addressed by id or by `name==version`. The use cases are
//! `ops::profiles`; `ProfileSummary` and `ProfileDetail` are the API's own
//! shapes of a stored profile.

use axum::Json;
use axum::body::Bytes;
use axum::extract::{OriginalUri, State};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::error::{ApiError, ErrorBody};
use super::extract::{PageQuery, Paginated, Path, Query, Reader, Staff};
use crate::http::AppState;
use crate::ops::Actor;
use crate::ops::profiles as ops;
use bootloader_core::profile;
use bootloader_store::{ProfileFilter, StoredProfile};

#[derive(Debug, Serialize, ToSchema)]
pub struct ProfileSummary {
    pub id: i64,
    pub name: String,
    pub version: String,
    /// Actions over the six main steps (the basis of progress).
    pub action_count: u64,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub created_at: time::OffsetDateTime,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ProfileDetail {
    #[serde(flatten)]
    pub summary: ProfileSummary,
    /// The YAML exactly as uploaded.
    pub source: String,
    /// The validated profile.
    #[schema(value_type = Object)]
    pub profile: serde_json::Value,
}

fn summary(stored: &StoredProfile) -> ProfileSummary {
    ProfileSummary {
        id: stored.id,
        name: stored.name.clone(),
        version: stored.version.clone(),
        action_count: stored.action_count,
        created_at: stored.created_at,
    }
}

fn detail(stored: StoredProfile) -> Result<ProfileDetail, ApiError> {
    // Stored profiles were validated on upload; failing now means the
    // validator changed under them, which must be loud.
    let parsed = profile::parse(&stored.source).map_err(|e| {
        ApiError::Internal(format!(
            "stored profile {} no longer validates: {e}",
            stored.id
        ))
    })?;
    let json = serde_json::to_value(&parsed).map_err(|e| ApiError::Internal(e.to_string()))?;
    Ok(ProfileDetail {
        summary: summary(&stored),
        source: stored.source,
        profile: json,
    })
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct ProfileQuery {
    pub name: Option<String>,
    pub version: Option<String>,
    pub limit: Option<u32>,
    pub offset: Option<u64>,
}

#[utoipa::path(get, path = "/profiles", tag = "profiles", params(ProfileQuery),
    responses((status = 200, body = Paginated<ProfileSummary>)))]
pub async fn list_profiles(
    State(state): State<AppState>,
    OriginalUri(uri): OriginalUri,
    Reader(principal): Reader,
    Query(q): Query<ProfileQuery>,
) -> Result<Json<Paginated<ProfileSummary>>, ApiError> {
    let page = PageQuery {
        limit: q.limit,
        offset: q.offset,
    }
    .page(&state)?;
    let filter = ProfileFilter {
        name: q.name,
        version: q.version,
    };
    let listing = ops::list(&state.ops, &Actor::User(principal), &filter, page).await?;
    Ok(Json(Paginated::new(listing, page, &uri, |p| summary(&p))))
}

/// The body is the profile itself, as YAML (or JSON, which is YAML too).
#[utoipa::path(post, path = "/profiles", tag = "profiles",
    request_body(content = String, content_type = "application/yaml", description = "the profile YAML"),
    responses((status = 201, body = ProfileDetail), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn create_profile(
    State(state): State<AppState>,
    Staff(principal): Staff,
    body: Bytes,
) -> Result<(StatusCode, Json<ProfileDetail>), ApiError> {
    let text = std::str::from_utf8(&body)
        .map_err(|_| ApiError::invalid_field("(document)", "the profile is not UTF-8 text"))?;
    let stored = ops::upload(&state.ops, &Actor::User(principal), text).await?;
    Ok((StatusCode::CREATED, Json(detail(stored)?)))
}

#[utoipa::path(get, path = "/profiles/{key}", tag = "profiles",
    params(("key" = String, Path, description = "id or name==version")),
    responses((status = 200, body = ProfileDetail), (status = 404, body = ErrorBody)))]
pub async fn get_profile(
    State(state): State<AppState>,
    Reader(principal): Reader,
    Path(key): Path<String>,
) -> Result<Json<ProfileDetail>, ApiError> {
    let stored = ops::get(&state.ops, &Actor::User(principal), &key).await?;
    Ok(Json(detail(stored)?))
}

#[utoipa::path(delete, path = "/profiles/{key}", tag = "profiles",
    params(("key" = String, Path, description = "id or name==version")),
    responses((status = 204), (status = 404, body = ErrorBody)))]
pub async fn delete_profile(
    State(state): State<AppState>,
    Staff(principal): Staff,
    Path(key): Path<String>,
) -> Result<StatusCode, ApiError> {
    ops::delete(&state.ops, &Actor::User(principal), &key).await?;
    Ok(StatusCode::NO_CONTENT)
}
