//! `/events/status`: how far the outbox relay is behind.

use axum::Json;
use axum::extract::State;
use serde::Serialize;
use utoipa::ToSchema;

use super::error::ApiError;
use super::extract::Reader;
use crate::events::relay::RelayStatus;
use crate::http::AppState;
use crate::ops::Actor;

#[derive(Debug, Serialize, ToSchema)]
pub struct EventsStatus {
    pub relay: RelayStatus,
    /// The command queue this daemon consumes.
    pub commands: crate::events::commands::CommandStatus,
    /// Slack and email notifications.
    pub notifications: crate::events::notify::NotifyStatus,
    /// Events written but not yet confirmed by the broker.
    pub backlog: u64,
    /// Age of the oldest of them, in seconds.
    pub lag_seconds: Option<i64>,
}

#[utoipa::path(get, path = "/events/status", tag = "events",
    responses((status = 200, body = EventsStatus)))]
pub async fn events_status(
    State(state): State<AppState>,
    Reader(principal): Reader,
) -> Result<Json<EventsStatus>, ApiError> {
    let backlog = crate::ops::events::backlog(&state.ops, &Actor::User(principal)).await?;
    Ok(Json(EventsStatus {
        relay: state.relay.status(),
        commands: state.commands.get(),
        notifications: state.notify.get(),
        backlog: backlog.events,
        lag_seconds: backlog.lag_seconds,
    }))
}
