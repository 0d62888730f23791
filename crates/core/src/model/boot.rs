//! The boot path's vocabulary: how a file is served, what became of a
//! lease, and the phases and outcomes of the boot timeline.

use std::str::FromStr;

use serde::Serialize;

/// How a file is served: the `via` of `serve_file` and the `on` of
/// `delete_file` in a profile, and the listener that serves it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Via {
    Http,
    Tftp,
}

impl Via {
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Http => "http",
            Self::Tftp => "tftp",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum LeaseState {
    /// Held for a client between OFFER and REQUEST.
    Offered,
    Bound,
    Released,
    /// The client found the address in use (DHCPDECLINE); kept out of the
    /// pool until it expires.
    Declined,
}

impl LeaseState {
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Offered => "offered",
            Self::Bound => "bound",
            Self::Released => "released",
            Self::Declined => "declined",
        }
    }
}

impl FromStr for LeaseState {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Ok(match s {
            "offered" => Self::Offered,
            "bound" => Self::Bound,
            "released" => Self::Released,
            "declined" => Self::Declined,
            other => return Err(format!("unknown lease state {other:?}")),
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum Phase {
    Dhcp,
    Tftp,
    Http,
    /// A command to the server's BMC (power, boot device).
    Power,
}

impl Phase {
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Dhcp => "dhcp",
            Self::Tftp => "tftp",
            Self::Http => "http",
            Self::Power => "power",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    /// We answered (an offer, an ack, a file, a script).
    Answered,
    /// We stayed silent on purpose; the detail says why.
    Silent,
    /// We answered with a refusal (NAK, TFTP error, HTTP 4xx).
    Refused,
    /// Something broke on our side (store down, file unreadable).
    Failed,
    /// A transfer finished.
    Done,
}

impl Outcome {
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Answered => "answered",
            Self::Silent => "silent",
            Self::Refused => "refused",
            Self::Failed => "failed",
            Self::Done => "done",
        }
    }
}
