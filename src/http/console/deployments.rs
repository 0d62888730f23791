//! Deployments: the list by state and server, a deployment's page (its
//! live updates are `live.rs`), cancel and repeat.

use axum::extract::State;
use axum::response::Response;
use serde::Deserialize;

use super::ConsoleState;
use super::extract::{Path, Query};
use super::pages::{describe, pager, window};
use super::render::{Page, error_page, human_seconds};
use super::servers::marks;
use super::session::{Change, Viewer, done};
use crate::ops::{self, Error};
use bootloader_core::model::{DeploymentState, Fqdn};
use bootloader_store::boot::DeploymentRecord;

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
    Query(q): Query<DeploymentListQuery>,
) -> Response {
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
        // A final state can still have its complete, error or cleanup step
        // to run; the page follows it until that is done too.
        .with("settled", settled(&d))
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

/// Whether a deployment is over: final, with nothing of its last step left
/// to run (its log grows no more).
pub(super) fn settled(d: &DeploymentRecord) -> bool {
    d.state.is_final() && d.step.is_none()
}
