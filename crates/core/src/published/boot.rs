//! Leases, the boot timeline and the MACs no server has, as published.

use std::net::Ipv4Addr;

use serde::Serialize;
use time::OffsetDateTime;

use crate::model::{LeaseState, MacAddr, Outcome, Phase};

/// One address of a network and who holds it. Times are Unix seconds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Lease {
    pub network_id: i64,
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub ip: Ipv4Addr,
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub mac: MacAddr,
    pub state: LeaseState,
    pub expires_at: i64,
    pub hostname: String,
    pub updated_at: i64,
}

impl Lease {
    /// Whether the address is someone's at `now`.
    pub fn is_held(&self, now: i64) -> bool {
        self.expires_at > now && self.state != LeaseState::Released
    }
}

/// One entry of the boot timeline.
#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct BootEvent {
    #[serde(with = "time::serde::rfc3339")]
    #[cfg_attr(feature = "openapi", schema(value_type = String, format = DateTime))]
    pub at: OffsetDateTime,
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>))]
    pub mac: Option<MacAddr>,
    /// The client's address and port as we saw it.
    pub peer: String,
    pub phase: Phase,
    /// What was asked, e.g. `DHCPDISCOVER arch=bios vendor=PXEClient`.
    pub request: String,
    pub outcome: Outcome,
    /// What we answered, or why we stayed silent.
    pub detail: String,
}

/// A MAC seen on the boot network that no interface has.
#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct UnknownMac {
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub mac: MacAddr,
    pub events: u64,
    #[serde(with = "time::serde::rfc3339")]
    #[cfg_attr(feature = "openapi", schema(value_type = String, format = DateTime))]
    pub first_seen: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    #[cfg_attr(feature = "openapi", schema(value_type = String, format = DateTime))]
    pub last_seen: OffsetDateTime,
    /// The last thing it asked.
    pub last_request: String,
}
