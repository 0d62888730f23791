//! The operations' one error type. Every adapter shows it the same way:
//! the REST API as its status and JSON body, the command queue's reply
//! with the same status and body, the CLI as its message. Each bad field
//! is named by its path in the input.

use std::collections::BTreeMap;

use serde::Serialize;

use bootloader_store::StoreError;

/// Bad fields, by path (`interfaces[1].mac`), each with its messages.
pub type FieldErrors = BTreeMap<String, Vec<String>>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
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
    /// Refused for now; allowed again in `retry_after` seconds.
    #[error("{message}")]
    TooManyRequests { message: String, retry_after: u64 },
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

impl Error {
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

    /// The HTTP status of the condition: what the REST API answers, and
    /// what a command's reply says the same request would have had.
    pub const fn status(&self) -> u16 {
        match self {
            Self::Unauthenticated => 401,
            Self::Forbidden(_) => 403,
            Self::NotFound(_) => 404,
            Self::Conflict { .. } => 409,
            Self::Invalid { .. } => 422,
            Self::BadRequest(_) => 400,
            Self::Unavailable(_) => 503,
            Self::TooManyRequests { .. } => 429,
            Self::Internal(_) => 500,
        }
    }

    /// A stable machine-readable code.
    pub const fn code(&self) -> &'static str {
        match self {
            Self::Unauthenticated => "unauthenticated",
            Self::Forbidden(_) => "forbidden",
            Self::NotFound(_) => "not_found",
            Self::Conflict { .. } => "conflict",
            Self::Invalid { .. } => "validation_failed",
            Self::BadRequest(_) => "bad_request",
            Self::Unavailable(_) => "unavailable",
            Self::TooManyRequests { .. } => "too_many_requests",
            Self::Internal(_) => "internal",
        }
    }

    /// The JSON body every adapter shows. An internal error's detail is
    /// logged here and not shown.
    pub fn into_body(self) -> ErrorBody {
        if let Self::Internal(detail) = &self {
            tracing::error!(%detail, "request failed");
        }
        let error = self.code();
        let (message, fields) = match self {
            Self::Conflict { message, fields } | Self::Invalid { message, fields } => {
                (message, fields)
            }
            other => (other.to_string(), FieldErrors::new()),
        };
        ErrorBody {
            error,
            message,
            fields,
        }
    }
}

impl From<StoreError> for Error {
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

    pub fn finish(self) -> Result<(), Error> {
        if self.fields.is_empty() {
            Ok(())
        } else {
            Err(Error::invalid_fields(self.fields))
        }
    }
}
