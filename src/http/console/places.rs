//! Locations and networks (with pool use): lists, create, edit (through
//! `people::list_or_edit`), delete.

use axum::extract::State;
use axum::response::Response;
use serde::Serialize;

use super::ConsoleState;
use super::extract::{Path, Query};
use super::pages::{agents_for, describe, held_leases, pool_size, window};
use super::render::{Empty, Page, error_page, form_input};
use super::session::{Change, Posted, Viewer, done};
use crate::ops::{self, Error};

pub async fn locations(
    State(state): State<ConsoleState>,
    viewer: Viewer,
    Query(q): Query<super::people::EditQuery>,
) -> Response {
    let page = Ok(locations_page(&state, &viewer).await);
    super::people::list_or_edit(&state, &viewer, "locations", q, page).await
}

pub(super) async fn locations_page<'a>(state: &'a ConsoleState, viewer: &'a Viewer) -> Page<'a> {
    let items = ops::locations::list_locations(&state.app.ops, &viewer.actor(), window(None))
        .await
        .map(|l| l.items)
        .unwrap_or_default();
    let agents = agents_for(state, viewer).await;
    let location_names: Vec<String> = items.iter().map(|l| l.name.to_string()).collect();
    Page::new(state, viewer, "locations.html")
        .with("section", "locations")
        .with("locations", items)
        .with("location_names", location_names)
        .with("agents", agents)
}

pub async fn create_location(
    State(state): State<ConsoleState>,
    Change { viewer, posted }: Change,
) -> Response {
    let result =
        match form_input::<ops::locations::LocationInput>(&posted, &[], &[], Empty::Omitted) {
            Ok(input) => {
                ops::locations::create_location(&state.app.ops, &viewer.actor(), input).await
            }
            Err(e) => Err(e),
        };
    match result {
        Ok(l) => done("/ui/locations", &format!("Location {} created.", l.name)),
        Err(e @ (Error::Invalid { .. } | Error::Conflict { .. })) => {
            locations_page(&state, &viewer)
                .await
                .failed(&posted, e)
                .render()
        }
        Err(e) => error_page(&state, e),
    }
}

pub async fn networks(
    State(state): State<ConsoleState>,
    viewer: Viewer,
    Query(q): Query<super::people::EditQuery>,
) -> Response {
    let page = Ok(networks_page(&state, &viewer).await);
    super::people::list_or_edit(&state, &viewer, "networks", q, page).await
}

#[derive(Serialize)]
struct NetworkRow {
    #[serde(flatten)]
    network: bootloader_core::published::inventory::Network,
    held: u64,
    size: u64,
}

pub(super) async fn networks_page<'a>(state: &'a ConsoleState, viewer: &'a Viewer) -> Page<'a> {
    let ops = &state.app.ops;
    let actor = viewer.actor();
    let items = ops::networks::list(ops, &actor, None, window(None))
        .await
        .map(|l| l.items)
        .unwrap_or_default();
    let held = held_leases(state, &actor).await;
    let rows: Vec<NetworkRow> = items
        .into_iter()
        .map(|n| NetworkRow {
            held: held.get(&n.id).copied().unwrap_or(0),
            size: pool_size(n.pool.as_ref()),
            network: n,
        })
        .collect();
    let locations = ops::locations::list_locations(ops, &actor, window(None))
        .await
        .map(|l| l.items)
        .unwrap_or_default();
    Page::new(state, viewer, "networks.html")
        .with("section", "networks")
        .with("networks", rows)
        .with("locations", locations)
        .with("option_rows", option_rows(&Posted(Vec::new()), 0))
}

/// Rows of DHCP option inputs a network form shows: one more than those
/// posted or kept (`existing`), at least two.
pub fn option_rows(posted: &Posted, existing: usize) -> usize {
    let posted_rows = posted
        .0
        .iter()
        .filter_map(|(k, _)| {
            k.strip_prefix("dhcp_options[")
                .and_then(|rest| rest.split_once(']'))
                .and_then(|(i, _)| i.parse::<usize>().ok())
        })
        .map(|i| i + 1)
        .max()
        .unwrap_or(0);
    posted_rows.max(existing).max(1) + 1
}

pub async fn create_network(
    State(state): State<ConsoleState>,
    Change { viewer, posted }: Change,
) -> Response {
    let result = match form_input::<ops::networks::NetworkInput>(
        &posted,
        &[],
        &["nameservers"],
        Empty::Omitted,
    ) {
        Ok(input) => ops::networks::create(&state.app.ops, &viewer.actor(), input).await,
        Err(e) => Err(e),
    };
    match result {
        Ok(n) => done("/ui/networks", &format!("Network {} created.", n.cidr)),
        Err(e @ (Error::Invalid { .. } | Error::Conflict { .. })) => networks_page(&state, &viewer)
            .await
            .with("option_rows", option_rows(&posted, 0))
            .failed(&posted, e)
            .render(),
        Err(e) => error_page(&state, e),
    }
}

pub async fn delete_location(
    State(state): State<ConsoleState>,
    Path(name): Path<String>,
    Change { viewer, .. }: Change,
) -> Response {
    let result = match ops::input::path_key("location", &name) {
        Ok(n) => ops::locations::delete_location(&state.app.ops, &viewer.actor(), &n).await,
        Err(e) => Err(e),
    };
    match result {
        Ok(()) => done("/ui/locations", &format!("Location {name} deleted.")),
        Err(e @ Error::Forbidden(_)) => error_page(&state, e),
        Err(e) => done(
            "/ui/locations",
            &format!("Location {name} not deleted: {}", describe(e)),
        ),
    }
}

pub async fn delete_network(
    State(state): State<ConsoleState>,
    Path(id): Path<i64>,
    Change { viewer, .. }: Change,
) -> Response {
    match ops::networks::delete(&state.app.ops, &viewer.actor(), id).await {
        Ok(()) => done("/ui/networks", "Network deleted."),
        Err(e @ Error::Forbidden(_)) => error_page(&state, e),
        Err(e) => done(
            "/ui/networks",
            &format!("Network not deleted: {}", describe(e)),
        ),
    }
}

/// Forgets a daemon that no longer reports (the API's `DELETE /agents/{name}`).
pub async fn delete_agent(
    State(state): State<ConsoleState>,
    Path(name): Path<String>,
    Change { viewer, .. }: Change,
) -> Response {
    match ops::agents::delete(&state.app.ops, &viewer.actor(), &name).await {
        Ok(_) => done("/ui/locations", &format!("Daemon {name} forgotten.")),
        Err(e @ Error::Forbidden(_)) => error_page(&state, e),
        Err(e) => done(
            "/ui/locations",
            &format!("Daemon {name} not forgotten: {}", describe(e)),
        ),
    }
}
