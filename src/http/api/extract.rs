//! Request extractors: authentication, JSON bodies with field-named errors,
//! and pagination.

use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{Uri, header};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use super::error::ApiError;
use crate::http::AppState;
pub use crate::ops::input::{check_text, double_option, parse_json, path_key};
use bootloader_core::model::ApiTokenSecret;
use bootloader_store::{Listing, Page, Principal};

/// Any valid token: may read.
pub struct Reader(pub Principal);

/// A write-scoped token of a staff user: may write.
pub struct Staff(pub Principal);

/// Any token of a staff user: may read what only staff see (credentials).
pub struct StaffReader(pub Principal);

impl FromRequestParts<AppState> for StaffReader {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let Reader(principal) = Reader::from_request_parts(parts, state).await?;
        crate::ops::require_staff(&principal, "see credentials")?;
        Ok(Self(principal))
    }
}

fn presented_token(parts: &Parts) -> Option<ApiTokenSecret> {
    let value = parts.headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.trim().split_once(' ')?;
    if scheme.eq_ignore_ascii_case("token") || scheme.eq_ignore_ascii_case("bearer") {
        let token = token.trim();
        (!token.is_empty()).then(|| ApiTokenSecret::from_presented(token))
    } else {
        None
    }
}

impl FromRequestParts<AppState> for Reader {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let token = presented_token(parts).ok_or(ApiError::Unauthenticated)?;
        let principal = crate::ops::users::authenticate(&*state.ops.users, &token)
            .await?
            .ok_or(ApiError::Unauthenticated)?;
        Ok(Self(principal))
    }
}

impl FromRequestParts<AppState> for Staff {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let Reader(principal) = Reader::from_request_parts(parts, state).await?;
        crate::ops::require_write(&principal)?;
        Ok(Self(principal))
    }
}

/// A JSON body whose type errors name the field (`bmc.port: invalid type`).
pub struct JsonBody<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for JsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        let bytes = axum::body::Bytes::from_request(req, state)
            .await
            .map_err(|e| ApiError::BadRequest(format!("cannot read body: {e}")))?;
        parse_json(&bytes).map(JsonBody)
    }
}

/// `?limit=&offset=` on list endpoints.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct PageQuery {
    /// Items per page (default from config, capped by api.max_page_size).
    pub limit: Option<u32>,
    /// Items to skip.
    pub offset: Option<u64>,
}

impl PageQuery {
    pub fn page(&self, state: &AppState) -> Result<Page, ApiError> {
        let limit = self.limit.unwrap_or(state.default_page_size);
        if limit == 0 || limit > state.max_page_size {
            return Err(ApiError::invalid_field(
                "limit",
                format!("must be between 1 and {}", state.max_page_size),
            ));
        }
        Ok(Page {
            limit,
            offset: self.offset.unwrap_or(0),
        })
    }
}

/// One page of a list, in the shape the older system's API used.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Paginated<T> {
    /// Total number of matching items.
    pub count: u64,
    /// Path and query of the next page, if any.
    pub next: Option<String>,
    /// Path and query of the previous page, if any.
    pub previous: Option<String>,
    pub results: Vec<T>,
}

impl<T> Paginated<T> {
    /// One page of `listing`. The `next` and `previous` links are the
    /// request's own path and query with only `limit` and `offset` changed,
    /// so following them keeps every filter.
    pub fn new<U>(listing: Listing<U>, page: Page, uri: &Uri, map: impl FnMut(U) -> T) -> Self {
        let shown = listing.items.len() as u64;
        let link = |offset: u64| {
            let mut pairs: Vec<(String, String)> = uri
                .query()
                .map(|q| serde_urlencoded::from_str::<Vec<(String, String)>>(q).unwrap_or_default())
                .unwrap_or_default()
                .into_iter()
                .filter(|(k, _)| k != "limit" && k != "offset")
                .collect();
            pairs.push(("limit".into(), page.limit.to_string()));
            pairs.push(("offset".into(), offset.to_string()));
            let query = serde_urlencoded::to_string(&pairs).unwrap_or_default();
            format!("{}?{query}", uri.path())
        };
        let next = (page.offset + shown < listing.total).then(|| link(page.offset + shown));
        let previous =
            (page.offset > 0).then(|| link(page.offset.saturating_sub(u64::from(page.limit))));
        Self {
            count: listing.total,
            next,
            previous,
            results: listing.items.into_iter().map(map).collect(),
        }
    }
}

/// `axum::extract::Query` whose rejection is a JSON 422.
pub struct Query<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequestParts<S> for Query<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        axum::extract::Query::<T>::from_request_parts(parts, state)
            .await
            .map(|q| Self(q.0))
            .map_err(|e| ApiError::invalid_field("(query)", e.body_text()))
    }
}

/// `axum::extract::Path` whose rejection is a JSON 404: a path segment
/// that does not parse names nothing that exists.
pub struct Path<T>(pub T);

impl<T: DeserializeOwned + Send, S: Send + Sync> FromRequestParts<S> for Path<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        axum::extract::Path::<T>::from_request_parts(parts, state)
            .await
            .map(|p| Self(p.0))
            .map_err(|_| ApiError::NotFound(format!("no such object: {}", parts.uri.path())))
    }
}
