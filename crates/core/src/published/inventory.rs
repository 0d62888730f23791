//! Locations, networks, labels, credentials, servers with their BMC and
//! interfaces, users, API tokens and SSH keys, as published. A BMC password
//! is never part of them, only whether one is set.

use std::net::Ipv4Addr;

use ipnet::Ipv4Net;
use serde::Serialize;
use time::OffsetDateTime;

use crate::model::{Fqdn, MacAddr, Name, TokenScope};

#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Location {
    pub id: i64,
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub name: Name,
    pub description: String,
    #[serde(with = "time::serde::rfc3339")]
    #[cfg_attr(feature = "openapi", schema(value_type = String, format = DateTime))]
    pub created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    #[cfg_attr(feature = "openapi", schema(value_type = String, format = DateTime))]
    pub updated_at: OffsetDateTime,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Pool {
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub start: Ipv4Addr,
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub end: Ipv4Addr,
}

#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Network {
    pub id: i64,
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub location: Name,
    #[cfg_attr(feature = "openapi", schema(value_type = String, example = "192.0.2.0/24"))]
    pub cidr: Ipv4Net,
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>))]
    pub gateway: Option<Ipv4Addr>,
    #[cfg_attr(feature = "openapi", schema(value_type = Vec<String>))]
    pub nameservers: Vec<Ipv4Addr>,
    pub domain: Option<String>,
    pub pool: Option<Pool>,
    /// Options added to the network's replies (NTP, domain search, MTU...).
    pub dhcp_options: Vec<crate::dhcp::options::DhcpOptionSetting>,
    pub description: String,
    #[serde(with = "time::serde::rfc3339")]
    #[cfg_attr(feature = "openapi", schema(value_type = String, format = DateTime))]
    pub created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    #[cfg_attr(feature = "openapi", schema(value_type = String, format = DateTime))]
    pub updated_at: OffsetDateTime,
}

#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Label {
    pub id: i64,
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub name: Name,
    pub description: String,
}

#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Credential {
    pub id: i64,
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub name: Name,
    pub username: String,
    pub description: String,
    #[serde(with = "time::serde::rfc3339")]
    #[cfg_attr(feature = "openapi", schema(value_type = String, format = DateTime))]
    pub created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    #[cfg_attr(feature = "openapi", schema(value_type = String, format = DateTime))]
    pub updated_at: OffsetDateTime,
}

/// How the daemon reaches a server's BMC. The password itself stays in the
/// store, encrypted; `password_set` says whether there is one.
#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Bmc {
    pub host: Option<String>,
    pub port: u16,
    pub username: Option<String>,
    pub password_set: bool,
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>))]
    pub credential: Option<Name>,
    pub driver: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Interface {
    pub id: i64,
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub server: Fqdn,
    pub name: String,
    #[cfg_attr(feature = "openapi", schema(value_type = String, example = "52:54:00:12:34:56"))]
    pub mac: MacAddr,
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>))]
    pub ipv4: Option<Ipv4Addr>,
    pub network_id: Option<i64>,
}

#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Server {
    pub id: i64,
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub fqdn: Fqdn,
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub location: Name,
    pub serial: String,
    pub notes: String,
    #[cfg_attr(feature = "openapi", schema(value_type = Vec<String>))]
    pub labels: Vec<Name>,
    pub bmc: Bmc,
    pub interfaces: Vec<Interface>,
    #[serde(with = "time::serde::rfc3339")]
    #[cfg_attr(feature = "openapi", schema(value_type = String, format = DateTime))]
    pub created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    #[cfg_attr(feature = "openapi", schema(value_type = String, format = DateTime))]
    pub updated_at: OffsetDateTime,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct User {
    pub id: i64,
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub name: Name,
    pub email: String,
    pub first_name: String,
    pub last_name: String,
    /// An inactive user's tokens, sessions and password do not work.
    pub is_active: bool,
    pub is_staff: bool,
    #[serde(with = "time::serde::rfc3339")]
    #[cfg_attr(feature = "openapi", schema(value_type = String, format = DateTime))]
    pub created_at: OffsetDateTime,
}

/// A token as listed: never the secret, only its first characters.
#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ApiToken {
    pub id: i64,
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub user: Name,
    pub prefix: String,
    pub scope: TokenScope,
    pub description: String,
    #[serde(with = "time::serde::rfc3339::option")]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>, format = DateTime))]
    pub expires_at: Option<OffsetDateTime>,
    #[serde(with = "time::serde::rfc3339")]
    #[cfg_attr(feature = "openapi", schema(value_type = String, format = DateTime))]
    pub created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339::option")]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>, format = DateTime))]
    pub last_used_at: Option<OffsetDateTime>,
}

#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SshKey {
    pub id: i64,
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub user: Name,
    pub name: String,
    pub key: String,
    #[serde(with = "time::serde::rfc3339")]
    #[cfg_attr(feature = "openapi", schema(value_type = String, format = DateTime))]
    pub created_at: OffsetDateTime,
}
