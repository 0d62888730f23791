//! The API's one error type: it knows its HTTP status and renders JSON that
//! names each bad field.

use std::collections::BTreeMap;

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use bootloader_store::StoreError;

/// Bad fields, by path (`interfaces[1].mac`), each with its messages.
pub type FieldErrors = BTreeMap<String, Vec<String>>;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("authentication required: send Authorization: Token <key>")]
    Unauthenticated,
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{message}")]
    Conflict {
        message: String,
        fields: FieldErrors,
    },
    #[error("{message}")]
    Invalid {
        message: String,
        fields: FieldErrors,
    },
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    Unavailable(String),
    #[error("internal error")]
    Internal(String),
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct ErrorBody {
    /// A stable machine-readable code.
    pub error: &'static str,
    /// A human-readable summary.
    pub message: String,
    /// Each bad field with its messages; empty when no field is at fault.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub fields: FieldErrors,
}

impl ApiError {
    pub fn invalid_field(field: impl Into<String>, message: impl Into<String>) -> Self {
        let mut fields = FieldErrors::new();
        fields.insert(field.into(), vec![message.into()]);
        Self::Invalid {
            message: "validation failed".into(),
            fields,
        }
    }

    pub fn invalid_fields(fields: FieldErrors) -> Self {
        Self::Invalid {
            message: "validation failed".into(),
            fields,
        }
    }

    fn parts(&self) -> (StatusCode, &'static str) {
        match self {
            Self::Unauthenticated => (StatusCode::UNAUTHORIZED, "unauthenticated"),
            Self::Forbidden(_) => (StatusCode::FORBIDDEN, "forbidden"),
            Self::NotFound(_) => (StatusCode::NOT_FOUND, "not_found"),
            Self::Conflict { .. } => (StatusCode::CONFLICT, "conflict"),
            Self::Invalid { .. } => (StatusCode::UNPROCESSABLE_ENTITY, "validation_failed"),
            Self::BadRequest(_) => (StatusCode::BAD_REQUEST, "bad_request"),
            Self::Unavailable(_) => (StatusCode::SERVICE_UNAVAILABLE, "unavailable"),
            Self::Internal(_) => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
        }
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NotFound { .. } => Self::NotFound(e.to_string()),
            StoreError::Conflict { field, message } => {
                let mut fields = FieldErrors::new();
                fields.insert(field, vec![message.clone()]);
                Self::Conflict { message, fields }
            }
            StoreError::Invalid { field, message } => Self::invalid_field(field, message),
            StoreError::Stale { .. } => Self::Conflict {
                message: format!("{e}; try again"),
                fields: FieldErrors::new(),
            },
            StoreError::InUse(message) => Self::Conflict {
                message,
                fields: FieldErrors::new(),
            },
            StoreError::Unavailable(_) => Self::Unavailable(e.to_string()),
            StoreError::Cipher(bootloader_store::CipherError::WrongKey) => Self::Unavailable(
                "the secret key this daemon uses no longer matches the database (was it rotated?); \
                 restart the daemon with the current key"
                    .to_string(),
            ),
            other => Self::Internal(other.to_string()),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, code) = self.parts();
        if let Self::Internal(detail) = &self {
            tracing::error!(%detail, "request failed");
        }
        let (message, fields) = match self {
            Self::Conflict { message, fields } | Self::Invalid { message, fields } => {
                (message, fields)
            }
            other => (other.to_string(), FieldErrors::new()),
        };
        let body = ErrorBody {
            error: code,
            message,
            fields,
        };
        let mut response = (status, axum::Json(body)).into_response();
        if status == StatusCode::UNAUTHORIZED {
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Token"));
        }
        response
    }
}

/// The fallback for unknown paths: a JSON 404 like every other error.
pub async fn not_found(uri: axum::http::Uri) -> ApiError {
    ApiError::NotFound(format!("no such endpoint: {}", uri.path()))
}

/// Collects field errors while validating an input.
#[derive(Default)]
pub struct Validator {
    fields: FieldErrors,
}

impl Validator {
    pub fn error(&mut self, field: impl Into<String>, message: impl Into<String>) {
        self.fields
            .entry(field.into())
            .or_default()
            .push(message.into());
    }

    /// Parses `value` for `field`, recording the error if it fails.
    pub fn parse<T, E: std::fmt::Display>(
        &mut self,
        field: impl Into<String>,
        value: Result<T, E>,
    ) -> Option<T> {
        match value {
            Ok(v) => Some(v),
            Err(e) => {
                self.error(field, e.to_string());
                None
            }
        }
    }

    pub fn is_ok(&self) -> bool {
        self.fields.is_empty()
    }

    pub fn finish(self) -> Result<(), ApiError> {
        if self.fields.is_empty() {
            Ok(())
        } else {
            Err(ApiError::invalid_fields(self.fields))
        }
    }
}
