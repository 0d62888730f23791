//! The older system's REST contract (bootloader-web's Django REST
//! framework API), served at its own paths so that its scripts and its
//! agent's client work unchanged: `/api/v1alpha2/`, `/api/` (the same)
//! and `/api/v1alpha1/`. The project's own API lives at `/api/v1/`; the
//! two share the operations layer and nothing else, so neither bends the
//! other (docs/legacy-api.md says what differs from the older server).
//!
//! What it keeps: URLs with a trailing slash (also without one, and with
//! the doubled slashes the older agent's client wrote), objects by
//! numeric id, lists as plain arrays, JSON and form bodies, the older
//! field names, `{"field": ["message"]}` errors, `Token`, and `Basic`
//! authentication, staff writing and everyone signed in reading, with
//! credentials and agents for staff only.
//!
//! - `body.rs`: request bodies and their fields, read as the older
//!   serializers read them.
//! - `error.rs`: errors in the older shapes.
//! - `inventory.rs`: servers, interfaces, networks, locations, labels.
//! - `work.rs`: profiles and deployments.
//! - `people.rs`: users, SSH keys, credentials, agents.

pub mod body;
pub mod error;
mod inventory;
mod people;
mod work;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{ConnectInfo, FromRequest, Request, State};
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::any;
use base64::Engine as _;
use serde_json::{Value, json};

use crate::http::AppState;
use crate::ops::sessions::SignInLimiter;
use crate::ops::{Actor, Ops};
use bootloader_core::model::ApiTokenSecret;
use bootloader_store::Principal;
use error::{LegacyError, NO_CREDENTIALS};

/// What the older API's handlers use.
#[derive(Clone)]
pub struct LegacyState {
    pub app: AppState,
    /// Password guesses over Basic count where the console's sign-in
    /// counts them.
    pub limiter: Arc<SignInLimiter>,
}

/// The routes: everything under `/api/` that the project's own API at
/// `/api/v1/` does not take.
pub fn routes(state: LegacyState) -> Router {
    Router::new()
        .route("/api", any(dispatch))
        .route("/api/", any(dispatch))
        .route("/api/{*rest}", any(dispatch))
        .with_state(state)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Version {
    V1alpha1,
    V1alpha2,
}

/// The resources, in the order the older API root listed them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Resource {
    Agents,
    Credentials,
    Deployments,
    Interfaces,
    Labels,
    Locations,
    Networks,
    Profiles,
    Servers,
    SshKeys,
    Users,
}

impl Resource {
    const ALL: [Self; 11] = [
        Self::Agents,
        Self::Credentials,
        Self::Deployments,
        Self::Interfaces,
        Self::Labels,
        Self::Locations,
        Self::Networks,
        Self::Profiles,
        Self::Servers,
        Self::SshKeys,
        Self::Users,
    ];

    const fn path(self) -> &'static str {
        match self {
            Self::Agents => "agents",
            Self::Credentials => "credentials",
            Self::Deployments => "deployments",
            Self::Interfaces => "interfaces",
            Self::Labels => "labels",
            Self::Locations => "locations",
            Self::Networks => "networks",
            Self::Profiles => "profiles",
            Self::Servers => "servers",
            Self::SshKeys => "ssh_authorized_keys",
            Self::Users => "users",
        }
    }

    /// v1alpha1 had no labels.
    fn in_version(self, v: Version) -> bool {
        !(v == Version::V1alpha1 && self == Self::Labels)
    }
}

/// Where a request goes.
#[derive(Debug, PartialEq, Eq)]
enum Target {
    Root,
    List(Resource),
    Detail(Resource, i64),
}

/// Reads a path under `/api/` as the older router matched it, doubled
/// slashes merged (as the older agent's nginx did), the trailing slash
/// optional and a `.json` suffix allowed. `None` for what it had not.
fn target(path: &str) -> Option<(Version, Target)> {
    let mut parts: Vec<&str> = path.split('/').filter(|p| !p.is_empty()).collect();
    if parts.first() != Some(&"api") {
        return None;
    }
    parts.remove(0);
    let version = match parts.first() {
        Some(&"v1alpha1") => Version::V1alpha1,
        Some(&"v1alpha2") => Version::V1alpha2,
        _ => {
            parts.insert(0, "");
            Version::V1alpha2
        }
    };
    parts.remove(0);
    if let Some(last) = parts.last_mut() {
        *last = last.strip_suffix(".json").unwrap_or(last);
        if last.is_empty() {
            parts.pop();
        }
    }
    let resource = |name: &str| {
        Resource::ALL
            .into_iter()
            .find(|r| r.path() == name && r.in_version(version))
    };
    let target = match parts.as_slice() {
        [] => Target::Root,
        [name] => Target::List(resource(name)?),
        [name, id] => Target::Detail(resource(name)?, id.parse().ok().filter(|i| *i > 0)?),
        _ => return None,
    };
    Some((version, target))
}

/// One request, as the resource handlers see it.
pub struct Call<'a> {
    pub ops: &'a Ops,
    pub actor: Actor,
    pub principal: Principal,
    pub version: Version,
    pub method: Method,
    /// `scheme://host` of the request, for the absolute URLs the older
    /// API gave.
    pub base: String,
    pub query: Vec<(String, String)>,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Call<'_> {
    /// The body's fields (PATCH: none required).
    pub fn fields(&self) -> Result<body::Fields, LegacyError> {
        body::parse(&self.headers, &self.body, self.method == Method::PATCH)
    }

    /// The absolute URL of an object, always under `/api/v1alpha2/` as the
    /// older server wrote them.
    pub fn url(&self, resource: &str, id: Option<i64>) -> String {
        match id {
            Some(id) => format!("{}/api/v1alpha2/{resource}/{id}/", self.base),
            None => format!("{}/api/v1alpha2/{resource}/", self.base),
        }
    }

    /// The first value of a query parameter.
    pub fn param(&self, key: &str) -> Option<&str> {
        self.query
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// Refuses query parameters other than `known` (and `format`): where
    /// the older server handed every parameter to its database as a
    /// filter, one it did not know was an error, and is one here.
    pub fn only_filters(&self, known: &[&str]) -> Result<(), LegacyError> {
        for (k, _) in &self.query {
            if k != "format" && !known.contains(&k.as_str()) {
                return Err(LegacyError::Detail(
                    400,
                    format!("unknown filter {k:?}; these are: {}", known.join(", ")),
                ));
            }
        }
        Ok(())
    }
}

/// The `Allow` header of a list and of a detail.
pub const LIST_METHODS: &str = "GET, POST, HEAD, OPTIONS";
pub const DETAIL_METHODS: &str = "GET, PUT, PATCH, DELETE, HEAD, OPTIONS";
pub const DETAIL_NO_UPDATE: &str = "GET, DELETE, HEAD, OPTIONS";

pub fn not_allowed(call: &Call<'_>, allow: &'static str) -> LegacyError {
    LegacyError::MethodNotAllowed {
        method: call.method.to_string(),
        allow,
    }
}

/// 204 with no body, after a delete.
pub fn no_content() -> Response {
    StatusCode::NO_CONTENT.into_response()
}

/// A JSON answer.
pub fn answer(status: StatusCode, value: Value) -> Response {
    (status, axum::Json(value)).into_response()
}

async fn dispatch(State(state): State<LegacyState>, req: Request) -> Response {
    let peer = req.extensions().get::<ConnectInfo<SocketAddr>>().cloned();
    let path = req.uri().path().to_string();
    // What the project's own API does not match is its JSON 404.
    if path == "/api/v1" || path.starts_with("/api/v1/") {
        return crate::http::api::error::not_found(req.uri().clone())
            .await
            .into_response();
    }
    let Some((version, target)) = target(&path) else {
        return LegacyError::NotFound.into_response();
    };
    let source = peer.map_or(IpAddr::V4(Ipv4Addr::LOCALHOST), |ConnectInfo(p)| p.ip());
    let principal = match authenticate(&state, req.headers(), source).await {
        Ok(p) => p,
        Err(e) => return e.into_response(),
    };
    let https = req
        .extensions()
        .get::<crate::http::console::OverHttps>()
        .is_some();
    let host = req
        .headers()
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("localhost")
        .to_string();
    let query = req
        .uri()
        .query()
        .and_then(|q| serde_urlencoded::from_str::<Vec<(String, String)>>(q).ok())
        .unwrap_or_default();
    let method = req.method().clone();
    let headers = req.headers().clone();
    let body = match Bytes::from_request(req, &()).await {
        Ok(b) => b,
        Err(e) => {
            return LegacyError::Detail(400, format!("cannot read body: {e}")).into_response();
        }
    };
    let call = Call {
        ops: &state.app.ops,
        actor: Actor::User(principal.clone()),
        principal,
        version,
        method,
        base: format!("{}://{host}", if https { "https" } else { "http" }),
        query,
        headers,
        body,
    };
    let result = match target {
        Target::Root => root(&call),
        Target::List(r) | Target::Detail(r, _) => {
            let id = match target {
                Target::Detail(_, id) => Some(id),
                _ => None,
            };
            route(&call, r, id).await
        }
    };
    let mut response = result.unwrap_or_else(IntoResponse::into_response);
    if call.method == Method::HEAD {
        *response.body_mut() = axum::body::Body::empty();
    }
    response
}

async fn route(call: &Call<'_>, r: Resource, id: Option<i64>) -> Result<Response, LegacyError> {
    if call.method == Method::OPTIONS {
        return Ok(options(call, r, id));
    }
    match r {
        Resource::Servers => inventory::servers(call, id).await,
        Resource::Interfaces => inventory::interfaces(call, id).await,
        Resource::Networks => inventory::networks(call, id).await,
        Resource::Locations => inventory::locations(call, id).await,
        Resource::Labels => inventory::labels(call, id).await,
        Resource::Profiles => work::profiles(call, id).await,
        Resource::Deployments => work::deployments(call, id).await,
        Resource::Users => people::users(call, id).await,
        Resource::SshKeys => people::ssh_keys(call, id).await,
        Resource::Credentials => people::credentials(call, id).await,
        Resource::Agents => people::agents(call, id).await,
    }
}

/// The API root: each resource's absolute URL.
fn root(call: &Call<'_>) -> Result<Response, LegacyError> {
    if !matches!(call.method, Method::GET | Method::HEAD | Method::OPTIONS) {
        return Err(not_allowed(call, "GET, HEAD, OPTIONS"));
    }
    let map: serde_json::Map<String, Value> = Resource::ALL
        .into_iter()
        .filter(|r| r.in_version(call.version))
        .map(|r| {
            (
                r.path().to_string(),
                Value::String(call.url(r.path(), None)),
            )
        })
        .collect();
    Ok(answer(StatusCode::OK, Value::Object(map)))
}

/// `OPTIONS`: what the resource renders and parses.
fn options(call: &Call<'_>, r: Resource, id: Option<i64>) -> Response {
    let mut response = answer(
        StatusCode::OK,
        json!({
            "name": r.path(),
            "renders": ["application/json"],
            "parses": ["application/json", "application/x-www-form-urlencoded"],
        }),
    );
    let allow = if id.is_some() {
        DETAIL_METHODS
    } else {
        LIST_METHODS
    };
    if let Ok(v) = allow.parse() {
        response.headers_mut().insert(header::ALLOW, v);
    }
    let _ = call;
    response
}

/// Who is asking: `Authorization: Token <key>` (the older 40-hex keys
/// that were imported, or this daemon's own tokens) or `Basic` with a
/// user's password. Anything else is not signed in.
async fn authenticate(
    state: &LegacyState,
    headers: &HeaderMap,
    source: IpAddr,
) -> Result<Principal, LegacyError> {
    let value = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .unwrap_or("");
    let (scheme, rest) = value.split_once(' ').unwrap_or((value, ""));
    let rest = rest.trim();
    let ops = &state.app.ops;
    if scheme.eq_ignore_ascii_case("token") || scheme.eq_ignore_ascii_case("bearer") {
        if rest.is_empty() {
            return Err(LegacyError::Unauthenticated(
                "Invalid token header. No credentials provided.",
            ));
        }
        if rest.contains(char::is_whitespace) {
            return Err(LegacyError::Unauthenticated(
                "Invalid token header. Token string should not contain spaces.",
            ));
        }
        let token = ApiTokenSecret::from_presented(rest);
        return match crate::ops::users::authenticate(&*ops.users, &token).await {
            Ok(Some(p)) => Ok(p),
            Ok(None) => Err(LegacyError::Unauthenticated("Invalid token.")),
            Err(e) => Err(e.into()),
        };
    }
    if scheme.eq_ignore_ascii_case("basic") {
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(rest)
            .ok()
            .and_then(|b| String::from_utf8(b).ok());
        let Some((name, password)) = decoded.as_deref().and_then(|d| d.split_once(':')) else {
            return Err(LegacyError::Unauthenticated(
                "Invalid basic header. Credentials not correctly base64 encoded.",
            ));
        };
        return match crate::ops::sessions::basic(ops, &state.limiter, name, password, source).await
        {
            Ok(Some(p)) => Ok(p),
            Ok(None) => Err(LegacyError::Unauthenticated("Invalid username/password.")),
            Err(e) => Err(e.into()),
        };
    }
    Err(LegacyError::Unauthenticated(NO_CREDENTIALS))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_read_as_the_older_router_read_them() {
        use Resource::*;
        use Target::*;
        let v2 = Version::V1alpha2;
        for (path, expected) in [
            ("/api/", Some((v2, Root))),
            ("/api", Some((v2, Root))),
            ("/api/v1alpha2", Some((v2, Root))),
            ("/api/v1alpha2/.json", Some((v2, Root))),
            ("/api/v1alpha1/", Some((Version::V1alpha1, Root))),
            ("/api/servers/", Some((v2, List(Servers)))),
            ("/api/v1alpha2/servers", Some((v2, List(Servers)))),
            ("/api/v1alpha2/servers.json", Some((v2, List(Servers)))),
            (
                "/api/v1alpha2/deployments//5/",
                Some((v2, Detail(Deployments, 5))),
            ),
            (
                "/api/v1alpha2/deployments/5.json",
                Some((v2, Detail(Deployments, 5))),
            ),
            (
                "//api//v1alpha2//ssh_authorized_keys//7",
                Some((v2, Detail(SshKeys, 7))),
            ),
            ("/api/v1alpha2/labels/", Some((v2, List(Labels)))),
            ("/api/v1alpha1/labels/", None),
            ("/api/v1alpha2/servers/abc/", None),
            ("/api/v1alpha2/servers/0/", None),
            ("/api/v1alpha2/servers/1/interfaces/", None),
            ("/api/v1alpha2/nothing/", None),
            ("/apix/servers/", None),
        ] {
            assert_eq!(target(path), expected, "{path}");
        }
    }
}
