//! Servers: the list with search, filters and confirmed bulk actions, a
//! server's page (its boot timeline drawn, interfaces and leases, BMC, power
//! and boot device, deployments), and its add and edit forms.

use std::collections::BTreeMap;

use axum::extract::State;
use axum::response::Response;
use serde::{Deserialize, Serialize};

use super::ConsoleState;
use super::extract::{Path, Query};
use super::pages::{describe, pager, require_write, window};
use super::render::{Empty, Page, error_page, form_error, form_input, human_seconds};
use super::session::{Change, Viewer, done, url_encode};
use crate::ops::{self, Error};
use bootloader_core::model::{DeploymentState, Fqdn};
use bootloader_core::power::{PowerAction, PowerCommand};
use bootloader_store::{Page as Window, ProfileFilter};

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct ServerListQuery {
    #[serde(default)]
    q: String,
    #[serde(default)]
    location: String,
    #[serde(default)]
    label: String,
    #[serde(default)]
    state: String,
    offset: Option<u64>,
}

pub async fn servers(
    State(state): State<ConsoleState>,
    viewer: Viewer,
    Query(q): Query<ServerListQuery>,
) -> Response {
    let ops = &state.app.ops;
    let actor = viewer.actor();
    let search = ops::servers::ServerSearch {
        location: Some(q.location.clone()),
        label: Some(q.label.clone()),
        search: Some(q.q.clone()),
        state: Some(q.state.clone()),
    };
    let offset = q.offset.unwrap_or(0);
    let listing = match ops::servers::list(ops, &actor, search, window(Some(offset))).await {
        Ok(l) => l,
        Err(e) => return error_page(&state, e),
    };
    let locations = ops::locations::list_locations(ops, &actor, window(None))
        .await
        .map(|l| l.items)
        .unwrap_or_default();
    let labels = ops::locations::list_labels(ops, &actor, window(None))
        .await
        .map(|l| l.items)
        .unwrap_or_default();
    let profiles = latest_profiles(&state).await;
    let pages = pager(
        "/ui/servers",
        &[
            ("q", &q.q),
            ("location", &q.location),
            ("label", &q.label),
            ("state", &q.state),
        ],
        offset,
        listing.items.len(),
        listing.total,
    );
    Page::new(&state, &viewer, "servers.html")
        .with("section", "servers")
        .with("servers", listing.items)
        .with("pager", pages)
        .with("q", &q.q)
        .with("location", &q.location)
        .with("label", &q.label)
        .with("state", &q.state)
        .with(
            "states",
            DeploymentState::ALL
                .iter()
                .map(|s| s.as_str())
                .collect::<Vec<_>>(),
        )
        .with("locations", locations)
        .with("labels", labels)
        .with("profiles", profiles)
        .render()
}

/// Every profile as `(id, "name version")`, newest first, for choosers.
pub(super) async fn latest_profiles(state: &ConsoleState) -> Vec<(i64, String)> {
    let filter = ProfileFilter::default();
    let page = Window {
        limit: 500,
        offset: 0,
    };
    let mut all: Vec<(i64, String)> = state
        .app
        .ops
        .profiles
        .list_profiles(&filter, page)
        .await
        .map(|l| {
            l.items
                .into_iter()
                .map(|p| (p.id, format!("{} {}", p.name, p.version)))
                .collect()
        })
        .unwrap_or_default();
    all.sort_by_key(|(id, _)| std::cmp::Reverse(*id));
    all
}

pub async fn new_server(State(state): State<ConsoleState>, viewer: Viewer) -> Response {
    if let Err(r) = require_write(&state, &viewer) {
        return *r;
    }
    server_form(&state, &viewer).await.render()
}

async fn server_form<'a>(state: &'a ConsoleState, viewer: &'a Viewer) -> Page<'a> {
    let actor = viewer.actor();
    let locations = ops::locations::list_locations(&state.app.ops, &actor, window(None))
        .await
        .map(|l| l.items)
        .unwrap_or_default();
    let credentials = ops::credentials::list(&state.app.ops, &actor, window(None))
        .await
        .map(|l| l.items.into_iter().map(|c| c.name.to_string()).collect())
        .unwrap_or_else(|_| Vec::<String>::new());
    Page::new(state, viewer, "server_form.html")
        .with("section", "servers")
        .with("locations", locations)
        .with("credentials", credentials)
        .with("rows", [0, 1, 2])
}

pub async fn create_server(
    State(state): State<ConsoleState>,
    Change { viewer, posted }: Change,
) -> Response {
    let input = form_input::<ops::servers::ServerInput>(
        &posted,
        &["bmc.port"],
        &["labels"],
        Empty::Omitted,
    );
    let result = match input {
        Ok(input) => ops::servers::create(&state.app.ops, &viewer.actor(), input)
            .await
            .map_err(|e| form_error(e, &posted)),
        Err(e) => Err(e),
    };
    match result {
        Ok(server) => done(
            &format!("/ui/servers/{}", server.fqdn),
            &format!("Server {} created.", server.fqdn),
        ),
        Err(e @ (Error::Invalid { .. } | Error::Conflict { .. })) => server_form(&state, &viewer)
            .await
            .failed(&posted, e)
            .render(),
        Err(e) => error_page(&state, e),
    }
}

/// A server's fields as the form names them, to edit it.
fn server_values(s: &bootloader_core::published::inventory::Server) -> BTreeMap<String, String> {
    let mut v = BTreeMap::new();
    v.insert("fqdn".into(), s.fqdn.to_string());
    v.insert("location".into(), s.location.to_string());
    v.insert("serial".into(), s.serial.clone());
    v.insert("notes".into(), s.notes.clone());
    let labels: Vec<&str> = s.labels.iter().map(|l| l.as_str()).collect();
    v.insert("labels".into(), labels.join(", "));
    for (i, iface) in s.interfaces.iter().enumerate() {
        v.insert(format!("interfaces[{i}].name"), iface.name.clone());
        v.insert(format!("interfaces[{i}].mac"), iface.mac.to_string());
        if let Some(ip) = iface.ipv4 {
            v.insert(format!("interfaces[{i}].ipv4"), ip.to_string());
        }
    }
    let b = &s.bmc;
    v.insert("bmc.host".into(), b.host.clone().unwrap_or_default());
    v.insert("bmc.port".into(), b.port.to_string());
    v.insert(
        "bmc.username".into(),
        b.username.clone().unwrap_or_default(),
    );
    v.insert(
        "bmc.credential".into(),
        b.credential
            .as_ref()
            .map(|c| c.to_string())
            .unwrap_or_default(),
    );
    v
}

/// Rows for a server's interfaces: each it has and two empty ones.
fn interface_rows(count: usize) -> Vec<usize> {
    (0..count.max(1) + 2).collect()
}

pub async fn edit_server(
    State(state): State<ConsoleState>,
    viewer: Viewer,
    Path(fqdn): Path<String>,
) -> Response {
    if let Err(r) = require_write(&state, &viewer) {
        return *r;
    }
    let key: Fqdn = match ops::input::path_key("server", &fqdn) {
        Ok(f) => f,
        Err(e) => return error_page(&state, e),
    };
    let server = match ops::servers::get(&state.app.ops, &viewer.actor(), &key).await {
        Ok(s) => s,
        Err(e) => return error_page(&state, e),
    };
    server_form(&state, &viewer)
        .await
        .with("editing", server.fqdn.as_str())
        .with("values", server_values(&server))
        .with("rows", interface_rows(server.interfaces.len()))
        .render()
}

pub async fn update_server(
    State(state): State<ConsoleState>,
    Path(fqdn): Path<String>,
    Change { viewer, posted }: Change,
) -> Response {
    let key: Fqdn = match ops::input::path_key("server", &fqdn) {
        Ok(f) => f,
        Err(e) => return error_page(&state, e),
    };
    let input =
        form_input::<ops::servers::ServerInput>(&posted, &["bmc.port"], &["labels"], Empty::Clears);
    let result = match input {
        Ok(input) => ops::servers::update(&state.app.ops, &viewer.actor(), &key, input)
            .await
            .map_err(|e| form_error(e, &posted)),
        Err(e) => Err(e),
    };
    match result {
        Ok(server) => done(
            &format!("/ui/servers/{}", server.fqdn),
            &format!("Server {} saved.", server.fqdn),
        ),
        Err(e @ (Error::Invalid { .. } | Error::Conflict { .. })) => {
            let rows = posted
                .0
                .iter()
                .filter(|(k, _)| k.ends_with("].mac"))
                .count();
            server_form(&state, &viewer)
                .await
                .with("editing", key.as_str())
                .with("rows", (0..rows.max(1)).collect::<Vec<_>>())
                .failed(&posted, e)
                .render()
        }
        Err(e) => error_page(&state, e),
    }
}

/// One row of the drawn boot timeline.
#[derive(Serialize)]
pub(super) struct Mark {
    at: String,
    /// Seconds since the first event drawn.
    offset: f64,
    /// Seconds since the event before.
    gap: f64,
    /// Where on the drawing, 0 to 1000.
    x: u32,
    phase: String,
    outcome: String,
    request: String,
    detail: String,
    mac: String,
    /// A new boot attempt starts here (more than 5 min after the last).
    restart: bool,
}

pub(super) fn marks(
    mut events: Vec<bootloader_core::published::boot::BootEvent>,
) -> (Vec<Mark>, f64) {
    events.sort_by_key(|e| e.at);
    // Only the last attempt is drawn to scale; earlier ones are listed.
    let start = events
        .windows(2)
        .rposition(|w| (w[1].at - w[0].at).whole_seconds() > 300)
        .map_or(0, |i| i + 1);
    let first = events.get(start).map(|e| e.at);
    let span = match (first, events.last()) {
        (Some(a), Some(b)) => (b.at - a).as_seconds_f64().max(1.0),
        _ => 1.0,
    };
    let mut out = Vec::new();
    let mut previous = None;
    for (i, e) in events.into_iter().enumerate() {
        let offset = first.map_or(0.0, |f| (e.at - f).as_seconds_f64());
        let gap = previous.map_or(0.0, |p: time::OffsetDateTime| (e.at - p).as_seconds_f64());
        previous = Some(e.at);
        out.push(Mark {
            at: e
                .at
                .format(&time::format_description::well_known::Rfc3339)
                .unwrap_or_default(),
            offset,
            gap,
            x: if i >= start {
                ((offset / span) * 1000.0).clamp(0.0, 1000.0) as u32
            } else {
                0
            },
            // A callback is an HTTP request, drawn apart: it is the
            // installer speaking, not the firmware fetching.
            phase: if e.phase == bootloader_core::model::Phase::Http
                && e.request.contains("/_callback/")
            {
                "callback".to_string()
            } else {
                e.phase.as_str().to_string()
            },
            outcome: e.outcome.as_str().to_string(),
            request: e.request,
            detail: e.detail,
            mac: e.mac.map(|m| m.to_string()).unwrap_or_default(),
            restart: i == start && start > 0,
        });
    }
    (out, span)
}

pub async fn server(
    State(state): State<ConsoleState>,
    viewer: Viewer,
    Path(fqdn): Path<String>,
) -> Response {
    let ops = &state.app.ops;
    let actor = viewer.actor();
    let fqdn: Fqdn = match ops::input::path_key("server", &fqdn) {
        Ok(f) => f,
        Err(e) => return error_page(&state, e),
    };
    let server = match ops::servers::get(ops, &actor, &fqdn).await {
        Ok(s) => s,
        Err(e) => return error_page(&state, e),
    };
    let deployments = ops::deployments::list(
        ops,
        &actor,
        Some(&fqdn),
        None,
        Window {
            limit: 10,
            offset: 0,
        },
    )
    .await
    .map(|l| l.items)
    .unwrap_or_default();
    let page = ops::timeline::EventPage {
        before: None,
        limit: Some(200),
    };
    let timeline = ops::timeline::of_server(ops, &actor, &fqdn, page)
        .await
        .map(|t| t.events.into_iter().map(|e| e.event).collect())
        .unwrap_or_default();
    let (marks, span) = marks(timeline);
    let leases = ops::timeline::leases_of(ops, &actor, &server)
        .await
        .unwrap_or_default();
    let power = ops.power.health(&fqdn).await.ok();
    let profiles = latest_profiles(&state).await;
    Page::new(&state, &viewer, "server.html")
        .with("section", "servers")
        .with("server", &server)
        .with("deployments", deployments)
        .with("marks", marks)
        .with("span", human_seconds(span as u64))
        .with("leases", leases)
        .with("power", power)
        .with("profiles", profiles)
        .render()
}

pub async fn server_power(
    State(state): State<ConsoleState>,
    Path(fqdn): Path<String>,
    Change { viewer, posted }: Change,
) -> Response {
    let fqdn: Fqdn = match ops::input::path_key("server", &fqdn) {
        Ok(f) => f,
        Err(e) => return error_page(&state, e),
    };
    let command = match (posted.get("action"), posted.get("bootdev")) {
        (Some(a), _) => match a.parse::<PowerAction>() {
            Ok(a) => PowerCommand::Power(a),
            Err(e) => return error_page(&state, Error::invalid_field("action", e)),
        },
        (None, Some(dev)) => {
            let request = serde_json::json!({ "device": dev });
            match serde_json::from_value(request) {
                Ok(r) => PowerCommand::SetBootDevice(r),
                Err(e) => {
                    return error_page(&state, Error::invalid_field("bootdev", e.to_string()));
                }
            }
        }
        (None, None) => PowerCommand::Status,
    };
    let to = format!("/ui/servers/{fqdn}");
    match ops::power::execute(&state.app.ops, &viewer.actor(), fqdn, command).await {
        Ok(r) if r.ok => done(&to, &format!("The BMC did {}.", r.command)),
        Ok(r) => done(
            &to,
            &format!(
                "The BMC did not do {}: {}",
                r.command,
                r.error.as_deref().unwrap_or("no reason given")
            ),
        ),
        Err(e) => error_page(&state, e),
    }
}

pub async fn deploy_server(
    State(state): State<ConsoleState>,
    Path(fqdn): Path<String>,
    Change { viewer, posted }: Change,
) -> Response {
    let input = ops::deployments::DeploymentInput {
        server: fqdn.clone(),
        profile: posted.get("profile").unwrap_or_default().to_string(),
    };
    match ops::deployments::create(&state.app.ops, &viewer.actor(), input).await {
        Ok(d) => done(
            &format!("/ui/deployments/{}", d.id),
            &format!("Deployment {} of {} started.", d.id, d.server),
        ),
        Err(e) => done(
            &format!("/ui/servers/{}", url_encode(&fqdn)),
            &format!("No deployment started: {}", describe(e)),
        ),
    }
}

pub async fn delete_server(
    State(state): State<ConsoleState>,
    Path(fqdn): Path<String>,
    Change { viewer, .. }: Change,
) -> Response {
    let key: Fqdn = match ops::input::path_key("server", &fqdn) {
        Ok(f) => f,
        Err(e) => return error_page(&state, e),
    };
    match ops::servers::delete(&state.app.ops, &viewer.actor(), &key).await {
        Ok(()) => done("/ui/servers", &format!("Server {key} deleted.")),
        Err(e) => done(
            &format!("/ui/servers/{}", url_encode(&fqdn)),
            &format!("Server not deleted: {}", describe(e)),
        ),
    }
}

/// What a bulk action does to each selected server, as the confirmation
/// page names it.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Bulk {
    Deploy,
    Power,
    Labels,
}

impl Bulk {
    fn parse(raw: &str) -> Option<Self> {
        match raw {
            "deploy" => Some(Self::Deploy),
            "power" => Some(Self::Power),
            "labels" => Some(Self::Labels),
            _ => None,
        }
    }
}

/// `POST /ui/servers/bulk/{what}`: the selected servers and the action
/// are shown on a page that asks to confirm; only that page's form (with
/// `_confirmed`) carries the action out, server by server, and the result
/// page says what happened to each.
pub async fn bulk(
    State(state): State<ConsoleState>,
    Path(what): Path<String>,
    Change { viewer, posted }: Change,
) -> Response {
    if let Err(r) = require_write(&state, &viewer) {
        return *r;
    }
    let Some(kind) = Bulk::parse(&what) else {
        return error_page(&state, Error::NotFound(format!("no bulk action {what:?}")));
    };
    let servers: Vec<&str> = posted
        .0
        .iter()
        .filter(|(k, _)| k == "server")
        .map(|(_, v)| v.as_str())
        .collect();
    if servers.is_empty() {
        return done("/ui/servers", "Nothing done: no server was selected.");
    }
    let profile = posted.get("profile").unwrap_or_default();
    let action = posted.get("action").unwrap_or("cycle");
    let labels = posted.get("labels").unwrap_or_default();
    let describe_action = match kind {
        Bulk::Deploy if profile.is_empty() => {
            return done("/ui/servers", "Nothing done: choose a profile to deploy.");
        }
        Bulk::Deploy => {
            let name = latest_profiles(&state)
                .await
                .into_iter()
                .find(|(id, _)| id.to_string() == profile)
                .map_or_else(|| format!("profile #{profile}"), |(_, n)| n);
            format!("Deploy {name} to")
        }
        Bulk::Power => format!("Power {action}"),
        Bulk::Labels if labels.trim().is_empty() => "Remove every label from".to_string(),
        Bulk::Labels => format!("Set the labels to \"{labels}\" on"),
    };
    if posted.get("_confirmed") != Some("yes") {
        return Page::new(&state, &viewer, "bulk.html")
            .with("section", "servers")
            .with("what", &what)
            .with("describe", describe_action)
            .with("servers", &servers)
            .with("profile", profile)
            .with("action", action)
            .with("labels", labels)
            .render();
    }
    let ops = &state.app.ops;
    let actor = viewer.actor();
    let mut results: Vec<(String, bool, String)> = Vec::new();
    for raw in servers {
        let fqdn: Fqdn = match ops::input::path_key("server", raw) {
            Ok(f) => f,
            Err(e) => {
                results.push((raw.to_string(), false, describe(e)));
                continue;
            }
        };
        let outcome = match kind {
            Bulk::Deploy => {
                let input = ops::deployments::DeploymentInput {
                    server: raw.to_string(),
                    profile: profile.to_string(),
                };
                ops::deployments::create(ops, &actor, input)
                    .await
                    .map(|d| format!("deployment {} started", d.id))
            }
            Bulk::Power => match action.parse::<PowerAction>() {
                Ok(a) => ops::power::execute(ops, &actor, fqdn.clone(), PowerCommand::Power(a))
                    .await
                    .and_then(|r| {
                        if r.ok {
                            Ok(format!("{} done", r.command))
                        } else {
                            Err(Error::Unavailable(r.error.unwrap_or_default()))
                        }
                    }),
                Err(e) => Err(Error::invalid_field("action", e)),
            },
            Bulk::Labels => {
                let list: Vec<String> = labels
                    .split(',')
                    .map(str::trim)
                    .filter(|l| !l.is_empty())
                    .map(String::from)
                    .collect();
                let input = ops::servers::ServerInput {
                    labels: Some(list),
                    ..Default::default()
                };
                ops::servers::update(ops, &actor, &fqdn, input)
                    .await
                    .map(|s| {
                        format!(
                            "labels: {}",
                            s.labels
                                .iter()
                                .map(|l| l.as_str())
                                .collect::<Vec<_>>()
                                .join(", ")
                        )
                    })
            }
        };
        match outcome {
            Ok(text) => results.push((raw.to_string(), true, text)),
            Err(e) => results.push((raw.to_string(), false, describe(e))),
        }
    }
    Page::new(&state, &viewer, "bulk.html")
        .with("section", "servers")
        .with("describe", describe_action)
        .with("results", results)
        .render()
}
