//! `/agents`: the daemons sharing the database, each its location's agent
//! (staff only), through `ops::agents`.

use axum::Json;
use axum::extract::{OriginalUri, State};
use axum::http::StatusCode;

use super::error::{ApiError, ErrorBody};
use super::extract::{PageQuery, Paginated, Path, Query, Reader, Staff};
use crate::http::AppState;
use crate::ops::Actor;
use crate::ops::agents as ops;
use bootloader_store::{Agent, Listing};

#[utoipa::path(get, path = "/agents", tag = "agents", params(PageQuery),
    responses((status = 200, body = Paginated<Agent>), (status = 403, body = ErrorBody)))]
pub async fn list_agents(
    State(state): State<AppState>,
    OriginalUri(uri): OriginalUri,
    Reader(principal): Reader,
    Query(q): Query<PageQuery>,
) -> Result<Json<Paginated<Agent>>, ApiError> {
    let page = q.page(&state)?;
    let agents = ops::list(&state.ops, &Actor::User(principal)).await?;
    let listing = Listing {
        total: agents.len() as u64,
        items: agents
            .into_iter()
            .skip(page.offset as usize)
            .take(page.limit as usize)
            .collect(),
    };
    Ok(Json(Paginated::new(listing, page, &uri, |a| a)))
}

#[utoipa::path(get, path = "/agents/{name}", tag = "agents",
    responses((status = 200, body = Agent), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn get_agent(
    State(state): State<AppState>,
    Reader(principal): Reader,
    Path(name): Path<String>,
) -> Result<Json<Agent>, ApiError> {
    Ok(Json(
        ops::get(&state.ops, &Actor::User(principal), &name).await?,
    ))
}

#[utoipa::path(delete, path = "/agents/{name}", tag = "agents",
    responses((status = 204), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn delete_agent(
    State(state): State<AppState>,
    Staff(principal): Staff,
    Path(name): Path<String>,
) -> Result<StatusCode, ApiError> {
    ops::delete(&state.ops, &Actor::User(principal), &name).await?;
    Ok(StatusCode::NO_CONTENT)
}
