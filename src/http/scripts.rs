//! The two scripts every iPXE boot fetches: `/boot.ipxe` (the first, from
//! DHCP's boot file name) and `/ipxe/<mac>` (the machine's own: its
//! deployment's script, or one that boots the local disk). Their routes
//! are in `boot.rs`; a GET of either is answered before the router
//! (`http::Front`) by `answer_script`, alike.

use std::borrow::Cow;
use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};

use super::boot::{BootState, Noted, store_down, text};
use bootloader_core::model::{MacAddr, Via};

/// Says which way a machine was sent (the timeline notes local boots).
pub const DECISION: HeaderName = HeaderName::from_static("x-bootloader-decision");

/// One of the two scripts every iPXE boot fetches, asked for with GET.
/// These are answered before the router (`http::Front`), as their routes
/// would answer them, with the same span, counter and timeline record:
/// the router's own work per request (boxed services cloned and called,
/// extensions, bodies) was a third of the request's allocations.
#[derive(Debug, PartialEq, Eq)]
pub enum Script<'a> {
    /// `/boot.ipxe`
    First,
    /// `/ipxe/<mac>`, the segment percent-decoded as the route's `Path`
    /// does.
    Machine(Cow<'a, str>),
}

impl<'a> Script<'a> {
    /// The script a request asks for, when the router would send it to
    /// one of the two script routes' GET; `None` for everything else
    /// (HEAD, other methods, more or fewer segments, an escape that is not
    /// UTF-8), which the router serves.
    pub fn asked(method: &Method, path: &'a str) -> Option<Self> {
        if method != Method::GET {
            return None;
        }
        if path == "/boot.ipxe" {
            return Some(Self::First);
        }
        let raw = path.strip_prefix("/ipxe/")?;
        if raw.is_empty() || raw.contains('/') {
            return None;
        }
        percent_encoding::percent_decode_str(raw)
            .decode_utf8()
            .ok()
            .map(Self::Machine)
    }

    /// The route's pattern, as the router's counters name it.
    fn route(&self) -> &'static str {
        match self {
            Self::First => "/boot.ipxe",
            Self::Machine(_) => "/ipxe/{mac}",
        }
    }
}

/// Answers `script` for the request `method uri headers` from `peer`:
/// counted by route, timed, and recorded in the timeline, as the router
/// would. Runs inside the request's span.
pub async fn answer_script(
    state: &BootState,
    peer: SocketAddr,
    script: &Script<'_>,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
) -> Response {
    let started = std::time::Instant::now();
    let noted = Noted::take(state, peer, method, uri, headers);
    let response = match script {
        Script::First => first_script(state),
        Script::Machine(raw) => script_of(state, raw).await,
    };
    crate::telemetry::http_request(
        script.route(),
        method,
        response.status().as_u16(),
        started.elapsed(),
    );
    noted.answered(state, &response);
    response
}

/// The first script: finds out which machine this is and asks for its
/// own. `netX` is the interface iPXE booted from, which on a server with
/// several NICs need not be `net0`.
pub(super) async fn boot_script(State(state): State<Arc<BootState>>) -> Response {
    first_script(&state)
}

fn first_script(state: &BootState) -> Response {
    text(format!(
        "#!ipxe\n\
         echo bootloader: fetching the script for ${{netX/mac}}\n\
         chain --replace --autofree {}/ipxe/${{netX/mac}} || goto failed\n\
         :failed\n\
         echo bootloader: no script for ${{netX/mac}}; booting from disk in 10 s\n\
         sleep 10\n\
         exit 1\n",
        state.public_url
    ))
}

/// A script that boots the local disk: iPXE exits, and the firmware goes on
/// to its next boot device.
fn local_boot(mac: &MacAddr, why: &str) -> String {
    format!("#!ipxe\necho bootloader: {mac}: {why}; booting from the local disk\nexit\n")
}

pub(super) async fn machine_script(
    State(state): State<Arc<BootState>>,
    Path(raw): Path<String>,
) -> Response {
    script_of(&state, &raw).await
}

/// The script for the machine `raw` names (the path's segment, decoded).
async fn script_of(state: &BootState, raw: &str) -> Response {
    let Ok(mac) = raw.parse::<MacAddr>() else {
        return (
            StatusCode::BAD_REQUEST,
            format!("{raw:?} is not a MAC address\n"),
        )
            .into_response();
    };
    let path = format!("ipxe/{mac}");
    match state.store.served_file(Via::Http, &path).await {
        Ok(Some(f)) => text(String::from_utf8_lossy(&f.content).into_owned()),
        Ok(None) => {
            let why = match state.store.boot_target(mac).await {
                Ok(Some(t)) if t.deployment.is_some() && t.pxelinux => {
                    match pxelinux_script(state, &mac).await {
                        Ok(Some(script)) => {
                            let mut r = text(script);
                            r.headers_mut().insert(
                                DECISION,
                                HeaderValue::from_static("pxelinux-through-ipxe"),
                            );
                            return r;
                        }
                        Ok(None) => format!(
                            "its deployment serves pxelinux.cfg files, none for {}",
                            mac.dashed()
                        ),
                        Err(why) => why,
                    }
                }
                Ok(Some(t)) if t.deployment.is_some() => {
                    "its deployment serves no iPXE script yet".to_string()
                }
                Ok(Some(t)) => format!("{} has no active deployment", t.fqdn),
                Ok(None) => "unknown MAC".to_string(),
                Err(e) => return store_down(e),
            };
            let mut r = text(local_boot(&mac, &why));
            r.headers_mut()
                .insert(DECISION, HeaderValue::from_static("local-boot"));
            r
        }
        Err(e) => store_down(e),
    }
}

/// For a machine that came to iPXE (UEFI firmware: BIOS firmware of a
/// pxelinux deployment gets pxelinux itself) while its deployment serves
/// pxelinux configs: the entry its `pxelinux.cfg/01-<mac>` boots, as an
/// iPXE script. Relative paths are fetched over TFTP from this host.
async fn pxelinux_script(state: &BootState, mac: &MacAddr) -> Result<Option<String>, String> {
    let path = format!("pxelinux.cfg/01-{}", mac.dashed());
    let file = match state.store.served_file(Via::Tftp, &path).await {
        Ok(Some(f)) => f,
        Ok(None) => return Ok(None),
        Err(e) => return Err(format!("the store is unavailable ({e})")),
    };
    let config = String::from_utf8_lossy(&file.content);
    let entry = bootloader_core::pxelinux::default_entry(&config)
        .map_err(|e| format!("{path} cannot be booted through iPXE: {e}"))?;
    let host = state
        .public_url
        .split_once("://")
        .map_or(state.public_url.as_str(), |(_, rest)| rest)
        .split(['/', ':'])
        .next()
        .unwrap_or_default();
    Ok(Some(bootloader_core::pxelinux::ipxe_script(
        &entry,
        &path,
        &format!("tftp://{host}"),
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_get_of_either_script_is_answered_before_the_router() {
        let machine = |m: &str| Some(Script::Machine(Cow::Owned(m.to_string())));
        let cases: &[(Method, &str, Option<Script>)] = &[
            (Method::GET, "/boot.ipxe", Some(Script::First)),
            (
                Method::GET,
                "/ipxe/52:54:00:12:34:56",
                machine("52:54:00:12:34:56"),
            ),
            // iPXE escapes the colons of `${netX/mac}`.
            (
                Method::GET,
                "/ipxe/52%3A54%3a00%3A12%3A34%3A56",
                machine("52:54:00:12:34:56"),
            ),
            // Not a MAC: the script's own 400, as the route answers.
            (Method::GET, "/ipxe/bad", machine("bad")),
            // The router's: HEAD, other methods (405), other shapes (404),
            // an escape that is not UTF-8 (the route's 400).
            (Method::HEAD, "/boot.ipxe", None),
            (Method::HEAD, "/ipxe/52:54:00:12:34:56", None),
            (Method::POST, "/ipxe/52:54:00:12:34:56", None),
            (Method::DELETE, "/boot.ipxe", None),
            (Method::GET, "/ipxe/", None),
            (Method::GET, "/ipxe", None),
            (Method::GET, "/ipxe/a/b", None),
            (Method::GET, "/ipxe/52:54:00:12:34:56/", None),
            (Method::GET, "/ipxe/%FF", None),
            (Method::GET, "/boot.ipxe/", None),
            (Method::GET, "/static/boot.ipxe", None),
        ];
        for (method, path, want) in cases {
            assert_eq!(&Script::asked(method, path), want, "{method} {path}");
        }
    }
}
