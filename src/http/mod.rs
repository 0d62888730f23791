//! The HTTP side. For now the REST API (`api/`); boot scripts, callbacks,
//! export URLs, metrics and the UI join here with their issues.

pub mod api;

use std::future::Future;
use std::sync::Arc;

use axum::Router;
use tokio::net::TcpListener;
use tower_http::trace::TraceLayer;

use crate::store::Store;

/// Everything a request handler may use.
#[derive(Clone)]
pub struct AppState {
    pub store: Arc<dyn Store>,
    pub default_page_size: u32,
    pub max_page_size: u32,
}

/// The whole HTTP application.
pub fn router(state: AppState) -> Router {
    let (api, _) = api::routes(state.clone());
    Router::new()
        .nest("/api/v1alpha2", api.clone())
        .nest("/api", api)
        // With a trailing slash, which nesting does not match.
        .route("/api/v1alpha2/", axum::routing::get(api::index))
        .route("/api/", axum::routing::get(api::index))
        .route("/healthz", axum::routing::get(|| async { "ok\n" }))
        .fallback(api::error::not_found)
        .layer(TraceLayer::new_for_http())
        .layer(tower_http::limit::RequestBodyLimitLayer::new(
            16 * 1024 * 1024,
        ))
}

/// Serves `router` on an already bound listener until `shutdown` resolves.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, router)
        .with_graceful_shutdown(shutdown)
        .await
}
