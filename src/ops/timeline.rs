//! The boot timeline (of a server, a MAC, everyone), the MACs seen booting
//! that no server has, and the DHCP leases: what an operator reads first
//! when a machine does not boot.

use serde::Serialize;
use utoipa::ToSchema;

use bootloader_core::model::{Fqdn, MacAddr};
use bootloader_store::boot::{BootEvent, Lease, UnknownMac};
use bootloader_store::{Listing, Page};

use super::{Actor, Error, Ops};

const DEFAULT_EVENTS: u32 = 200;
const MAX_EVENTS: u32 = 2000;

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

/// Which events: those with ids below `before` (the `next_before` of the
/// previous page), at most `limit` (default 200, at most 2000).
#[derive(Debug, Clone, Copy, Default)]
pub struct EventPage {
    pub before: Option<i64>,
    pub limit: Option<u32>,
}

impl EventPage {
    fn limit(self) -> Result<u32, Error> {
        match self.limit {
            None => Ok(DEFAULT_EVENTS),
            Some(0) => Err(Error::invalid_field("limit", "must be at least 1")),
            Some(n) => Ok(n.min(MAX_EVENTS)),
        }
    }
}

/// The events of `macs` (every MAC's, and packets too broken to carry one,
/// for none).
pub async fn of_macs(
    ops: &Ops,
    _: &Actor,
    macs: Vec<MacAddr>,
    page: EventPage,
) -> Result<Timeline, Error> {
    let limit = page.limit()?;
    let rows = ops.timeline.boot_events(&macs, page.before, limit).await?;
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

/// The events of the server's MACs; a server that does not exist is not
/// found (not an empty timeline).
pub async fn of_server(
    ops: &Ops,
    actor: &Actor,
    fqdn: &Fqdn,
    page: EventPage,
) -> Result<Timeline, Error> {
    ops.inventory.server(fqdn).await?;
    let all = Page {
        limit: 1000,
        offset: 0,
    };
    let macs: Vec<MacAddr> = ops
        .inventory
        .list_interfaces(Some(fqdn), all)
        .await?
        .items
        .into_iter()
        .map(|i| i.mac)
        .collect();
    page.limit()?;
    if macs.is_empty() {
        // No interface: no events, not everyone's.
        return Ok(Timeline {
            macs,
            events: Vec::new(),
            next_before: None,
        });
    }
    of_macs(ops, actor, macs, page).await
}

/// The events of deployment `id`'s server while the deployment ran.
pub async fn of_deployment(
    ops: &Ops,
    actor: &Actor,
    id: i64,
    page: EventPage,
) -> Result<Timeline, Error> {
    let d = ops.boot.deployment(id).await?;
    let mut t = of_server(ops, actor, &d.server, page).await?;
    t.events
        .retain(|e| e.event.at >= d.created_at && d.finished_at.is_none_or(|f| e.event.at <= f));
    Ok(t)
}

/// MACs seen booting that belong to no server, most recent first.
pub async fn unknown_macs(
    ops: &Ops,
    _: &Actor,
    limit: Option<u32>,
) -> Result<Vec<UnknownMac>, Error> {
    let limit = EventPage {
        before: None,
        limit,
    }
    .limit()?;
    Ok(ops.timeline.unknown_macs(limit).await?)
}

/// DHCP leases, of one network or all.
pub async fn leases(
    ops: &Ops,
    _: &Actor,
    network: Option<i64>,
    page: Page,
) -> Result<Listing<Lease>, Error> {
    Ok(ops.leases.list_leases(network, page).await?)
}

/// Addresses held now (offered or bound, not expired) per network id.
pub async fn held_leases(ops: &Ops, _: &Actor) -> Result<Vec<(i64, u64)>, Error> {
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    Ok(ops.leases.held_leases(now).await?)
}

/// The leases a server's interfaces hold, one per interface that is on a
/// network and has one.
pub async fn leases_of(
    ops: &Ops,
    _: &Actor,
    server: &bootloader_core::published::inventory::Server,
) -> Result<Vec<Lease>, Error> {
    let mut out = Vec::new();
    for i in &server.interfaces {
        if let Some(network) = i.network_id
            && let Some(lease) = ops.leases.lease_of(network, i.mac).await?
        {
            out.push(lease);
        }
    }
    Ok(out)
}
