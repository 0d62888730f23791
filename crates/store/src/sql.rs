//! What the SQL in `backend/` (compiled once per backend) shares and is
//! compiled only once: the row types it reads into and their conversions
//! to the store's types. The statements use `$n` placeholders, which
//! SQLite and PostgreSQL both accept; types that differ (timestamps, JSON,
//! bytes) go through sqlx's encoders, so the statements are the same.

use std::net::Ipv4Addr;
use std::str::FromStr;

use super::{Result, StoreError};

/// Parses a value read back from the database.
pub(super) fn stored<T: FromStr>(value: &str, what: &str) -> Result<T> {
    value
        .parse()
        .map_err(|_| StoreError::Corrupt(format!("stored {what} {value:?} does not parse")))
}

pub(super) fn join_addrs(addrs: &[Ipv4Addr]) -> String {
    addrs
        .iter()
        .map(|a| a.to_string())
        .collect::<Vec<_>>()
        .join(",")
}

pub(super) fn split_addrs(s: &str) -> Result<Vec<Ipv4Addr>> {
    s.split(',')
        .filter(|p| !p.is_empty())
        .map(|p| stored(p, "nameserver"))
        .collect()
}

/// Row types shared by both backends.
pub(super) mod rows {
    use time::OffsetDateTime;

    #[derive(sqlx::FromRow)]
    pub struct LocationRow {
        pub id: i64,
        pub name: String,
        pub description: String,
        pub created_at: OffsetDateTime,
        pub updated_at: OffsetDateTime,
    }

    #[derive(sqlx::FromRow)]
    pub struct NetworkRow {
        pub id: i64,
        pub location: String,
        pub cidr: String,
        pub gateway: Option<String>,
        pub nameservers: String,
        pub domain: Option<String>,
        pub pool_start: Option<String>,
        pub pool_end: Option<String>,
        pub dhcp_options: String,
        pub description: String,
        pub created_at: OffsetDateTime,
        pub updated_at: OffsetDateTime,
    }

    #[derive(sqlx::FromRow)]
    pub struct LabelRow {
        pub id: i64,
        pub name: String,
        pub description: String,
    }

    #[derive(sqlx::FromRow)]
    pub struct CredentialRow {
        pub id: i64,
        pub name: String,
        pub username: String,
        pub description: String,
        pub created_at: OffsetDateTime,
        pub updated_at: OffsetDateTime,
    }

    #[derive(sqlx::FromRow)]
    pub struct ServerRow {
        pub id: i64,
        pub fqdn: String,
        pub location: String,
        pub serial: String,
        pub notes: String,
        pub bmc_host: Option<String>,
        pub bmc_port: i32,
        pub bmc_username: Option<String>,
        pub bmc_password_set: bool,
        pub bmc_credential: Option<String>,
        pub bmc_driver: Option<String>,
        pub created_at: OffsetDateTime,
        pub updated_at: OffsetDateTime,
    }

    #[derive(sqlx::FromRow)]
    pub struct InterfaceRow {
        pub id: i64,
        pub server_id: i64,
        pub server: String,
        pub name: String,
        pub mac: String,
        pub ipv4: Option<String>,
        pub network_id: Option<i64>,
    }

    #[derive(sqlx::FromRow)]
    pub struct ServerLabelRow {
        pub server_id: i64,
        pub name: String,
    }

    #[derive(sqlx::FromRow)]
    pub struct UserRow {
        pub id: i64,
        pub name: String,
        pub email: String,
        pub first_name: String,
        pub last_name: String,
        pub is_active: bool,
        pub is_staff: bool,
        pub created_at: OffsetDateTime,
    }

    #[derive(sqlx::FromRow)]
    pub struct TokenRow {
        pub id: i64,
        pub user_name: String,
        pub prefix: String,
        pub scope: String,
        pub description: String,
        pub expires_at: Option<OffsetDateTime>,
        pub created_at: OffsetDateTime,
        pub last_used_at: Option<OffsetDateTime>,
    }

    #[derive(sqlx::FromRow)]
    pub struct SessionRow {
        pub id: i64,
        pub source: String,
        pub created_at: OffsetDateTime,
        pub seen_at: OffsetDateTime,
        pub expires_at: OffsetDateTime,
        pub user_id: i64,
        pub user_name: String,
        pub email: String,
        pub is_staff: bool,
        pub theme: Option<String>,
    }

    #[derive(sqlx::FromRow)]
    pub struct PrincipalRow {
        pub token_id: i64,
        pub scope: String,
        pub expires_at: Option<OffsetDateTime>,
        pub last_used_at: Option<OffsetDateTime>,
        pub user_id: i64,
        pub user_name: String,
        pub is_staff: bool,
    }

    #[derive(sqlx::FromRow)]
    pub struct SshKeyRow {
        pub id: i64,
        pub user_name: String,
        pub name: String,
        pub key: String,
        pub created_at: OffsetDateTime,
    }

    #[derive(sqlx::FromRow)]
    pub struct ProfileRow {
        pub id: i64,
        pub name: String,
        pub version: String,
        pub source: String,
        pub action_count: i64,
        pub created_at: OffsetDateTime,
    }

    #[derive(sqlx::FromRow)]
    pub struct OutboxRow {
        pub id: i64,
        pub routing_key: String,
        pub payload: sqlx::types::Json<serde_json::Value>,
        pub created_at: OffsetDateTime,
    }

    impl OutboxRow {
        pub fn into_event(self) -> crate::OutboxEvent {
            crate::OutboxEvent {
                id: self.id,
                seq: None,
                routing_key: self.routing_key,
                payload: self.payload.0,
                created_at: self.created_at,
            }
        }
    }
}

pub(super) mod convert {
    use super::rows::*;
    use super::{Result, StoreError, split_addrs, stored};
    use crate::types::*;
    use bootloader_core::dhcp::options::DhcpOptionSetting;

    pub fn location(r: LocationRow) -> Result<Location> {
        Ok(Location {
            id: r.id,
            name: stored(&r.name, "location name")?,
            description: r.description,
            created_at: r.created_at,
            updated_at: r.updated_at,
        })
    }

    pub fn network(r: NetworkRow) -> Result<Network> {
        let pool = match (r.pool_start, r.pool_end) {
            (Some(s), Some(e)) => Some(Pool {
                start: stored(&s, "pool start")?,
                end: stored(&e, "pool end")?,
            }),
            _ => None,
        };
        Ok(Network {
            id: r.id,
            location: stored(&r.location, "location name")?,
            cidr: stored(&r.cidr, "cidr")?,
            gateway: r
                .gateway
                .as_deref()
                .map(|g| stored(g, "gateway"))
                .transpose()?,
            nameservers: split_addrs(&r.nameservers)?,
            domain: r.domain,
            pool,
            dhcp_options: dhcp_options(&r.dhcp_options)?,
            description: r.description,
            created_at: r.created_at,
            updated_at: r.updated_at,
        })
    }

    /// A network's options as stored (`[{"code": 42, "value": "..."}]`),
    /// checked again as they were when written.
    fn dhcp_options(text: &str) -> Result<Vec<DhcpOptionSetting>> {
        #[derive(serde::Deserialize)]
        struct Stored {
            code: u8,
            value: String,
        }
        let stored: Vec<Stored> = serde_json::from_str(text)
            .map_err(|e| StoreError::Corrupt(format!("network DHCP options: {e}")))?;
        stored
            .into_iter()
            .map(|o| {
                DhcpOptionSetting::parse(&o.code.to_string(), &o.value).map_err(|e| {
                    StoreError::Corrupt(format!("network DHCP option {}: {e}", o.code))
                })
            })
            .collect()
    }

    pub fn label(r: LabelRow) -> Result<Label> {
        Ok(Label {
            id: r.id,
            name: stored(&r.name, "label")?,
            description: r.description,
        })
    }

    pub fn credential(r: CredentialRow) -> Result<Credential> {
        Ok(Credential {
            id: r.id,
            name: stored(&r.name, "credential name")?,
            username: r.username,
            description: r.description,
            created_at: r.created_at,
            updated_at: r.updated_at,
        })
    }

    pub fn interface(r: InterfaceRow) -> Result<Interface> {
        Ok(Interface {
            id: r.id,
            server: stored(&r.server, "fqdn")?,
            name: r.name,
            mac: stored(&r.mac, "mac")?,
            ipv4: r.ipv4.as_deref().map(|a| stored(a, "ipv4")).transpose()?,
            network_id: r.network_id,
        })
    }

    pub fn server(
        r: ServerRow,
        labels: &[ServerLabelRow],
        interfaces: &[InterfaceRow],
    ) -> Result<Server> {
        Ok(Server {
            id: r.id,
            fqdn: stored(&r.fqdn, "fqdn")?,
            location: stored(&r.location, "location name")?,
            serial: r.serial,
            notes: r.notes,
            labels: labels
                .iter()
                .filter(|l| l.server_id == r.id)
                .map(|l| stored(&l.name, "label"))
                .collect::<Result<_>>()?,
            bmc: Bmc {
                host: r.bmc_host,
                port: u16::try_from(r.bmc_port)
                    .map_err(|_| crate::StoreError::Corrupt("bmc port".into()))?,
                username: r.bmc_username,
                password_set: r.bmc_password_set,
                credential: r
                    .bmc_credential
                    .as_deref()
                    .map(|c| stored(c, "credential name"))
                    .transpose()?,
                driver: r.bmc_driver,
            },
            interfaces: interfaces
                .iter()
                .filter(|i| i.server_id == r.id)
                .map(|i| {
                    Ok(Interface {
                        id: i.id,
                        server: stored(&i.server, "fqdn")?,
                        name: i.name.clone(),
                        mac: stored(&i.mac, "mac")?,
                        ipv4: i.ipv4.as_deref().map(|a| stored(a, "ipv4")).transpose()?,
                        network_id: i.network_id,
                    })
                })
                .collect::<Result<_>>()?,
            created_at: r.created_at,
            updated_at: r.updated_at,
        })
    }

    pub fn user(r: UserRow) -> Result<User> {
        Ok(User {
            id: r.id,
            name: stored(&r.name, "user name")?,
            email: r.email,
            first_name: r.first_name,
            last_name: r.last_name,
            is_active: r.is_active,
            is_staff: r.is_staff,
            created_at: r.created_at,
        })
    }

    pub fn token(r: TokenRow) -> Result<ApiToken> {
        Ok(ApiToken {
            id: r.id,
            user: stored(&r.user_name, "user name")?,
            prefix: r.prefix,
            scope: r.scope.parse().map_err(crate::StoreError::Corrupt)?,
            description: r.description,
            expires_at: r.expires_at,
            created_at: r.created_at,
            last_used_at: r.last_used_at,
        })
    }

    pub fn ssh_key(r: SshKeyRow) -> Result<SshKey> {
        Ok(SshKey {
            id: r.id,
            user: stored(&r.user_name, "user name")?,
            name: r.name,
            key: r.key,
            created_at: r.created_at,
        })
    }

    pub fn profile(r: ProfileRow) -> StoredProfile {
        StoredProfile {
            id: r.id,
            name: r.name,
            version: r.version,
            source: r.source,
            action_count: r.action_count.max(0) as u64,
            created_at: r.created_at,
        }
    }
}

pub(super) const SERVER_SELECT: &str = "SELECT s.id, s.fqdn, l.name AS location, s.serial, s.notes, \
     s.bmc_host, s.bmc_port, s.bmc_username, \
     (s.bmc_password_encrypted IS NOT NULL) AS bmc_password_set, \
     c.name AS bmc_credential, s.bmc_driver, s.created_at, s.updated_at \
     FROM servers s JOIN locations l ON l.id = s.location_id \
     LEFT JOIN credentials c ON c.id = s.bmc_credential_id";

pub(super) const INTERFACE_SELECT: &str = "SELECT i.id, i.server_id, s.fqdn AS server, i.name, i.mac, i.ipv4, i.network_id \
     FROM interfaces i JOIN servers s ON s.id = i.server_id";

pub(super) const NETWORK_SELECT: &str = "SELECT n.id, l.name AS location, n.cidr, n.gateway, n.nameservers, n.domain, \
     n.pool_start, n.pool_end, n.dhcp_options, n.description, n.created_at, n.updated_at \
     FROM networks n JOIN locations l ON l.id = n.location_id";

pub(super) const TOKEN_SELECT: &str = "SELECT t.id, u.name AS user_name, t.prefix, t.scope, t.description, \
     t.expires_at, t.created_at, t.last_used_at FROM api_tokens t JOIN users u ON u.id = t.user_id";

pub(super) const SSH_KEY_SELECT: &str = "SELECT k.id, u.name AS user_name, k.name, k.key, k.created_at \
     FROM ssh_authorized_keys k JOIN users u ON u.id = k.user_id";

/// The value sealed under the configured key to tell a wrong key at start.
pub(super) const SECRET_CHECK_KEY: &str = "secret_check";
pub(super) const SECRET_CHECK_VALUE: &str = "bootloader secret check";
