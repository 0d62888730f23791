//! `/events/status`: how far the outbox relay is behind.

use axum::Json;
use axum::extract::State;
use serde::Serialize;
use utoipa::ToSchema;

use super::error::ApiError;
use super::extract::Reader;
use crate::events::relay::RelayStatus;
use crate::http::AppState;

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
    _: Reader,
) -> Result<Json<EventsStatus>, ApiError> {
    let (backlog, oldest) = state.store.outbox_backlog().await?;
    let lag_seconds = oldest.map(|t| (time::OffsetDateTime::now_utc() - t).whole_seconds().max(0));
    Ok(Json(EventsStatus {
        relay: state.relay.status(),
        commands: state.commands.get(),
        notifications: state.notify.get(),
        backlog,
        lag_seconds,
    }))
}
