//! What the store hands out (read models) and takes in (validated inputs).
//! Read models serialize straight into API responses; they never carry a
//! BMC password, only whether one is set.

use std::net::Ipv4Addr;

use ipnet::Ipv4Net;
use serde::Serialize;
use time::OffsetDateTime;

use bootloader_core::model::{Fqdn, MacAddr, Name, Secret, TokenScope};
pub use bootloader_core::published::inventory::{
    ApiToken, Bmc, Credential, Interface, Label, Location, Network, Pool, Server, SshKey, User,
};

#[derive(Debug, Clone)]
pub struct NewLocation {
    pub name: Name,
    pub description: String,
}

#[derive(Debug, Clone, Default)]
pub struct LocationPatch {
    pub name: Option<Name>,
    pub description: Option<String>,
}

/// A network as it will be written: every field, validated together.
#[derive(Debug, Clone)]
pub struct NetworkSpec {
    pub location: Name,
    pub cidr: Ipv4Net,
    pub gateway: Option<Ipv4Addr>,
    pub nameservers: Vec<Ipv4Addr>,
    pub domain: Option<String>,
    pub pool: Option<Pool>,
    pub dhcp_options: Vec<bootloader_core::dhcp::options::DhcpOptionSetting>,
    pub description: String,
}

#[derive(Debug, Clone)]
pub struct CredentialSpec {
    pub name: Name,
    pub username: String,
    pub description: String,
    /// `None` keeps the stored password (updates only).
    pub password: Option<Secret>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InterfaceSpec {
    pub name: String,
    pub mac: MacAddr,
    pub ipv4: Option<Ipv4Addr>,
}

/// BMC settings to write. `password: None` keeps what is stored on update;
/// `Some("")` clears it.
#[derive(Debug, Clone, Default)]
pub struct BmcSpec {
    pub host: Option<String>,
    pub port: u16,
    pub username: Option<String>,
    pub password: Option<Secret>,
    pub credential: Option<Name>,
    pub driver: Option<String>,
}

/// A whole server as it will be written (create, or replace on update).
/// When `interfaces` is `None` on update, the interfaces are left alone.
#[derive(Debug, Clone)]
pub struct ServerSpec {
    pub fqdn: Fqdn,
    pub location: Name,
    pub serial: String,
    pub notes: String,
    pub labels: Vec<Name>,
    pub bmc: BmcSpec,
    pub interfaces: Option<Vec<InterfaceSpec>>,
}

#[derive(Debug, Clone, Default)]
pub struct ServerFilter {
    pub location: Option<Name>,
    pub label: Option<Name>,
    /// Part of the FQDN, the serial or an interface's MAC, any case.
    pub search: Option<String>,
    /// The state of the server's latest deployment.
    pub deployment_state: Option<bootloader_core::model::DeploymentState>,
}

/// What `InventoryStore::key_of` looks up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Keyed {
    Location,
    Label,
    Server,
    User,
}

/// A secret attached to a server by name, opened: for staff only.
#[derive(Debug, Clone)]
pub struct ServerSecret {
    pub id: i64,
    pub server_id: i64,
    pub server: Fqdn,
    pub name: String,
    pub data: Secret,
    pub created_at: OffsetDateTime,
}

#[derive(Debug, Clone)]
pub struct UserSpec {
    pub name: Name,
    pub email: String,
    pub first_name: String,
    pub last_name: String,
    /// An inactive user's tokens, sessions and password do not work.
    pub is_active: bool,
    pub is_staff: bool,
}

#[derive(Debug, Clone)]
pub struct NewApiToken {
    pub user: Name,
    pub hash: bootloader_core::model::TokenHash,
    pub prefix: String,
    pub scope: TokenScope,
    pub description: String,
    pub expires_at: Option<OffsetDateTime>,
}

/// Who a valid token or console session belongs to, and what it may do.
#[derive(Debug, Clone)]
pub struct Principal {
    pub user_id: i64,
    pub user: Name,
    pub is_staff: bool,
    pub by: SignedInBy,
    pub scope: TokenScope,
}

/// How a principal proved who they are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SignedInBy {
    /// An API token, by its id.
    Token(i64),
    /// A web console session, by its id.
    Session(i64),
    /// The user's password, with each request (HTTP Basic on the older
    /// API).
    Password,
}

/// A console session to open.
#[derive(Debug, Clone)]
pub struct NewSession {
    pub user: Name,
    /// The SHA-256 of the secret in the browser's cookie.
    pub hash: bootloader_core::model::TokenHash,
    /// Where the sign-in came from (the peer's address).
    pub source: String,
    pub expires_at: OffsetDateTime,
}

/// An open console session, as a request finds it.
#[derive(Debug, Clone)]
pub struct ConsoleSession {
    pub id: i64,
    /// Its user, with a scope of `write` for staff and `read` for others.
    pub principal: Principal,
    pub email: String,
    /// The user's own theme, if they chose one.
    pub theme: Option<bootloader_core::model::Theme>,
    pub source: String,
    pub created_at: OffsetDateTime,
    pub seen_at: OffsetDateTime,
    pub expires_at: OffsetDateTime,
}

/// A stored profile: its YAML exactly as uploaded, immutable.
#[derive(Debug, Clone)]
pub struct StoredProfile {
    pub id: i64,
    pub name: String,
    pub version: String,
    pub source: String,
    pub action_count: u64,
    pub created_at: OffsetDateTime,
}

#[derive(Debug, Clone, Default)]
pub struct ProfileFilter {
    pub name: Option<String>,
    pub version: Option<String>,
}

/// A window of a list.
#[derive(Debug, Clone, Copy)]
pub struct Page {
    pub limit: u32,
    pub offset: u64,
}

/// One page of results and the total count.
#[derive(Debug, Clone)]
pub struct Listing<T> {
    pub total: u64,
    pub items: Vec<T>,
}

/// An event written to the outbox with the change that caused it.
#[derive(Debug, Clone, Serialize)]
pub struct OutboxEvent {
    pub id: i64,
    /// The publish number the relay gave it (see `pending_events`): what
    /// consumers see as the event's id. None where it is not published.
    pub seq: Option<i64>,
    pub routing_key: String,
    pub payload: serde_json::Value,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
}

/// Counts read at each metrics scrape.
#[derive(Debug, Clone, Default)]
pub struct Gauges {
    /// (state, deployments in it).
    pub deployments: Vec<(String, i64)>,
    /// (network CIDR, addresses held).
    pub leases: Vec<(String, i64)>,
}
