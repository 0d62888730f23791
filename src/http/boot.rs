//! What booting machines fetch over HTTP: `/boot.ipxe` (the first script
//! iPXE gets from DHCP), `/ipxe/<mac>` (the machine's script, or local
//! boot; both made in `scripts.rs`), `/boot/<binary>` (iPXE binaries for
//! UEFI HTTP boot), `/static/` (kernels, initrds; with Range) and the
//! files active deployments serve. Every request lands in the boot
//! timeline.

use std::borrow::Cow;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::{ConnectInfo, DefaultBodyLimit, Path, Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

use super::scripts;
use crate::timeline::Timeline;
use bootloader_core::model::{CallbackToken, MacAddr};
use bootloader_core::model::{Outcome, Phase, Via};
use bootloader_store::BootStore;
use bootloader_store::boot::{CallbackCall, CallbackReceipt};

#[derive(Clone)]
pub struct BootState {
    pub store: Arc<dyn BootStore>,
    /// Woken when a callback arrives.
    pub engine: Option<Arc<crate::workflow::Engine>>,
    pub timeline: Timeline,
    /// BOOTLOADER_URL, no trailing slash.
    pub public_url: String,
    pub static_dir: PathBuf,
    /// The iPXE binaries (the TFTP root).
    pub binaries_dir: PathBuf,
    /// Never served, whatever links the directories above hold.
    pub data_dir: PathBuf,
    /// The largest callback body kept.
    pub callback_body_bytes: usize,
    /// Stores callbacks in groups (at most `limits.callbacks_per_deployment`
    /// per deployment).
    pub callbacks: crate::http::callbacks::CallbackWriter,
}

/// The boot routes. Unknown paths fall through to deployment files, then
/// to `not_found`. The state is shared, not cloned per request (its paths
/// and URL are heap strings).
pub fn routes(state: Arc<BootState>) -> Router {
    Router::new()
        .route("/boot.ipxe", get(scripts::boot_script))
        .route("/ipxe/{mac}", get(scripts::machine_script))
        .route(
            // `{*name}`: the older system's templates write
            // `{{ callback_base }}/name`, and its web server merged the
            // doubled slash; so does this route.
            "/_callback/{token}/{*name}",
            get(callback)
                .post(callback)
                .layer(DefaultBodyLimit::max(state.callback_body_bytes)),
        )
        .route(
            "/export/file/{deployment}/{token}/{profile}/{version}/{file}",
            get(export_file),
        )
        .route(
            "/export/sshkeys/{deployment}/{token}/{user}",
            get(export_ssh_keys),
        )
        .route("/static/{*path}", get(static_file))
        .route("/boot/{*path}", get(binary_file))
        .layer(middleware::from_fn_with_state(state.clone(), record))
        .with_state(state)
}

/// `/static/...`: kernels, initrds and other large files.
async fn static_file(State(state): State<Arc<BootState>>, req: Request) -> Response {
    let dir = state.static_dir.clone();
    file_below(&state, &dir, "/static/", req).await
}

/// `/boot/...`: the iPXE binaries, for UEFI HTTP boot.
async fn binary_file(State(state): State<Arc<BootState>>, req: Request) -> Response {
    let dir = state.binaries_dir.clone();
    file_below(&state, &dir, "/boot/", req).await
}

/// A regular file below `root` (as `files::open` allows), with Range,
/// ETag and conditional requests; anything else is a 404 (403 for a path
/// that leaves the directory).
async fn file_below(
    state: &BootState,
    root: &std::path::Path,
    prefix: &str,
    req: Request,
) -> Response {
    let Some(name) = req
        .uri()
        .path()
        .strip_prefix(prefix)
        .and_then(|n| percent_encoding::percent_decode_str(n).decode_utf8().ok())
        .map(|n| n.into_owned())
    else {
        return (StatusCode::NOT_FOUND, "not found\n").into_response();
    };
    match crate::files::open(root, &name, Some(&state.data_dir)).await {
        Ok(file) => serve_opened(file, req).await,
        Err(crate::files::Refusal::NotFound) => {
            (StatusCode::NOT_FOUND, "not found\n").into_response()
        }
        Err(refusal) => {
            tracing::info!(path = %name, %refusal, "file request refused");
            (StatusCode::FORBIDDEN, format!("{refusal}\n")).into_response()
        }
    }
}

/// `file` with Range, ETag and conditional requests (tower-http's
/// `ServeDir` over the one opened file, read from the page cache without
/// a thread hop where it can: `files::opened`).
async fn serve_opened(file: crate::files::Opened, req: Request) -> Response {
    use tower::ServiceExt;
    let base = file.path().to_path_buf();
    // The service's base path is the file's own; the request names it.
    let (mut parts, body) = req.into_parts();
    parts.uri = axum::http::Uri::from_static("/");
    let req = Request::from_parts(parts, body);
    match tower_http::services::ServeDir::with_backend(base, file)
        .oneshot(req)
        .await
    {
        Ok(r) => r.map(Body::new),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, format!("{e}\n")).into_response(),
    }
}

pub(super) fn text(body: String) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; charset=utf-8"),
        )],
        body,
    )
        .into_response()
}

/// A profile template rendered for an active deployment (a preseed's
/// late_command fetches its script this way). Anything that does not match
/// the deployment, its token, profile and version is a 404.
async fn export_file(
    State(state): State<Arc<BootState>>,
    Path((deployment, token, profile, version, file)): Path<(i64, String, String, String, String)>,
) -> Response {
    let Some(engine) = &state.engine else {
        return StatusCode::NOT_FOUND.into_response();
    };
    match engine
        .export_file(deployment, &token, &profile, &version, &file)
        .await
    {
        Ok(Some(text)) => self::text(text),
        Ok(None) => (
            StatusCode::NOT_FOUND,
            "unknown or finished deployment, or no such template\n",
        )
            .into_response(),
        Err(e) => store_down(e),
    }
}

/// A user's SSH authorized keys, for an installer of an active deployment.
async fn export_ssh_keys(
    State(state): State<Arc<BootState>>,
    Path((deployment, token, user)): Path<(i64, String, String)>,
) -> Response {
    let Some(engine) = &state.engine else {
        return StatusCode::NOT_FOUND.into_response();
    };
    match engine.export_ssh_keys(deployment, &token, &user).await {
        Ok(Some(text)) => self::text(text),
        Ok(None) => (StatusCode::NOT_FOUND, "unknown or finished deployment\n").into_response(),
        Err(e) => store_down(e),
    }
}

pub fn valid_callback_name(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

/// `{callback_base}NAME`: the machine reports a step. Stored at once (the
/// engine may not wait for it yet) if the deployment's profile can still
/// expect that name; a replay is a no-op; an unknown or finished token, or
/// a name the profile does not expect, is a 404. The body is capped
/// (`limits.callback_body_bytes`, 413 past it) and so are the callbacks a
/// deployment holds (`limits.callbacks_per_deployment`).
async fn callback(
    State(state): State<Arc<BootState>>,
    Path((token, name)): Path<(String, String)>,
    method: axum::http::Method,
    body: axum::body::Bytes,
) -> Response {
    let name = name.trim_start_matches('/').to_string();
    if !valid_callback_name(&name) {
        crate::telemetry::callback_refused("bad_name");
        return (StatusCode::BAD_REQUEST, "bad callback name\n").into_response();
    }
    let hash = CallbackToken::from_presented(&token).hash();
    let started = std::time::Instant::now();
    if let Some(engine) = &state.engine {
        // The task of a deployment running here knows where it stands;
        // otherwise the store says.
        let judged = match engine.judge_callback(&hash, &name) {
            Some(judged) => Ok(Some(judged)),
            None => match state.store.callback_deployment(&hash).await {
                Ok(Some(id)) => engine
                    .expects_callback(id, &name)
                    .await
                    .map(|e| Some((id, e))),
                Ok(None) => Ok(None),
                Err(e) => Err(e),
            },
        };
        match judged {
            Ok(Some((_, true))) => {}
            Ok(Some((id, false))) => {
                crate::telemetry::callback_refused("unexpected_name");
                tracing::Span::current().record("deployment", id);
                tracing::info!(deployment = id, callback = %name, "callback its profile does not expect");
                return (
                    StatusCode::NOT_FOUND,
                    format!("the deployment's profile expects no callback {name:?} from here on\n"),
                )
                    .into_response();
            }
            Ok(None) => {
                crate::telemetry::callback("unknown_token");
                tracing::info!(callback = %name, "callback with an unknown or finished token");
                return (StatusCode::NOT_FOUND, "unknown or finished deployment\n").into_response();
            }
            Err(e) => {
                crate::telemetry::callback("unavailable");
                return store_down(e);
            }
        }
    }
    // Kept as text, as a bad byte is: PostgreSQL's text holds no NUL,
    // and SQLite's functions end a text at one.
    let body = String::from_utf8_lossy(&body).replace('\0', "\u{FFFD}");
    let recorded = state
        .callbacks
        .record(CallbackCall {
            token: hash,
            name: name.clone(),
            method: method.as_str().to_string(),
            body: body.clone(),
        })
        .await;
    crate::telemetry::store_op("record_callback", started.elapsed());
    crate::telemetry::callback(match &recorded {
        Ok(CallbackReceipt::Recorded { first: true, .. }) => "accepted",
        Ok(CallbackReceipt::Recorded { first: false, .. }) => "replay",
        Ok(CallbackReceipt::UnknownToken) => "unknown_token",
        Ok(CallbackReceipt::Full { .. }) => "refused",
        Err(_) => "unavailable",
    });
    match recorded {
        Ok(CallbackReceipt::Recorded {
            deployment_id,
            first,
        }) => {
            tracing::Span::current().record("deployment", deployment_id);
            tracing::info!(deployment = deployment_id, callback = %name, first, "callback");
            if let Some(engine) = &state.engine {
                if first {
                    engine.arrived(deployment_id, &name, method.as_str(), &body);
                } else {
                    engine.nudge(deployment_id);
                }
            }
            text(if first {
                "ok\n".into()
            } else {
                "ok (already recorded)\n".into()
            })
        }
        Ok(CallbackReceipt::UnknownToken) => {
            tracing::info!(callback = %name, "callback with an unknown or finished token");
            (StatusCode::NOT_FOUND, "unknown or finished deployment\n").into_response()
        }
        Ok(CallbackReceipt::Full { deployment_id }) => {
            crate::telemetry::callback_refused("too_many");
            tracing::warn!(deployment = deployment_id, callback = %name, "callback refused: the deployment holds its share");
            (
                StatusCode::TOO_MANY_REQUESTS,
                "this deployment holds as many callbacks as it may\n",
            )
                .into_response()
        }
        // The machine retries on 5xx: nothing accepted is lost.
        Err(why) => {
            tracing::warn!(error = %why, "callback not stored");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                "store unavailable, retry\n",
            )
                .into_response()
        }
    }
}

pub(super) fn store_down(e: bootloader_store::StoreError) -> Response {
    tracing::warn!(error = %e, "boot request failed");
    // iPXE retries a failed chain; a 503 says "try again", not "no".
    (
        StatusCode::SERVICE_UNAVAILABLE,
        "store unavailable, retry\n",
    )
        .into_response()
}

/// A file an active deployment serves over HTTP at this path, if any.
pub async fn deployment_file(state: &BootState, path: &str, req: Request) -> Option<Response> {
    let path = path.trim_start_matches('/');
    match state.store.served_file(Via::Http, path).await {
        // Downloaded files are served from the cache, with Range and ETag.
        Ok(Some(f)) if f.file.is_some() => {
            let file = f.file.unwrap_or_default();
            match crate::files::Opened::open(file.clone()).await {
                Ok(opened) => Some(serve_opened(opened, req).await),
                Err(e) => {
                    tracing::warn!(file = %file.display(), error = %e, "a served file is missing from the download cache");
                    Some(
                        (
                            StatusCode::INTERNAL_SERVER_ERROR,
                            "file missing from the cache\n",
                        )
                            .into_response(),
                    )
                }
            }
        }
        Ok(Some(f)) => Some(
            (
                [(
                    header::CONTENT_TYPE,
                    HeaderValue::from_static("application/octet-stream"),
                )],
                Body::from(f.content),
            )
                .into_response(),
        ),
        Ok(None) => None,
        Err(e) => Some(store_down(e)),
    }
}

/// Writes each boot request and its result to the timeline.
async fn record(State(state): State<Arc<BootState>>, req: Request, next: Next) -> Response {
    let peer = req
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0)
        .unwrap_or_else(|| SocketAddr::from(([0, 0, 0, 0], 0)));
    let noted = Noted::take(&state, peer, req.method(), req.uri(), req.headers());
    let response = next.run(req).await;
    noted.answered(&state, &response);
    response
}

/// A boot request as the timeline shows it, noted before it is answered.
pub(super) struct Noted {
    peer: SocketAddr,
    mac: Option<MacAddr>,
    asked: String,
}

impl Noted {
    /// Notes the request, and gives the request's span the machine's MAC
    /// (from an `/ipxe/<mac>` path, or the address's last DHCP answer).
    pub(super) fn take(
        state: &BootState,
        peer: SocketAddr,
        method: &Method,
        uri: &Uri,
        headers: &HeaderMap,
    ) -> Self {
        // iPXE escapes the colons of `${netX/mac}`: show the path as meant.
        let path = percent_encoding::percent_decode_str(uri.path()).decode_utf8_lossy();
        let mut asked = format!("{method} {}", redact_token(&path));
        if let Some(range) = headers.get(header::RANGE).and_then(|v| v.to_str().ok()) {
            // A header is ASCII here (`to_str`); a real Range is short.
            let shown = &range[..range.len().min(64)];
            let _ = write!(asked, " range={shown}");
            if shown.len() < range.len() {
                let _ = write!(asked, "... ({} bytes)", range.len());
            }
        }
        let mac = path
            .strip_prefix("/ipxe/")
            .and_then(|m| m.parse::<MacAddr>().ok())
            .or_else(|| state.timeline.mac_of(peer.ip()));
        if let Some(m) = mac {
            tracing::Span::current().record("mac", tracing::field::display(m));
        }
        Self { peer, mac, asked }
    }

    /// Records the request with its answer.
    pub(super) fn answered(self, state: &BootState, response: &Response) {
        let status = response.status();
        let outcome = if status.is_success() || status.is_redirection() {
            Outcome::Answered
        } else if status.is_server_error() {
            Outcome::Failed
        } else {
            Outcome::Refused
        };
        let mut detail = String::with_capacity(48);
        let _ = write!(detail, "{status}");
        if let Some(len) = response
            .headers()
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
        {
            let _ = write!(detail, ", {len} bytes");
        }
        if response.headers().contains_key(scripts::DECISION) {
            detail.push_str(", local boot script");
        }
        state.timeline.record(
            Phase::Http,
            self.mac,
            self.peer,
            self.asked,
            outcome,
            detail,
        );
    }
}

/// The timeline and the logs show a callback's name, never its secret
/// token.
pub fn redact_token(path: &str) -> Cow<'_, str> {
    if let Some((_, name)) = path
        .strip_prefix("/_callback/")
        .and_then(|rest| rest.split_once('/'))
    {
        return Cow::Owned(format!("/_callback/<token>/{name}"));
    }
    // /export/<kind>/<deployment>/<token>/...
    if let Some(rest) = path.strip_prefix("/export/") {
        let parts: Vec<&str> = rest.splitn(4, '/').collect();
        if let [kind, deployment, _token, tail] = parts[..] {
            return Cow::Owned(format!("/export/{kind}/{deployment}/<token>/{tail}"));
        }
    }
    Cow::Borrowed(path)
}

/// Records a request that only the fallback answered.
pub fn record_fallback(state: &BootState, peer: SocketAddr, path: &str, status: StatusCode) {
    let outcome = if status.is_success() {
        Outcome::Answered
    } else {
        Outcome::Refused
    };
    state.timeline.record(
        Phase::Http,
        state.timeline.mac_of(peer.ip()),
        peer,
        format!("GET {path}"),
        outcome,
        status.to_string(),
    );
}
