//! The console's pages and the changes their forms make. Each reads and
//! changes through `ops` as the signed-in user.

use axum::extract::State;
use axum::response::Response;
use serde::Serialize;

use super::ConsoleState;
use super::render::{Page, error_page};
use super::session::Viewer;
use crate::ops::{self, Error};
use bootloader_core::model::DeploymentState;
use bootloader_store::Page as Window;

/// Rows on a page of a list.
pub(super) const PAGE: u32 = 50;

pub(super) fn window(offset: Option<u64>) -> Window {
    Window {
        limit: PAGE,
        offset: offset.unwrap_or(0),
    }
}

/// Links to the previous and next page of a list, keeping its filters.
#[derive(Serialize)]
pub(super) struct Pager {
    total: u64,
    first: u64,
    last: u64,
    previous: Option<String>,
    next: Option<String>,
}

pub(super) fn pager(
    path: &str,
    filters: &[(&str, &str)],
    offset: u64,
    shown: usize,
    total: u64,
) -> Pager {
    let link = |offset: u64| {
        let mut pairs: Vec<(&str, String)> = filters
            .iter()
            .filter(|(_, v)| !v.is_empty())
            .map(|(k, v)| (*k, v.to_string()))
            .collect();
        if offset > 0 {
            pairs.push(("offset", offset.to_string()));
        }
        let query = serde_urlencoded::to_string(&pairs).unwrap_or_default();
        if query.is_empty() {
            path.to_string()
        } else {
            format!("{path}?{query}")
        }
    };
    Pager {
        total,
        first: if shown == 0 { 0 } else { offset + 1 },
        last: offset + shown as u64,
        previous: (offset > 0).then(|| link(offset.saturating_sub(u64::from(PAGE)))),
        next: (offset + (shown as u64) < total).then(|| link(offset + shown as u64)),
    }
}

/// A refusal for a page without rights to change things, before any
/// form is read.
pub(super) fn require_write(state: &ConsoleState, viewer: &Viewer) -> Result<(), Box<Response>> {
    viewer
        .actor()
        .require_write()
        .map_err(|e| Box::new(error_page(state, e)))
}

pub(super) use super::render::describe;

/// Addresses held now (offered or bound, not expired) per network id, as
/// the `/metrics` gauge counts them; one read for every network on a page.
pub(super) async fn held_leases(
    state: &ConsoleState,
    actor: &ops::Actor,
) -> std::collections::HashMap<i64, u64> {
    ops::timeline::held_leases(&state.app.ops, actor)
        .await
        .map(|held| held.into_iter().collect())
        .unwrap_or_default()
}

/// Every daemon on this database for staff, nothing for others: agents
/// are staff's to see, as in the API.
pub(super) async fn agents_for(
    state: &ConsoleState,
    viewer: &Viewer,
) -> Vec<bootloader_store::Agent> {
    if !viewer.session.principal.is_staff {
        return Vec::new();
    }
    ops::agents::list(&state.app.ops, &viewer.actor())
        .await
        .unwrap_or_default()
}

/// A pool's size in addresses.
pub(super) fn pool_size(pool: Option<&bootloader_core::published::inventory::Pool>) -> u64 {
    pool.map_or(0, |p| {
        u64::from(u32::from(p.end)).saturating_sub(u64::from(u32::from(p.start))) + 1
    })
}

// ---------------------------------------------------------------- dashboard

#[derive(Serialize)]
struct PoolUse {
    network: String,
    id: i64,
    location: String,
    held: u64,
    size: u64,
    percent: u64,
}

#[derive(Serialize)]
struct ListenerUse {
    name: &'static str,
    address: String,
    up: bool,
}

pub async fn dashboard(State(state): State<ConsoleState>, viewer: Viewer) -> Response {
    let ops = &state.app.ops;
    let actor = viewer.actor();
    let mut active = Vec::new();
    for s in DeploymentState::ALL.iter().filter(|s| !s.is_final()) {
        match ops::deployments::list(ops, &actor, None, Some(*s), window(None)).await {
            Ok(l) => active.extend(l.items),
            Err(e) => return error_page(&state, e),
        }
    }
    active.sort_by_key(|d| std::cmp::Reverse(d.id));
    let failed = match ops::deployments::list(
        ops,
        &actor,
        None,
        Some(DeploymentState::Error),
        Window {
            limit: 10,
            offset: 0,
        },
    )
    .await
    {
        Ok(l) => l.items,
        Err(e) => return error_page(&state, e),
    };
    let unknown = ops::timeline::unknown_macs(ops, &actor, Some(10))
        .await
        .unwrap_or_default();
    let mut pools = Vec::new();
    let held_by_network = held_leases(&state, &actor).await;
    if let Ok(networks) = ops::networks::list(ops, &actor, None, window(None)).await {
        for n in networks.items {
            let Some(pool) = n.pool else { continue };
            let (held, size) = (
                held_by_network.get(&n.id).copied().unwrap_or(0),
                pool_size(Some(&pool)),
            );
            pools.push(PoolUse {
                network: n.cidr.to_string(),
                id: n.id,
                location: n.location.to_string(),
                held,
                size,
                percent: (held * 100).checked_div(size).unwrap_or(0),
            });
        }
    }
    let listeners: Vec<ListenerUse> = state
        .listeners
        .iter()
        .map(|l| ListenerUse {
            name: l.name,
            address: l.address.clone(),
            up: state.services.is_up(l.name),
        })
        .collect();
    let failing_bmcs = ops.power.failing(10).await.unwrap_or_default();
    let backlog = ops::events::backlog(ops, &actor).await.ok();
    let agents = agents_for(&state, &viewer).await;
    Page::new(&state, &viewer, "dashboard.html")
        .with("section", "dashboard")
        .with("active", active)
        .with("failed", failed)
        .with("unknown", unknown)
        .with("pools", pools)
        .with("listeners", listeners)
        .with("services", state.services.reports())
        .with("relay", state.app.relay.status())
        .with("backlog", backlog)
        .with("failing_bmcs", failing_bmcs)
        .with("agents", agents)
        .render()
}

pub async fn not_found(State(state): State<ConsoleState>, viewer: Viewer) -> Response {
    let _ = &viewer;
    error_page(
        &state,
        Error::NotFound("There is no such page in the console.".into()),
    )
}
