//! The `[limits]` settings: what anyone who can reach the daemon's ports
//! may make it hold or write. `docs/security.md` explains each.

use std::time::Duration;

use super::Resolver;
use super::file::LimitsSection;

/// Bounds on unauthenticated traffic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// HTTP connections held at once (plain and TLS each); at the cap the
    /// connection idle longest is closed to make room for a new one.
    pub http_connections: usize,
    /// HTTP connections from one address at once; more are closed at
    /// accept.
    pub http_connections_per_source: usize,
    /// A request head must arrive whole within this, counted from the
    /// connection's start or the end of the previous response (so it is
    /// also how long a kept-alive connection may wait for its next one).
    pub http_header_timeout: Duration,
    /// A connection on which no byte moved either way for this long is
    /// closed (a client that stopped reading its answer or sending its
    /// body).
    pub http_idle_timeout: Duration,
    /// The largest callback body kept.
    pub callback_body_bytes: usize,
    /// Callback rows one deployment may hold.
    pub callbacks_per_deployment: u32,
    /// Boot timeline rows kept at most (besides `timeline.retention_days`);
    /// the oldest go first.
    pub timeline_max_events: u64,
    /// TFTP transfers one address may have at once.
    pub tftp_transfers_per_source: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            http_connections: 8192,
            http_connections_per_source: 64,
            http_header_timeout: Duration::from_secs(10),
            http_idle_timeout: Duration::from_secs(60),
            callback_body_bytes: 64 * 1024,
            callbacks_per_deployment: 64,
            timeline_max_events: 500_000,
            tftp_transfers_per_source: 8,
        }
    }
}

pub(super) fn resolve(r: &mut Resolver<'_>, f: LimitsSection) -> Limits {
    let pick = |r: &mut Resolver<'_>, key: &'static str, file: Option<u32>| -> u32 {
        r.pick(key, None, file).unwrap_or_default()
    };
    let http_connections = pick(r, "limits.http_connections", f.http_connections);
    let per_source = pick(
        r,
        "limits.http_connections_per_source",
        f.http_connections_per_source,
    );
    let header = pick(
        r,
        "limits.http_header_timeout_secs",
        f.http_header_timeout_secs,
    );
    let idle = pick(r, "limits.http_idle_timeout_secs", f.http_idle_timeout_secs);
    let body = pick(r, "limits.callback_body_bytes", f.callback_body_bytes);
    let callbacks = pick(
        r,
        "limits.callbacks_per_deployment",
        f.callbacks_per_deployment,
    );
    let timeline = pick(r, "limits.timeline_max_events", f.timeline_max_events);
    let tftp = pick(
        r,
        "limits.tftp_transfers_per_source",
        f.tftp_transfers_per_source,
    );
    Limits {
        http_connections: http_connections as usize,
        http_connections_per_source: per_source as usize,
        http_header_timeout: Duration::from_secs(u64::from(header)),
        http_idle_timeout: Duration::from_secs(u64::from(idle)),
        callback_body_bytes: body as usize,
        callbacks_per_deployment: callbacks,
        timeline_max_events: u64::from(timeline),
        tftp_transfers_per_source: tftp as usize,
    }
}
