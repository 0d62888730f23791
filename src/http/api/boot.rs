//! The boot timeline (`/servers/{fqdn}/timeline`, `/timeline`,
//! `/timeline/unknown`) and DHCP leases (`/leases`): what an operator reads
//! first when a machine does not boot.

use axum::Json;
use axum::extract::{OriginalUri, State};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::error::{ApiError, ErrorBody};
use super::extract::{PageQuery, Paginated, Path, Query, Reader, path_key};
use crate::http::AppState;
use bootloader_core::model::{Fqdn, MacAddr};
use bootloader_store::boot::{BootEvent, Lease, UnknownMac};
use bootloader_store::{Page, Store};

const DEFAULT_EVENTS: u32 = 200;
const MAX_EVENTS: u32 = 2000;

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct TimelineQuery {
    /// Events with ids below this (the `next_before` of the previous page).
    pub before: Option<i64>,
    /// Events per page (default 200, at most 2000).
    pub limit: Option<u32>,
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

#[derive(Debug, Serialize, ToSchema)]
pub struct TimelineEntry {
    pub id: i64,
    #[serde(flatten)]
    pub event: BootEvent,
}

/// Newest first.
#[derive(Debug, Serialize, ToSchema)]
pub struct Timeline {
    /// The MACs whose events are listed.
    #[schema(value_type = Vec<String>)]
    pub macs: Vec<MacAddr>,
    pub events: Vec<TimelineEntry>,
    /// Pass as `before` for older events; absent on the last page.
    pub next_before: Option<i64>,
}

fn limit(raw: Option<u32>) -> Result<u32, ApiError> {
    match raw {
        None => Ok(DEFAULT_EVENTS),
        Some(0) => Err(ApiError::invalid_field("limit", "must be at least 1")),
        Some(n) => Ok(n.min(MAX_EVENTS)),
    }
}

async fn timeline(
    store: &dyn Store,
    macs: Vec<MacAddr>,
    before: Option<i64>,
    limit: u32,
) -> Result<Timeline, ApiError> {
    let rows = store.boot_events(&macs, before, limit).await?;
    let next_before = (rows.len() as u32 == limit)
        .then(|| rows.last().map(|(id, _)| *id))
        .flatten();
    Ok(Timeline {
        macs,
        events: rows
            .into_iter()
            .map(|(id, event)| TimelineEntry { id, event })
            .collect(),
        next_before,
    })
}

#[utoipa::path(get, path = "/servers/{fqdn}/timeline", tag = "timeline", params(TimelineQuery),
    responses((status = 200, body = Timeline), (status = 404, body = ErrorBody)))]
pub async fn server_timeline(
    State(state): State<AppState>,
    _: Reader,
    Path(fqdn): Path<String>,
    Query(q): Query<TimelineQuery>,
) -> Result<Json<Timeline>, ApiError> {
    let fqdn: Fqdn = path_key("server", &fqdn)?;
    Ok(Json(timeline_of_server(&state, &fqdn, q).await?))
}

/// The boot timeline of the server's MACs.
pub async fn timeline_of_server(
    state: &AppState,
    fqdn: &Fqdn,
    q: TimelineQuery,
) -> Result<Timeline, ApiError> {
    // 404 for a server that does not exist, not an empty timeline.
    state.store.server(fqdn).await?;
    let page = Page {
        limit: 1000,
        offset: 0,
    };
    let macs: Vec<MacAddr> = state
        .store
        .list_interfaces(Some(fqdn), page)
        .await?
        .items
        .into_iter()
        .map(|i| i.mac)
        .collect();
    let limit = limit(q.limit)?;
    if macs.is_empty() {
        // No interface: no events, not everyone's.
        return Ok(Timeline {
            macs,
            events: Vec::new(),
            next_before: None,
        });
    }
    timeline(&*state.store, macs, q.before, limit).await
}

#[utoipa::path(get, path = "/timeline", tag = "timeline", params(MacTimelineQuery),
    responses((status = 200, body = Timeline), (status = 422, body = ErrorBody)))]
pub async fn mac_timeline(
    State(state): State<AppState>,
    _: Reader,
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
    let limit = limit(q.limit)?;
    Ok(Json(timeline(&*state.store, macs, q.before, limit).await?))
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
    _: Reader,
    Query(q): Query<UnknownQuery>,
) -> Result<Json<Vec<UnknownMac>>, ApiError> {
    let limit = limit(q.limit)?;
    Ok(Json(state.store.unknown_macs(limit).await?))
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
    _: Reader,
    Query(q): Query<LeaseQuery>,
) -> Result<Json<Paginated<Lease>>, ApiError> {
    let page = PageQuery {
        limit: q.limit,
        offset: q.offset,
    }
    .page(&state)?;
    let listing = state.store.list_leases(q.network, page).await?;
    Ok(Json(Paginated::new(listing, page, &uri, |l| l)))
}
