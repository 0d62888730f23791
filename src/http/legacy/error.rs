//! Errors in the shapes the older API's clients read: `{"field":
//! ["message"]}` for bad input, `{"detail": "..."}` for the rest, with
//! Django REST framework's texts where a client may compare them.

use std::collections::BTreeMap;

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::ops::Error;

#[derive(Debug)]
pub enum LegacyError {
    /// No credentials, or ones that are not valid (401 with the Basic
    /// challenge, as the older API answered).
    Unauthenticated(&'static str),
    Forbidden,
    NotFound,
    /// Bad fields (400).
    Fields(BTreeMap<String, Vec<String>>),
    /// Bad input as a whole (400).
    NonField(String),
    /// Any other status with its detail.
    Detail(u16, String),
    MethodNotAllowed {
        method: String,
        allow: &'static str,
    },
    Throttled(u64),
}

pub const NO_CREDENTIALS: &str = "Authentication credentials were not provided.";

impl LegacyError {
    pub fn non_field(message: impl Into<String>) -> Self {
        Self::NonField(message.into())
    }

    pub fn field(field: &str, message: impl Into<String>) -> Self {
        Self::Fields(BTreeMap::from([(field.to_string(), vec![message.into()])]))
    }

    /// An operation's error, its fields named as the older resource names
    /// them (`rename` maps this API's paths, e.g. `bmc.host` to
    /// `ipmi_host`).
    pub fn from_ops(e: Error, rename: fn(&str) -> &str) -> Self {
        let fields = |fields: crate::ops::error::FieldErrors| {
            let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
            for (path, messages) in fields {
                out.entry(rename(&path).to_string())
                    .or_default()
                    .extend(messages);
            }
            out
        };
        match e {
            Error::Unauthenticated => Self::Unauthenticated(NO_CREDENTIALS),
            Error::Forbidden(_) => Self::Forbidden,
            Error::NotFound(_) => Self::NotFound,
            Error::Invalid { message, fields: f } if f.is_empty() => Self::NonField(message),
            Error::Invalid { fields: f, .. } => Self::Fields(fields(f)),
            // A duplicate on create is a bad field, as a uniqueness
            // validator would say; a refusal of the whole request (an
            // object still in use) is a conflict.
            Error::Conflict { message, fields: f }
                if f.is_empty() || f.keys().all(|k| k.starts_with('(')) =>
            {
                Self::Detail(409, message)
            }
            Error::Conflict { fields: f, .. } => Self::Fields(fields(f)),
            Error::BadRequest(m) => Self::Detail(400, m),
            Error::Unavailable(m) => Self::Detail(503, m),
            Error::TooManyRequests { retry_after, .. } => Self::Throttled(retry_after),
            Error::Internal(m) => {
                tracing::error!(error = %m, "older API request failed");
                Self::Detail(500, "A server error occurred.".into())
            }
        }
    }
}

/// Field names as every resource has them.
pub fn same(path: &str) -> &str {
    path
}

impl From<Error> for LegacyError {
    fn from(e: Error) -> Self {
        Self::from_ops(e, same)
    }
}

impl IntoResponse for LegacyError {
    fn into_response(self) -> Response {
        let detail = |status: StatusCode, text: &str| (status, Json(json!({ "detail": text })));
        match self {
            Self::Unauthenticated(text) => {
                let mut r = detail(StatusCode::UNAUTHORIZED, text).into_response();
                r.headers_mut().insert(
                    header::WWW_AUTHENTICATE,
                    HeaderValue::from_static("Basic realm=\"api\""),
                );
                r
            }
            Self::Forbidden => detail(
                StatusCode::FORBIDDEN,
                "You do not have permission to perform this action.",
            )
            .into_response(),
            Self::NotFound => detail(StatusCode::NOT_FOUND, "Not found.").into_response(),
            Self::Fields(fields) => (StatusCode::BAD_REQUEST, Json(json!(fields))).into_response(),
            Self::NonField(message) => (
                StatusCode::BAD_REQUEST,
                Json(json!({ "non_field_errors": [message] })),
            )
                .into_response(),
            Self::Detail(status, text) => detail(
                StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
                &text,
            )
            .into_response(),
            Self::MethodNotAllowed { method, allow } => {
                let mut r = detail(
                    StatusCode::METHOD_NOT_ALLOWED,
                    &format!("Method \"{method}\" not allowed."),
                )
                .into_response();
                r.headers_mut()
                    .insert(header::ALLOW, HeaderValue::from_static(allow));
                r
            }
            Self::Throttled(seconds) => {
                let mut r = detail(
                    StatusCode::TOO_MANY_REQUESTS,
                    &format!("Request was throttled. Expected available in {seconds} seconds."),
                )
                .into_response();
                if let Ok(v) = HeaderValue::from_str(&seconds.to_string()) {
                    r.headers_mut().insert(header::RETRY_AFTER, v);
                }
                r
            }
        }
    }
}
