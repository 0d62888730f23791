//! The console's own `Query` and `Path`: a query the page does not take
//! (an unknown or malformed parameter) or a path naming nothing is
//! answered with the console's error page, as a person reads it, not with
//! the API's JSON.

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::response::Response;
use serde::de::DeserializeOwned;

use super::ConsoleState;
use super::render::error_page;
use crate::ops::Error;

/// The query string read into `T`; a 422 page naming what is wrong.
pub struct Query<T>(pub T);

impl<T: DeserializeOwned> FromRequestParts<ConsoleState> for Query<T> {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &ConsoleState) -> Result<Self, Response> {
        axum::extract::Query::<T>::from_request_parts(parts, state)
            .await
            .map(|q| Self(q.0))
            .map_err(|e| error_page(state, Error::invalid_field("(query)", e.body_text())))
    }
}

/// The path's parameters read into `T`; a 404 page when they do not parse.
pub struct Path<T>(pub T);

impl<T: DeserializeOwned + Send> FromRequestParts<ConsoleState> for Path<T> {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &ConsoleState) -> Result<Self, Response> {
        axum::extract::Path::<T>::from_request_parts(parts, state)
            .await
            .map(|p| Self(p.0))
            .map_err(|_| {
                error_page(
                    state,
                    Error::NotFound("There is no such page in the console.".into()),
                )
            })
    }
}
