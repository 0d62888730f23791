//! Named secrets attached to servers (the older system's credentials),
//! sealed like BMC passwords; a server's BMC login, which may come from
//! them; and the names behind numeric ids. Called from the
//! `InventoryStore` implementation in `inventory.rs`.

use time::OffsetDateTime;

use super::{Backend, Conn};
use crate::sql::stored;
use crate::types::{Keyed, ServerSecret};
use crate::{Result, SecretCipher, StoreError};
use bootloader_core::model::{Fqdn, Secret};

use super::helpers::*;

type SecretRow = (i64, i64, String, String, Vec<u8>, OffsetDateTime);

/// A server's id, its own BMC username and sealed password, and its named
/// credential's.
type LoginRow = (
    i64,
    Option<String>,
    Option<Vec<u8>>,
    Option<String>,
    Option<Vec<u8>>,
);

const SECRET_SELECT: &str = "SELECT x.id, x.server_id, s.fqdn, x.name, x.data_sealed, x.created_at \
     FROM server_secrets x JOIN servers s ON s.id = x.server_id";

/// The most bytes a secret holds.
pub const MAX_SECRET: usize = 4096;

fn open(b: &Backend, row: SecretRow) -> Result<ServerSecret> {
    let (id, server_id, fqdn, name, sealed, created_at) = row;
    Ok(ServerSecret {
        id,
        server_id,
        server: stored(&fqdn, "server FQDN")?,
        name,
        data: Secret::new(b.cipher.open(&sealed)?),
        created_at,
    })
}

pub(super) async fn key_of(b: &Backend, kind: Keyed, id: i64) -> Result<String> {
    let (sql, what) = match kind {
        Keyed::Location => ("SELECT name FROM locations WHERE id = $1", "location"),
        Keyed::Label => ("SELECT name FROM labels WHERE id = $1", "label"),
        Keyed::Server => ("SELECT fqdn FROM servers WHERE id = $1", "server"),
        Keyed::User => ("SELECT name FROM users WHERE id = $1", "user"),
    };
    let mut conn = b.pool.acquire().await?;
    let name: Option<String> = sqlx::query_scalar(sql)
        .bind(id)
        .fetch_optional(&mut *conn)
        .await?;
    name.ok_or_else(|| StoreError::not_found(what, id))
}

/// The BMC login of a server: its own username and password, else its
/// named credential's, else the older system's `ipmi_username` and
/// `ipmi_password` secrets attached to it (the latest of each name).
pub(super) async fn bmc_login(b: &Backend, fqdn: &Fqdn) -> Result<Option<(String, String)>> {
    let mut conn = b.pool.acquire().await?;
    let row: Option<LoginRow> =
        sqlx::query_as(
            "SELECT s.id, s.bmc_username, s.bmc_password_encrypted, c.username, c.password_encrypted \
             FROM servers s LEFT JOIN credentials c ON c.id = s.bmc_credential_id WHERE s.fqdn = $1",
        )
        .bind(fqdn.as_str())
        .fetch_optional(&mut *conn)
        .await?;
    let (id, user, sealed, cred_user, cred_sealed) =
        row.ok_or_else(|| StoreError::not_found("server", fqdn))?;
    // The server's own values win; the named credential fills gaps;
    // then the secrets the older system kept on the server (the
    // latest of each name).
    let attached: Vec<(String, Vec<u8>)> = sqlx::query_as(
        "SELECT name, data_sealed FROM server_secrets \
         WHERE server_id = $1 AND name IN ('ipmi_username', 'ipmi_password') ORDER BY id",
    )
    .bind(id)
    .fetch_all(&mut *conn)
    .await?;
    let latest = |wanted: &str| {
        attached
            .iter()
            .rev()
            .find(|(name, _)| name == wanted)
            .map(|(_, sealed)| sealed.clone())
    };
    let password = match sealed.or(cred_sealed).or_else(|| latest("ipmi_password")) {
        Some(p) => Some(b.cipher.open(&p)?),
        None => None,
    };
    let user = match user.or(cred_user) {
        Some(u) => Some(u),
        None => latest("ipmi_username")
            .map(|u| b.cipher.open(&u))
            .transpose()?,
    };
    Ok(user.zip(password))
}

pub(super) async fn add(
    b: &Backend,
    server: &Fqdn,
    name: &str,
    data: &Secret,
) -> Result<ServerSecret> {
    let mut turn = b.write_turn(crate::Lane::Ordinary).await?;
    let mut tx = turn.begin().await?;
    check_current_key(&mut tx, &b.cipher).await?;
    let owner = fetch_server(&mut tx, server).await?;
    let id = insert(&mut tx, &b.cipher, owner.id, &owner.fqdn, name, data).await?;
    tx.commit().await?;
    get(b, id).await
}

/// Checks, seals and writes a secret of server `server_id` (named `fqdn`)
/// and its event in the caller's transaction; the caller has checked the
/// key (`check_current_key`). Returns its id.
pub(super) async fn insert(
    conn: &mut Conn,
    cipher: &SecretCipher,
    server_id: i64,
    fqdn: &Fqdn,
    name: &str,
    data: &Secret,
) -> Result<i64> {
    if name.is_empty() || name.len() > 255 || name.chars().any(char::is_control) {
        return Err(StoreError::invalid(
            "name",
            "1 to 255 characters, no control characters",
        ));
    }
    if data.len() > MAX_SECRET {
        return Err(StoreError::invalid(
            "data",
            format!("at most {MAX_SECRET} bytes"),
        ));
    }
    let id: i64 = sqlx::query_scalar(
        "INSERT INTO server_secrets (server_id, name, data_sealed, created_at) \
         VALUES ($1, $2, $3, $4) RETURNING id",
    )
    .bind(server_id)
    .bind(name)
    .bind(cipher.seal(data.expose())?)
    .bind(now())
    .fetch_one(&mut *conn)
    .await?;
    // The event names the secret, never its value.
    emit(
        conn,
        "server_secret.created",
        serde_json::json!({"id": id, "server": fqdn, "name": name}),
    )
    .await?;
    Ok(id)
}

pub(super) async fn get(b: &Backend, id: i64) -> Result<ServerSecret> {
    let mut conn = b.pool.acquire().await?;
    let row: Option<SecretRow> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "{SECRET_SELECT} WHERE x.id = $1"
    )))
    .bind(id)
    .fetch_optional(&mut *conn)
    .await?;
    open(
        b,
        row.ok_or_else(|| StoreError::not_found("credential", id))?,
    )
}

pub(super) async fn list(
    b: &Backend,
    server_id: Option<i64>,
    name: Option<&str>,
) -> Result<Vec<ServerSecret>> {
    let mut conn = b.pool.acquire().await?;
    let rows: Vec<SecretRow> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "{SECRET_SELECT} WHERE ($1 IS NULL OR x.server_id = $1) AND ($2 IS NULL OR x.name = $2) \
         ORDER BY x.id"
    )))
    .bind(server_id)
    .bind(name)
    .fetch_all(&mut *conn)
    .await?;
    rows.into_iter().map(|r| open(b, r)).collect()
}

pub(super) async fn delete(b: &Backend, id: i64) -> Result<()> {
    let mut turn = b.write_turn(crate::Lane::Ordinary).await?;
    let mut tx = turn.begin().await?;
    let row: Option<(String, String)> = sqlx::query_as(
        "SELECT s.fqdn, x.name FROM server_secrets x JOIN servers s ON s.id = x.server_id \
         WHERE x.id = $1",
    )
    .bind(id)
    .fetch_optional(&mut *tx)
    .await?;
    let (server, name) = row.ok_or_else(|| StoreError::not_found("credential", id))?;
    sqlx::query("DELETE FROM server_secrets WHERE id = $1")
        .bind(id)
        .execute(&mut *tx)
        .await?;
    emit(
        &mut tx,
        "server_secret.deleted",
        serde_json::json!({"id": id, "server": server, "name": name}),
    )
    .await?;
    tx.commit().await?;
    Ok(())
}
