//! What probes and monitoring read, without a token: `/healthz` (the
//! process answers), `/readyz` (the store answers and every configured
//! listener is serving; the broker's state and every supervised service
//! are reported, not required) and
//! `/metrics` (Prometheus text). Also the middleware that counts and times
//! every HTTP request by route.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Json;
use axum::Router;
use axum::extract::{MatchedPath, Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde::Serialize;
use serde_json::json;

use crate::events::commands::CommandHandle;
use crate::events::notify::NotifyHandle;
use crate::events::relay::RelayHandle;
use crate::supervisor::Services;
use bootloader_core::model::DeploymentState;
use bootloader_store::Store;

/// A socket the daemon serves on; it is up while the service of the same
/// name runs.
#[derive(Clone)]
pub struct Listener {
    pub name: &'static str,
    pub address: String,
    pub interface: Option<String>,
}

#[derive(Clone)]
pub struct HealthState {
    pub store: Arc<dyn Store>,
    pub listeners: Vec<Listener>,
    pub services: Services,
    pub relay: RelayHandle,
    pub commands: CommandHandle,
    pub notify: NotifyHandle,
    pub metrics: metrics_exporter_prometheus::PrometheusHandle,
}

pub fn routes(state: HealthState) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .with_state(state)
}

#[derive(Serialize)]
struct ListenerReport<'a> {
    name: &'a str,
    address: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    interface: Option<&'a str>,
    up: bool,
}

/// 200 when the store answers within 5 s and every listener serves; 503
/// otherwise. The body says which part is not ready.
async fn readyz(State(s): State<HealthState>) -> Response {
    let started = Instant::now();
    let store = match tokio::time::timeout(Duration::from_secs(5), s.store.ping()).await {
        Ok(Ok(())) => json!({ "ok": true, "latency_ms": started.elapsed().as_secs_f64() * 1000.0 }),
        Ok(Err(e)) => json!({ "ok": false, "error": e.to_string() }),
        Err(_) => json!({ "ok": false, "error": "no answer within 5 s" }),
    };
    let listeners: Vec<ListenerReport> = s
        .listeners
        .iter()
        .map(|l| ListenerReport {
            name: l.name,
            address: &l.address,
            interface: l.interface.as_deref(),
            up: s.services.is_up(l.name),
        })
        .collect();
    let ready = store["ok"] == true && listeners.iter().all(|l| l.up);
    let body = json!({
        "ready": ready,
        "store": store,
        "listeners": listeners,
        // Reported, not required: a broker outage delays events, it does
        // not stop machines from booting.
        "broker": { "relay": s.relay.status(), "commands": s.commands.get() },
        "notifications": s.notify.get(),
        "services": s.services.reports(),
    });
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(body)).into_response()
}

/// The recorder's counters and histograms, with gauges read from the store
/// now: deployments by state, addresses held per network, the outbox's
/// backlog and age, and how long those reads took.
async fn metrics(State(s): State<HealthState>) -> Response {
    let now = time::OffsetDateTime::now_utc();
    let started = Instant::now();
    match s.store.gauges(now.unix_timestamp()).await {
        Ok(g) => {
            for state in DeploymentState::ALL {
                let n = g
                    .deployments
                    .iter()
                    .find(|(st, _)| st == state.as_str())
                    .map_or(0, |(_, n)| *n);
                metrics::gauge!("bootloader_deployments", "state" => state.as_str()).set(n as f64);
            }
            for (network, n) in &g.leases {
                metrics::gauge!("bootloader_leases_held", "network" => network.clone())
                    .set(*n as f64);
            }
            metrics::gauge!("bootloader_store_up").set(1.0);
        }
        Err(e) => {
            tracing::warn!(error = %e, "metrics: the store did not answer");
            metrics::gauge!("bootloader_store_up").set(0.0);
        }
    }
    if let Ok((backlog, oldest)) = s.store.outbox_backlog().await {
        metrics::gauge!("bootloader_outbox_backlog").set(backlog as f64);
        let age = oldest.map_or(0.0, |t| (now - t).as_seconds_f64().max(0.0));
        metrics::gauge!("bootloader_outbox_oldest_age_seconds").set(age);
    }
    metrics::gauge!("bootloader_store_scrape_seconds").set(started.elapsed().as_secs_f64());
    let relay = s.relay.status();
    metrics::gauge!("bootloader_broker_connected").set(if relay.connected { 1.0 } else { 0.0 });
    metrics::counter!("bootloader_events_published_total").absolute(relay.published);
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        s.metrics.render(),
    )
        .into_response()
}

/// Counts and times a request under its route pattern (`/ipxe/{mac}`, never
/// the MAC or a token). Layered with `route_layer`, so only matched routes
/// pass here; the fallback counts its own.
pub async fn track(req: Request, next: Next) -> Response {
    let route = req.extensions().get::<MatchedPath>().cloned();
    let method = req.method().clone();
    let started = Instant::now();
    let response = next.run(req).await;
    crate::telemetry::http_request(
        route.as_ref().map_or("(unmatched)", MatchedPath::as_str),
        &method,
        response.status().as_u16(),
        started.elapsed(),
    );
    response
}
