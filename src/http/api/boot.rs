//! The boot timeline (`/servers/{fqdn}/timeline`, `/timeline`,
//! `/timeline/unknown`) and DHCP leases (`/leases`): what an operator reads
//! first when a machine does not boot.

use axum::Json;
use axum::extract::{OriginalUri, State};
use serde::Deserialize;
use utoipa::IntoParams;

use super::error::{ApiError, ErrorBody};
use super::extract::{PageQuery, Paginated, Path, Query, Reader, path_key};
use crate::http::AppState;
use crate::ops::Actor;
use crate::ops::timeline::{self, EventPage};
pub use crate::ops::timeline::{Timeline, TimelineEntry};
use bootloader_core::model::Fqdn;
use bootloader_store::boot::{Lease, UnknownMac};

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct TimelineQuery {
    /// Events with ids below this (the `next_before` of the previous page).
    pub before: Option<i64>,
    /// Events per page (default 200, at most 2000).
    pub limit: Option<u32>,
}

impl TimelineQuery {
    pub fn page(&self) -> EventPage {
        EventPage {
            before: self.before,
            limit: self.limit,
        }
    }
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct MacTimelineQuery {
    /// The MAC whose events to list; without it, every MAC's (and packets
    /// too broken to carry one).
    pub mac: Option<String>,
    pub before: Option<i64>,
    pub limit: Option<u32>,
}

#[utoipa::path(get, path = "/servers/{fqdn}/timeline", tag = "timeline", params(TimelineQuery),
    responses((status = 200, body = Timeline), (status = 404, body = ErrorBody)))]
pub async fn server_timeline(
    State(state): State<AppState>,
    Reader(principal): Reader,
    Path(fqdn): Path<String>,
    Query(q): Query<TimelineQuery>,
) -> Result<Json<Timeline>, ApiError> {
    let fqdn: Fqdn = path_key("server", &fqdn)?;
    let actor = Actor::User(principal);
    Ok(Json(
        timeline::of_server(&state.ops, &actor, &fqdn, q.page()).await?,
    ))
}

#[utoipa::path(get, path = "/timeline", tag = "timeline", params(MacTimelineQuery),
    responses((status = 200, body = Timeline), (status = 422, body = ErrorBody)))]
pub async fn mac_timeline(
    State(state): State<AppState>,
    Reader(principal): Reader,
    Query(q): Query<MacTimelineQuery>,
) -> Result<Json<Timeline>, ApiError> {
    let macs = match q.mac {
        Some(raw) => vec![
            raw.parse()
                .map_err(|e: bootloader_core::model::MacParseError| {
                    ApiError::invalid_field("mac", e.to_string())
                })?,
        ],
        None => Vec::new(),
    };
    let page = EventPage {
        before: q.before,
        limit: q.limit,
    };
    let actor = Actor::User(principal);
    Ok(Json(
        timeline::of_macs(&state.ops, &actor, macs, page).await?,
    ))
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct UnknownQuery {
    /// At most this many MACs (default 200).
    pub limit: Option<u32>,
}

#[utoipa::path(get, path = "/timeline/unknown", tag = "timeline", params(UnknownQuery),
    responses((status = 200, body = Vec<UnknownMac>)))]
pub async fn unknown_macs(
    State(state): State<AppState>,
    Reader(principal): Reader,
    Query(q): Query<UnknownQuery>,
) -> Result<Json<Vec<UnknownMac>>, ApiError> {
    let actor = Actor::User(principal);
    Ok(Json(
        timeline::unknown_macs(&state.ops, &actor, q.limit).await?,
    ))
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct LeaseQuery {
    /// Only this network's leases.
    pub network: Option<i64>,
    pub limit: Option<u32>,
    pub offset: Option<u64>,
}

#[utoipa::path(get, path = "/leases", tag = "leases", params(LeaseQuery),
    responses((status = 200, body = Paginated<Lease>)))]
pub async fn list_leases(
    State(state): State<AppState>,
    OriginalUri(uri): OriginalUri,
    Reader(principal): Reader,
    Query(q): Query<LeaseQuery>,
) -> Result<Json<Paginated<Lease>>, ApiError> {
    let page = PageQuery {
        limit: q.limit,
        offset: q.offset,
    }
    .page(&state)?;
    let actor = Actor::User(principal);
    let listing = timeline::leases(&state.ops, &actor, q.network, page).await?;
    Ok(Json(Paginated::new(listing, page, &uri, |l| l)))
}
