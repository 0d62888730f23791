//! The REST API, mounted at `/api/v1/` (the older system's contract is at its
//! old paths, `../legacy/`). Handlers parse and validate input into store types, call one store
//! operation and render the result; `error.rs` turns every failure into a
//! JSON body with the right status. The OpenAPI document is generated from
//! the handlers' annotations.

pub mod agents;
pub mod boot;
pub mod credentials;
pub mod deployments;
pub mod error;
pub mod events;
pub mod extract;
pub mod import;
pub mod locations;
pub mod networks;
pub mod power;
pub mod profiles;
pub mod query;
pub mod servers;
pub mod users;

use axum::Json;
use axum::Router;
use utoipa::OpenApi;
use utoipa::openapi::security::{ApiKey, ApiKeyValue, SecurityScheme};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::http::AppState;

pub use crate::ops::{UPDATE_ATTEMPTS, update_fresh};

#[derive(OpenApi)]
#[openapi(
    info(title = "bootloader", description = "Bare-metal provisioning: inventory, profiles and deployments."),
    modifiers(&TokenAuth),
    security(("token" = []))
)]
struct ApiDoc;

struct TokenAuth;

impl utoipa::Modify for TokenAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "token",
            SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::with_description(
                "Authorization",
                "`Token <key>` or `Bearer <key>`",
            ))),
        );
    }
}

/// `GET /api/v1/`: where things are, for a person with curl.
pub async fn index() -> Json<serde_json::Value> {
    Json(serde_json::json!({
        "version": env!("CARGO_PKG_VERSION"),
        "openapi": "/api/v1/openapi.json",
        "authentication": "Authorization: Token <key>",
        "resources": [
            "agents", "credentials", "interfaces", "labels", "leases", "locations", "networks", "profiles",
            "servers", "ssh_authorized_keys", "timeline", "tokens", "users"
        ],
    }))
}

/// The API's routes and its OpenAPI document.
pub fn routes(state: AppState) -> (Router, utoipa::openapi::OpenApi) {
    let (router, mut doc) = OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(
            locations::list_locations,
            locations::create_location
        ))
        .routes(routes!(
            locations::get_location,
            locations::update_location,
            locations::delete_location
        ))
        .routes(routes!(locations::list_labels, locations::create_label))
        .routes(routes!(
            locations::get_label,
            locations::update_label,
            locations::delete_label
        ))
        .routes(routes!(networks::list_networks, networks::create_network))
        .routes(routes!(
            networks::get_network,
            networks::update_network,
            networks::delete_network
        ))
        .routes(routes!(agents::list_agents))
        .routes(routes!(agents::get_agent, agents::delete_agent))
        .routes(routes!(
            credentials::list_credentials,
            credentials::create_credential
        ))
        .routes(routes!(
            credentials::get_credential,
            credentials::update_credential,
            credentials::delete_credential
        ))
        .routes(routes!(servers::list_servers, servers::create_server))
        .routes(routes!(import::import_servers))
        .routes(routes!(
            servers::get_server,
            servers::update_server,
            servers::delete_server
        ))
        .routes(routes!(servers::list_interfaces, servers::create_interface))
        .routes(routes!(
            servers::get_interface,
            servers::update_interface,
            servers::delete_interface
        ))
        .routes(routes!(users::list_users, users::create_user))
        .routes(routes!(
            users::get_user,
            users::update_user,
            users::delete_user
        ))
        .routes(routes!(users::list_tokens, users::create_token))
        .routes(routes!(users::revoke_token))
        .routes(routes!(users::list_ssh_keys, users::create_ssh_key))
        .routes(routes!(users::get_ssh_key, users::delete_ssh_key))
        .routes(routes!(profiles::list_profiles, profiles::create_profile))
        .routes(routes!(profiles::get_profile, profiles::delete_profile))
        .routes(routes!(boot::server_timeline))
        .routes(routes!(boot::mac_timeline))
        .routes(routes!(boot::unknown_macs))
        .routes(routes!(boot::list_leases))
        .routes(routes!(power::power_status, power::power_action))
        .routes(routes!(power::get_bootdev, power::set_bootdev))
        .routes(routes!(power::power_health))
        .routes(routes!(power::power_queue))
        .routes(routes!(
            deployments::list_deployments,
            deployments::create_deployment
        ))
        .routes(routes!(deployments::get_deployment))
        .routes(routes!(deployments::cancel_deployment))
        .routes(routes!(deployments::repeat_deployment))
        .routes(routes!(deployments::deployment_log))
        .routes(routes!(deployments::deployment_timeline))
        .routes(routes!(events::events_status))
        .split_for_parts();
    doc.servers = Some(vec![utoipa::openapi::Server::new("/api/v1")]);
    let served = doc.clone();
    let documented = query::Documented::of(&doc);
    let router = router
        .route_layer(axum::middleware::from_fn_with_state(
            documented,
            query::refuse_unknown,
        ))
        // PUT is accepted as PATCH: absent fields keep their values.
        .route(
            "/servers/{fqdn}",
            axum::routing::put(servers::update_server),
        )
        .route(
            "/openapi.json",
            axum::routing::get(move || async move { Json(served) }),
        )
        .route("/", axum::routing::get(index))
        .with_state(state);
    (router, doc)
}
