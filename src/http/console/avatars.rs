//! Avatars: with `GRAVATAR_PROXY` on, the daemon fetches a user's Gravatar
//! (by the SHA-256 of their e-mail) and serves it from its own address, so
//! browsers on an offline provisioning network never reach the internet;
//! what it fetched is kept for an hour, and a miss (no e-mail, no Gravatar,
//! Gravatar unreachable) is drawn as the user's initials. With the proxy
//! off, every avatar is the initials.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use sha2::{Digest, Sha256};

use super::ConsoleState;
use super::extract::Path;
use super::session::Viewer;
use crate::ops;

/// How long a fetched avatar (or a miss) is kept.
const KEEP: Duration = Duration::from_secs(3600);
/// The largest avatar taken.
const MAX_BYTES: usize = 512 * 1024;
/// Users whose avatars are kept at most.
const KEPT: usize = 1000;

/// An image's type and bytes.
type Image = (&'static str, bytes::Bytes);

/// By e-mail: when fetched, and what (`None`: a miss).
type Kept = HashMap<String, (Instant, Option<Image>)>;

#[derive(Clone)]
pub struct Avatars {
    base: Option<String>,
    http: reqwest::Client,
    kept: Arc<Mutex<Kept>>,
}

impl Avatars {
    /// Fetching from `base` when the proxy is on; `None`: initials only.
    pub fn new(base: Option<String>) -> Self {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(3))
            .redirect(reqwest::redirect::Policy::limited(2))
            .build()
            .unwrap_or_default();
        Self {
            base,
            http,
            kept: Arc::new(Mutex::new(HashMap::new())),
        }
    }

    pub fn enabled(&self) -> bool {
        self.base.is_some()
    }

    async fn fetch(&self, email: &str) -> Option<Image> {
        let base = self.base.as_ref()?;
        let email = email.trim().to_lowercase();
        if email.is_empty() {
            return None;
        }
        {
            let kept = self.kept.lock().unwrap_or_else(|p| p.into_inner());
            if let Some((at, image)) = kept.get(&email)
                && at.elapsed() < KEEP
            {
                return image.clone();
            }
        }
        let hash = hex::encode(Sha256::digest(email.as_bytes()));
        let url = format!("{base}/{hash}?s=80&d=404");
        let image = match self.http.get(&url).send().await {
            Ok(r) if r.status().is_success() => match r.bytes().await {
                Ok(b) if b.len() <= MAX_BYTES => image_kind(&b).map(|kind| (kind, b)),
                _ => None,
            },
            Ok(_) => None,
            Err(e) => {
                tracing::debug!(error = %e, "avatar not fetched");
                None
            }
        };
        let mut kept = self.kept.lock().unwrap_or_else(|p| p.into_inner());
        if kept.len() >= KEPT {
            kept.retain(|_, (at, _)| at.elapsed() < KEEP);
            if kept.len() >= KEPT {
                kept.clear();
            }
        }
        kept.insert(email, (Instant::now(), image.clone()));
        image
    }
}

/// The image type by its first bytes; anything else is not served.
fn image_kind(b: &[u8]) -> Option<&'static str> {
    if b.starts_with(b"\x89PNG\r\n\x1a\n") {
        Some("image/png")
    } else if b.starts_with(b"\xff\xd8\xff") {
        Some("image/jpeg")
    } else if b.starts_with(b"GIF87a") || b.starts_with(b"GIF89a") {
        Some("image/gif")
    } else if b.len() > 12 && &b[..4] == b"RIFF" && &b[8..12] == b"WEBP" {
        Some("image/webp")
    } else {
        None
    }
}

/// The initials of `name` on a coloured disc, as SVG.
pub fn initials_svg(name: &str) -> String {
    let letters = super::render::initials(name);
    let hue = Sha256::digest(name.as_bytes())[0] as u32 * 360 / 256;
    format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" viewBox=\"0 0 80 80\" width=\"80\" height=\"80\">\
         <circle cx=\"40\" cy=\"40\" r=\"40\" fill=\"hsl({hue},45%,38%)\"/>\
         <text x=\"40\" y=\"52\" font-family=\"sans-serif\" font-size=\"32\" font-weight=\"700\" \
         text-anchor=\"middle\" fill=\"#fff\">{letters}</text></svg>"
    )
}

/// `GET /ui/avatars/{user}`: the user's Gravatar through the daemon, or
/// their initials.
pub async fn avatar(
    State(state): State<ConsoleState>,
    viewer: Viewer,
    Path(user): Path<String>,
) -> Response {
    let name = match ops::input::path_key("user", &user) {
        Ok(n) => n,
        Err(_) => return initials(&user),
    };
    let email = if state.avatars.enabled() {
        ops::users::get(&*state.app.ops.users, &viewer.actor(), &name)
            .await
            .map(|u| u.email)
            .unwrap_or_default()
    } else {
        String::new()
    };
    match state.avatars.fetch(&email).await {
        Some((kind, bytes)) => (
            [
                (header::CONTENT_TYPE, HeaderValue::from_static(kind)),
                (
                    header::CACHE_CONTROL,
                    HeaderValue::from_static("private, max-age=3600"),
                ),
            ],
            bytes,
        )
            .into_response(),
        None => initials(name.as_str()),
    }
}

fn initials(name: &str) -> Response {
    (
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static("image/svg+xml"),
            ),
            (
                header::CACHE_CONTROL,
                HeaderValue::from_static("private, max-age=3600"),
            ),
        ],
        initials_svg(name),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_images_are_taken() {
        assert_eq!(image_kind(b"\x89PNG\r\n\x1a\n...."), Some("image/png"));
        assert_eq!(image_kind(b"\xff\xd8\xff\xe0"), Some("image/jpeg"));
        assert_eq!(image_kind(b"<html>not an image"), None);
        let svg = initials_svg("jane.doe");
        assert!(svg.contains(">JD</text>"), "{svg}");
    }
}
