//! The web console at `/ui/`: pages rendered on the server from embedded
//! templates (minijinja, escaped as HTML), a small embedded stylesheet and
//! script, and nothing fetched from elsewhere. Every page and form calls
//! the same operations as the REST API, as the signed-in user, so what is
//! allowed and what an error says are the API's.
//!
//! - `session.rs`: signing in and out, the session cookie, the form token
//!   every change must carry back (CSRF), who is looking (`Viewer`).
//! - `render.rs`: the templates, their filters, pages and error pages,
//!   forms read into the API's inputs with errors by field.
//! - `pages.rs`: the dashboard, and what the other pages share (paging, the
//!   right to change things); `servers.rs`, `deployments.rs`,
//!   `profiles.rs`, `places.rs` (locations and networks), `me.rs` (the
//!   user's theme and password).
//! - `people.rs`: labels, credentials, users, the user's API tokens and
//!   SSH keys, the broker and its backlog, the effective configuration.
//! - `avatars.rs`: Gravatar through the daemon (`GRAVATAR_PROXY`), or
//!   the user's initials.
//! - `live.rs`: one watcher of changed deployments for every open page
//!   following one (server-sent events).

mod avatars;
mod deployments;
mod extract;
mod live;
mod me;
mod pages;
mod people;
mod places;
mod profiles;
mod render;
mod servers;
mod session;

use std::sync::Arc;

use axum::Router;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};

use crate::config::UiSettings;
use crate::http::AppState;
use crate::http::health::Listener;
use crate::ops::sessions::SignInLimiter;
use crate::supervisor::Services;

pub use live::Live;
pub use session::OverHttps;

/// What the console's handlers use.
#[derive(Clone)]
pub struct ConsoleState {
    pub app: AppState,
    pub ui: UiSettings,
    pub limiter: Arc<SignInLimiter>,
    /// The sockets the daemon serves on, for the dashboard.
    pub listeners: Vec<Listener>,
    pub services: Services,
    /// The effective configuration, secrets redacted (staff only).
    pub settings: Arc<Vec<crate::config::Setting>>,
    pub live: Live,
    pub avatars: avatars::Avatars,
    templates: Arc<render::Templates>,
}

impl ConsoleState {
    pub fn new(
        app: AppState,
        ui: UiSettings,
        listeners: Vec<Listener>,
        services: Services,
        settings: Vec<crate::config::Setting>,
    ) -> Self {
        let live = Live::new(app.ops.deployments.clone());
        let avatars = avatars::Avatars::new(ui.gravatar_proxy.then(|| ui.gravatar_url.clone()));
        Self {
            app,
            ui,
            limiter: Arc::new(SignInLimiter::new(Default::default())),
            listeners,
            services,
            settings: Arc::new(settings),
            live,
            avatars,
            templates: Arc::new(render::Templates::new()),
        }
    }
}

/// The console's routes, `/` sending a browser to it.
pub fn routes(state: ConsoleState) -> Router {
    Router::new()
        .route("/", get(|| async { Redirect::to("/ui/") }))
        .route("/ui", get(|| async { Redirect::to("/ui/") }))
        .route("/ui/assets/{name}", get(asset))
        .route(
            "/ui/sign-in",
            get(session::sign_in_page).post(session::sign_in),
        )
        .route("/ui/sign-out", post(session::sign_out))
        .route("/ui/", get(pages::dashboard))
        .route("/ui/servers", get(servers::servers))
        .route(
            "/ui/servers/new",
            get(servers::new_server).post(servers::create_server),
        )
        .route("/ui/servers/bulk/{what}", post(servers::bulk))
        .route("/ui/servers/{fqdn}", get(servers::server))
        .route(
            "/ui/servers/{fqdn}/edit",
            get(servers::edit_server).post(servers::update_server),
        )
        .route("/ui/servers/{fqdn}/power", post(servers::server_power))
        .route("/ui/servers/{fqdn}/deploy", post(servers::deploy_server))
        .route("/ui/servers/{fqdn}/delete", post(servers::delete_server))
        .route("/ui/deployments", get(deployments::deployments))
        .route("/ui/deployments/{id}", get(deployments::deployment))
        .route("/ui/deployments/{id}/live", get(live::follow))
        .route(
            "/ui/deployments/{id}/cancel",
            post(deployments::cancel_deployment),
        )
        .route(
            "/ui/deployments/{id}/repeat",
            post(deployments::repeat_deployment),
        )
        .route("/ui/profiles", get(profiles::profiles))
        .route(
            "/ui/profiles/new",
            get(profiles::new_profile).post(profiles::upload_profile),
        )
        .route("/ui/profiles/{id}", get(profiles::profile))
        .route("/ui/profiles/{id}/delete", post(profiles::delete_profile))
        .route(
            "/ui/locations",
            get(places::locations).post(places::create_location),
        )
        .route(
            "/ui/networks",
            get(places::networks).post(places::create_network),
        )
        .route("/ui/locations/{name}/delete", post(places::delete_location))
        .route("/ui/networks/{id}/delete", post(places::delete_network))
        .route("/ui/agents/{name}/delete", post(places::delete_agent))
        .route("/ui/labels", get(people::labels).post(people::create_label))
        .route("/ui/labels/{name}/delete", post(people::delete_label))
        .route(
            "/ui/credentials",
            get(people::credentials).post(people::create_credential),
        )
        .route(
            "/ui/credentials/{name}/delete",
            post(people::delete_credential),
        )
        .route("/ui/users", get(people::users).post(people::create_user))
        .route("/ui/users/{name}/delete", post(people::delete_user))
        .route("/ui/keys", get(people::keys))
        .route("/ui/keys/tokens", post(people::create_token))
        .route("/ui/keys/tokens/{id}/revoke", post(people::revoke_token))
        .route("/ui/keys/ssh", post(people::add_key))
        .route("/ui/keys/ssh/{id}/delete", post(people::delete_key))
        .route("/ui/labels/{name}/edit", post(people::update_label))
        .route("/ui/locations/{name}/edit", post(people::update_location))
        .route(
            "/ui/credentials/{name}/edit",
            post(people::update_credential),
        )
        .route("/ui/users/{name}/edit", post(people::update_user))
        .route("/ui/networks/{name}/edit", post(people::update_network))
        .route("/ui/events", get(people::events))
        .route("/ui/settings", get(people::settings))
        .route("/ui/avatars/{user}", get(avatars::avatar))
        .route("/ui/me", get(me::me))
        .route("/ui/me/theme", post(me::set_theme))
        .route("/ui/me/password", post(me::change_password))
        .route("/ui/{*rest}", get(pages::not_found))
        .with_state(state)
}

/// The stylesheet and script, embedded in the binary.
const ASSETS: &[(&str, &str, &str)] = &[
    (
        "console.css",
        "text/css; charset=utf-8",
        include_str!("assets/console.css"),
    ),
    (
        "console.js",
        "text/javascript; charset=utf-8",
        include_str!("assets/console.js"),
    ),
];

/// A string that changes with the assets, for their URLs: a browser may
/// keep them for a day and still never use an old one after an upgrade.
fn asset_version() -> &'static str {
    static VERSION: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    VERSION.get_or_init(|| {
        use sha2::{Digest, Sha256};
        let mut digest = Sha256::new();
        for (name, _, body) in ASSETS {
            digest.update(name.as_bytes());
            digest.update(body.as_bytes());
        }
        hex::encode(&digest.finalize()[..6])
    })
}

async fn asset(axum::extract::Path(name): axum::extract::Path<String>) -> Response {
    match ASSETS.iter().find(|(n, _, _)| *n == name) {
        Some((_, kind, body)) => (
            [
                (header::CONTENT_TYPE, HeaderValue::from_static(kind)),
                (
                    header::CACHE_CONTROL,
                    HeaderValue::from_static("private, max-age=86400"),
                ),
                (
                    header::X_CONTENT_TYPE_OPTIONS,
                    HeaderValue::from_static("nosniff"),
                ),
            ],
            *body,
        )
            .into_response(),
        None => (StatusCode::NOT_FOUND, "no such asset\n").into_response(),
    }
}
