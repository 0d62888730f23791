//! The HTTP side: the REST API (`api/`, at `/api/v1/`), the older
//! system's API at its old paths (`legacy/`), the web console (`console/`),
//! what booting machines fetch and call back (`boot.rs`: files, callbacks,
//! exports, the timeline's record; `scripts.rs`: the two scripts every
//! iPXE boot fetches, answered before the router by `Front`), health and
//! metrics (`health.rs`), the accept loop (`conn.rs`) and HTTPS
//! (`tls.rs`).

pub mod api;
pub mod boot;
pub mod callbacks;
pub mod conn;
pub mod console;
pub mod health;
pub mod legacy;
pub mod scripts;
pub mod tls;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::extract::ConnectInfo;
use axum::http::{Method, Request};
use axum::response::{IntoResponse, Response};
use hyper::body::Incoming;
use tokio::net::TcpListener;
use tower::ServiceExt;
use tower_http::classify::ServerErrorsFailureClass;
use tower_http::trace::{
    DefaultOnFailure, DefaultOnRequest, DefaultOnResponse, OnFailure, OnRequest, OnResponse,
    TraceLayer,
};
use tracing::Instrument;

/// Everything a request handler may use.
#[derive(Clone)]
pub struct AppState {
    /// The use cases the handlers carry out.
    pub ops: crate::ops::Ops,
    pub relay: crate::events::relay::RelayHandle,
    pub commands: crate::events::commands::CommandHandle,
    pub notify: crate::events::notify::NotifyHandle,
    pub default_page_size: u32,
    pub max_page_size: u32,
}

/// What a listener serves: the router, and before it the two scripts
/// every iPXE boot fetches (`scripts::Script`).
#[derive(Clone)]
pub struct Front {
    router: Router,
    boot: Arc<boot::BootState>,
}

impl Front {
    /// The same, with `layer` around the router (HTTPS marking, the
    /// redirect to HTTPS). The scripts do not pass through it: neither
    /// layer changes what a machine fetches.
    pub fn map_router(self, layer: impl FnOnce(Router) -> Router) -> Self {
        Self {
            router: layer(self.router),
            boot: self.boot,
        }
    }

    /// Answers one request that came from `peer`.
    pub async fn answer(&self, peer: SocketAddr, mut req: Request<Incoming>) -> Response {
        if let Some(script) = scripts::Script::asked(req.method(), req.uri().path()) {
            let span = request_span(&req);
            return async {
                // The events `TraceLayer` gives every other request
                // (`RUST_LOG=tower_http=debug`), from the same code.
                DefaultOnRequest::default().on_request(&req, &span);
                let started = std::time::Instant::now();
                let response = scripts::answer_script(
                    &self.boot,
                    peer,
                    &script,
                    req.method(),
                    req.uri(),
                    req.headers(),
                )
                .await;
                let latency = started.elapsed();
                DefaultOnResponse::default().on_response(&response, latency, &span);
                if response.status().is_server_error() {
                    DefaultOnFailure::default().on_failure(
                        ServerErrorsFailureClass::StatusCode(response.status()),
                        latency,
                        &span,
                    );
                }
                response
            }
            .instrument(span.clone())
            .await;
        }
        // Handlers see the peer as `ConnectInfo`.
        req.extensions_mut().insert(ConnectInfo(peer));
        match self.router.clone().oneshot(req).await {
            Ok(response) => response,
            Err(never) => match never {},
        }
    }
}

/// The whole HTTP application.
pub fn router(
    state: AppState,
    boot_state: boot::BootState,
    health: health::HealthState,
    console: console::ConsoleState,
) -> Front {
    let boot_state = Arc::new(boot_state);
    let (api, _) = api::routes(state.clone());
    let older = legacy::routes(legacy::LegacyState {
        app: state.clone(),
        limiter: console.limiter.clone(),
    });
    let fallback_state = boot_state.clone();
    let router = Router::new()
        .nest("/api/v1", api)
        // With a trailing slash, which nesting does not match.
        .route("/api/v1/", axum::routing::get(api::index))
        // The older system's API at its old paths (legacy/mod.rs).
        .merge(older)
        .merge(health::routes(health))
        .merge(console::routes(console))
        .merge(boot::routes(boot_state.clone()))
        .route_layer(axum::middleware::from_fn(health::track))
        .fallback(move |req: axum::extract::Request| fallback(fallback_state.clone(), req))
        .layer(TraceLayer::new_for_http().make_span_with(request_span))
        .layer(tower_http::limit::RequestBodyLimitLayer::new(
            16 * 1024 * 1024,
        ));
    Front {
        router,
        boot: boot_state,
    }
}

/// One span per request, carrying what the handlers learn: the machine's
/// MAC and the deployment. The path is shown without tokens.
fn request_span<B>(req: &Request<B>) -> tracing::Span {
    tracing::info_span!(
        "http",
        method = %req.method(),
        path = %boot::redact_token(req.uri().path()),
        mac = tracing::field::Empty,
        deployment = tracing::field::Empty,
    )
}

/// Files that deployments serve over HTTP live at their own paths; every
/// other unknown path is a JSON 404.
async fn fallback(state: Arc<boot::BootState>, req: axum::extract::Request) -> Response {
    let started = std::time::Instant::now();
    let method = req.method().clone();
    let (route, response) = fallback_answer(state, req).await;
    crate::telemetry::http_request(
        route,
        &method,
        response.status().as_u16(),
        started.elapsed(),
    );
    response
}

async fn fallback_answer(
    state: Arc<boot::BootState>,
    req: axum::extract::Request,
) -> (&'static str, Response) {
    let peer = req.extensions().get::<ConnectInfo<SocketAddr>>().cloned();
    let method = req.method().clone();
    let uri = req.uri().clone();
    let path = uri.path();
    if (method == Method::GET || method == Method::HEAD)
        && !path.starts_with("/api/")
        && let Some(response) = boot::deployment_file(&state, path, req).await
    {
        if let Some(ConnectInfo(peer)) = peer {
            boot::record_fallback(&state, peer, path, response.status());
        }
        return ("(deployment file)", response);
    }
    (
        "(not found)",
        api::error::not_found(uri).await.into_response(),
    )
}

/// Serves `front` on an already bound listener until `shutdown` resolves,
/// within `limits` (connections, header and idle timeouts).
pub async fn serve(
    listener: TcpListener,
    front: Front,
    limits: conn::ConnLimits,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    conn::serve(
        listener,
        front,
        limits,
        |tcp, _peer| async move { Some(tcp) },
        shutdown,
    )
    .await;
    Ok(())
}
