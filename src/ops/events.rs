//! How far the events written with each change are behind the broker.

use super::{Actor, Error, Ops};

/// Events written but not yet confirmed by the broker.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct Backlog {
    pub events: u64,
    /// Age of the oldest of them, in seconds.
    pub lag_seconds: Option<i64>,
}

pub async fn backlog(ops: &Ops, _: &Actor) -> Result<Backlog, Error> {
    let (events, oldest) = ops.outbox.outbox_backlog().await?;
    let lag_seconds = oldest.map(|t| (time::OffsetDateTime::now_utc() - t).whole_seconds().max(0));
    Ok(Backlog {
        events,
        lag_seconds,
    })
}
