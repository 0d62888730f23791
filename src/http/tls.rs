//! HTTPS for the API and the operators' pages (SSL_ENABLE): rustls with the
//! configured PEM certificate chain and key, served on `tls.listen` with
//! the same router as plain HTTP. The plain listener keeps serving what
//! firmware and installers fetch (iPXE cannot be assumed to trust our
//! certificate); with SSL_SET_REDIRECT it redirects the API to HTTPS.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use axum::extract::Request;
use axum::http::{StatusCode, Uri, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls;

use crate::config::TlsConfig;

/// How long a client may take over its TLS handshake.
const HANDSHAKE: Duration = Duration::from_secs(10);

/// The acceptor for `tls`: the PEM text from the setting or its file.
/// Errors name the setting.
pub fn acceptor(tls: &TlsConfig) -> anyhow::Result<TlsAcceptor> {
    let cert_pem = match (&tls.certificate, &tls.certificate_file) {
        (Some(text), _) => text.clone().into_bytes(),
        (None, Some(path)) => std::fs::read(path)
            .with_context(|| format!("tls.certificate_file {}", path.display()))?,
        (None, None) => bail!("tls.certificate (SSL_CERTIFICATE_CONTENTS) is not set"),
    };
    let key_pem = match (&tls.key, &tls.key_file) {
        (Some(text), _) => text.expose().as_bytes().to_vec(),
        (None, Some(path)) => {
            std::fs::read(path).with_context(|| format!("tls.key_file {}", path.display()))?
        }
        (None, None) => bail!("tls.key (SSL_KEY_CONTENTS) is not set"),
    };
    let certs = CertificateDer::pem_slice_iter(&cert_pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| anyhow::anyhow!("tls.certificate: not PEM: {e}"))?;
    if certs.is_empty() {
        bail!("tls.certificate: no CERTIFICATE block in the PEM text");
    }
    let key = PrivateKeyDer::from_pem_slice(&key_pem)
        .map_err(|e| anyhow::anyhow!("tls.key: no private key in the PEM text: {e}"))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| anyhow::anyhow!("TLS: {e}"))?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| anyhow::anyhow!("tls.certificate and tls.key do not go together: {e}"))?;
    Ok(TlsAcceptor::from(Arc::new(config)))
}

/// Serves `front` over TLS on `listener` until `shutdown` resolves, within
/// `limits` as plain HTTP is; then stops accepting and lets the connections
/// under way finish their requests.
pub async fn serve(
    listener: TcpListener,
    acceptor: TlsAcceptor,
    front: super::Front,
    limits: super::conn::ConnLimits,
    shutdown: impl std::future::Future<Output = ()>,
) {
    let handshake = move |tcp, peer: std::net::SocketAddr| {
        let acceptor = acceptor.clone();
        async move {
            match tokio::time::timeout(HANDSHAKE, acceptor.accept(tcp)).await {
                Ok(Ok(s)) => Some(s),
                Ok(Err(e)) => {
                    tracing::debug!(%peer, error = %e, "TLS handshake failed");
                    None
                }
                Err(_) => {
                    tracing::debug!(%peer, "TLS handshake timed out");
                    None
                }
            }
        }
    };
    super::conn::serve(listener, front, limits, handshake, shutdown).await;
}

/// Marks each request of the HTTPS listener, so that what it sets (the
/// console's session cookie) is `Secure`.
pub async fn mark_https(mut req: Request, next: Next) -> Response {
    req.extensions_mut().insert(super::console::OverHttps);
    next.run(req).await
}

/// SSL_SET_REDIRECT on the plain listener: the API and anything an
/// operator opens go to HTTPS (308 keeps the method and body); what
/// machines fetch stays on plain HTTP.
pub async fn redirect(https_port: u16, req: Request, next: Next) -> Response {
    let path = req.uri().path();
    let machine_facing = [
        "/boot.ipxe",
        "/ipxe/",
        "/boot/",
        "/static/",
        "/_callback/",
        "/export/",
    ]
    .iter()
    .any(|p| path == p.trim_end_matches('/') || path.starts_with(p))
        || matches!(path, "/healthz" | "/readyz" | "/metrics");
    let operator_facing = path.starts_with("/api") || path == "/" || path.starts_with("/ui");
    if machine_facing || !operator_facing {
        return next.run(req).await;
    }
    let host = req
        .headers()
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .map(|h| h.rsplit_once(':').map_or(h, |(name, _)| name).to_string());
    let Some(host) = host.filter(|h| !h.is_empty()) else {
        return (StatusCode::BAD_REQUEST, "a Host header is needed\n").into_response();
    };
    let path_and_query = req
        .uri()
        .path_and_query()
        .map_or("/", |p| p.as_str())
        .to_string();
    match format!("https://{host}:{https_port}{path_and_query}").parse::<Uri>() {
        Ok(to) => (
            StatusCode::PERMANENT_REDIRECT,
            [(header::LOCATION, to.to_string())],
        )
            .into_response(),
        Err(_) => (StatusCode::BAD_REQUEST, "bad Host header\n").into_response(),
    }
}
