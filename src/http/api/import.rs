//! `POST /servers/import`: servers with interfaces from `;`-separated CSV
//! (the format is `ops::import`'s). All or nothing: one bad line and
//! nothing is written, with every bad line reported.

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::error::ApiError;
use super::extract::{Query, Staff};
use crate::http::AppState;
use crate::ops::Actor;
use crate::ops::import::{self, ImportError, LineError};
use bootloader_store::Server;

#[derive(Debug, Serialize, ToSchema)]
pub struct ImportFailed {
    pub error: &'static str,
    pub message: String,
    pub lines: Vec<LineError>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ImportDone {
    pub created: usize,
    pub servers: Vec<Server>,
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct ImportQuery {
    /// Location for lines that do not name one.
    pub location: Option<String>,
}

#[utoipa::path(post, path = "/servers/import", tag = "servers", params(ImportQuery),
    request_body(content = String, content_type = "text/csv", description = "`;`-separated lines"),
    responses((status = 201, body = ImportDone), (status = 422, body = ImportFailed)))]
pub async fn import_servers(
    State(state): State<AppState>,
    Staff(principal): Staff,
    Query(q): Query<ImportQuery>,
    body: Bytes,
) -> Result<(StatusCode, Response), ApiError> {
    let actor = Actor::User(principal);
    match import::import(&state.ops, &actor, &body, q.location.as_deref()).await {
        Ok(servers) => Ok((
            StatusCode::CREATED,
            Json(ImportDone {
                created: servers.len(),
                servers,
            })
            .into_response(),
        )),
        Err(ImportError::Lines(lines)) => Ok((
            StatusCode::UNPROCESSABLE_ENTITY,
            Json(ImportFailed {
                error: "import_failed",
                message: format!("{} line(s) have errors; nothing was imported", lines.len()),
                lines,
            })
            .into_response(),
        )),
        Err(ImportError::Other(e)) => Err(e),
    }
}
