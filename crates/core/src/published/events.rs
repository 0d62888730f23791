//! The `data` of events that carry no whole object: a lease let go, a
//! callback received, a power command's outcome, a profile created or
//! deleted, a password set or removed. The other events carry the object as the API returns it.

use std::net::Ipv4Addr;

use serde::Serialize;
use time::OffsetDateTime;

use crate::model::{Fqdn, MacAddr, Name};

/// `dhcp.lease.released`; `dhcp.lease.declined` with `until`, the time
/// (unix seconds) the address stays out of the pool.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LeaseLetGo {
    pub network_id: i64,
    pub ip: Ipv4Addr,
    pub mac: MacAddr,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub until: Option<i64>,
}

/// `deployment.callback`: the first time a callback name arrives.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CallbackReceived<'a> {
    pub deployment_id: i64,
    pub name: &'a str,
    pub method: &'a str,
    #[serde(with = "time::serde::rfc3339")]
    pub received_at: OffsetDateTime,
}

/// `power.<action>`: one command sent to a BMC, after it finished.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PowerDone<'a> {
    pub server: &'a Fqdn,
    pub action: &'a str,
    /// What was asked, e.g. `power cycle`.
    pub command: &'a str,
    pub driver: &'a str,
    pub attempts: u32,
    pub duration_ms: u64,
    pub ok: bool,
    /// What the BMC answered (when `ok`).
    pub answer: Option<&'a str>,
    /// The failure's kind and message (when not `ok`).
    pub error_kind: Option<&'a str>,
    pub error: Option<&'a str>,
}

/// `profile.created`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ProfileCreated<'a> {
    pub id: i64,
    pub name: &'a str,
    pub version: &'a str,
}

/// `profile.deleted`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct ProfileDeleted {
    pub id: i64,
}

/// `user.password`: a user's console password was set or removed (never
/// the password or its hash).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PasswordChanged<'a> {
    pub id: i64,
    pub name: &'a Name,
    pub set: bool,
}
