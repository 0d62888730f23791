//! Who is looking: the session cookie, signing in and out, and the form
//! token every state-changing request must carry back.
//!
//! The cookie (`bl_session`) holds a random secret; the store keeps only
//! its hash. It is `HttpOnly` (no script reads it), `SameSite=Lax` (other
//! sites' forms do not carry it), scoped to `/ui`, and `Secure` when the
//! request came over HTTPS. The form token is derived from the secret, so
//! a page of another origin cannot know it; every POST is refused without
//! it, whatever the cookie.

use std::net::{IpAddr, SocketAddr};

use axum::extract::{ConnectInfo, FromRequest, FromRequestParts, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use serde::Deserialize;
use subtle::ConstantTimeEq;

use super::ConsoleState;
use super::render::{Page, error_page};
use crate::ops::{self, Actor};
use bootloader_core::model::{SessionSecret, Theme};
use bootloader_store::ConsoleSession;

const COOKIE: &str = "bl_session";
const FLASH: &str = "bl_flash";

/// Marks a request that arrived over HTTPS (set by the TLS listener).
#[derive(Debug, Clone, Copy)]
pub struct OverHttps;

/// The signed-in user looking at a page.
pub struct Viewer {
    pub session: ConsoleSession,
    /// The cookie's secret, to end the session with.
    pub secret: SessionSecret,
    /// What this session's forms carry back.
    pub form_token: String,
    pub theme: Theme,
    /// A message from the last change (shown once).
    pub flash: Option<String>,
}

impl Viewer {
    pub fn actor(&self) -> Actor {
        Actor::User(self.session.principal.clone())
    }

    pub fn may_write(&self) -> bool {
        self.actor().may_write()
    }

    pub fn name(&self) -> &str {
        self.session.principal.user.as_str()
    }
}

fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

fn over_https(parts: &Parts) -> bool {
    parts.extensions.get::<OverHttps>().is_some()
}

/// Where a browser goes to sign in, and comes back to afterwards.
fn to_sign_in(parts: &Parts) -> Response {
    let back = if parts.method == axum::http::Method::GET {
        parts
            .uri
            .path_and_query()
            .map_or("/ui/", |p| p.as_str())
            .to_string()
    } else {
        // A form posted after the session ended: back to the page it was
        // on, which the browser names.
        parts
            .headers
            .get(header::REFERER)
            .and_then(|r| r.to_str().ok())
            .and_then(|r| r.parse::<axum::http::Uri>().ok())
            .and_then(|u| u.path_and_query().map(|p| p.as_str().to_string()))
            .unwrap_or_else(|| "/ui/".into())
    };
    let next: String = url_encode(&safe_next(Some(&back)));
    Redirect::to(&format!("/ui/sign-in?next={next}")).into_response()
}

/// What a path segment or a query value leaves as it is: letters,
/// digits and `-._~` (RFC 3986's unreserved characters).
const UNRESERVED: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// `s` as one path segment or query value.
pub fn url_encode(s: &str) -> String {
    percent_encoding::utf8_percent_encode(s, UNRESERVED).to_string()
}

/// A place in the console to return to; anything else (another site,
/// `//host`) becomes the dashboard.
pub fn safe_next(next: Option<&str>) -> String {
    match next {
        Some(n) if n.starts_with("/ui/") && !n.starts_with("//") && !n.contains('\\') => {
            n.to_string()
        }
        _ => "/ui/".to_string(),
    }
}

impl FromRequestParts<ConsoleState> for Viewer {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &ConsoleState) -> Result<Self, Response> {
        let Some(secret) = cookie(&parts.headers, COOKIE).map(SessionSecret::from_presented) else {
            return Err(to_sign_in(parts));
        };
        let session = ops::sessions::session(&state.app.ops, &secret, state.ui.session_idle)
            .await
            .map_err(|e| error_page(state, e))?;
        let Some(session) = session else {
            return Err(to_sign_in(parts));
        };
        let flash = cookie(&parts.headers, FLASH).map(|f| {
            percent_encoding::percent_decode_str(f)
                .decode_utf8_lossy()
                .into_owned()
        });
        Ok(Viewer {
            theme: session.theme.unwrap_or(state.ui.default_theme),
            form_token: secret.form_token(),
            secret,
            session,
            flash,
        })
    }
}

/// A posted form, its form token checked against the session's.
pub struct Posted(pub Vec<(String, String)>);

impl Posted {
    /// The first value of `name`, if given.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// Reads a form body and refuses it without this session's token.
    pub fn check(viewer: &Viewer, body: &[u8]) -> Result<Self, Box<Response>> {
        let pairs: Vec<(String, String)> = serde_urlencoded::from_bytes(body).map_err(|e| {
            Box::new((StatusCode::BAD_REQUEST, format!("unreadable form: {e}\n")).into_response())
        })?;
        let given = pairs
            .iter()
            .find(|(k, _)| k == "_csrf")
            .map(|(_, v)| v.as_str())
            .unwrap_or("");
        let good: bool = given.as_bytes().ct_eq(viewer.form_token.as_bytes()).into();
        if !good {
            tracing::warn!(
                user = viewer.name(),
                "console form refused: no valid form token"
            );
            return Err(Box::new(
                (
                    StatusCode::FORBIDDEN,
                    [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
                    "Refused: this form did not carry this session's form token (it may come from \
                 another site, or from a page older than your session). Reload the page and \
                 try again.\n",
                )
                    .into_response(),
            ));
        }
        Ok(Self(pairs))
    }
}

/// A state-changing request of the console: who sends it, and its form,
/// refused (before the handler runs) without the session's form token.
pub struct Change {
    pub viewer: Viewer,
    pub posted: Posted,
}

impl FromRequest<ConsoleState> for Change {
    type Rejection = Response;

    async fn from_request(
        req: axum::extract::Request,
        state: &ConsoleState,
    ) -> Result<Self, Response> {
        let (mut parts, body) = req.into_parts();
        let viewer = Viewer::from_request_parts(&mut parts, state).await?;
        let bytes = axum::body::to_bytes(body, 16 * 1024 * 1024)
            .await
            .map_err(|e| {
                (
                    StatusCode::BAD_REQUEST,
                    format!("cannot read the form: {e}\n"),
                )
                    .into_response()
            })?;
        let posted = Posted::check(&viewer, &bytes).map_err(|r| *r)?;
        Ok(Self { viewer, posted })
    }
}

/// A redirect after a change, with a message for the next page.
pub fn done(to: &str, message: &str) -> Response {
    let mut r = Redirect::to(to).into_response();
    let value = format!(
        "{FLASH}={}; Path=/ui; HttpOnly; SameSite=Lax; Max-Age=60",
        url_encode(message)
    );
    if let Ok(v) = HeaderValue::from_str(&value) {
        r.headers_mut().append(header::SET_COOKIE, v);
    }
    r
}

/// Clears the shown message on a page that showed it.
pub fn clear_flash(r: &mut Response) {
    r.headers_mut().append(
        header::SET_COOKIE,
        HeaderValue::from_static("bl_flash=; Path=/ui; HttpOnly; SameSite=Lax; Max-Age=0"),
    );
}

#[derive(Deserialize)]
pub struct NextQuery {
    next: Option<String>,
}

pub async fn sign_in_page(
    State(state): State<ConsoleState>,
    axum::extract::Query(q): axum::extract::Query<NextQuery>,
) -> Response {
    Page::bare(&state, "sign_in.html")
        .with("next", safe_next(q.next.as_deref()))
        .render()
}

pub async fn sign_in(
    State(state): State<ConsoleState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    scheme: Scheme,
    body: axum::body::Bytes,
) -> Response {
    let pairs: Vec<(String, String)> = serde_urlencoded::from_bytes(&body).unwrap_or_default();
    let field = |name: &str| {
        pairs
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
            .unwrap_or_default()
    };
    let (name, password) = (field("name"), field("password"));
    let next = safe_next(Some(&field("next")));
    let source: IpAddr = peer.ip();
    let lifetime = state.ui.session_lifetime;
    match ops::sessions::sign_in(
        &state.app.ops,
        &state.limiter,
        &name,
        &password,
        source,
        lifetime,
    )
    .await
    {
        Ok(signed) => {
            let mut r = Redirect::to(&next).into_response();
            let secure = if scheme.https { "; Secure" } else { "" };
            let value = format!(
                "{COOKIE}={}; Path=/ui; HttpOnly; SameSite=Lax; Max-Age={}{secure}",
                signed.secret.expose(),
                lifetime.as_secs()
            );
            if let Ok(v) = HeaderValue::from_str(&value) {
                r.headers_mut().append(header::SET_COOKIE, v);
            }
            r
        }
        Err(e) => {
            let status =
                StatusCode::from_u16(e.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            let retry = match &e {
                ops::Error::TooManyRequests { retry_after, .. } => Some(*retry_after),
                _ => None,
            };
            let message = match &e {
                ops::Error::Invalid { .. } => "The user name or the password is wrong.".to_string(),
                ops::Error::Internal(_) => {
                    "The sign-in could not be checked; see the daemon's log.".into()
                }
                other => other.to_string(),
            };
            if let ops::Error::Internal(detail) = &e {
                tracing::error!(%detail, "sign-in failed");
            }
            let mut r = Page::bare(&state, "sign_in.html")
                .with("next", next)
                .with("name", name)
                .with("error", message)
                .status(status)
                .render();
            if let Some(seconds) = retry {
                r.headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
            }
            r
        }
    }
}

/// Whether the request came over HTTPS, for handlers without a `Viewer`.
pub struct Scheme {
    https: bool,
}

impl<S: Send + Sync> FromRequestParts<S> for Scheme {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(Self {
            https: over_https(parts),
        })
    }
}

pub async fn sign_out(
    State(state): State<ConsoleState>,
    Change { viewer, .. }: Change,
) -> Response {
    if let Err(e) =
        ops::sessions::sign_out(&state.app.ops, &viewer.secret, state.ui.session_idle).await
    {
        return error_page(&state, e);
    }
    tracing::info!(user = viewer.name(), "signed out of the console");
    let mut r = Redirect::to("/ui/sign-in").into_response();
    r.headers_mut().append(
        header::SET_COOKIE,
        HeaderValue::from_static("bl_session=; Path=/ui; HttpOnly; SameSite=Lax; Max-Age=0"),
    );
    r
}
