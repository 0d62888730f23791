//! The SQL of every store operation, written once and expanded for each
//! backend by `sql_store!`. The text uses `$n` placeholders, which SQLite
//! and PostgreSQL both accept; types that differ (timestamps, JSON, bytes)
//! go through sqlx's encoders, so the statements are the same.

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
    use super::{Result, split_addrs, stored};
    use crate::types::*;

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
            description: r.description,
            created_at: r.created_at,
            updated_at: r.updated_at,
        })
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
     n.pool_start, n.pool_end, n.description, n.created_at, n.updated_at \
     FROM networks n JOIN locations l ON l.id = n.location_id";

pub(super) const TOKEN_SELECT: &str = "SELECT t.id, u.name AS user_name, t.prefix, t.scope, t.description, \
     t.expires_at, t.created_at, t.last_used_at FROM api_tokens t JOIN users u ON u.id = t.user_id";

pub(super) const SSH_KEY_SELECT: &str = "SELECT k.id, u.name AS user_name, k.name, k.key, k.created_at \
     FROM ssh_authorized_keys k JOIN users u ON u.id = k.user_id";

/// The value sealed under the configured key to tell a wrong key at start.
pub(super) const SECRET_CHECK_KEY: &str = "secret_check";
pub(super) const SECRET_CHECK_VALUE: &str = "bootloader secret check";

/// Expands to `impl Store for $store` over the database `$db`. The two
/// literals are the row-lock clauses (`FOR UPDATE`, `FOR SHARE`) that
/// PostgreSQL needs and SQLite, whose writers are serialised by
/// `BEGIN IMMEDIATE`, neither needs nor parses.
macro_rules! sql_store {
    ($store:ident, $db:ty, $for_update:literal, $for_share:literal) => {
        mod store_impl {
            use std::net::Ipv4Addr;

            use async_trait::async_trait;
            use sqlx::{Acquire, Connection as _};
            use time::OffsetDateTime;

            use super::$store;
            use bootloader_core::model::{Fqdn, Name, Secret, TokenHash};
            use crate::sql::rows::*;
            use crate::sql::*;
            use crate::types::*;
            use crate::{
                InventoryStore, OutboxStore, ProfileStore, Result, SecretCipher, Store, StoreError,
                UserStore,
            };

            type Conn = <$db as sqlx::Database>::Connection;

            fn now() -> OffsetDateTime {
                OffsetDateTime::now_utc()
            }

            async fn emit(
                conn: &mut Conn,
                routing_key: &str,
                payload: serde_json::Value,
            ) -> Result<()> {
                sqlx::query(
                    "INSERT INTO outbox (routing_key, payload, created_at) VALUES ($1, $2, $3)",
                )
                .bind(routing_key)
                .bind(sqlx::types::Json(payload))
                .bind(now())
                .execute(&mut *conn)
                .await?;
                Ok(())
            }

            fn event<T: serde::Serialize>(value: &T) -> serde_json::Value {
                serde_json::to_value(value).unwrap_or(serde_json::Value::Null)
            }

            async fn count(conn: &mut Conn, sql: &'static str) -> Result<u64> {
                let n: i64 = sqlx::query_scalar(sql).fetch_one(&mut *conn).await?;
                Ok(n.max(0) as u64)
            }

            async fn location_id(conn: &mut Conn, name: &Name, field: &str) -> Result<i64> {
                sqlx::query_scalar("SELECT id FROM locations WHERE name = $1")
                    .bind(name.as_str())
                    .fetch_optional(&mut *conn)
                    .await?
                    .ok_or_else(|| {
                        StoreError::invalid(field, format!("location {name:?} does not exist"))
                    })
            }

            async fn user_id(conn: &mut Conn, name: &Name) -> Result<i64> {
                sqlx::query_scalar("SELECT id FROM users WHERE name = $1")
                    .bind(name.as_str())
                    .fetch_optional(&mut *conn)
                    .await?
                    .ok_or_else(|| StoreError::not_found("user", name))
            }

            async fn fetch_location(conn: &mut Conn, name: &Name) -> Result<Location> {
                let row: Option<LocationRow> = sqlx::query_as(
                    "SELECT id, name, description, created_at, updated_at FROM locations WHERE name = $1",
                )
                .bind(name.as_str())
                .fetch_optional(&mut *conn)
                .await?;
                convert::location(row.ok_or_else(|| StoreError::not_found("location", name))?)
            }

            async fn fetch_network(conn: &mut Conn, id: i64) -> Result<Network> {
                let row: Option<NetworkRow> =
                    sqlx::query_as(sqlx::AssertSqlSafe(format!("{NETWORK_SELECT} WHERE n.id = $1")))
                        .bind(id)
                        .fetch_optional(&mut *conn)
                        .await?;
                convert::network(row.ok_or_else(|| StoreError::not_found("network", id))?)
            }

            async fn fetch_label(conn: &mut Conn, name: &Name) -> Result<Label> {
                let row: Option<LabelRow> =
                    sqlx::query_as("SELECT id, name, description FROM labels WHERE name = $1")
                        .bind(name.as_str())
                        .fetch_optional(&mut *conn)
                        .await?;
                convert::label(row.ok_or_else(|| StoreError::not_found("label", name))?)
            }

            async fn fetch_credential(conn: &mut Conn, name: &Name) -> Result<Credential> {
                let row: Option<CredentialRow> = sqlx::query_as(
                    "SELECT id, name, username, description, created_at, updated_at FROM credentials WHERE name = $1",
                )
                .bind(name.as_str())
                .fetch_optional(&mut *conn)
                .await?;
                convert::credential(row.ok_or_else(|| StoreError::not_found("credential", name))?)
            }

            async fn fetch_interface(conn: &mut Conn, id: i64) -> Result<Interface> {
                let row: Option<InterfaceRow> =
                    sqlx::query_as(sqlx::AssertSqlSafe(format!("{INTERFACE_SELECT} WHERE i.id = $1")))
                        .bind(id)
                        .fetch_optional(&mut *conn)
                        .await?;
                convert::interface(row.ok_or_else(|| StoreError::not_found("interface", id))?)
            }

            /// Loads servers with their labels and interfaces. `rows` are in
            /// id order, so their labels and interfaces lie in one id range.
            async fn with_details(conn: &mut Conn, rows: Vec<ServerRow>) -> Result<Vec<Server>> {
                let (Some(first), Some(last)) = (rows.first(), rows.last()) else {
                    return Ok(Vec::new());
                };
                let (lo, hi) = (first.id.min(last.id), first.id.max(last.id));
                let labels: Vec<ServerLabelRow> = sqlx::query_as(
                    "SELECT sl.server_id, lb.name FROM server_labels sl JOIN labels lb ON lb.id = sl.label_id \
                     WHERE sl.server_id BETWEEN $1 AND $2 ORDER BY lb.name",
                )
                .bind(lo)
                .bind(hi)
                .fetch_all(&mut *conn)
                .await?;
                let interfaces: Vec<InterfaceRow> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
                    "{INTERFACE_SELECT} WHERE i.server_id BETWEEN $1 AND $2 ORDER BY i.name, i.id"
                )))
                .bind(lo)
                .bind(hi)
                .fetch_all(&mut *conn)
                .await?;
                rows.into_iter()
                    .map(|r| convert::server(r, &labels, &interfaces))
                    .collect()
            }

            async fn fetch_server(conn: &mut Conn, fqdn: &Fqdn) -> Result<Server> {
                let row: Option<ServerRow> =
                    sqlx::query_as(sqlx::AssertSqlSafe(format!("{SERVER_SELECT} WHERE s.fqdn = $1")))
                        .bind(fqdn.as_str())
                        .fetch_optional(&mut *conn)
                        .await?;
                let row = row.ok_or_else(|| StoreError::not_found("server", fqdn))?;
                with_details(conn, vec![row])
                    .await?
                    .pop()
                    .ok_or_else(|| StoreError::not_found("server", fqdn))
            }

            async fn fetch_user(conn: &mut Conn, name: &Name) -> Result<User> {
                let row: Option<UserRow> = sqlx::query_as(
                    "SELECT id, name, email, is_staff, created_at FROM users WHERE name = $1",
                )
                .bind(name.as_str())
                .fetch_optional(&mut *conn)
                .await?;
                convert::user(row.ok_or_else(|| StoreError::not_found("user", name))?)
            }

            async fn fetch_ssh_key(conn: &mut Conn, id: i64) -> Result<SshKey> {
                let row: Option<SshKeyRow> =
                    sqlx::query_as(sqlx::AssertSqlSafe(format!("{SSH_KEY_SELECT} WHERE k.id = $1")))
                        .bind(id)
                        .fetch_optional(&mut *conn)
                        .await?;
                convert::ssh_key(row.ok_or_else(|| StoreError::not_found("ssh key", id))?)
            }

            fn limit(page: Page) -> (i64, i64) {
                (i64::from(page.limit), page.offset.min(i64::MAX as u64) as i64)
            }

            /// Checks a network spec against the other networks of its location.
            async fn check_network(conn: &mut Conn, spec: &NetworkSpec, id: Option<i64>) -> Result<i64> {
                // Lock the location so that two overlapping networks cannot
                // be checked and written side by side.
                let location: i64 = sqlx::query_scalar(concat!("SELECT id FROM locations WHERE name = $1", $for_update))
                    .bind(spec.location.as_str())
                    .fetch_optional(&mut *conn)
                    .await?
                    .ok_or_else(|| StoreError::invalid("location", format!("location {:?} does not exist", spec.location)))?;
                let others: Vec<(i64, String)> = sqlx::query_as(
                    "SELECT id, cidr FROM networks WHERE location_id = $1",
                )
                .bind(location)
                .fetch_all(&mut *conn)
                .await?;
                for (other_id, cidr) in others {
                    if Some(other_id) == id {
                        continue;
                    }
                    let other: ipnet::Ipv4Net = stored(&cidr, "cidr")?;
                    if other.contains(&spec.cidr.network()) || spec.cidr.contains(&other.network()) {
                        return Err(StoreError::conflict(
                            "cidr",
                            format!("overlaps network {other_id} ({other}) in location {}", spec.location),
                        ));
                    }
                }
                Ok(location)
            }

            /// Resolves labels by name; every one must exist.
            async fn label_ids(conn: &mut Conn, labels: &[Name]) -> Result<Vec<i64>> {
                let mut ids = Vec::with_capacity(labels.len());
                for (i, name) in labels.iter().enumerate() {
                    let id: Option<i64> = sqlx::query_scalar("SELECT id FROM labels WHERE name = $1")
                        .bind(name.as_str())
                        .fetch_optional(&mut *conn)
                        .await?;
                    ids.push(id.ok_or_else(|| {
                        StoreError::invalid(format!("labels[{i}]"), format!("label {name:?} does not exist"))
                    })?);
                }
                Ok(ids)
            }

            /// Checks, under a shared lock on the check value, that `cipher` is
            /// the key the database uses, so that nothing is sealed under a key
            /// that `rotate-secret` has replaced in the meantime.
            pub(super) async fn check_current_key(conn: &mut Conn, cipher: &SecretCipher) -> Result<()> {
                let value: Option<String> =
                    sqlx::query_scalar(concat!("SELECT value FROM settings WHERE key = $1", $for_share))
                        .bind(SECRET_CHECK_KEY)
                        .fetch_optional(&mut *conn)
                        .await?;
                if let Some(hex_value) = value {
                    let sealed = hex::decode(&hex_value)
                        .map_err(|_| StoreError::Corrupt("secret check value".into()))?;
                    cipher.open(&sealed)?;
                }
                Ok(())
            }

            /// Finds the network of `location` that holds `ip`, and checks the
            /// address is usable by a host and not taken by another interface.
            async fn place_address(
                conn: &mut Conn,
                location: i64,
                ip: Ipv4Addr,
                interface_id: Option<i64>,
                field: &str,
            ) -> Result<i64> {
                let nets: Vec<(i64, String, Option<String>, Option<String>, Option<String>)> = sqlx::query_as(
                    "SELECT id, cidr, gateway, pool_start, pool_end FROM networks WHERE location_id = $1 ORDER BY id",
                )
                .bind(location)
                .fetch_all(&mut *conn)
                .await?;
                for (id, cidr, gateway, pool_start, pool_end) in nets {
                    let net: ipnet::Ipv4Net = stored(&cidr, "cidr")?;
                    if !net.contains(&ip) {
                        continue;
                    }
                    if net.prefix_len() < 31 && (ip == net.network() || ip == net.broadcast()) {
                        return Err(StoreError::invalid(
                            field,
                            format!("{ip} is the network or broadcast address of {net}"),
                        ));
                    }
                    if gateway.as_deref() == Some(ip.to_string().as_str()) {
                        return Err(StoreError::invalid(field, format!("{ip} is the gateway of {net}")));
                    }
                    if let (Some(start), Some(end)) = (&pool_start, &pool_end) {
                        let (start, end): (Ipv4Addr, Ipv4Addr) = (stored(start, "pool start")?, stored(end, "pool end")?);
                        if start <= ip && ip <= end {
                            return Err(StoreError::invalid(
                                field,
                                format!("{ip} is inside the DHCP pool {start}-{end} of {net}; fixed addresses must lie outside it"),
                            ));
                        }
                    }
                    let holder: Option<(i64, String, String)> = sqlx::query_as(
                        "SELECT i.id, i.mac, s.fqdn FROM interfaces i JOIN servers s ON s.id = i.server_id \
                         WHERE i.network_id = $1 AND i.ipv4 = $2",
                    )
                    .bind(id)
                    .bind(ip.to_string())
                    .fetch_optional(&mut *conn)
                    .await?;
                    if let Some((other_id, other_mac, fqdn)) = holder
                        && Some(other_id) != interface_id
                    {
                        return Err(StoreError::conflict(
                            field,
                            format!("{ip} is already assigned to {fqdn} ({other_mac})"),
                        ));
                    }
                    return Ok(id);
                }
                Err(StoreError::invalid(
                    field,
                    format!("{ip} is not inside any network of the server's location"),
                ))
            }

            /// Writes one interface of `server_id`: updates the row with the
            /// same MAC or `id`, otherwise inserts.
            async fn put_interface(
                conn: &mut Conn,
                server_id: i64,
                location: i64,
                spec: &InterfaceSpec,
                existing_id: Option<i64>,
                field: &str,
            ) -> Result<i64> {
                let mac = spec.mac.to_string();
                let holder: Option<(i64, i64, String)> = sqlx::query_as(
                    "SELECT i.id, i.server_id, s.fqdn FROM interfaces i JOIN servers s ON s.id = i.server_id WHERE i.mac = $1",
                )
                .bind(&mac)
                .fetch_optional(&mut *conn)
                .await?;
                if let Some((other_id, other_server, fqdn)) = &holder {
                    let same = match existing_id {
                        Some(id) => *other_id == id,
                        None => *other_server == server_id,
                    };
                    if !same {
                        return Err(StoreError::conflict(
                            format!("{field}.mac"),
                            format!("{mac} is already used by {fqdn}"),
                        ));
                    }
                }
                let target = existing_id.or(holder.map(|h| h.0));
                let network = match spec.ipv4 {
                    Some(ip) => Some(place_address(conn, location, ip, target, &format!("{field}.ipv4")).await?),
                    None => None,
                };
                let ts = now();
                let id = match target {
                    Some(id) => {
                        sqlx::query(
                            "UPDATE interfaces SET name = $1, mac = $2, ipv4 = $3, network_id = $4, updated_at = $5 WHERE id = $6",
                        )
                        .bind(&spec.name)
                        .bind(&mac)
                        .bind(spec.ipv4.map(|a| a.to_string()))
                        .bind(network)
                        .bind(ts)
                        .bind(id)
                        .execute(&mut *conn)
                        .await
                        .map_err(|e| name_conflict(e, field, &spec.name))?;
                        id
                    }
                    None => sqlx::query_scalar(
                        "INSERT INTO interfaces (server_id, name, mac, ipv4, network_id, created_at, updated_at) \
                         VALUES ($1, $2, $3, $4, $5, $6, $6) RETURNING id",
                    )
                    .bind(server_id)
                    .bind(&spec.name)
                    .bind(&mac)
                    .bind(spec.ipv4.map(|a| a.to_string()))
                    .bind(network)
                    .bind(ts)
                    .fetch_one(&mut *conn)
                    .await
                    .map_err(|e| name_conflict(e, field, &spec.name))?,
                };
                Ok(id)
            }

            fn name_conflict(e: sqlx::Error, field: &str, name: &str) -> StoreError {
                match StoreError::from(e) {
                    StoreError::Conflict { .. } => StoreError::conflict(
                        format!("{field}.name"),
                        format!("the server already has an interface named {name:?}"),
                    ),
                    other => other,
                }
            }

            /// Writes a server row, its labels and (when given) its
            /// interfaces. `id` is the row to replace, if any.
            async fn put_server(
                conn: &mut Conn,
                cipher: &SecretCipher,
                spec: &ServerSpec,
                id: Option<i64>,
            ) -> Result<i64> {
                let location = location_id(conn, &spec.location, "location").await?;
                let clash: Option<i64> = sqlx::query_scalar("SELECT id FROM servers WHERE fqdn = $1")
                    .bind(spec.fqdn.as_str())
                    .fetch_optional(&mut *conn)
                    .await?;
                if clash.is_some() && clash != id {
                    return Err(StoreError::conflict(
                        "fqdn",
                        format!("a server named {} already exists", spec.fqdn),
                    ));
                }
                let credential: Option<i64> = match &spec.bmc.credential {
                    Some(name) => Some(
                        sqlx::query_scalar("SELECT id FROM credentials WHERE name = $1")
                            .bind(name.as_str())
                            .fetch_optional(&mut *conn)
                            .await?
                            .ok_or_else(|| {
                                StoreError::invalid("bmc.credential", format!("credential {name:?} does not exist"))
                            })?,
                    ),
                    None => None,
                };
                let labels = label_ids(conn, &spec.labels).await?;
                let sealed: Option<Option<Vec<u8>>> = match spec.bmc.password.as_ref().map(Secret::expose) {
                    None => None,
                    Some("") => Some(None),
                    Some(p) => {
                        check_current_key(conn, cipher).await?;
                        Some(Some(cipher.seal(p)?))
                    }
                };
                let ts = now();
                let server_id = match id {
                    None => sqlx::query_scalar(
                        "INSERT INTO servers (fqdn, location_id, serial, notes, bmc_host, bmc_port, bmc_username, \
                         bmc_password_encrypted, bmc_credential_id, bmc_driver, created_at, updated_at) \
                         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $11) RETURNING id",
                    )
                    .bind(spec.fqdn.as_str())
                    .bind(location)
                    .bind(&spec.serial)
                    .bind(&spec.notes)
                    .bind(&spec.bmc.host)
                    .bind(i32::from(spec.bmc.port))
                    .bind(&spec.bmc.username)
                    .bind(sealed.flatten())
                    .bind(credential)
                    .bind(&spec.bmc.driver)
                    .bind(ts)
                    .fetch_one(&mut *conn)
                    .await?,
                    Some(id) => {
                        sqlx::query(
                            "UPDATE servers SET fqdn = $1, location_id = $2, serial = $3, notes = $4, bmc_host = $5, \
                             bmc_port = $6, bmc_username = $7, bmc_credential_id = $8, bmc_driver = $9, updated_at = $10 \
                             WHERE id = $11",
                        )
                        .bind(spec.fqdn.as_str())
                        .bind(location)
                        .bind(&spec.serial)
                        .bind(&spec.notes)
                        .bind(&spec.bmc.host)
                        .bind(i32::from(spec.bmc.port))
                        .bind(&spec.bmc.username)
                        .bind(credential)
                        .bind(&spec.bmc.driver)
                        .bind(ts)
                        .bind(id)
                        .execute(&mut *conn)
                        .await?;
                        if let Some(sealed) = sealed {
                            sqlx::query("UPDATE servers SET bmc_password_encrypted = $1 WHERE id = $2")
                                .bind(sealed)
                                .bind(id)
                                .execute(&mut *conn)
                                .await?;
                        }
                        sqlx::query("DELETE FROM server_labels WHERE server_id = $1")
                            .bind(id)
                            .execute(&mut *conn)
                            .await?;
                        id
                    }
                };
                for label in labels {
                    sqlx::query("INSERT INTO server_labels (server_id, label_id) VALUES ($1, $2)")
                        .bind(server_id)
                        .bind(label)
                        .execute(&mut *conn)
                        .await?;
                }
                if let Some(interfaces) = &spec.interfaces {
                    let keep: Vec<String> = interfaces.iter().map(|i| i.mac.to_string()).collect();
                    let current: Vec<(i64, String)> =
                        sqlx::query_as("SELECT id, mac FROM interfaces WHERE server_id = $1")
                            .bind(server_id)
                            .fetch_all(&mut *conn)
                            .await?;
                    for (iface_id, mac) in current {
                        if !keep.contains(&mac) {
                            sqlx::query("DELETE FROM interfaces WHERE id = $1")
                                .bind(iface_id)
                                .execute(&mut *conn)
                                .await?;
                        }
                    }
                    // Free names and addresses first, so that swapping them
                    // between two interfaces does not trip the unique rules.
                    sqlx::query(
                        "UPDATE interfaces SET name = '~' || mac, ipv4 = NULL, network_id = NULL WHERE server_id = $1",
                    )
                        .bind(server_id)
                        .execute(&mut *conn)
                        .await?;
                    for (i, iface) in interfaces.iter().enumerate() {
                        put_interface(conn, server_id, location, iface, None, &format!("interfaces[{i}]")).await?;
                    }
                }
                Ok(server_id)
            }

            async fn emit_server(conn: &mut Conn, action: &str, fqdn: &Fqdn) -> Result<Server> {
                let server = fetch_server(conn, fqdn).await?;
                emit(conn, &format!("server.{action}"), event(&server)).await?;
                Ok(server)
            }

            #[async_trait]
            impl Store for $store {
                fn backend(&self) -> &'static str {
                    Self::BACKEND
                }

                async fn ping(&self) -> Result<()> {
                    let mut conn = self.pool.acquire().await?;
                    conn.ping().await?;
                    Ok(())
                }

                async fn gauges(&self, now: i64) -> Result<Gauges> {
                    let mut conn = self.pool.acquire().await?;
                    let deployments: Vec<(String, i64)> =
                        sqlx::query_as("SELECT state, COUNT(*) FROM deployments GROUP BY state")
                            .fetch_all(&mut *conn)
                            .await?;
                    let leases: Vec<(String, i64)> = sqlx::query_as(
                        "SELECT n.cidr, COUNT(l.ip) FROM networks n LEFT JOIN leases l ON l.network_id = n.id \
                         AND l.state IN ('offered', 'bound') AND l.expires_at > $1 GROUP BY n.cidr",
                    )
                    .bind(now)
                    .fetch_all(&mut *conn)
                    .await?;
                    Ok(Gauges { deployments, leases })
                }

                async fn verify_secret_key(&self) -> Result<()> {
                    let (_writer, mut tx) = self.begin_write().await?;
                    let check: Option<String> = sqlx::query_scalar("SELECT value FROM settings WHERE key = $1")
                        .bind(SECRET_CHECK_KEY)
                        .fetch_optional(&mut *tx)
                        .await?;
                    match check {
                        Some(hex_value) => {
                            let sealed = hex::decode(&hex_value)
                                .map_err(|_| StoreError::Corrupt("secret check value".into()))?;
                            self.cipher.open(&sealed)?;
                        }
                        None => {
                            let sealed = hex::encode(self.cipher.seal(SECRET_CHECK_VALUE)?);
                            sqlx::query("INSERT INTO settings (key, value) VALUES ($1, $2) ON CONFLICT (key) DO NOTHING")
                                .bind(SECRET_CHECK_KEY)
                                .bind(sealed)
                                .execute(&mut *tx)
                                .await?;
                            // Another daemon may have won the race with its own key.
                            check_current_key(&mut tx, &self.cipher).await?;
                        }
                    }
                    tx.commit().await?;
                    Ok(())
                }

                async fn rotate_secret(&self, new: &SecretCipher) -> Result<u64> {
                    let (_writer, mut tx) = self.begin_write().await?;
                    // Writers that seal a password hold this row shared; taking
                    // it exclusively first means none is half-way through.
                    let _: Option<String> =
                        sqlx::query_scalar(concat!("SELECT value FROM settings WHERE key = $1", $for_update))
                            .bind(SECRET_CHECK_KEY)
                            .fetch_optional(&mut *tx)
                            .await?;
                    let mut n = 0u64;
                    let servers: Vec<(i64, Vec<u8>)> = sqlx::query_as(
                        "SELECT id, bmc_password_encrypted FROM servers WHERE bmc_password_encrypted IS NOT NULL",
                    )
                    .fetch_all(&mut *tx)
                    .await?;
                    for (id, sealed) in servers {
                        let clear = self.cipher.open(&sealed)?;
                        sqlx::query("UPDATE servers SET bmc_password_encrypted = $1 WHERE id = $2")
                            .bind(new.seal(&clear)?)
                            .bind(id)
                            .execute(&mut *tx)
                            .await?;
                        n += 1;
                    }
                    let credentials: Vec<(i64, Vec<u8>)> =
                        sqlx::query_as("SELECT id, password_encrypted FROM credentials")
                            .fetch_all(&mut *tx)
                            .await?;
                    for (id, sealed) in credentials {
                        let clear = self.cipher.open(&sealed)?;
                        sqlx::query("UPDATE credentials SET password_encrypted = $1 WHERE id = $2")
                            .bind(new.seal(&clear)?)
                            .bind(id)
                            .execute(&mut *tx)
                            .await?;
                        n += 1;
                    }
                    // Deployments' callback tokens (templates render them again
                    // after a restart).
                    let tokens: Vec<(i64, Vec<u8>)> =
                        sqlx::query_as("SELECT id, token_sealed FROM deployments WHERE token_sealed IS NOT NULL")
                            .fetch_all(&mut *tx)
                            .await?;
                    for (id, sealed) in tokens {
                        let clear = self.cipher.open(&sealed)?;
                        sqlx::query("UPDATE deployments SET token_sealed = $1 WHERE id = $2")
                            .bind(new.seal(&clear)?)
                            .bind(id)
                            .execute(&mut *tx)
                            .await?;
                        n += 1;
                    }
                    sqlx::query(
                        "INSERT INTO settings (key, value) VALUES ($1, $2) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                    )
                    .bind(SECRET_CHECK_KEY)
                    .bind(hex::encode(new.seal(SECRET_CHECK_VALUE)?))
                    .execute(&mut *tx)
                    .await?;
                    tx.commit().await?;
                    Ok(n)
                }
            }

            #[async_trait]
            impl InventoryStore for $store {
                async fn create_location(&self, new: NewLocation) -> Result<Location> {
                    let (_writer, mut tx) = self.begin_write().await?;
                    let exists: Option<i64> = sqlx::query_scalar("SELECT id FROM locations WHERE name = $1")
                        .bind(new.name.as_str())
                        .fetch_optional(&mut *tx)
                        .await?;
                    if exists.is_some() {
                        return Err(StoreError::conflict("name", format!("location {} already exists", new.name)));
                    }
                    let ts = now();
                    sqlx::query(
                        "INSERT INTO locations (name, description, created_at, updated_at) VALUES ($1, $2, $3, $3)",
                    )
                    .bind(new.name.as_str())
                    .bind(&new.description)
                    .bind(ts)
                    .execute(&mut *tx)
                    .await?;
                    let location = fetch_location(&mut tx, &new.name).await?;
                    emit(&mut tx, "location.created", event(&location)).await?;
                    tx.commit().await?;
                    Ok(location)
                }

                async fn location(&self, name: &Name) -> Result<Location> {
                    let mut conn = self.pool.acquire().await?;
                    fetch_location(&mut conn, name).await
                }

                async fn list_locations(&self, page: Page) -> Result<Listing<Location>> {
                    let mut conn = self.pool.acquire().await?;
                    let total = count(&mut conn, "SELECT COUNT(*) FROM locations").await?;
                    let (limit, offset) = limit(page);
                    let rows: Vec<LocationRow> = sqlx::query_as(
                        "SELECT id, name, description, created_at, updated_at FROM locations ORDER BY name LIMIT $1 OFFSET $2",
                    )
                    .bind(limit)
                    .bind(offset)
                    .fetch_all(&mut *conn)
                    .await?;
                    let items = rows.into_iter().map(convert::location).collect::<Result<_>>()?;
                    Ok(Listing { total, items })
                }

                async fn update_location(&self, name: &Name, patch: LocationPatch) -> Result<Location> {
                    let (_writer, mut tx) = self.begin_write().await?;
                    let current = fetch_location(&mut tx, name).await?;
                    let new_name = patch.name.unwrap_or(current.name);
                    if &new_name != name {
                        let exists: Option<i64> = sqlx::query_scalar("SELECT id FROM locations WHERE name = $1")
                            .bind(new_name.as_str())
                            .fetch_optional(&mut *tx)
                            .await?;
                        if exists.is_some() {
                            return Err(StoreError::conflict("name", format!("location {new_name} already exists")));
                        }
                    }
                    sqlx::query("UPDATE locations SET name = $1, description = $2, updated_at = $3 WHERE id = $4")
                        .bind(new_name.as_str())
                        .bind(patch.description.unwrap_or(current.description))
                        .bind(now())
                        .bind(current.id)
                        .execute(&mut *tx)
                        .await?;
                    let location = fetch_location(&mut tx, &new_name).await?;
                    emit(&mut tx, "location.updated", event(&location)).await?;
                    tx.commit().await?;
                    Ok(location)
                }

                async fn delete_location(&self, name: &Name) -> Result<()> {
                    let (_writer, mut tx) = self.begin_write().await?;
                    let location = fetch_location(&mut tx, name).await?;
                    let servers = count_where(&mut tx, "SELECT COUNT(*) FROM servers WHERE location_id = $1", location.id).await?;
                    let networks = count_where(&mut tx, "SELECT COUNT(*) FROM networks WHERE location_id = $1", location.id).await?;
                    if servers + networks > 0 {
                        return Err(StoreError::InUse(format!(
                            "location {name} still has {servers} server(s) and {networks} network(s)"
                        )));
                    }
                    sqlx::query("DELETE FROM locations WHERE id = $1").bind(location.id).execute(&mut *tx).await?;
                    emit(&mut tx, "location.deleted", event(&location)).await?;
                    tx.commit().await?;
                    Ok(())
                }

                async fn create_network(&self, spec: NetworkSpec) -> Result<Network> {
                    let (_writer, mut tx) = self.begin_write().await?;
                    let location = check_network(&mut tx, &spec, None).await?;
                    let ts = now();
                    let id: i64 = sqlx::query_scalar(
                        "INSERT INTO networks (location_id, cidr, gateway, nameservers, domain, pool_start, pool_end, \
                         description, created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $9) RETURNING id",
                    )
                    .bind(location)
                    .bind(spec.cidr.to_string())
                    .bind(spec.gateway.map(|g| g.to_string()))
                    .bind(join_addrs(&spec.nameservers))
                    .bind(&spec.domain)
                    .bind(spec.pool.map(|p| p.start.to_string()))
                    .bind(spec.pool.map(|p| p.end.to_string()))
                    .bind(&spec.description)
                    .bind(ts)
                    .fetch_one(&mut *tx)
                    .await?;
                    let network = fetch_network(&mut tx, id).await?;
                    emit(&mut tx, "network.created", event(&network)).await?;
                    tx.commit().await?;
                    Ok(network)
                }

                async fn network(&self, id: i64) -> Result<Network> {
                    let mut conn = self.pool.acquire().await?;
                    fetch_network(&mut conn, id).await
                }

                async fn list_networks(&self, location: Option<&Name>, page: Page) -> Result<Listing<Network>> {
                    let mut conn = self.pool.acquire().await?;
                    let loc = location.map(|l| l.as_str().to_string());
                    let total: i64 = sqlx::query_scalar(
                        "SELECT COUNT(*) FROM networks n JOIN locations l ON l.id = n.location_id \
                         WHERE ($1 IS NULL OR l.name = $1)",
                    )
                    .bind(&loc)
                    .fetch_one(&mut *conn)
                    .await?;
                    let (limit, offset) = limit(page);
                    let rows: Vec<NetworkRow> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
                        "{NETWORK_SELECT} WHERE ($1 IS NULL OR l.name = $1) ORDER BY n.id LIMIT $2 OFFSET $3"
                    )))
                    .bind(&loc)
                    .bind(limit)
                    .bind(offset)
                    .fetch_all(&mut *conn)
                    .await?;
                    let items = rows.into_iter().map(convert::network).collect::<Result<_>>()?;
                    Ok(Listing { total: total.max(0) as u64, items })
                }

                async fn update_network(&self, id: i64, spec: NetworkSpec, read_at: OffsetDateTime) -> Result<Network> {
                    let (_writer, mut tx) = self.begin_write().await?;
                    let before = fetch_network(&mut tx, id).await?;
                    // Lock the row (PostgreSQL) so that the check holds until commit.
                    let locked: OffsetDateTime = sqlx::query_scalar(concat!(
                        "SELECT updated_at FROM networks WHERE id = $1", $for_update
                    ))
                    .bind(id)
                    .fetch_one(&mut *tx)
                    .await?;
                    if locked != read_at || before.updated_at != read_at {
                        return Err(StoreError::Stale { what: "network", key: id.to_string() });
                    }
                    let location = check_network(&mut tx, &spec, Some(id)).await?;
                    // Fixed addresses already placed in this network must stay inside it.
                    let placed: Vec<(String, String)> = sqlx::query_as(
                        "SELECT i.ipv4, s.fqdn FROM interfaces i JOIN servers s ON s.id = i.server_id \
                         WHERE i.network_id = $1 AND i.ipv4 IS NOT NULL",
                    )
                    .bind(id)
                    .fetch_all(&mut *tx)
                    .await?;
                    for (ip, fqdn) in placed {
                        let ip: Ipv4Addr = stored(&ip, "ipv4")?;
                        if !spec.cidr.contains(&ip) || before.location != spec.location {
                            return Err(StoreError::conflict(
                                "cidr",
                                format!("{fqdn} has the fixed address {ip} in this network; move it first"),
                            ));
                        }
                        if let Some(pool) = spec.pool
                            && pool.start <= ip
                            && ip <= pool.end
                        {
                            return Err(StoreError::conflict(
                                "pool",
                                format!("the pool would cover {fqdn}'s fixed address {ip}"),
                            ));
                        }
                    }
                    sqlx::query(
                        "UPDATE networks SET location_id = $1, cidr = $2, gateway = $3, nameservers = $4, domain = $5, \
                         pool_start = $6, pool_end = $7, description = $8, updated_at = $9 WHERE id = $10",
                    )
                    .bind(location)
                    .bind(spec.cidr.to_string())
                    .bind(spec.gateway.map(|g| g.to_string()))
                    .bind(join_addrs(&spec.nameservers))
                    .bind(&spec.domain)
                    .bind(spec.pool.map(|p| p.start.to_string()))
                    .bind(spec.pool.map(|p| p.end.to_string()))
                    .bind(&spec.description)
                    .bind(now())
                    .bind(id)
                    .execute(&mut *tx)
                    .await?;
                    let network = fetch_network(&mut tx, id).await?;
                    emit(&mut tx, "network.updated", event(&network)).await?;
                    tx.commit().await?;
                    Ok(network)
                }

                async fn delete_network(&self, id: i64) -> Result<()> {
                    let (_writer, mut tx) = self.begin_write().await?;
                    let network = fetch_network(&mut tx, id).await?;
                    let used = count_where(&mut tx, "SELECT COUNT(*) FROM interfaces WHERE network_id = $1", id).await?;
                    if used > 0 {
                        return Err(StoreError::InUse(format!(
                            "network {id} ({}) still holds {used} interface address(es)",
                            network.cidr
                        )));
                    }
                    sqlx::query("DELETE FROM networks WHERE id = $1").bind(id).execute(&mut *tx).await?;
                    emit(&mut tx, "network.deleted", event(&network)).await?;
                    tx.commit().await?;
                    Ok(())
                }

                async fn create_label(&self, name: &Name, description: &str) -> Result<Label> {
                    let (_writer, mut tx) = self.begin_write().await?;
                    if fetch_label(&mut tx, name).await.is_ok() {
                        return Err(StoreError::conflict("name", format!("label {name} already exists")));
                    }
                    sqlx::query("INSERT INTO labels (name, description, created_at) VALUES ($1, $2, $3)")
                        .bind(name.as_str())
                        .bind(description)
                        .bind(now())
                        .execute(&mut *tx)
                        .await?;
                    let label = fetch_label(&mut tx, name).await?;
                    emit(&mut tx, "label.created", event(&label)).await?;
                    tx.commit().await?;
                    Ok(label)
                }

                async fn label(&self, name: &Name) -> Result<Label> {
                    let mut conn = self.pool.acquire().await?;
                    fetch_label(&mut conn, name).await
                }

                async fn list_labels(&self, page: Page) -> Result<Listing<Label>> {
                    let mut conn = self.pool.acquire().await?;
                    let total = count(&mut conn, "SELECT COUNT(*) FROM labels").await?;
                    let (limit, offset) = limit(page);
                    let rows: Vec<LabelRow> = sqlx::query_as(
                        "SELECT id, name, description FROM labels ORDER BY name LIMIT $1 OFFSET $2",
                    )
                    .bind(limit)
                    .bind(offset)
                    .fetch_all(&mut *conn)
                    .await?;
                    let items = rows.into_iter().map(convert::label).collect::<Result<_>>()?;
                    Ok(Listing { total, items })
                }

                async fn update_label(&self, name: &Name, new_name: &Name, description: &str) -> Result<Label> {
                    let (_writer, mut tx) = self.begin_write().await?;
                    let current = fetch_label(&mut tx, name).await?;
                    if new_name != name && fetch_label(&mut tx, new_name).await.is_ok() {
                        return Err(StoreError::conflict("name", format!("label {new_name} already exists")));
                    }
                    sqlx::query("UPDATE labels SET name = $1, description = $2 WHERE id = $3")
                        .bind(new_name.as_str())
                        .bind(description)
                        .bind(current.id)
                        .execute(&mut *tx)
                        .await?;
                    let label = fetch_label(&mut tx, new_name).await?;
                    emit(&mut tx, "label.updated", event(&label)).await?;
                    tx.commit().await?;
                    Ok(label)
                }

                async fn delete_label(&self, name: &Name) -> Result<()> {
                    let (_writer, mut tx) = self.begin_write().await?;
                    let label = fetch_label(&mut tx, name).await?;
                    let used = count_where(&mut tx, "SELECT COUNT(*) FROM server_labels WHERE label_id = $1", label.id).await?;
                    if used > 0 {
                        return Err(StoreError::InUse(format!("label {name} is still on {used} server(s)")));
                    }
                    sqlx::query("DELETE FROM labels WHERE id = $1").bind(label.id).execute(&mut *tx).await?;
                    emit(&mut tx, "label.deleted", event(&label)).await?;
                    tx.commit().await?;
                    Ok(())
                }

                async fn create_credential(&self, spec: CredentialSpec) -> Result<Credential> {
                    let Some(password) = spec.password.as_ref().map(Secret::expose) else {
                        return Err(StoreError::invalid("password", "is required"));
                    };
                    let (_writer, mut tx) = self.begin_write().await?;
                    if fetch_credential(&mut tx, &spec.name).await.is_ok() {
                        return Err(StoreError::conflict("name", format!("credential {} already exists", spec.name)));
                    }
                    check_current_key(&mut tx, &self.cipher).await?;
                    let ts = now();
                    sqlx::query(
                        "INSERT INTO credentials (name, username, password_encrypted, description, created_at, updated_at) \
                         VALUES ($1, $2, $3, $4, $5, $5)",
                    )
                    .bind(spec.name.as_str())
                    .bind(&spec.username)
                    .bind(self.cipher.seal(password)?)
                    .bind(&spec.description)
                    .bind(ts)
                    .execute(&mut *tx)
                    .await?;
                    let credential = fetch_credential(&mut tx, &spec.name).await?;
                    emit(&mut tx, "credential.created", event(&credential)).await?;
                    tx.commit().await?;
                    Ok(credential)
                }

                async fn credential(&self, name: &Name) -> Result<Credential> {
                    let mut conn = self.pool.acquire().await?;
                    fetch_credential(&mut conn, name).await
                }

                async fn list_credentials(&self, page: Page) -> Result<Listing<Credential>> {
                    let mut conn = self.pool.acquire().await?;
                    let total = count(&mut conn, "SELECT COUNT(*) FROM credentials").await?;
                    let (limit, offset) = limit(page);
                    let rows: Vec<CredentialRow> = sqlx::query_as(
                        "SELECT id, name, username, description, created_at, updated_at FROM credentials \
                         ORDER BY name LIMIT $1 OFFSET $2",
                    )
                    .bind(limit)
                    .bind(offset)
                    .fetch_all(&mut *conn)
                    .await?;
                    let items = rows.into_iter().map(convert::credential).collect::<Result<_>>()?;
                    Ok(Listing { total, items })
                }

                async fn update_credential(&self, name: &Name, spec: CredentialSpec, read_at: OffsetDateTime) -> Result<Credential> {
                    let (_writer, mut tx) = self.begin_write().await?;
                    let current = fetch_credential(&mut tx, name).await?;
                    // Lock the row (PostgreSQL) so that the check holds until commit.
                    let locked: OffsetDateTime = sqlx::query_scalar(concat!(
                        "SELECT updated_at FROM credentials WHERE name = $1", $for_update
                    ))
                    .bind(name.as_str())
                    .fetch_one(&mut *tx)
                    .await?;
                    if locked != read_at || current.updated_at != read_at {
                        return Err(StoreError::Stale { what: "credential", key: name.to_string() });
                    }
                    if &spec.name != name && fetch_credential(&mut tx, &spec.name).await.is_ok() {
                        return Err(StoreError::conflict("name", format!("credential {} already exists", spec.name)));
                    }
                    sqlx::query("UPDATE credentials SET name = $1, username = $2, description = $3, updated_at = $4 WHERE id = $5")
                        .bind(spec.name.as_str())
                        .bind(&spec.username)
                        .bind(&spec.description)
                        .bind(now())
                        .bind(current.id)
                        .execute(&mut *tx)
                        .await?;
                    if let Some(password) = spec.password.as_ref().map(Secret::expose) {
                        check_current_key(&mut tx, &self.cipher).await?;
                        sqlx::query("UPDATE credentials SET password_encrypted = $1 WHERE id = $2")
                            .bind(self.cipher.seal(password)?)
                            .bind(current.id)
                            .execute(&mut *tx)
                            .await?;
                    }
                    let credential = fetch_credential(&mut tx, &spec.name).await?;
                    emit(&mut tx, "credential.updated", event(&credential)).await?;
                    tx.commit().await?;
                    Ok(credential)
                }

                async fn delete_credential(&self, name: &Name) -> Result<()> {
                    let (_writer, mut tx) = self.begin_write().await?;
                    let credential = fetch_credential(&mut tx, name).await?;
                    let used = count_where(&mut tx, "SELECT COUNT(*) FROM servers WHERE bmc_credential_id = $1", credential.id).await?;
                    if used > 0 {
                        return Err(StoreError::InUse(format!("credential {name} is used by {used} server(s)")));
                    }
                    sqlx::query("DELETE FROM credentials WHERE id = $1").bind(credential.id).execute(&mut *tx).await?;
                    emit(&mut tx, "credential.deleted", event(&credential)).await?;
                    tx.commit().await?;
                    Ok(())
                }

                async fn create_server(&self, spec: ServerSpec) -> Result<Server> {
                    let (_writer, mut tx) = self.begin_write().await?;
                    put_server(&mut tx, &self.cipher, &spec, None).await?;
                    let server = emit_server(&mut tx, "created", &spec.fqdn).await?;
                    tx.commit().await?;
                    Ok(server)
                }

                async fn import_servers(&self, specs: Vec<ServerSpec>) -> Result<Vec<Server>, Vec<(usize, StoreError)>> {
                    let (_writer, mut tx) = self.begin_write().await.map_err(|e| vec![(0, e)])?;
                    let mut errors = Vec::new();
                    let mut created = Vec::new();
                    for (i, spec) in specs.iter().enumerate() {
                        // A savepoint per line, so that later lines are still
                        // checked against the earlier ones after an error.
                        let mut sp = match tx.begin().await {
                            Ok(sp) => sp,
                            Err(e) => return Err(vec![(i, e.into())]),
                        };
                        let outcome = async {
                            put_server(&mut sp, &self.cipher, spec, None).await?;
                            emit_server(&mut sp, "created", &spec.fqdn).await
                        }
                        .await;
                        match outcome {
                            Ok(server) => {
                                sp.commit().await.map_err(|e| vec![(i, e.into())])?;
                                created.push(server);
                            }
                            Err(e) => {
                                let _ = sp.rollback().await;
                                errors.push((i, e));
                            }
                        }
                    }
                    if !errors.is_empty() {
                        let _ = tx.rollback().await;
                        return Err(errors);
                    }
                    tx.commit().await.map_err(|e| vec![(0, e.into())])?;
                    Ok(created)
                }

                async fn server(&self, fqdn: &Fqdn) -> Result<Server> {
                    let mut conn = self.pool.acquire().await?;
                    fetch_server(&mut conn, fqdn).await
                }

                async fn list_servers(&self, filter: &ServerFilter, page: Page) -> Result<Listing<Server>> {
                    let mut conn = self.pool.acquire().await?;
                    let loc = filter.location.as_ref().map(|l| l.as_str().to_string());
                    let label = filter.label.as_ref().map(|l| l.as_str().to_string());
                    let cond = "WHERE ($1 IS NULL OR l.name = $1) AND ($2 IS NULL OR EXISTS \
                        (SELECT 1 FROM server_labels sl JOIN labels lb ON lb.id = sl.label_id \
                         WHERE sl.server_id = s.id AND lb.name = $2))";
                    let total: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
                        "SELECT COUNT(*) FROM servers s JOIN locations l ON l.id = s.location_id {cond}"
                    )))
                    .bind(&loc)
                    .bind(&label)
                    .fetch_one(&mut *conn)
                    .await?;
                    let (limit, offset) = limit(page);
                    let rows: Vec<ServerRow> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
                        "{SERVER_SELECT} {cond} ORDER BY s.id LIMIT $3 OFFSET $4"
                    )))
                    .bind(&loc)
                    .bind(&label)
                    .bind(limit)
                    .bind(offset)
                    .fetch_all(&mut *conn)
                    .await?;
                    let items = with_details(&mut conn, rows).await?;
                    Ok(Listing { total: total.max(0) as u64, items })
                }

                async fn update_server(&self, fqdn: &Fqdn, spec: ServerSpec, read_at: OffsetDateTime) -> Result<Server> {
                    let (_writer, mut tx) = self.begin_write().await?;
                    let current = fetch_server(&mut tx, fqdn).await?;
                    // Lock the row (PostgreSQL) so that the check holds until commit.
                    let locked: OffsetDateTime = sqlx::query_scalar(concat!(
                        "SELECT updated_at FROM servers WHERE fqdn = $1", $for_update
                    ))
                    .bind(fqdn.as_str())
                    .fetch_one(&mut *tx)
                    .await?;
                    if locked != read_at || current.updated_at != read_at {
                        return Err(StoreError::Stale { what: "server", key: fqdn.to_string() });
                    }
                    put_server(&mut tx, &self.cipher, &spec, Some(current.id)).await?;
                    let server = emit_server(&mut tx, "updated", &spec.fqdn).await?;
                    tx.commit().await?;
                    Ok(server)
                }

                async fn delete_server(&self, fqdn: &Fqdn) -> Result<()> {
                    let (_writer, mut tx) = self.begin_write().await?;
                    let server = fetch_server(&mut tx, fqdn).await?;
                    sqlx::query("DELETE FROM servers WHERE id = $1").bind(server.id).execute(&mut *tx).await?;
                    emit(&mut tx, "server.deleted", event(&server)).await?;
                    tx.commit().await?;
                    Ok(())
                }

                async fn bmc_login(&self, fqdn: &Fqdn) -> Result<Option<(String, String)>> {
                    let mut conn = self.pool.acquire().await?;
                    let row: Option<(Option<String>, Option<Vec<u8>>, Option<String>, Option<Vec<u8>>)> = sqlx::query_as(
                        "SELECT s.bmc_username, s.bmc_password_encrypted, c.username, c.password_encrypted \
                         FROM servers s LEFT JOIN credentials c ON c.id = s.bmc_credential_id WHERE s.fqdn = $1",
                    )
                    .bind(fqdn.as_str())
                    .fetch_optional(&mut *conn)
                    .await?;
                    let (user, sealed, cred_user, cred_sealed) =
                        row.ok_or_else(|| StoreError::not_found("server", fqdn))?;
                    // The server's own values win; the named credential fills gaps.
                    let password = match (sealed, cred_sealed) {
                        (Some(p), _) | (None, Some(p)) => Some(self.cipher.open(&p)?),
                        (None, None) => None,
                    };
                    let login = user.or(cred_user).zip(password);
                    Ok(login)
                }

                async fn create_interface(&self, server: &Fqdn, spec: InterfaceSpec) -> Result<Interface> {
                    let (_writer, mut tx) = self.begin_write().await?;
                    let owner = fetch_server(&mut tx, server).await?;
                    if owner.interfaces.iter().any(|i| i.mac == spec.mac) {
                        return Err(StoreError::conflict("mac", format!("{} is already used by {server}", spec.mac)));
                    }
                    let location = location_id(&mut tx, &owner.location, "server").await?;
                    let id = put_interface(&mut tx, owner.id, location, &spec, None, "interface").await
                        .map_err(strip_interface_prefix)?;
                    let interface = fetch_interface(&mut tx, id).await?;
                    emit(&mut tx, "interface.created", event(&interface)).await?;
                    tx.commit().await?;
                    Ok(interface)
                }

                async fn interface(&self, id: i64) -> Result<Interface> {
                    let mut conn = self.pool.acquire().await?;
                    fetch_interface(&mut conn, id).await
                }

                async fn list_interfaces(&self, server: Option<&Fqdn>, page: Page) -> Result<Listing<Interface>> {
                    let mut conn = self.pool.acquire().await?;
                    let fqdn = server.map(|s| s.as_str().to_string());
                    let total: i64 = sqlx::query_scalar(
                        "SELECT COUNT(*) FROM interfaces i JOIN servers s ON s.id = i.server_id WHERE ($1 IS NULL OR s.fqdn = $1)",
                    )
                    .bind(&fqdn)
                    .fetch_one(&mut *conn)
                    .await?;
                    let (limit, offset) = limit(page);
                    let rows: Vec<InterfaceRow> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
                        "{INTERFACE_SELECT} WHERE ($1 IS NULL OR s.fqdn = $1) ORDER BY i.id LIMIT $2 OFFSET $3"
                    )))
                    .bind(&fqdn)
                    .bind(limit)
                    .bind(offset)
                    .fetch_all(&mut *conn)
                    .await?;
                    let items = rows.into_iter().map(convert::interface).collect::<Result<_>>()?;
                    Ok(Listing { total: total.max(0) as u64, items })
                }

                async fn update_interface(&self, id: i64, spec: InterfaceSpec, read: &Interface) -> Result<Interface> {
                    let (_writer, mut tx) = self.begin_write().await?;
                    // Lock the row (PostgreSQL) so that the check holds until commit.
                    sqlx::query(concat!("SELECT id FROM interfaces WHERE id = $1", $for_update))
                        .bind(id)
                        .fetch_optional(&mut *tx)
                        .await?;
                    let current = fetch_interface(&mut tx, id).await?;
                    if current != *read {
                        return Err(StoreError::Stale { what: "interface", key: id.to_string() });
                    }
                    let owner = fetch_server(&mut tx, &current.server).await?;
                    let location = location_id(&mut tx, &owner.location, "server").await?;
                    put_interface(&mut tx, owner.id, location, &spec, Some(id), "interface").await
                        .map_err(strip_interface_prefix)?;
                    let interface = fetch_interface(&mut tx, id).await?;
                    emit(&mut tx, "interface.updated", event(&interface)).await?;
                    tx.commit().await?;
                    Ok(interface)
                }

                async fn delete_interface(&self, id: i64) -> Result<()> {
                    let (_writer, mut tx) = self.begin_write().await?;
                    let interface = fetch_interface(&mut tx, id).await?;
                    sqlx::query("DELETE FROM interfaces WHERE id = $1").bind(id).execute(&mut *tx).await?;
                    emit(&mut tx, "interface.deleted", event(&interface)).await?;
                    tx.commit().await?;
                    Ok(())
                }
            }

            #[async_trait]
            impl UserStore for $store {
                async fn create_user(&self, spec: UserSpec) -> Result<User> {
                    let (_writer, mut tx) = self.begin_write().await?;
                    if fetch_user(&mut tx, &spec.name).await.is_ok() {
                        return Err(StoreError::conflict("name", format!("user {} already exists", spec.name)));
                    }
                    sqlx::query("INSERT INTO users (name, email, is_staff, created_at) VALUES ($1, $2, $3, $4)")
                        .bind(spec.name.as_str())
                        .bind(&spec.email)
                        .bind(spec.is_staff)
                        .bind(now())
                        .execute(&mut *tx)
                        .await?;
                    let user = fetch_user(&mut tx, &spec.name).await?;
                    emit(&mut tx, "user.created", event(&user)).await?;
                    tx.commit().await?;
                    Ok(user)
                }

                async fn user(&self, name: &Name) -> Result<User> {
                    let mut conn = self.pool.acquire().await?;
                    fetch_user(&mut conn, name).await
                }

                async fn list_users(&self, page: Page) -> Result<Listing<User>> {
                    let mut conn = self.pool.acquire().await?;
                    let total = count(&mut conn, "SELECT COUNT(*) FROM users").await?;
                    let (limit, offset) = limit(page);
                    let rows: Vec<UserRow> = sqlx::query_as(
                        "SELECT id, name, email, is_staff, created_at FROM users ORDER BY name LIMIT $1 OFFSET $2",
                    )
                    .bind(limit)
                    .bind(offset)
                    .fetch_all(&mut *conn)
                    .await?;
                    let items = rows.into_iter().map(convert::user).collect::<Result<_>>()?;
                    Ok(Listing { total, items })
                }

                async fn update_user(&self, name: &Name, spec: UserSpec, read: &User) -> Result<User> {
                    let (_writer, mut tx) = self.begin_write().await?;
                    // Lock the row (PostgreSQL) so that the check holds until commit.
                    sqlx::query(concat!("SELECT id FROM users WHERE name = $1", $for_update))
                        .bind(name.as_str())
                        .fetch_optional(&mut *tx)
                        .await?;
                    let current = fetch_user(&mut tx, name).await?;
                    if current != *read {
                        return Err(StoreError::Stale { what: "user", key: name.to_string() });
                    }
                    if &spec.name != name && fetch_user(&mut tx, &spec.name).await.is_ok() {
                        return Err(StoreError::conflict("name", format!("user {} already exists", spec.name)));
                    }
                    sqlx::query("UPDATE users SET name = $1, email = $2, is_staff = $3 WHERE id = $4")
                        .bind(spec.name.as_str())
                        .bind(&spec.email)
                        .bind(spec.is_staff)
                        .bind(current.id)
                        .execute(&mut *tx)
                        .await?;
                    let user = fetch_user(&mut tx, &spec.name).await?;
                    emit(&mut tx, "user.updated", event(&user)).await?;
                    tx.commit().await?;
                    Ok(user)
                }

                async fn delete_user(&self, name: &Name) -> Result<()> {
                    let (_writer, mut tx) = self.begin_write().await?;
                    let user = fetch_user(&mut tx, name).await?;
                    sqlx::query("DELETE FROM users WHERE id = $1").bind(user.id).execute(&mut *tx).await?;
                    emit(&mut tx, "user.deleted", event(&user)).await?;
                    tx.commit().await?;
                    Ok(())
                }

                async fn count_users(&self) -> Result<u64> {
                    let mut conn = self.pool.acquire().await?;
                    count(&mut conn, "SELECT COUNT(*) FROM users").await
                }

                async fn create_token(&self, new: NewApiToken) -> Result<ApiToken> {
                    let (_writer, mut tx) = self.begin_write().await?;
                    let user = user_id(&mut tx, &new.user).await?;
                    let id: i64 = sqlx::query_scalar(
                        "INSERT INTO api_tokens (user_id, token_hash, prefix, scope, description, expires_at, created_at) \
                         VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING id",
                    )
                    .bind(user)
                    .bind(&new.hash.0)
                    .bind(&new.prefix)
                    .bind(new.scope.as_str())
                    .bind(&new.description)
                    .bind(new.expires_at)
                    .bind(now())
                    .fetch_one(&mut *tx)
                    .await?;
                    let row: TokenRow = sqlx::query_as(sqlx::AssertSqlSafe(format!("{TOKEN_SELECT} WHERE t.id = $1")))
                        .bind(id)
                        .fetch_one(&mut *tx)
                        .await?;
                    let token = convert::token(row)?;
                    emit(&mut tx, "token.created", event(&token)).await?;
                    tx.commit().await?;
                    Ok(token)
                }

                async fn authenticate(&self, hash: &TokenHash, at: OffsetDateTime) -> Result<Option<Principal>> {
                    let mut conn = self.pool.acquire().await?;
                    let row: Option<PrincipalRow> = sqlx::query_as(
                        "SELECT t.id AS token_id, t.scope, t.expires_at, t.last_used_at, u.id AS user_id, u.name AS user_name, u.is_staff \
                         FROM api_tokens t JOIN users u ON u.id = t.user_id WHERE t.token_hash = $1",
                    )
                    .bind(&hash.0)
                    .fetch_optional(&mut *conn)
                    .await?;
                    let Some(row) = row else { return Ok(None) };
                    if row.expires_at.is_some_and(|e| e <= at) {
                        return Ok(None);
                    }
                    // Record use at most once a minute: reads should not queue
                    // behind writers for a timestamp.
                    if row.last_used_at.is_none_or(|t| at - t > time::Duration::minutes(1)) {
                        let recorded = sqlx::query("UPDATE api_tokens SET last_used_at = $1 WHERE id = $2")
                            .bind(at)
                            .bind(row.token_id)
                            .execute(&mut *conn)
                            .await;
                        if let Err(e) = recorded {
                            tracing::debug!(error = %e, "could not record token use");
                        }
                    }
                    Ok(Some(Principal {
                        user_id: row.user_id,
                        user: stored(&row.user_name, "user name")?,
                        is_staff: row.is_staff,
                        token_id: row.token_id,
                        scope: row.scope.parse().map_err(StoreError::Corrupt)?,
                    }))
                }

                async fn list_tokens(&self, user: Option<&Name>, page: Page) -> Result<Listing<ApiToken>> {
                    let mut conn = self.pool.acquire().await?;
                    let name = user.map(|u| u.as_str().to_string());
                    let total: i64 = sqlx::query_scalar(
                        "SELECT COUNT(*) FROM api_tokens t JOIN users u ON u.id = t.user_id WHERE ($1 IS NULL OR u.name = $1)",
                    )
                    .bind(&name)
                    .fetch_one(&mut *conn)
                    .await?;
                    let (limit, offset) = limit(page);
                    let rows: Vec<TokenRow> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
                        "{TOKEN_SELECT} WHERE ($1 IS NULL OR u.name = $1) ORDER BY t.id LIMIT $2 OFFSET $3"
                    )))
                    .bind(&name)
                    .bind(limit)
                    .bind(offset)
                    .fetch_all(&mut *conn)
                    .await?;
                    let items = rows.into_iter().map(convert::token).collect::<Result<_>>()?;
                    Ok(Listing { total: total.max(0) as u64, items })
                }

                async fn revoke_token(&self, id_or_prefix: &str) -> Result<ApiToken> {
                    let (_writer, mut tx) = self.begin_write().await?;
                    let rows: Vec<TokenRow> = match id_or_prefix.parse::<i64>() {
                        Ok(id) => sqlx::query_as(sqlx::AssertSqlSafe(format!("{TOKEN_SELECT} WHERE t.id = $1")))
                            .bind(id)
                            .fetch_all(&mut *tx)
                            .await?,
                        Err(_) => sqlx::query_as(sqlx::AssertSqlSafe(format!("{TOKEN_SELECT} WHERE t.prefix = $1")))
                            .bind(id_or_prefix)
                            .fetch_all(&mut *tx)
                            .await?,
                    };
                    let row = match rows.len() {
                        0 => return Err(StoreError::not_found("token", id_or_prefix)),
                        1 => rows.into_iter().next().ok_or_else(|| StoreError::not_found("token", id_or_prefix))?,
                        n => return Err(StoreError::conflict("token", format!("{n} tokens share this prefix; give the id"))),
                    };
                    let token = convert::token(row)?;
                    sqlx::query("DELETE FROM api_tokens WHERE id = $1").bind(token.id).execute(&mut *tx).await?;
                    emit(&mut tx, "token.revoked", event(&token)).await?;
                    tx.commit().await?;
                    Ok(token)
                }

                async fn add_ssh_key(&self, user: &Name, name: &str, key: &str) -> Result<SshKey> {
                    let (_writer, mut tx) = self.begin_write().await?;
                    let uid = user_id(&mut tx, user).await?;
                    let exists: Option<i64> = sqlx::query_scalar(
                        "SELECT id FROM ssh_authorized_keys WHERE user_id = $1 AND key = $2",
                    )
                    .bind(uid)
                    .bind(key)
                    .fetch_optional(&mut *tx)
                    .await?;
                    if exists.is_some() {
                        return Err(StoreError::conflict("key", format!("user {user} already has this key")));
                    }
                    let id: i64 = sqlx::query_scalar(
                        "INSERT INTO ssh_authorized_keys (user_id, name, key, created_at) VALUES ($1, $2, $3, $4) RETURNING id",
                    )
                    .bind(uid)
                    .bind(name)
                    .bind(key)
                    .bind(now())
                    .fetch_one(&mut *tx)
                    .await?;
                    let ssh_key = fetch_ssh_key(&mut tx, id).await?;
                    emit(&mut tx, "ssh_key.created", event(&ssh_key)).await?;
                    tx.commit().await?;
                    Ok(ssh_key)
                }

                async fn ssh_key(&self, id: i64) -> Result<SshKey> {
                    let mut conn = self.pool.acquire().await?;
                    fetch_ssh_key(&mut conn, id).await
                }

                async fn list_ssh_keys(&self, user: Option<&Name>, page: Page) -> Result<Listing<SshKey>> {
                    let mut conn = self.pool.acquire().await?;
                    let name = user.map(|u| u.as_str().to_string());
                    let total: i64 = sqlx::query_scalar(
                        "SELECT COUNT(*) FROM ssh_authorized_keys k JOIN users u ON u.id = k.user_id WHERE ($1 IS NULL OR u.name = $1)",
                    )
                    .bind(&name)
                    .fetch_one(&mut *conn)
                    .await?;
                    let (limit, offset) = limit(page);
                    let rows: Vec<SshKeyRow> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
                        "{SSH_KEY_SELECT} WHERE ($1 IS NULL OR u.name = $1) ORDER BY k.id LIMIT $2 OFFSET $3"
                    )))
                    .bind(&name)
                    .bind(limit)
                    .bind(offset)
                    .fetch_all(&mut *conn)
                    .await?;
                    let items = rows.into_iter().map(convert::ssh_key).collect::<Result<_>>()?;
                    Ok(Listing { total: total.max(0) as u64, items })
                }

                async fn delete_ssh_key(&self, id: i64) -> Result<()> {
                    let (_writer, mut tx) = self.begin_write().await?;
                    let key = fetch_ssh_key(&mut tx, id).await?;
                    sqlx::query("DELETE FROM ssh_authorized_keys WHERE id = $1").bind(id).execute(&mut *tx).await?;
                    emit(&mut tx, "ssh_key.deleted", event(&key)).await?;
                    tx.commit().await?;
                    Ok(())
                }
            }

            #[async_trait]
            impl ProfileStore for $store {
                async fn create_profile(&self, name: &str, version: &str, source: &str, action_count: u64) -> Result<StoredProfile> {
                    let (_writer, mut tx) = self.begin_write().await?;
                    let exists: Option<i64> = sqlx::query_scalar("SELECT id FROM profiles WHERE name = $1 AND version = $2")
                        .bind(name)
                        .bind(version)
                        .fetch_optional(&mut *tx)
                        .await?;
                    if let Some(id) = exists {
                        return Err(StoreError::conflict(
                            "version",
                            format!("profile {name}=={version} already exists (id {id}); profiles are immutable, upload a new version"),
                        ));
                    }
                    let row: ProfileRow = sqlx::query_as(
                        "INSERT INTO profiles (name, version, source, action_count, created_at) VALUES ($1, $2, $3, $4, $5) \
                         RETURNING id, name, version, source, action_count, created_at",
                    )
                    .bind(name)
                    .bind(version)
                    .bind(source)
                    .bind(i64::try_from(action_count).unwrap_or(i64::MAX))
                    .bind(now())
                    .fetch_one(&mut *tx)
                    .await?;
                    let profile = convert::profile(row);
                    emit(&mut tx, "profile.created", serde_json::json!({
                        "id": profile.id, "name": profile.name, "version": profile.version,
                    })).await?;
                    tx.commit().await?;
                    Ok(profile)
                }

                async fn profile(&self, id: i64) -> Result<StoredProfile> {
                    let mut conn = self.pool.acquire().await?;
                    let row: Option<ProfileRow> = sqlx::query_as(
                        "SELECT id, name, version, source, action_count, created_at FROM profiles WHERE id = $1",
                    )
                    .bind(id)
                    .fetch_optional(&mut *conn)
                    .await?;
                    Ok(convert::profile(row.ok_or_else(|| StoreError::not_found("profile", id))?))
                }

                async fn profile_by_name_version(&self, name: &str, version: &str) -> Result<StoredProfile> {
                    let mut conn = self.pool.acquire().await?;
                    let row: Option<ProfileRow> = sqlx::query_as(
                        "SELECT id, name, version, source, action_count, created_at FROM profiles WHERE name = $1 AND version = $2",
                    )
                    .bind(name)
                    .bind(version)
                    .fetch_optional(&mut *conn)
                    .await?;
                    Ok(convert::profile(row.ok_or_else(|| {
                        StoreError::not_found("profile", format!("{name}=={version}"))
                    })?))
                }

                async fn list_profiles(&self, filter: &ProfileFilter, page: Page) -> Result<Listing<StoredProfile>> {
                    let mut conn = self.pool.acquire().await?;
                    let cond = "WHERE ($1 IS NULL OR name = $1) AND ($2 IS NULL OR version = $2)";
                    let total: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(format!("SELECT COUNT(*) FROM profiles {cond}")))
                        .bind(&filter.name)
                        .bind(&filter.version)
                        .fetch_one(&mut *conn)
                        .await?;
                    let (limit, offset) = limit(page);
                    let rows: Vec<ProfileRow> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
                        "SELECT id, name, version, source, action_count, created_at FROM profiles {cond} ORDER BY id LIMIT $3 OFFSET $4"
                    )))
                    .bind(&filter.name)
                    .bind(&filter.version)
                    .bind(limit)
                    .bind(offset)
                    .fetch_all(&mut *conn)
                    .await?;
                    Ok(Listing { total: total.max(0) as u64, items: rows.into_iter().map(convert::profile).collect() })
                }

                async fn delete_profile(&self, id: i64) -> Result<()> {
                    let (_writer, mut tx) = self.begin_write().await?;
                    let deleted = sqlx::query("DELETE FROM profiles WHERE id = $1")
                        .bind(id)
                        .execute(&mut *tx)
                        .await?
                        .rows_affected();
                    if deleted == 0 {
                        return Err(StoreError::not_found("profile", id));
                    }
                    emit(&mut tx, "profile.deleted", serde_json::json!({ "id": id })).await?;
                    tx.commit().await?;
                    Ok(())
                }
            }

            #[async_trait]
            impl OutboxStore for $store {
                async fn pending_events(&self, max: u32) -> Result<Vec<OutboxEvent>> {
                    // Rows that became visible since the last round get the
                    // next publish numbers, so that the numbers consumers
                    // see only grow even when a smaller id commits after a
                    // larger one (PostgreSQL with writers side by side).
                    // Most polls find nothing new: the write transaction
                    // (SQLite's one writer) is taken only when there is.
                    let fresh_rows: bool = sqlx::query_scalar(
                        "SELECT EXISTS (SELECT 1 FROM outbox WHERE sent_at IS NULL AND seq IS NULL)",
                    )
                    .fetch_one(&self.pool)
                    .await?;
                    if fresh_rows {
                        let (_writer, mut tx) = self.begin_write().await?;
                        if Self::BACKEND == "postgres" {
                            // Numbered in id order: rows of one client's
                            // successive changes keep their order.
                            sqlx::query(
                                "WITH fresh AS (SELECT id FROM outbox WHERE sent_at IS NULL AND seq IS NULL \
                                 ORDER BY id LIMIT $1), \
                                 numbered AS (SELECT id, nextval('outbox_seq') AS n FROM (SELECT id FROM fresh ORDER BY id) f) \
                                 UPDATE outbox SET seq = numbered.n FROM numbered WHERE outbox.id = numbered.id",
                            )
                            .bind(i64::from(max))
                            .execute(&mut *tx)
                            .await?;
                        } else {
                            let fresh: Vec<i64> = sqlx::query_scalar(
                                "SELECT id FROM outbox WHERE sent_at IS NULL AND seq IS NULL ORDER BY id LIMIT $1",
                            )
                            .bind(i64::from(max))
                            .fetch_all(&mut *tx)
                            .await?;
                            if !fresh.is_empty() {
                                let last: Option<String> =
                                    sqlx::query_scalar("SELECT value FROM settings WHERE key = 'outbox_seq'")
                                        .fetch_optional(&mut *tx)
                                        .await?;
                                let mut seq = last.and_then(|v| v.parse::<i64>().ok()).unwrap_or(0);
                                for id in &fresh {
                                    seq += 1;
                                    sqlx::query("UPDATE outbox SET seq = $1 WHERE id = $2")
                                        .bind(seq)
                                        .bind(*id)
                                        .execute(&mut *tx)
                                        .await?;
                                }
                                sqlx::query(
                                    "INSERT INTO settings (key, value) VALUES ('outbox_seq', $1) \
                                     ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                                )
                                .bind(seq.to_string())
                                .execute(&mut *tx)
                                .await?;
                            }
                        }
                        tx.commit().await?;
                    }
                    let rows: Vec<(i64, i64, String, sqlx::types::Json<serde_json::Value>, OffsetDateTime)> = sqlx::query_as(
                        "SELECT id, seq, routing_key, payload, created_at FROM outbox \
                         WHERE sent_at IS NULL AND seq IS NOT NULL ORDER BY seq LIMIT $1",
                    )
                    .bind(i64::from(max))
                    .fetch_all(&self.pool)
                    .await?;
                    Ok(rows
                        .into_iter()
                        .map(|(id, seq, routing_key, payload, created_at)| OutboxEvent {
                            id,
                            seq: Some(seq),
                            routing_key,
                            payload: payload.0,
                            created_at,
                        })
                        .collect())
                }

                async fn mark_events_sent(&self, ids: &[i64]) -> Result<()> {
                    if ids.is_empty() {
                        return Ok(());
                    }
                    let (_writer, mut tx) = self.begin_write().await?;
                    let now = now();
                    for id in ids {
                        sqlx::query("UPDATE outbox SET sent_at = $1 WHERE id = $2 AND sent_at IS NULL")
                            .bind(now)
                            .bind(*id)
                            .execute(&mut *tx)
                            .await?;
                    }
                    tx.commit().await?;
                    Ok(())
                }

                async fn pending_notifications(&self, limit: u32) -> Result<Vec<OutboxEvent>> {
                    let mut conn = self.pool.acquire().await?;
                    // The same condition as the partial index outbox_unnotified.
                    let rows: Vec<OutboxRow> = sqlx::query_as(
                        "SELECT id, routing_key, payload, created_at FROM outbox WHERE notified_at IS NULL \
                         AND routing_key IN ('deployment.new', 'deployment.complete', 'deployment.error') \
                         ORDER BY id LIMIT $1",
                    )
                    .bind(i64::from(limit))
                    .fetch_all(&mut *conn)
                    .await?;
                    Ok(rows.into_iter().map(OutboxRow::into_event).collect())
                }

                async fn prune_outbox(&self, before: OffsetDateTime, unsent_too: bool) -> Result<u64> {
                    let (_writer, mut tx) = self.begin_write().await?;
                    let done = sqlx::query(
                        "DELETE FROM outbox WHERE created_at < $1 AND (sent_at IS NOT NULL OR $2) \
                         AND (notified_at IS NOT NULL \
                              OR routing_key NOT IN ('deployment.new', 'deployment.complete', 'deployment.error'))",
                    )
                    .bind(before)
                    .bind(unsent_too)
                    .execute(&mut *tx)
                    .await?;
                    tx.commit().await?;
                    Ok(done.rows_affected())
                }

                async fn mark_notified(&self, id: i64) -> Result<()> {
                    let (_writer, mut tx) = self.begin_write().await?;
                    sqlx::query("UPDATE outbox SET notified_at = $1 WHERE id = $2")
                        .bind(now())
                        .bind(id)
                        .execute(&mut *tx)
                        .await?;
                    tx.commit().await?;
                    Ok(())
                }

                async fn outbox_backlog(&self) -> Result<(u64, Option<OffsetDateTime>)> {
                    let mut conn = self.pool.acquire().await?;
                    let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM outbox WHERE sent_at IS NULL")
                        .fetch_one(&mut *conn)
                        .await?;
                    let oldest: Option<OffsetDateTime> = sqlx::query_scalar(
                        "SELECT created_at FROM outbox WHERE sent_at IS NULL ORDER BY id LIMIT 1",
                    )
                    .fetch_optional(&mut *conn)
                    .await?;
                    Ok((n.max(0) as u64, oldest))
                }
            }

            async fn count_where(conn: &mut Conn, sql: &'static str, id: i64) -> Result<u64> {
                let n: i64 = sqlx::query_scalar(sql).bind(id).fetch_one(&mut *conn).await?;
                Ok(n.max(0) as u64)
            }

            /// Single-interface endpoints name fields without a list prefix.
            fn strip_interface_prefix(e: StoreError) -> StoreError {
                match e {
                    StoreError::Conflict { field, message } => StoreError::Conflict {
                        field: field.trim_start_matches("interface.").to_string(),
                        message,
                    },
                    StoreError::Invalid { field, message } => StoreError::Invalid {
                        field: field.trim_start_matches("interface.").to_string(),
                        message,
                    },
                    other => other,
                }
            }
        }
    };
}
