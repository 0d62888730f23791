//! The console's pages and the changes their forms make. Each reads and
//! changes through `ops` as the signed-in user.

use std::collections::BTreeMap;

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use serde::{Deserialize, Serialize};

use super::ConsoleState;
use super::render::{Empty, Page, error_page, form_error, form_input, human_seconds};
use super::session::{Change, Viewer, done, url_encode};
use crate::http::api::extract::Path;
use crate::ops::{self, Error};
use bootloader_core::model::{DeploymentState, Fqdn, Theme};
use bootloader_core::power::{PowerAction, PowerCommand};
use bootloader_store::{Page as Window, ProfileFilter};

/// Rows on a page of a list.
const PAGE: u32 = 50;

fn window(offset: Option<u64>) -> Window {
    Window {
        limit: PAGE,
        offset: offset.unwrap_or(0),
    }
}

/// Links to the previous and next page of a list, keeping its filters.
#[derive(Serialize)]
struct Pager {
    total: u64,
    first: u64,
    last: u64,
    previous: Option<String>,
    next: Option<String>,
}

fn pager(path: &str, filters: &[(&str, &str)], offset: u64, shown: usize, total: u64) -> Pager {
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
fn require_write(state: &ConsoleState, viewer: &Viewer) -> Result<(), Box<Response>> {
    viewer
        .actor()
        .require_write()
        .map_err(|e| Box::new(error_page(state, e)))
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
    if let Ok(networks) = ops::networks::list(ops, &actor, None, window(None)).await {
        for n in networks.items {
            let Some(pool) = n.pool else { continue };
            let size =
                u64::from(u32::from(pool.end)).saturating_sub(u64::from(u32::from(pool.start))) + 1;
            let held = ops::timeline::leases(
                ops,
                &actor,
                Some(n.id),
                Window {
                    limit: 1,
                    offset: 0,
                },
            )
            .await
            .map_or(0, |l| l.total);
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
        .render()
}

// ------------------------------------------------------------------ servers

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
    query: Result<Query<ServerListQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let Query(q) = match query {
        Ok(q) => q,
        Err(e) => return error_page(&state, Error::invalid_field("(query)", e.body_text())),
    };
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
async fn latest_profiles(state: &ConsoleState) -> Vec<(i64, String)> {
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
struct Mark {
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

fn marks(mut events: Vec<bootloader_core::published::boot::BootEvent>) -> (Vec<Mark>, f64) {
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

/// An error in one sentence, with its fields.
fn describe(e: Error) -> String {
    let body = e.into_body();
    let mut text = body.message;
    for (field, messages) in body.fields {
        text.push_str(&format!("; {field}: {}", messages.join(", ")));
    }
    text
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

// -------------------------------------------------------------- deployments

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct DeploymentListQuery {
    #[serde(default)]
    state: String,
    #[serde(default)]
    server: String,
    offset: Option<u64>,
}

pub async fn deployments(
    State(state): State<ConsoleState>,
    viewer: Viewer,
    query: Result<Query<DeploymentListQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let Query(q) = match query {
        Ok(q) => q,
        Err(e) => return error_page(&state, Error::invalid_field("(query)", e.body_text())),
    };
    let filter_state = match q.state.as_str() {
        "" => None,
        s => match s.parse::<DeploymentState>() {
            Ok(s) => Some(s),
            Err(e) => return error_page(&state, Error::invalid_field("state", e)),
        },
    };
    let server = match q.server.as_str() {
        "" => None,
        s => match s.parse::<Fqdn>() {
            Ok(f) => Some(f),
            Err(e) => return error_page(&state, Error::invalid_field("server", e.to_string())),
        },
    };
    let offset = q.offset.unwrap_or(0);
    let listing = match ops::deployments::list(
        &state.app.ops,
        &viewer.actor(),
        server.as_ref(),
        filter_state,
        window(Some(offset)),
    )
    .await
    {
        Ok(l) => l,
        Err(e) => return error_page(&state, e),
    };
    let pages = pager(
        "/ui/deployments",
        &[("state", &q.state), ("server", &q.server)],
        offset,
        listing.items.len(),
        listing.total,
    );
    let states: Vec<&str> = DeploymentState::ALL.iter().map(|s| s.as_str()).collect();
    Page::new(&state, &viewer, "deployments.html")
        .with("section", "deployments")
        .with("deployments", listing.items)
        .with("pager", pages)
        .with("state", &q.state)
        .with("server", &q.server)
        .with("states", states)
        .render()
}

pub async fn deployment(
    State(state): State<ConsoleState>,
    viewer: Viewer,
    Path(id): Path<i64>,
) -> Response {
    let ops = &state.app.ops;
    let actor = viewer.actor();
    let d = match ops::deployments::get(ops, &actor, id).await {
        Ok(d) => d,
        Err(e) => return error_page(&state, e),
    };
    let log = ops::deployments::log(ops, &actor, id, None, None)
        .await
        .unwrap_or_default();
    let page = ops::timeline::EventPage {
        before: None,
        limit: Some(200),
    };
    let timeline = ops::timeline::of_deployment(ops, &actor, id, page)
        .await
        .map(|t| t.events.into_iter().map(|e| e.event).collect())
        .unwrap_or_default();
    let (marks, span) = marks(timeline);
    let last_log = log.last().map(|l| l.id);
    Page::new(&state, &viewer, "deployment.html")
        .with("section", "deployments")
        .with("d", &d)
        .with("final", d.state.is_final())
        .with("log", log)
        .with("last_log", last_log)
        .with("marks", marks)
        .with("span", human_seconds(span as u64))
        .render()
}

pub async fn cancel_deployment(
    State(state): State<ConsoleState>,
    Path(id): Path<i64>,
    Change { viewer, .. }: Change,
) -> Response {
    let to = format!("/ui/deployments/{id}");
    match ops::deployments::cancel(&state.app.ops, &viewer.actor(), id).await {
        Ok(_) => done(&to, "Cancelled; the profile's cleanup runs."),
        Err(e @ (Error::Forbidden(_) | Error::NotFound(_))) => error_page(&state, e),
        Err(e) => done(&to, &format!("Not cancelled: {}", describe(e))),
    }
}

pub async fn repeat_deployment(
    State(state): State<ConsoleState>,
    Path(id): Path<i64>,
    Change { viewer, .. }: Change,
) -> Response {
    match ops::deployments::repeat(&state.app.ops, &viewer.actor(), id).await {
        Ok(d) => done(
            &format!("/ui/deployments/{}", d.id),
            &format!("Deployment {} repeats {id}.", d.id),
        ),
        Err(e @ (Error::Forbidden(_) | Error::NotFound(_))) => error_page(&state, e),
        Err(e) => done(
            &format!("/ui/deployments/{id}"),
            &format!("Not repeated: {}", describe(e)),
        ),
    }
}

// ----------------------------------------------------------------- profiles

#[derive(Serialize)]
struct ProfileRow {
    id: i64,
    name: String,
    version: String,
    actions: u64,
    created_at: String,
}

fn profile_row(p: &bootloader_store::StoredProfile) -> ProfileRow {
    ProfileRow {
        id: p.id,
        name: p.name.clone(),
        version: p.version.clone(),
        actions: p.action_count,
        created_at: p
            .created_at
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap_or_default(),
    }
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct ProfileListQuery {
    #[serde(default)]
    name: String,
    offset: Option<u64>,
}

pub async fn profiles(
    State(state): State<ConsoleState>,
    viewer: Viewer,
    query: Result<Query<ProfileListQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let Query(q) = match query {
        Ok(q) => q,
        Err(e) => return error_page(&state, Error::invalid_field("(query)", e.body_text())),
    };
    let filter = ProfileFilter {
        name: (!q.name.is_empty()).then(|| q.name.clone()),
        ..Default::default()
    };
    let offset = q.offset.unwrap_or(0);
    let listing = match ops::profiles::list(
        &state.app.ops,
        &viewer.actor(),
        &filter,
        window(Some(offset)),
    )
    .await
    {
        Ok(l) => l,
        Err(e) => return error_page(&state, e),
    };
    let rows: Vec<ProfileRow> = listing.items.iter().map(profile_row).collect();
    let pages = pager(
        "/ui/profiles",
        &[("name", &q.name)],
        offset,
        rows.len(),
        listing.total,
    );
    Page::new(&state, &viewer, "profiles.html")
        .with("section", "profiles")
        .with("profiles", rows)
        .with("pager", pages)
        .with("name", &q.name)
        .render()
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct ProfileQuery {
    /// Another version's id to compare with.
    diff: Option<i64>,
}

/// One line of a comparison: kept, removed (`-`) or added (`+`).
#[derive(Serialize, Debug, PartialEq)]
struct DiffLine {
    mark: char,
    old: Option<usize>,
    new: Option<usize>,
    text: String,
}

/// The lines of `old` and `new` as kept, removed and added, by their
/// longest common subsequence (profiles are small: a few hundred lines).
fn diff(old: &str, new: &str) -> Vec<DiffLine> {
    let a: Vec<&str> = old.lines().collect();
    let b: Vec<&str> = new.lines().collect();
    if a.len().saturating_mul(b.len()) > 4_000_000 {
        // Too large to compare line by line here: all out, all in.
        let mut out: Vec<DiffLine> = a
            .iter()
            .enumerate()
            .map(|(i, t)| DiffLine {
                mark: '-',
                old: Some(i + 1),
                new: None,
                text: t.to_string(),
            })
            .collect();
        out.extend(b.iter().enumerate().map(|(j, t)| DiffLine {
            mark: '+',
            old: None,
            new: Some(j + 1),
            text: t.to_string(),
        }));
        return out;
    }
    let (n, m) = (a.len(), b.len());
    let mut lcs = vec![vec![0u32; m + 1]; n + 1];
    for i in (0..n).rev() {
        for j in (0..m).rev() {
            lcs[i][j] = if a[i] == b[j] {
                lcs[i + 1][j + 1] + 1
            } else {
                lcs[i + 1][j].max(lcs[i][j + 1])
            };
        }
    }
    let (mut i, mut j) = (0, 0);
    let mut out = Vec::new();
    while i < n || j < m {
        if i < n && j < m && a[i] == b[j] {
            out.push(DiffLine {
                mark: ' ',
                old: Some(i + 1),
                new: Some(j + 1),
                text: a[i].to_string(),
            });
            i += 1;
            j += 1;
        } else if j < m && (i == n || lcs[i][j + 1] >= lcs[i + 1][j]) {
            out.push(DiffLine {
                mark: '+',
                old: None,
                new: Some(j + 1),
                text: b[j].to_string(),
            });
            j += 1;
        } else {
            out.push(DiffLine {
                mark: '-',
                old: Some(i + 1),
                new: None,
                text: a[i].to_string(),
            });
            i += 1;
        }
    }
    out
}

pub async fn profile(
    State(state): State<ConsoleState>,
    viewer: Viewer,
    Path(id): Path<i64>,
    query: Result<Query<ProfileQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let Query(q) = match query {
        Ok(q) => q,
        Err(e) => return error_page(&state, Error::invalid_field("(query)", e.body_text())),
    };
    let ops = &state.app.ops;
    let actor = viewer.actor();
    let p = match ops::profiles::get(ops, &actor, &id.to_string()).await {
        Ok(p) => p,
        Err(e) => return error_page(&state, e),
    };
    let filter = ProfileFilter {
        name: Some(p.name.clone()),
        ..Default::default()
    };
    let versions: Vec<ProfileRow> = ops::profiles::list(ops, &actor, &filter, window(None))
        .await
        .map(|l| l.items.iter().map(profile_row).collect())
        .unwrap_or_default();
    let compared = match q.diff {
        Some(other) => match ops::profiles::get(ops, &actor, &other.to_string()).await {
            Ok(o) => Some((profile_row(&o), diff(&o.source, &p.source))),
            Err(e) => return error_page(&state, e),
        },
        None => None,
    };
    let lines: Vec<&str> = p.source.lines().collect();
    Page::new(&state, &viewer, "profile.html")
        .with("section", "profiles")
        .with("p", profile_row(&p))
        .with("lines", lines)
        .with("versions", versions)
        .with("compared", compared)
        .render()
}

pub async fn new_profile(State(state): State<ConsoleState>, viewer: Viewer) -> Response {
    if let Err(r) = require_write(&state, &viewer) {
        return *r;
    }
    Page::new(&state, &viewer, "profile_form.html")
        .with("section", "profiles")
        .render()
}

/// Errors by line: `workflow.preparing[2]` is found in the text where its
/// key is, as near as the path allows.
#[derive(Serialize)]
struct LineError {
    line: Option<usize>,
    path: String,
    message: String,
}

fn errors_by_line(text: &str, fields: &BTreeMap<String, Vec<String>>) -> Vec<LineError> {
    let mut out: Vec<LineError> = fields
        .iter()
        .flat_map(|(path, messages)| {
            messages.iter().map(move |m| LineError {
                line: bootloader_core::profile::line_of(text, path, m),
                path: path.clone(),
                message: m.clone(),
            })
        })
        .collect();
    out.sort_by_key(|e| e.line.unwrap_or(0));
    out
}

pub async fn upload_profile(
    State(state): State<ConsoleState>,
    Change { viewer, posted }: Change,
) -> Response {
    let text = posted
        .get("source")
        .unwrap_or_default()
        .replace("\r\n", "\n");
    let only_check = posted.get("_action") == Some("validate");
    let result = if only_check {
        bootloader_core::profile::parse_upload(&text)
            .map(|_| None)
            .map_err(ops::profiles::profile_errors)
    } else {
        ops::profiles::upload(&state.app.ops, &viewer.actor(), &text)
            .await
            .map(Some)
    };
    match result {
        Ok(Some(p)) => done(
            &format!("/ui/profiles/{}", p.id),
            &format!("Profile {} {} uploaded.", p.name, p.version),
        ),
        Ok(None) => Page::new(&state, &viewer, "profile_form.html")
            .with("section", "profiles")
            .with("source", &text)
            .with("valid", true)
            .render(),
        Err(e @ (Error::Invalid { .. } | Error::Conflict { .. })) => {
            let status =
                StatusCode::from_u16(e.status()).unwrap_or(StatusCode::UNPROCESSABLE_ENTITY);
            let body = e.into_body();
            let lines: Vec<&str> = text.lines().collect();
            let errors = errors_by_line(&text, &body.fields);
            Page::new(&state, &viewer, "profile_form.html")
                .with("section", "profiles")
                .with("source", &text)
                .with("lines", lines)
                .with("line_errors", errors)
                .with("error", body.message)
                .status(status)
                .render()
        }
        Err(e) => error_page(&state, e),
    }
}

// -------------------------------------------------- locations and networks

pub async fn locations(
    State(state): State<ConsoleState>,
    viewer: Viewer,
    crate::http::api::extract::Query(q): crate::http::api::extract::Query<super::people::EditQuery>,
) -> Response {
    let page = Ok(locations_page(&state, &viewer).await);
    super::people::list_or_edit(&state, &viewer, "locations", q, page).await
}

pub(super) async fn locations_page<'a>(state: &'a ConsoleState, viewer: &'a Viewer) -> Page<'a> {
    let items = ops::locations::list_locations(&state.app.ops, &viewer.actor(), window(None))
        .await
        .map(|l| l.items)
        .unwrap_or_default();
    Page::new(state, viewer, "locations.html")
        .with("section", "locations")
        .with("locations", items)
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
    crate::http::api::extract::Query(q): crate::http::api::extract::Query<super::people::EditQuery>,
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
    let mut rows = Vec::new();
    for n in items {
        let size = n.pool.as_ref().map_or(0, |p| {
            u64::from(u32::from(p.end)).saturating_sub(u64::from(u32::from(p.start))) + 1
        });
        let held = ops::timeline::leases(
            ops,
            &actor,
            Some(n.id),
            Window {
                limit: 1,
                offset: 0,
            },
        )
        .await
        .map_or(0, |l| l.total);
        rows.push(NetworkRow {
            network: n,
            held,
            size,
        });
    }
    let locations = ops::locations::list_locations(ops, &actor, window(None))
        .await
        .map(|l| l.items)
        .unwrap_or_default();
    Page::new(state, viewer, "networks.html")
        .with("section", "networks")
        .with("networks", rows)
        .with("locations", locations)
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
            .failed(&posted, e)
            .render(),
        Err(e) => error_page(&state, e),
    }
}

// ---------------------------------------------------------------- the user

pub async fn me(State(state): State<ConsoleState>, viewer: Viewer) -> Response {
    Page::new(&state, &viewer, "me.html")
        .with("section", "me")
        .with("chosen", viewer.session.theme.map(Theme::as_str))
        .with("default_theme", state.ui.default_theme.as_str())
        .with("min_password", bootloader_core::model::MIN_PASSWORD_CHARS)
        .render()
}

pub async fn set_theme(
    State(state): State<ConsoleState>,
    Change { viewer, posted }: Change,
) -> Response {
    let theme = match posted.get("theme").unwrap_or_default() {
        "" => None,
        t => match t.parse::<Theme>() {
            Ok(t) => Some(t),
            Err(e) => return error_page(&state, Error::invalid_field("theme", e)),
        },
    };
    if let Err(e) = ops::sessions::set_theme(&state.app.ops, &viewer.actor(), theme).await {
        return error_page(&state, e);
    }
    let back = super::session::safe_next(posted.get("next"));
    done(&back, "Theme changed.")
}

pub async fn change_password(
    State(state): State<ConsoleState>,
    Change { viewer, posted }: Change,
) -> Response {
    let (current, new, again) = (
        posted.get("current").unwrap_or_default(),
        posted.get("new").unwrap_or_default(),
        posted.get("again").unwrap_or_default(),
    );
    let me_page = |e: Error| {
        Page::new(&state, &viewer, "me.html")
            .with("section", "me")
            .with("chosen", viewer.session.theme.map(Theme::as_str))
            .with("default_theme", state.ui.default_theme.as_str())
            .with("min_password", bootloader_core::model::MIN_PASSWORD_CHARS)
            .failed(&posted, e)
            .render()
    };
    if new != again {
        return me_page(Error::invalid_field(
            "again",
            "the two new passwords differ",
        ));
    }
    let ops = &state.app.ops;
    match ops::users::check_password(&*ops.users, &viewer.session.principal.user, current).await {
        Ok(Some(_)) => {}
        Ok(None) => return me_page(Error::invalid_field("current", "is not your password")),
        Err(e) => return error_page(&state, e),
    }
    match ops::users::set_password(
        &*ops.users,
        &viewer.actor(),
        &viewer.session.principal.user,
        Some(new),
    )
    .await
    {
        Ok(()) => {
            // Every other browser signed in as this user signs in again.
            let me = &viewer.session.principal.user;
            match ops
                .sessions
                .end_sessions_of(me, Some(viewer.session.id))
                .await
            {
                Ok(0) => done("/ui/me", "Password changed."),
                Ok(n) => done(
                    "/ui/me",
                    &format!("Password changed; your {n} other session(s) ended."),
                ),
                Err(e) => error_page(&state, e.into()),
            }
        }
        Err(e @ Error::Invalid { .. }) => {
            // The rule's message names `password`; the form's field is `new`.
            let body = e.into_body();
            let message = body
                .fields
                .into_values()
                .flatten()
                .collect::<Vec<_>>()
                .join("; ");
            me_page(Error::invalid_field("new", message))
        }
        Err(e) => error_page(&state, e),
    }
}

pub async fn not_found(State(state): State<ConsoleState>, viewer: Viewer) -> Response {
    let _ = &viewer;
    error_page(
        &state,
        Error::NotFound("There is no such page in the console.".into()),
    )
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_diff_keeps_removes_and_adds_lines() {
        let d = diff("a\nb\nc\n", "a\nc\nd\n");
        let marks: String = d.iter().map(|l| l.mark).collect();
        assert_eq!(marks, " - +", "{d:?}");
        assert_eq!(d[3].new, Some(3));
        assert_eq!(d[1].old, Some(2));
    }
}
