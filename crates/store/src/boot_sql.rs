//! The SQL of `BootStore`, written once and expanded for each backend by
//! `boot_sql_store!`, like `sql.rs` does for the inventory.

/// Row types of the boot tables.
pub(super) mod rows {
    use time::OffsetDateTime;

    #[derive(sqlx::FromRow)]
    pub struct BootTargetRow {
        pub server_id: i64,
        pub fqdn: String,
        pub name: String,
        pub mac: String,
        pub ipv4: Option<String>,
        pub network_id: Option<i64>,
        pub deployment_id: Option<i64>,
        pub state: Option<String>,
    }

    #[derive(sqlx::FromRow)]
    pub struct DeploymentRow {
        pub id: i64,
        pub fqdn: String,
        pub profile_id: i64,
        pub profile_name: String,
        pub profile_version: String,
        pub action_count: i64,
        pub state: String,
        pub step: Option<String>,
        pub action_index: i64,
        pub actions_done: i64,
        pub error: Option<String>,
        pub repeat_of: Option<i64>,
        pub created_at: OffsetDateTime,
        pub updated_at: OffsetDateTime,
        pub finished_at: Option<OffsetDateTime>,
        pub runner: Option<String>,
    }

    #[derive(sqlx::FromRow)]
    pub struct LeaseRow {
        pub network_id: i64,
        pub ip: String,
        pub mac: String,
        pub state: String,
        pub expires_at: i64,
        pub hostname: String,
        pub updated_at: i64,
    }

    #[derive(sqlx::FromRow)]
    pub struct BootEventRow {
        pub id: i64,
        pub at: OffsetDateTime,
        pub mac: Option<String>,
        pub peer: String,
        pub phase: String,
        pub request: String,
        pub outcome: String,
        pub detail: String,
    }

    #[derive(sqlx::FromRow)]
    pub struct CallbackRow {
        pub name: String,
        pub method: String,
        pub body: String,
        pub received_at: OffsetDateTime,
    }

    #[derive(sqlx::FromRow)]
    pub struct UnknownMacRow {
        pub mac: String,
        pub events: i64,
        pub first_seen: OffsetDateTime,
        pub last_seen: OffsetDateTime,
    }
}

pub(super) mod convert {
    use super::rows::*;
    use crate::boot::*;
    use crate::sql::stored;
    use crate::{Result, StoreError};
    use bootloader_core::model::{DeploymentState, Outcome, Phase};

    pub fn boot_target(r: BootTargetRow) -> Result<BootTarget> {
        let reservation = match (r.network_id, r.ipv4) {
            (Some(n), Some(ip)) => Some((n, stored(&ip, "interface address")?)),
            _ => None,
        };
        let deployment = match (r.deployment_id, r.state) {
            (Some(id), Some(state)) => Some((id, stored(&state, "deployment state")?)),
            _ => None,
        };
        Ok(BootTarget {
            server_id: r.server_id,
            fqdn: stored(&r.fqdn, "fqdn")?,
            interface: r.name,
            mac: stored(&r.mac, "mac")?,
            reservation,
            deployment,
        })
    }

    pub fn deployment(r: DeploymentRow) -> Result<DeploymentRecord> {
        let state: DeploymentState = stored(&r.state, "deployment state")?;
        let progress = if state == DeploymentState::Complete {
            100
        } else if r.action_count > 0 {
            ((r.actions_done.max(0) * 100) / r.action_count).min(99) as u8
        } else {
            0
        };
        Ok(DeploymentRecord {
            id: r.id,
            server: stored(&r.fqdn, "fqdn")?,
            profile_id: r.profile_id,
            profile: format!("{}=={}", r.profile_name, r.profile_version),
            state,
            progress,
            step: r.step,
            action_index: r.action_index.max(0) as u32,
            error: r.error,
            repeat_of: r.repeat_of,
            created_at: r.created_at,
            updated_at: r.updated_at,
            finished_at: r.finished_at,
            runner: r.runner,
        })
    }

    pub fn lease(r: LeaseRow) -> Result<Lease> {
        Ok(Lease {
            network_id: r.network_id,
            ip: stored(&r.ip, "lease address")?,
            mac: stored(&r.mac, "lease mac")?,
            state: r.state.parse().map_err(StoreError::Corrupt)?,
            expires_at: r.expires_at,
            hostname: r.hostname,
            updated_at: r.updated_at,
        })
    }

    pub fn boot_event(r: BootEventRow) -> Result<(i64, BootEvent)> {
        let phase = match r.phase.as_str() {
            "dhcp" => Phase::Dhcp,
            "tftp" => Phase::Tftp,
            "http" => Phase::Http,
            "power" => Phase::Power,
            other => return Err(StoreError::Corrupt(format!("boot event phase {other:?}"))),
        };
        let outcome = match r.outcome.as_str() {
            "answered" => Outcome::Answered,
            "silent" => Outcome::Silent,
            "refused" => Outcome::Refused,
            "failed" => Outcome::Failed,
            "done" => Outcome::Done,
            other => return Err(StoreError::Corrupt(format!("boot event outcome {other:?}"))),
        };
        let mac = match r.mac {
            Some(m) => Some(stored(&m, "boot event mac")?),
            None => None,
        };
        Ok((
            r.id,
            BootEvent {
                at: r.at,
                mac,
                peer: r.peer,
                phase,
                request: r.request,
                outcome,
                detail: r.detail,
            },
        ))
    }
}

/// A deployment as `DeploymentRow` reads it; append a WHERE clause.
pub(super) const DEPLOYMENT_SELECT: &str = "SELECT d.id, s.fqdn, d.profile_id, p.name AS profile_name, \
     p.version AS profile_version, CAST(p.action_count AS BIGINT) AS action_count, d.state, d.step, \
     CAST(d.action_index AS BIGINT) AS action_index, CAST(d.actions_done AS BIGINT) AS actions_done, \
     d.error, d.repeat_of, d.created_at, d.updated_at, d.finished_at, d.runner \
     FROM deployments d JOIN servers s ON s.id = d.server_id JOIN profiles p ON p.id = d.profile_id";

/// States in which a deployment is active, as an SQL list.
pub(super) const ACTIVE_STATES: &str =
    "('new', 'preparing', 'installing', 'configuring', 'postconfiguring')";

/// Expands to `impl BootStore for $store`; `$for_update` as in `sql_store!`.
macro_rules! boot_sql_store {
    ($store:ident, $db:ty, $for_update:literal) => {
        mod boot_store_impl {
            use std::net::Ipv4Addr;

            use async_trait::async_trait;
            use time::OffsetDateTime;

            use super::$store;
            use bootloader_core::model::{DeploymentState, Fqdn, LeaseState, MacAddr, TokenHash, Via};
            use crate::boot::*;
            use crate::boot_sql::rows::*;
            use crate::boot_sql::{convert, ACTIVE_STATES, DEPLOYMENT_SELECT};
            use crate::{Listing, Page, Result, StoreError};

            type Conn = <$db as sqlx::Database>::Connection;

            async fn emit(conn: &mut Conn, routing_key: &str, payload: serde_json::Value) -> Result<()> {
                sqlx::query("INSERT INTO outbox (routing_key, payload, created_at) VALUES ($1, $2, $3)")
                    .bind(routing_key)
                    .bind(sqlx::types::Json(payload))
                    .bind(OffsetDateTime::now_utc())
                    .execute(&mut *conn)
                    .await?;
                Ok(())
            }

            async fn fetch_deployment(conn: &mut Conn, id: i64) -> Result<DeploymentRecord> {
                let row: Option<DeploymentRow> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
                    "{DEPLOYMENT_SELECT} WHERE d.id = $1"
                )))
                .bind(id)
                .fetch_optional(&mut *conn)
                .await?;
                convert::deployment(row.ok_or_else(|| StoreError::not_found("deployment", id))?)
            }

            async fn put_served(
            tx: &mut Conn,
            deployment_id: i64,
            via: Via,
            path: &str,
            content: &[u8],
            file: Option<&std::path::Path>,
            ) -> Result<()> {
                // Several active deployments may serve one path (a rack
                // installing from one kernel) as long as they serve the same
                // bytes; different bytes at one path would be a coin toss.
                let others: Vec<(i64, Vec<u8>, Option<String>)> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
                    "SELECT f.deployment_id, f.content, f.file_path FROM served_files f \
                     JOIN deployments d ON d.id = f.deployment_id \
                     WHERE f.via = $1 AND f.path = $2 AND f.deployment_id <> $3 AND d.state IN {ACTIVE_STATES} {for_update}",
                    for_update = $for_update
                )))
                .bind(via.as_str())
                .bind(path)
                .bind(deployment_id)
                .fetch_all(&mut *tx)
                .await?;
                let file_text = file.map(|f| f.display().to_string());
                if let Some((other, _, _)) = others
                    .iter()
                    .find(|(_, c, f)| c.as_slice() != content || *f != file_text)
                {
                    return Err(StoreError::conflict(
                        "filename",
                        format!("{} {path:?} is served with other contents by active deployment {other}", via.as_str()),
                    ));
                }
                sqlx::query(
                    "INSERT INTO served_files (deployment_id, via, path, content, file_path, created_at) \
                     VALUES ($1, $2, $3, $4, $5, $6) \
                     ON CONFLICT (deployment_id, via, path) DO UPDATE SET \
                     content = excluded.content, file_path = excluded.file_path, created_at = excluded.created_at",
                )
                .bind(deployment_id)
                .bind(via.as_str())
                .bind(path)
                .bind(content)
                .bind(file_text)
                .bind(OffsetDateTime::now_utc())
                .execute(&mut *tx)
                .await?;
                Ok(())
            }


            const LEASE_SELECT: &str =
                "SELECT network_id, ip, mac, state, expires_at, hostname, updated_at FROM leases";

            #[async_trait]
            impl BootStore for $store {
                async fn boot_target(&self, mac: MacAddr) -> Result<Option<BootTarget>> {
                    let row: Option<BootTargetRow> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
                        "SELECT s.id AS server_id, s.fqdn, i.name, i.mac, i.ipv4, i.network_id, \
                         d.id AS deployment_id, d.state \
                         FROM interfaces i JOIN servers s ON s.id = i.server_id \
                         LEFT JOIN deployments d ON d.server_id = s.id AND d.state IN {ACTIVE_STATES} \
                         WHERE i.mac = $1"
                    )))
                    .bind(mac.to_string())
                    .fetch_optional(&self.pool)
                    .await?;
                    row.map(convert::boot_target).transpose()
                }

                async fn create_deployment(
                    &self,
                    server: &Fqdn,
                    profile_id: i64,
                    token_hash: &TokenHash,
                ) -> Result<DeploymentRecord> {
                    let (_writer, mut tx) = self.begin_write().await?;
                    let server_id: i64 = sqlx::query_scalar("SELECT id FROM servers WHERE fqdn = $1")
                        .bind(server.as_str())
                        .fetch_optional(&mut *tx)
                        .await?
                        .ok_or_else(|| StoreError::invalid("server", format!("server {server:?} does not exist")))?;
                    let now = OffsetDateTime::now_utc();
                    let id: i64 = sqlx::query_scalar(
                        "INSERT INTO deployments (server_id, profile_id, state, token_hash, created_at, updated_at) \
                         VALUES ($1, $2, 'new', $3, $4, $4) RETURNING id",
                    )
                    .bind(server_id)
                    .bind(profile_id)
                    .bind(&token_hash.0)
                    .bind(now)
                    .fetch_one(&mut *tx)
                    .await
                    .map_err(|e| match StoreError::from(e) {
                        StoreError::Conflict { .. } => StoreError::conflict(
                            "server",
                            format!("{server} already has an active deployment"),
                        ),
                        StoreError::InUse(_) => StoreError::invalid("profile", format!("profile {profile_id} does not exist")),
                        other => other,
                    })?;
                    let record = fetch_deployment(&mut tx, id).await?;
                    emit(&mut tx, "deployment.new", serde_json::to_value(&record).unwrap_or_default()).await?;
                    tx.commit().await?;
                    Ok(record)
                }

                async fn deployment(&self, id: i64) -> Result<DeploymentRecord> {
                    let mut conn = self.pool.acquire().await?;
                    fetch_deployment(&mut conn, id).await
                }

                async fn set_deployment_state(&self, id: i64, state: DeploymentState) -> Result<()> {
                    let (_writer, mut tx) = self.begin_write().await?;
                    let done = sqlx::query("UPDATE deployments SET state = $1, updated_at = $2 WHERE id = $3")
                        .bind(state.as_str())
                        .bind(OffsetDateTime::now_utc())
                        .bind(id)
                        .execute(&mut *tx)
                        .await?;
                    if done.rows_affected() == 0 {
                        return Err(StoreError::not_found("deployment", id));
                    }
                    let record = fetch_deployment(&mut tx, id).await?;
                    emit(&mut tx, &format!("deployment.{state}"), serde_json::to_value(&record).unwrap_or_default()).await?;
                    tx.commit().await?;
                    Ok(())
                }

                async fn serve_file(&self, deployment_id: i64, via: Via, path: &str, content: &[u8]) -> Result<()> {
                    let (_writer, mut tx) = self.begin_write().await?;
                    put_served(&mut *tx, deployment_id, via, path, content, None).await?;
                    tx.commit().await?;
                    Ok(())
                }

                async fn serve_cached_file(&self, deployment_id: i64, via: Via, path: &str, file: &std::path::Path) -> Result<()> {
                    let (_writer, mut tx) = self.begin_write().await?;
                    put_served(&mut *tx, deployment_id, via, path, &[], Some(file)).await?;
                    tx.commit().await?;
                    Ok(())
                }

                async fn unserve_file(&self, deployment_id: i64, via: Via, path: &str) -> Result<bool> {
                    let done = sqlx::query("DELETE FROM served_files WHERE deployment_id = $1 AND via = $2 AND path = $3")
                        .bind(deployment_id)
                        .bind(via.as_str())
                        .bind(path)
                        .execute(&self.pool)
                        .await?;
                    Ok(done.rows_affected() > 0)
                }

                async fn served_file(&self, via: Via, path: &str) -> Result<Option<ServedFile>> {
                    let row: Option<(i64, i64, OffsetDateTime, Option<String>)> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
                        "SELECT f.id, f.deployment_id, f.created_at, f.file_path FROM served_files f \
                         JOIN deployments d ON d.id = f.deployment_id \
                         WHERE f.via = $1 AND f.path = $2 AND d.state IN {ACTIVE_STATES} ORDER BY f.id LIMIT 1"
                    )))
                    .bind(via.as_str())
                    .bind(path)
                    .fetch_optional(&self.pool)
                    .await?;
                    let Some((id, deployment_id, version, file)) = row else {
                        return Ok(None);
                    };
                    if let Some(file) = file {
                        return Ok(Some(ServedFile {
                            deployment_id,
                            content: bytes::Bytes::new(),
                            file: Some(std::path::PathBuf::from(file)),
                        }));
                    }
                    // Rendered bytes: read once per version, then shared.
                    let content = match self.served.get(id, version) {
                        Some(b) => b,
                        None => {
                            let _loading = self.served.loading.lock().await;
                            match self.served.get(id, version) {
                                Some(b) => b,
                                None => {
                                    // Rewritten since the look-up: these are the newer
                                    // bytes, kept under the older version, which the
                                    // next look-up no longer names.
                                    let content: Option<Vec<u8>> = sqlx::query_scalar(
                                        "SELECT content FROM served_files WHERE id = $1",
                                    )
                                    .bind(id)
                                    .fetch_optional(&self.pool)
                                    .await?;
                                    let Some(content) = content else {
                                        return Ok(None);
                                    };
                                    let content = bytes::Bytes::from(content);
                                    self.served.put(id, version, content.clone());
                                    content
                                }
                            }
                        }
                    };
                    Ok(Some(ServedFile {
                        deployment_id,
                        content,
                        file: None,
                    }))
                }

                async fn callback_deployment(&self, token: &TokenHash) -> Result<Option<i64>> {
                    Ok(sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
                        "SELECT id FROM deployments WHERE token_hash = $1 AND state IN {ACTIVE_STATES}"
                    )))
                    .bind(&token.0)
                    .fetch_optional(&self.pool)
                    .await?)
                }

                async fn record_callback(&self, token: &TokenHash, name: &str, method: &str, body: &str, max: u32) -> Result<CallbackReceipt> {
                    let (_writer, mut tx) = self.begin_write().await?;
                    let found: Option<i64> = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
                        "SELECT id FROM deployments WHERE token_hash = $1 AND state IN {ACTIVE_STATES}{}",
                        $for_update
                    )))
                    .bind(&token.0)
                    .fetch_optional(&mut *tx)
                    .await?;
                    let Some(deployment_id) = found else {
                        return Ok(CallbackReceipt::UnknownToken);
                    };
                    let (held, this): (i64, i64) = sqlx::query_as(
                        "SELECT COUNT(*), COUNT(CASE WHEN name = $2 THEN 1 END) FROM callbacks WHERE deployment_id = $1",
                    )
                    .bind(deployment_id)
                    .bind(name)
                    .fetch_one(&mut *tx)
                    .await?;
                    if this > 0 {
                        return Ok(CallbackReceipt::Recorded { deployment_id, first: false });
                    }
                    if held >= i64::from(max) {
                        return Ok(CallbackReceipt::Full { deployment_id });
                    }
                    let now = OffsetDateTime::now_utc();
                    let done = sqlx::query(
                        "INSERT INTO callbacks (deployment_id, name, method, body, received_at) \
                         VALUES ($1, $2, $3, $4, $5) ON CONFLICT (deployment_id, name) DO NOTHING",
                    )
                    .bind(deployment_id)
                    .bind(name)
                    .bind(method)
                    .bind(body)
                    .bind(now)
                    .execute(&mut *tx)
                    .await?;
                    let first = done.rows_affected() > 0;
                    if first {
                        let payload = serde_json::json!({
                            "deployment_id": deployment_id, "name": name, "method": method,
                            "received_at": now.format(&time::format_description::well_known::Rfc3339).unwrap_or_default(),
                        });
                        emit(&mut tx, "deployment.callback", payload).await?;
                    }
                    tx.commit().await?;
                    Ok(CallbackReceipt::Recorded { deployment_id, first })
                }

                async fn callbacks(&self, deployment_id: i64) -> Result<Vec<CallbackRecord>> {
                    let rows: Vec<CallbackRow> = sqlx::query_as(
                        "SELECT name, method, body, received_at FROM callbacks WHERE deployment_id = $1 ORDER BY id",
                    )
                    .bind(deployment_id)
                    .fetch_all(&self.pool)
                    .await?;
                    Ok(rows
                        .into_iter()
                        .map(|r| CallbackRecord { name: r.name, method: r.method, body: r.body, received_at: r.received_at })
                        .collect())
                }
            }

            #[async_trait]
            impl LeaseStore for $store {
                async fn lease_of(&self, network_id: i64, mac: MacAddr) -> Result<Option<Lease>> {
                    let row: Option<LeaseRow> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
                        "{LEASE_SELECT} WHERE network_id = $1 AND mac = $2 ORDER BY updated_at DESC, expires_at DESC LIMIT 1"
                    )))
                    .bind(network_id)
                    .bind(mac.to_string())
                    .fetch_optional(&self.pool)
                    .await?;
                    row.map(convert::lease).transpose()
                }

                async fn lease_at(&self, network_id: i64, ip: Ipv4Addr) -> Result<Option<Lease>> {
                    let row: Option<LeaseRow> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
                        "{LEASE_SELECT} WHERE network_id = $1 AND ip = $2"
                    )))
                    .bind(network_id)
                    .bind(ip.to_string())
                    .fetch_optional(&self.pool)
                    .await?;
                    row.map(convert::lease).transpose()
                }

                async fn claim_lease(&self, c: &LeaseClaim) -> Result<bool> {
                    let (_writer, mut tx) = self.begin_write().await?;
                    let before: Option<LeaseRow> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
                        "{LEASE_SELECT} WHERE network_id = $1 AND ip = $2 {for_update}",
                        for_update = $for_update
                    )))
                    .bind(c.network_id)
                    .bind(c.ip.to_string())
                    .fetch_optional(&mut *tx)
                    .await?;
                    let mac = c.mac.to_string();
                    // The condition is evaluated under the row's lock, so of
                    // two daemons claiming one free address only one wins.
                    let done = sqlx::query(
                        "INSERT INTO leases (network_id, ip, mac, state, expires_at, hostname, updated_at) \
                         VALUES ($1, $2, $3, $4, $5, $6, $7) \
                         ON CONFLICT (network_id, ip) DO UPDATE SET mac = excluded.mac, state = excluded.state, \
                         expires_at = excluded.expires_at, hostname = excluded.hostname, updated_at = excluded.updated_at \
                         WHERE (leases.mac = excluded.mac AND leases.state <> 'declined') \
                            OR leases.expires_at <= excluded.updated_at OR leases.state = 'released'",
                    )
                    .bind(c.network_id)
                    .bind(c.ip.to_string())
                    .bind(&mac)
                    .bind(c.state.as_str())
                    .bind(c.expires_at)
                    .bind(&c.hostname)
                    .bind(c.now)
                    .execute(&mut *tx)
                    .await?;
                    if done.rows_affected() == 0 {
                        tx.rollback().await?;
                        return Ok(false);
                    }
                    if c.state == LeaseState::Bound {
                        // A client holds one address per network.
                        sqlx::query(
                            "UPDATE leases SET state = 'released', expires_at = $1, updated_at = $1 \
                             WHERE network_id = $2 AND mac = $3 AND ip <> $4 AND state IN ('offered', 'bound')",
                        )
                        .bind(c.now)
                        .bind(c.network_id)
                        .bind(&mac)
                        .bind(c.ip.to_string())
                        .execute(&mut *tx)
                        .await?;
                        let renewal = before.as_ref().is_some_and(|b| {
                            b.mac == mac && b.state == "bound" && b.expires_at > c.now
                        });
                        if !renewal {
                            let lease = Lease {
                                network_id: c.network_id,
                                ip: c.ip,
                                mac: c.mac,
                                state: LeaseState::Bound,
                                expires_at: c.expires_at,
                                hostname: c.hostname.clone(),
                                updated_at: c.now,
                            };
                            emit(&mut tx, "dhcp.lease.bound", serde_json::to_value(&lease).unwrap_or_default()).await?;
                        }
                    }
                    tx.commit().await?;
                    Ok(true)
                }

                async fn release_lease(&self, network_id: i64, ip: Ipv4Addr, mac: MacAddr, now: i64) -> Result<bool> {
                    let (_writer, mut tx) = self.begin_write().await?;
                    let done = sqlx::query(
                        "UPDATE leases SET state = 'released', expires_at = $1, updated_at = $1 \
                         WHERE network_id = $2 AND ip = $3 AND mac = $4 AND state IN ('offered', 'bound')",
                    )
                    .bind(now)
                    .bind(network_id)
                    .bind(ip.to_string())
                    .bind(mac.to_string())
                    .execute(&mut *tx)
                    .await?;
                    let released = done.rows_affected() > 0;
                    if released {
                        let payload = serde_json::json!({"network_id": network_id, "ip": ip, "mac": mac});
                        emit(&mut tx, "dhcp.lease.released", payload).await?;
                    }
                    tx.commit().await?;
                    Ok(released)
                }

                async fn decline_lease(&self, network_id: i64, ip: Ipv4Addr, mac: MacAddr, until: i64, now: i64) -> Result<bool> {
                    let (_writer, mut tx) = self.begin_write().await?;
                    let done = sqlx::query(
                        "UPDATE leases SET state = 'declined', expires_at = $1, updated_at = $2 \
                         WHERE network_id = $3 AND ip = $4 AND mac = $5 AND state IN ('offered', 'bound')",
                    )
                    .bind(until)
                    .bind(now)
                    .bind(network_id)
                    .bind(ip.to_string())
                    .bind(mac.to_string())
                    .execute(&mut *tx)
                    .await?;
                    let declined = done.rows_affected() > 0;
                    if declined {
                        let payload = serde_json::json!({"network_id": network_id, "ip": ip, "mac": mac, "until": until});
                        emit(&mut tx, "dhcp.lease.declined", payload).await?;
                    }
                    tx.commit().await?;
                    Ok(declined)
                }

                async fn list_leases(&self, network_id: Option<i64>, page: Page) -> Result<Listing<Lease>> {
                    let mut conn = self.pool.acquire().await?;
                    // Addresses sort as text here; the API sorts each page.
                    let (total, rows): (i64, Vec<LeaseRow>) = match network_id {
                        Some(n) => (
                            sqlx::query_scalar("SELECT COUNT(*) FROM leases WHERE network_id = $1")
                                .bind(n)
                                .fetch_one(&mut *conn)
                                .await?,
                            sqlx::query_as(sqlx::AssertSqlSafe(format!(
                                "{LEASE_SELECT} WHERE network_id = $1 ORDER BY network_id, ip LIMIT $2 OFFSET $3"
                            )))
                            .bind(n)
                            .bind(i64::from(page.limit))
                            .bind(page.offset as i64)
                            .fetch_all(&mut *conn)
                            .await?,
                        ),
                        None => (
                            sqlx::query_scalar("SELECT COUNT(*) FROM leases")
                                .fetch_one(&mut *conn)
                                .await?,
                            sqlx::query_as(sqlx::AssertSqlSafe(format!(
                                "{LEASE_SELECT} ORDER BY network_id, ip LIMIT $1 OFFSET $2"
                            )))
                            .bind(i64::from(page.limit))
                            .bind(page.offset as i64)
                            .fetch_all(&mut *conn)
                            .await?,
                        ),
                    };
                    Ok(Listing {
                        total: total.max(0) as u64,
                        items: rows.into_iter().map(convert::lease).collect::<Result<_>>()?,
                    })
                }
            }

            #[async_trait]
            impl TimelineStore for $store {
                async fn record_boot_events(&self, events: &[BootEvent]) -> Result<()> {
                    if events.is_empty() {
                        return Ok(());
                    }
                    let (_writer, mut tx) = self.begin_write().await?;
                    for e in events {
                        sqlx::query(
                            "INSERT INTO boot_events (at, mac, peer, phase, request, outcome, detail) \
                             VALUES ($1, $2, $3, $4, $5, $6, $7)",
                        )
                        .bind(e.at)
                        .bind(e.mac.map(|m| m.to_string()))
                        .bind(&e.peer)
                        .bind(e.phase.as_str())
                        .bind(&e.request)
                        .bind(e.outcome.as_str())
                        .bind(&e.detail)
                        .execute(&mut *tx)
                        .await?;
                    }
                    tx.commit().await?;
                    Ok(())
                }

                async fn boot_events(&self, macs: &[MacAddr], before: Option<i64>, limit: u32) -> Result<Vec<(i64, BootEvent)>> {
                    // Placeholders $3.. for the MACs; the values are bound.
                    let list: Vec<String> = (0..macs.len()).map(|i| format!("${}", i + 3)).collect();
                    let filter = if macs.is_empty() {
                        String::new()
                    } else {
                        format!("AND mac IN ({})", list.join(", "))
                    };
                    let sql = format!(
                        "SELECT id, at, mac, peer, phase, request, outcome, detail FROM boot_events \
                         WHERE id < $1 {filter} ORDER BY id DESC LIMIT $2"
                    );
                    let mut q = sqlx::query_as::<_, BootEventRow>(sqlx::AssertSqlSafe(sql))
                        .bind(before.unwrap_or(i64::MAX))
                        .bind(i64::from(limit));
                    for m in macs {
                        q = q.bind(m.to_string());
                    }
                    let rows = q.fetch_all(&self.pool).await?;
                    rows.into_iter().map(convert::boot_event).collect()
                }

                async fn unknown_macs(&self, limit: u32) -> Result<Vec<UnknownMac>> {
                    let mut conn = self.pool.acquire().await?;
                    let rows: Vec<UnknownMacRow> = sqlx::query_as(
                        "SELECT e.mac AS mac, COUNT(*) AS events, MIN(e.at) AS first_seen, MAX(e.at) AS last_seen \
                         FROM boot_events e WHERE e.mac IS NOT NULL \
                         AND NOT EXISTS (SELECT 1 FROM interfaces i WHERE i.mac = e.mac) \
                         GROUP BY e.mac ORDER BY MAX(e.id) DESC LIMIT $1",
                    )
                    .bind(i64::from(limit))
                    .fetch_all(&mut *conn)
                    .await?;
                    let mut out = Vec::with_capacity(rows.len());
                    for r in rows {
                        let last: Option<String> = sqlx::query_scalar(
                            "SELECT request FROM boot_events WHERE mac = $1 ORDER BY id DESC LIMIT 1",
                        )
                        .bind(&r.mac)
                        .fetch_optional(&mut *conn)
                        .await?;
                        out.push(UnknownMac {
                            mac: crate::sql::stored(&r.mac, "boot event mac")?,
                            events: r.events.max(0) as u64,
                            first_seen: r.first_seen,
                            last_seen: r.last_seen,
                            last_request: last.unwrap_or_default(),
                        });
                    }
                    Ok(out)
                }

                async fn prune_boot_events(&self, before: OffsetDateTime, keep: u64) -> Result<u64> {
                    let old = sqlx::query("DELETE FROM boot_events WHERE at < $1")
                        .bind(before)
                        .execute(&self.pool)
                        .await?;
                    // Ids grow with each insert: the newest `keep` stay
                    // (fewer where ids have gaps).
                    let keep = i64::try_from(keep).unwrap_or(i64::MAX);
                    let over = sqlx::query(
                        "DELETE FROM boot_events WHERE id <= (SELECT MAX(id) FROM boot_events) - $1",
                    )
                    .bind(keep)
                    .execute(&self.pool)
                    .await?;
                    Ok(old.rows_affected() + over.rows_affected())
                }
            }
        }
    };
}
