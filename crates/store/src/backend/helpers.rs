//! What the inventory, users, profiles and outbox SQL share: the outbox write, lookups by name, the checks and writes of networks, interfaces and servers.

use std::net::Ipv4Addr;

use time::OffsetDateTime;

use crate::sql::rows::*;
use crate::sql::*;
use crate::types::*;
use crate::{Result, SecretCipher, StoreError};
use bootloader_core::model::{Fqdn, Name, Secret};

pub(super) use super::server_reads::{
    DetailRow, details_sql, fetch_server, servers_with, with_details,
};
use super::{Conn, Db, JSON_PAYLOAD, JSON_ROWS, Statements};

pub(super) fn now() -> OffsetDateTime {
    OffsetDateTime::now_utc()
}

pub(super) async fn emit(
    conn: &mut Conn,
    routing_key: &str,
    payload: serde_json::Value,
) -> Result<()> {
    sqlx::query("INSERT INTO outbox (routing_key, payload, created_at) VALUES ($1, $2, $3)")
        .bind(routing_key)
        .bind(sqlx::types::Json(payload))
        .bind(now())
        .execute(&mut *conn)
        .await?;
    Ok(())
}

/// `emit` for many events, as one statement of a batch.
pub(super) fn push_events(statements: &mut Statements, events: &[(&str, serde_json::Value)]) {
    let rows = events
        .iter()
        .map(|(key, payload)| outbox_row(key, payload, false))
        .collect();
    push_outbox(statements, rows, now());
}

/// An event as `push_outbox` takes it: `notified` when it was notified
/// already (a deployment settling in the state it entered before).
pub(super) fn outbox_row(
    key: &str,
    payload: &serde_json::Value,
    notified: bool,
) -> serde_json::Value {
    serde_json::json!([key, payload.to_string(), i64::from(notified)])
}

/// Events (`outbox_row`s), in their order, written `at`, in one statement.
pub(super) fn push_outbox(
    statements: &mut Statements,
    rows: Vec<serde_json::Value>,
    at: OffsetDateTime,
) {
    if rows.is_empty() {
        return;
    }
    let q = statements
        .next("INSERT INTO outbox (routing_key, payload, created_at, notified_at) SELECT value ->> 0, ")
        .push(JSON_PAYLOAD.0)
        .push("value ->> 1")
        .push(JSON_PAYLOAD.1)
        .push(", ")
        .push_bind(at)
        .push(", CASE WHEN CAST(value ->> 2 AS BIGINT) = 1 THEN ")
        .push_bind(at)
        .push(" END FROM ");
    push_json_rows(q, rows);
    q.push(" ORDER BY key");
}

/// Appends `rows` (each row an array of values) as one bound value and
/// the table of its rows (`value`, `key`; `JSON_ROWS`): a statement of
/// many rows whose text is the same for any number of them, so that
/// SQLite prepares it once and keeps it, where a list of values made a
/// new text (parsed and planned again) for every size.
pub(super) fn push_json_rows(q: &mut sqlx::QueryBuilder<Db>, rows: Vec<serde_json::Value>) {
    q.push(JSON_ROWS.0)
        .push_bind(serde_json::Value::Array(rows).to_string())
        .push(JSON_ROWS.1);
}

pub(super) fn event<T: serde::Serialize>(value: &T) -> serde_json::Value {
    serde_json::to_value(value).unwrap_or(serde_json::Value::Null)
}

pub(super) async fn count(conn: &mut Conn, sql: &'static str) -> Result<u64> {
    let n: i64 = sqlx::query_scalar(sql).fetch_one(&mut *conn).await?;
    Ok(n.max(0) as u64)
}

pub(super) async fn location_id(conn: &mut Conn, name: &Name, field: &str) -> Result<i64> {
    sqlx::query_scalar("SELECT id FROM locations WHERE name = $1")
        .bind(name.as_str())
        .fetch_optional(&mut *conn)
        .await?
        .ok_or_else(|| StoreError::invalid(field, format!("location \"{name}\" does not exist")))
}

pub(super) async fn user_id(conn: &mut Conn, name: &Name) -> Result<i64> {
    sqlx::query_scalar("SELECT id FROM users WHERE name = $1")
        .bind(name.as_str())
        .fetch_optional(&mut *conn)
        .await?
        .ok_or_else(|| StoreError::not_found("user", name))
}

pub(super) async fn fetch_location(conn: &mut Conn, name: &Name) -> Result<Location> {
    let row: Option<LocationRow> = sqlx::query_as(
        "SELECT id, name, description, created_at, updated_at FROM locations WHERE name = $1",
    )
    .bind(name.as_str())
    .fetch_optional(&mut *conn)
    .await?;
    convert::location(row.ok_or_else(|| StoreError::not_found("location", name))?)
}

pub(super) async fn fetch_network(conn: &mut Conn, id: i64) -> Result<Network> {
    let row: Option<NetworkRow> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "{NETWORK_SELECT} WHERE n.id = $1"
    )))
    .bind(id)
    .fetch_optional(&mut *conn)
    .await?;
    convert::network(row.ok_or_else(|| StoreError::not_found("network", id))?)
}

pub(super) async fn fetch_label(conn: &mut Conn, name: &Name) -> Result<Label> {
    let row: Option<LabelRow> =
        sqlx::query_as("SELECT id, name, description FROM labels WHERE name = $1")
            .bind(name.as_str())
            .fetch_optional(&mut *conn)
            .await?;
    convert::label(row.ok_or_else(|| StoreError::not_found("label", name))?)
}

pub(super) async fn fetch_credential(conn: &mut Conn, name: &Name) -> Result<Credential> {
    let row: Option<CredentialRow> = sqlx::query_as(
        "SELECT id, name, username, description, created_at, updated_at FROM credentials WHERE name = $1",
    )
    .bind(name.as_str())
    .fetch_optional(&mut *conn)
    .await?;
    convert::credential(row.ok_or_else(|| StoreError::not_found("credential", name))?)
}

pub(super) async fn fetch_interface(conn: &mut Conn, id: i64) -> Result<Interface> {
    let row: Option<InterfaceRow> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "{INTERFACE_SELECT} WHERE i.id = $1"
    )))
    .bind(id)
    .fetch_optional(&mut *conn)
    .await?;
    convert::interface(row.ok_or_else(|| StoreError::not_found("interface", id))?)
}

pub(super) async fn fetch_user(conn: &mut Conn, name: &Name) -> Result<User> {
    let row: Option<UserRow> = sqlx::query_as(
        "SELECT id, name, email, first_name, last_name, is_active, is_staff, created_at \
             FROM users WHERE name = $1",
    )
    .bind(name.as_str())
    .fetch_optional(&mut *conn)
    .await?;
    convert::user(row.ok_or_else(|| StoreError::not_found("user", name))?)
}

pub(super) async fn fetch_ssh_key(conn: &mut Conn, id: i64) -> Result<SshKey> {
    let row: Option<SshKeyRow> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "{SSH_KEY_SELECT} WHERE k.id = $1"
    )))
    .bind(id)
    .fetch_optional(&mut *conn)
    .await?;
    convert::ssh_key(row.ok_or_else(|| StoreError::not_found("ssh key", id))?)
}

pub(super) fn limit(page: Page) -> (i64, i64) {
    (
        i64::from(page.limit),
        page.offset.min(i64::MAX as u64) as i64,
    )
}

/// Checks a network spec against the other networks of its location.
pub(super) async fn check_network(
    conn: &mut Conn,
    spec: &NetworkSpec,
    id: Option<i64>,
) -> Result<i64> {
    // Lock the location so that two overlapping networks cannot
    // be checked and written side by side.
    let location: i64 = sqlx::query_scalar(locked!("SELECT id FROM locations WHERE name = $1"))
        .bind(spec.location.as_str())
        .fetch_optional(&mut *conn)
        .await?
        .ok_or_else(|| {
            StoreError::invalid(
                "location",
                format!("location \"{}\" does not exist", spec.location),
            )
        })?;
    let others: Vec<(i64, String)> =
        sqlx::query_as("SELECT id, cidr FROM networks WHERE location_id = $1")
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
                format!(
                    "overlaps network {other_id} ({other}) in location {}",
                    spec.location
                ),
            ));
        }
    }
    Ok(location)
}

/// Resolves labels by name; every one must exist.
pub(super) async fn label_ids(conn: &mut Conn, labels: &[Name]) -> Result<Vec<i64>> {
    let mut ids = Vec::with_capacity(labels.len());
    for (i, name) in labels.iter().enumerate() {
        let id: Option<i64> = sqlx::query_scalar("SELECT id FROM labels WHERE name = $1")
            .bind(name.as_str())
            .fetch_optional(&mut *conn)
            .await?;
        ids.push(id.ok_or_else(|| {
            StoreError::invalid(
                format!("labels[{i}]"),
                format!("label \"{name}\" does not exist"),
            )
        })?);
    }
    Ok(ids)
}

/// Checks, under a shared lock on the check value, that `cipher` is
/// the key the database uses, so that nothing is sealed under a key
/// that `rotate-secret` has replaced in the meantime.
/// `check_current_key`'s read, as a statement of a batch; its row goes to
/// `check_key_row`.
pub(super) fn push_current_key(statements: &mut Statements) {
    statements
        .next("SELECT value FROM settings WHERE key = ")
        .push_bind(SECRET_CHECK_KEY)
        .push(SHARE_ROW);
}

/// The check of `push_current_key`'s row (none: no check value yet):
/// the value, as stored, if there is one and `cipher` opens it.
pub(super) fn check_key_row(
    row: Option<<super::Db as sqlx::Database>::Row>,
    cipher: &SecretCipher,
) -> Result<Option<String>> {
    let Some(row) = row else {
        return Ok(None);
    };
    let (hex_value,): (String,) = sqlx::FromRow::from_row(&row)?;
    let sealed =
        hex::decode(&hex_value).map_err(|_| StoreError::Corrupt("secret check value".into()))?;
    cipher.open(&sealed)?;
    Ok(Some(hex_value))
}

/// `push_current_key`'s check folded into a statement that writes: a
/// condition that holds only while the check value is still `verified`,
/// under the same shared row lock.
pub(super) fn push_key_still(q: &mut sqlx::QueryBuilder<Db>, verified: &str) {
    q.push(" WHERE EXISTS (SELECT 1 FROM settings WHERE key = ")
        .push_bind(SECRET_CHECK_KEY)
        .push(" AND value = ")
        .push_bind(verified.to_string())
        .push(SHARE_ROW)
        .push(")");
}

/// The shared row lock of `shared!`, for a statement built in pieces.
const SHARE_ROW: &str = shared!("");

pub(super) async fn check_current_key(conn: &mut Conn, cipher: &SecretCipher) -> Result<()> {
    let value: Option<String> =
        sqlx::query_scalar(shared!("SELECT value FROM settings WHERE key = $1"))
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

/// A network as `place_address` reads it: id, cidr, gateway, pool start
/// and end.
pub(super) type NetworkBounds = (i64, String, Option<String>, Option<String>, Option<String>);

/// Finds the network of `location` that holds `ip`, and checks the
/// address is usable by a host and not taken by another interface.
pub(super) async fn place_address(
    conn: &mut Conn,
    location: i64,
    ip: Ipv4Addr,
    interface_id: Option<i64>,
    field: &str,
) -> Result<i64> {
    let nets: Vec<NetworkBounds> = sqlx::query_as(
        "SELECT id, cidr, gateway, pool_start, pool_end FROM networks WHERE location_id = $1 ORDER BY id",
    )
    .bind(location)
    .fetch_all(&mut *conn)
    .await?;
    let id = network_for(&nets, ip, field)?;
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
    Ok(id)
}

/// The first of a location's networks `nets` (in id order) that holds
/// `ip`, once checked that a host may have the address there (not the
/// network's own, its broadcast or its gateway, outside its pool).
pub(super) fn network_for(nets: &[NetworkBounds], ip: Ipv4Addr, field: &str) -> Result<i64> {
    for (id, cidr, gateway, pool_start, pool_end) in nets {
        let net: ipnet::Ipv4Net = stored(cidr, "cidr")?;
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
            return Err(StoreError::invalid(
                field,
                format!("{ip} is the gateway of {net}"),
            ));
        }
        if let (Some(start), Some(end)) = (pool_start, pool_end) {
            let (start, end): (Ipv4Addr, Ipv4Addr) =
                (stored(start, "pool start")?, stored(end, "pool end")?);
            if start <= ip && ip <= end {
                return Err(StoreError::invalid(
                    field,
                    format!(
                        "{ip} is inside the DHCP pool {start}-{end} of {net}; fixed addresses must lie outside it"
                    ),
                ));
            }
        }
        return Ok(*id);
    }
    Err(StoreError::invalid(
        field,
        format!("{ip} is not inside any network of the server's location"),
    ))
}

/// Writes one interface of `server_id`: updates the row with the
/// same MAC or `id`, otherwise inserts.
pub(super) async fn put_interface(
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
        Some(ip) => {
            Some(place_address(conn, location, ip, target, &format!("{field}.ipv4")).await?)
        }
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

pub(super) fn name_conflict(e: sqlx::Error, field: &str, name: &str) -> StoreError {
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
pub(super) async fn put_server(
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
                    StoreError::invalid(
                        "bmc.credential",
                        format!("credential \"{name}\" does not exist"),
                    )
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
        // A server just written has no interfaces yet to drop or free.
        if id.is_some() {
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
        }
        for (i, iface) in interfaces.iter().enumerate() {
            put_interface(
                conn,
                server_id,
                location,
                iface,
                None,
                &format!("interfaces[{i}]"),
            )
            .await?;
        }
    }
    Ok(server_id)
}

/// Writes a new server and its `server.created` event.
pub(super) async fn create_one_server(
    conn: &mut Conn,
    cipher: &SecretCipher,
    spec: &ServerSpec,
) -> Result<Server> {
    put_server(conn, cipher, spec, None).await?;
    emit_server(conn, "created", &spec.fqdn).await
}

pub(super) async fn emit_server(conn: &mut Conn, action: &str, fqdn: &Fqdn) -> Result<Server> {
    let server = fetch_server(conn, fqdn).await?;
    emit(conn, &format!("server.{action}"), event(&server)).await?;
    Ok(server)
}

pub(super) async fn count_where(conn: &mut Conn, sql: &'static str, id: i64) -> Result<u64> {
    let n: i64 = sqlx::query_scalar(sql)
        .bind(id)
        .fetch_one(&mut *conn)
        .await?;
    Ok(n.max(0) as u64)
}

/// Single-interface endpoints name fields without a list prefix.
pub(super) fn strip_interface_prefix(e: StoreError) -> StoreError {
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

/// A network's options as stored: code and value, as JSON text.
pub(super) fn options_text(
    options: &[bootloader_core::dhcp::options::DhcpOptionSetting],
) -> String {
    let stored: Vec<serde_json::Value> = options
        .iter()
        .map(|o| serde_json::json!({"code": o.code, "value": o.value}))
        .collect();
    serde_json::Value::Array(stored).to_string()
}

/// Writes a new location and its event (the caller's transaction).
pub(super) async fn insert_location(conn: &mut Conn, new: &NewLocation) -> Result<Location> {
    let exists: Option<i64> = sqlx::query_scalar("SELECT id FROM locations WHERE name = $1")
        .bind(new.name.as_str())
        .fetch_optional(&mut *conn)
        .await?;
    if exists.is_some() {
        return Err(StoreError::conflict(
            "name",
            format!("location {} already exists", new.name),
        ));
    }
    sqlx::query(
        "INSERT INTO locations (name, description, created_at, updated_at) VALUES ($1, $2, $3, $3)",
    )
    .bind(new.name.as_str())
    .bind(&new.description)
    .bind(now())
    .execute(&mut *conn)
    .await?;
    let location = fetch_location(conn, &new.name).await?;
    emit(conn, "location.created", event(&location)).await?;
    Ok(location)
}

/// Writes a new label and its event.
pub(super) async fn insert_label(conn: &mut Conn, name: &Name, description: &str) -> Result<Label> {
    if fetch_label(conn, name).await.is_ok() {
        return Err(StoreError::conflict(
            "name",
            format!("label {name} already exists"),
        ));
    }
    sqlx::query("INSERT INTO labels (name, description, created_at) VALUES ($1, $2, $3)")
        .bind(name.as_str())
        .bind(description)
        .bind(now())
        .execute(&mut *conn)
        .await?;
    let label = fetch_label(conn, name).await?;
    emit(conn, "label.created", event(&label)).await?;
    Ok(label)
}

/// Checks and writes a new network and its event.
pub(super) async fn insert_network(conn: &mut Conn, spec: &NetworkSpec) -> Result<Network> {
    let location = check_network(conn, spec, None).await?;
    let id: i64 = sqlx::query_scalar(
        "INSERT INTO networks (location_id, cidr, gateway, nameservers, domain, pool_start, pool_end, \
         description, created_at, updated_at, dhcp_options) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $9, $10) RETURNING id",
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
    .bind(options_text(&spec.dhcp_options))
    .fetch_one(&mut *conn)
    .await?;
    let network = fetch_network(conn, id).await?;
    emit(conn, "network.created", event(&network)).await?;
    Ok(network)
}
