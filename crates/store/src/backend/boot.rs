//! `BootStore`: what a booting machine is answered (boot targets, served files, callbacks).

use std::collections::HashSet;

use async_trait::async_trait;
use time::OffsetDateTime;

use super::{Backend, ONE_WRITER};
use crate::boot::*;
use crate::boot_index::ServedRow;
use crate::boot_sql::rows::*;
use crate::boot_sql::{DEPLOYMENT_SELECT, FINAL_STATES, convert};
use crate::{Result, StoreError};
use bootloader_core::model::{DeploymentState, Fqdn, MacAddr, TokenHash, Via};

use super::Conn;
use super::helpers::emit;

pub(super) async fn fetch_deployment(conn: &mut Conn, id: i64) -> Result<DeploymentRecord> {
    let row: Option<DeploymentRow> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "{DEPLOYMENT_SELECT} WHERE d.id = $1"
    )))
    .bind(id)
    .fetch_optional(&mut *conn)
    .await?;
    convert::deployment(row.ok_or_else(|| StoreError::not_found("deployment", id))?)
}

/// What a served file is: the bytes, or the cache file holding them.
struct Served<'a> {
    deployment_id: i64,
    via: Via,
    path: &'a str,
    content: &'a [u8],
    file: Option<String>,
}

impl Backend {
    /// Serves a file for a deployment. Several active deployments may serve
    /// one path (a rack installing from one kernel) as long as they serve
    /// the same bytes; different bytes at one path would be a coin toss.
    /// Written only where no other active deployment serves other bytes
    /// there: one statement, committed in the same trip (a statement that
    /// wrote nothing leaves nothing to undo), and a read only to name the
    /// deployment that does.
    async fn put_served(&self, served: &Served<'_>) -> Result<()> {
        // The other deployment may end between the write and the read:
        // then the file is written after all.
        for _ in 0..3 {
            let batch = self.begin_batch(crate::Lane::Ordinary).await?;
            let mut statements = batch.statements();
            let q = statements.next(
                "INSERT INTO served_files (deployment_id, via, path, content, file_path, created_at) SELECT ",
            );
            q.push_bind(served.deployment_id)
                .push(", ")
                .push_bind(served.via.as_str())
                .push(", ")
                .push_bind(served.path)
                .push(", ")
                .push_bind(served.content)
                .push(", ")
                .push_bind(served.file.clone())
                .push(", ")
                .push_bind(OffsetDateTime::now_utc())
                .push(" WHERE NOT EXISTS (");
            push_other_bytes(q, "1", served);
            q.push(
                ") ON CONFLICT (deployment_id, via, path) DO UPDATE SET \
                 content = excluded.content, file_path = excluded.file_path, created_at = excluded.created_at",
            );
            let done = batch.commit(statements).await?;
            if done.first().is_some_and(|d| d.affected > 0) {
                return Ok(());
            }
            let mut q = sqlx::QueryBuilder::<super::Db>::new("");
            push_other_bytes(&mut q, "f.deployment_id", served);
            q.push(" LIMIT 1");
            let other: Option<i64> = q.build_query_scalar().fetch_optional(&self.pool).await?;
            if let Some(other) = other {
                return Err(StoreError::conflict(
                    "filename",
                    format!(
                        "{} {:?} is served with other contents by active deployment {other}",
                        served.via.as_str(),
                        served.path
                    ),
                ));
            }
        }
        Err(StoreError::conflict(
            "filename",
            format!(
                "{} {:?} is served with other contents",
                served.via.as_str(),
                served.path
            ),
        ))
    }
}

/// The rows of active deployments other than `served`'s that serve other
/// bytes at its path (`what` of each).
fn push_other_bytes(q: &mut sqlx::QueryBuilder<super::Db>, what: &str, served: &Served<'_>) {
    q.push(format!(
        "SELECT {what} FROM served_files f JOIN deployments d ON d.id = f.deployment_id WHERE f.via = "
    ))
    .push_bind(served.via.as_str())
    .push(" AND f.path = ")
    .push_bind(served.path)
    .push(" AND f.deployment_id <> ")
    .push_bind(served.deployment_id)
    .push(format!(" AND d.state NOT IN {FINAL_STATES} AND (f.content <> "))
    .push_bind(served.content)
    .push(" OR f.file_path IS DISTINCT FROM ")
    .push_bind(served.file.clone())
    .push(")");
}

/// Reads every interface's boot target into `index` in one query, if it
/// is on: done when the index turns on (the store opening on SQLite, the
/// listener listening on PostgreSQL), so that no known machine's first
/// request reads the database. Returns how many.
pub(crate) async fn warm_index(
    pool: &sqlx::Pool<super::Db>,
    index: &crate::boot_index::BootIndex,
) -> Result<usize> {
    if !index.is_on() {
        return Ok(0);
    }
    let seen = index.begin();
    let rows: Vec<BootTargetRow> = sqlx::query_as(sqlx::AssertSqlSafe(target_sql("")))
        .fetch_all(pool)
        .await?;
    let count = rows.len();
    for row in rows {
        let target = convert::boot_target(row)?;
        index.keep_target(target.mac, Some(target), seen);
    }
    index.read_every_target(seen);
    // And where each path the active deployments serve is (not the bytes,
    // read on the first fetch): the lowest row of a path is the one served.
    let served: Vec<(i64, i64, String, String, OffsetDateTime, Option<String>)> =
        sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT f.id, f.deployment_id, f.via, f.path, f.created_at, f.file_path FROM served_files f \
             JOIN deployments d ON d.id = f.deployment_id \
             WHERE d.state NOT IN {FINAL_STATES} ORDER BY f.id DESC"
        )))
        .fetch_all(pool)
        .await?;
    for (id, deployment_id, via, path, version, file) in served {
        let via = match via.as_str() {
            "http" => Via::Http,
            "tftp" => Via::Tftp,
            _ => continue,
        };
        let row = ServedRow {
            id,
            deployment_id,
            version,
            file,
        };
        index.keep_served(via, &path, Some(row), seen);
    }
    Ok(count)
}

/// Looks once a second for what the index must read again: word of
/// another process's writes (`BootIndex::check_stamp`, SQLite), and many
/// targets or paths marked (deployments started by the thousand, an
/// import), after which the whole index is read again in one query, with
/// the small files the active deployments serve: a boot storm after them
/// reads no machine's target, path or script on its own. Ends once the
/// index is gone.
pub(crate) async fn keep_warm(
    pool: sqlx::Pool<super::Db>,
    index: std::sync::Weak<crate::boot_index::BootIndex>,
    served: std::sync::Weak<crate::served_cache::ServedCache>,
) {
    let mut tick = tokio::time::interval(std::time::Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // Marks since the last read, and for how many seconds they have waited.
    let (mut pending, mut waited) = (0, 0);
    loop {
        tick.tick().await;
        let (Some(index), Some(served)) = (index.upgrade(), served.upgrade()) else {
            return;
        };
        index.check_stamp();
        let marked = index.take_marked();
        pending += marked;
        if pending < crate::boot_index::REWARM {
            continue;
        }
        waited += 1;
        // Once the burst is over (a second without marks), or every ten
        // seconds of a steady stream of them: not once a second while
        // 10,000 deployments are being started.
        if marked > 0 && waited < 10 {
            continue;
        }
        (pending, waited) = (0, 0);
        if let Err(e) = warm_index(&pool, &index).await {
            tracing::debug!(error = %e, "cannot read the boot index again");
        }
        if let Err(e) = warm_small_files(&pool, &served).await {
            tracing::debug!(error = %e, "cannot read the served files ahead");
        }
    }
}

/// Rendered files the active deployments serve, of `SMALL` bytes or
/// fewer (each machine's iPXE script, say), read into `served` in one
/// query, those it holds at their version aside.
async fn warm_small_files(
    pool: &sqlx::Pool<super::Db>,
    served: &crate::served_cache::ServedCache,
) -> Result<()> {
    const SMALL: i64 = 4096;
    let versions: Vec<(i64, OffsetDateTime)> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT f.id, f.created_at FROM served_files f JOIN deployments d ON d.id = f.deployment_id \
         WHERE d.state NOT IN {FINAL_STATES} AND f.file_path IS NULL AND length(f.content) <= $1"
    )))
    .bind(SMALL)
    .fetch_all(pool)
    .await?;
    let missing: Vec<i64> = versions
        .into_iter()
        .filter(|(id, version)| served.get(*id, *version).is_none())
        .map(|(id, _)| id)
        .collect();
    for ids in missing.chunks(TARGETS_PER_READ) {
        let mut q = sqlx::QueryBuilder::<super::Db>::new(
            "SELECT id, created_at, content FROM served_files WHERE id IN (",
        );
        let mut list = q.separated(", ");
        for id in ids {
            list.push_bind(*id);
        }
        q.push(")");
        let rows: Vec<(i64, OffsetDateTime, Vec<u8>)> = q.build_query_as().fetch_all(pool).await?;
        for (id, version, content) in rows {
            served.put(id, version, bytes::Bytes::from(content));
        }
    }
    Ok(())
}

/// What the inventory knows of MACs for the boot decision, `filter`ed.
fn target_sql(filter: &str) -> String {
    format!(
        "SELECT s.id AS server_id, s.fqdn, i.name, i.mac, i.ipv4, i.network_id, \
         d.id AS deployment_id, \
         EXISTS (SELECT 1 FROM served_files f WHERE f.deployment_id = d.id \
                 AND f.via = 'tftp' AND f.path LIKE 'pxelinux.cfg/%') AS pxelinux \
         FROM interfaces i JOIN servers s ON s.id = i.server_id \
         LEFT JOIN deployments d ON d.server_id = s.id AND d.state NOT IN {FINAL_STATES} \
         {filter}"
    )
}

/// Boot targets read together at most (one bound value each).
const TARGETS_PER_READ: usize = 500;

/// The boot targets of `macs`, in their order, each kept in the index.
async fn targets_of(
    pool: &sqlx::Pool<super::Db>,
    index: &crate::boot_index::BootIndex,
    macs: &[MacAddr],
) -> Result<Vec<Option<BootTarget>>> {
    let seen = index.begin();
    let mut found = std::collections::HashMap::new();
    for chunk in macs.chunks(TARGETS_PER_READ) {
        let mut q = sqlx::QueryBuilder::<super::Db>::new(target_sql("WHERE i.mac IN ("));
        let mut list = q.separated(", ");
        for mac in chunk {
            list.push_bind(mac.to_string());
        }
        q.push(")");
        let rows: Vec<BootTargetRow> = q.build_query_as().fetch_all(pool).await?;
        for row in rows {
            let target = convert::boot_target(row)?;
            found.insert(target.mac, target);
        }
    }
    Ok(macs
        .iter()
        .map(|mac| {
            let target = found.get(mac).cloned();
            index.keep_target(*mac, target.clone(), seen);
            target
        })
        .collect())
}

/// The boot path's queries of deployments by server, for the test of
/// their plans (`sqlite.rs`).
#[cfg(test)]
#[allow(
    dead_code,
    reason = "the PostgreSQL build of this file has no such test"
)]
pub(crate) fn by_server_queries() -> Vec<String> {
    vec![
        target_sql(""),
        target_sql("WHERE i.mac = $1"),
        target_sql("WHERE i.mac IN ($1, $2)"),
    ]
}

pub(super) const LEASE_SELECT: &str =
    "SELECT network_id, ip, mac, state, expires_at, hostname, updated_at FROM leases";

#[async_trait]
impl BootStore for Backend {
    async fn boot_target(&self, mac: MacAddr) -> Result<Option<BootTarget>> {
        if let Some(known) = self.boot_index.target(mac) {
            return Ok(known);
        }
        let index = &self.boot_index;
        let read = |macs: Vec<MacAddr>| async move {
            match targets_of(&self.pool, index, &macs).await {
                Ok(targets) => Some(targets),
                Err(e) => {
                    tracing::debug!(error = %e, macs = macs.len(), "cannot read boot targets together; each is read alone");
                    None
                }
            }
        };
        if let Some(target) = index.misses.get(mac, read).await {
            return Ok(target);
        }
        let seen = self.boot_index.begin();
        let row: Option<BootTargetRow> =
            sqlx::query_as(sqlx::AssertSqlSafe(target_sql("WHERE i.mac = $1")))
                .bind(mac.to_string())
                .fetch_optional(&self.pool)
                .await?;
        let target = row.map(convert::boot_target).transpose()?;
        self.boot_index.keep_target(mac, target.clone(), seen);
        Ok(target)
    }

    async fn warm_boot_index(&self) -> Result<usize> {
        if super::WARMING_TURNS_INDEX_ON {
            self.boot_index.set_enabled(true);
        }
        warm_index(&self.pool, &self.boot_index).await
    }

    async fn create_deployment(
        &self,
        server: &Fqdn,
        profile_id: i64,
        token_hash: &TokenHash,
    ) -> Result<DeploymentRecord> {
        let mut turn = self.write_turn(crate::Lane::Ordinary).await?;
        let mut tx = turn.begin().await?;
        let server_id: i64 = sqlx::query_scalar("SELECT id FROM servers WHERE fqdn = $1")
            .bind(server.as_str())
            .fetch_optional(&mut *tx)
            .await?
            .ok_or_else(|| {
                StoreError::invalid("server", format!("server {server:?} does not exist"))
            })?;
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
        emit(
            &mut tx,
            "deployment.new",
            serde_json::to_value(&record).unwrap_or_default(),
        )
        .await?;
        tx.commit().await?;
        self.boot_index.changed_server(server_id);
        Ok(record)
    }

    async fn deployment(&self, id: i64) -> Result<DeploymentRecord> {
        let mut conn = self.pool.acquire().await?;
        fetch_deployment(&mut conn, id).await
    }

    async fn set_deployment_state(&self, id: i64, state: DeploymentState) -> Result<()> {
        let mut turn = self.write_turn(crate::Lane::Ordinary).await?;
        let mut tx = turn.begin().await?;
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
        emit(
            &mut tx,
            &format!("deployment.{state}"),
            serde_json::to_value(&record).unwrap_or_default(),
        )
        .await?;
        tx.commit().await?;
        self.mark_deployment(id).await;
        Ok(())
    }

    async fn serve_file(
        &self,
        deployment_id: i64,
        via: Via,
        path: &str,
        content: &[u8],
    ) -> Result<()> {
        self.put_served(&Served {
            deployment_id,
            via,
            path,
            content,
            file: None,
        })
        .await?;
        self.mark_served(deployment_id, via, path).await;
        Ok(())
    }

    async fn serve_cached_file(
        &self,
        deployment_id: i64,
        via: Via,
        path: &str,
        file: &std::path::Path,
    ) -> Result<()> {
        self.put_served(&Served {
            deployment_id,
            via,
            path,
            content: &[],
            file: Some(file.display().to_string()),
        })
        .await?;
        self.mark_served(deployment_id, via, path).await;
        Ok(())
    }

    async fn unserve_file(&self, deployment_id: i64, via: Via, path: &str) -> Result<bool> {
        let item = Unserve {
            deployment_id,
            via,
            path: path.to_string(),
        };
        let removed = match self.unserve_group() {
            None => self.unserve_one(&item).await?,
            Some(group) => group
                .run(item.clone(), |items| async move {
                    if let Ok(removed) = self.unserve_files(&items).await {
                        return removed.into_iter().map(Ok).collect();
                    }
                    // Each alone, so that each gets its own error.
                    let mut done = Vec::with_capacity(items.len());
                    for item in &items {
                        done.push(self.unserve_one(item).await);
                    }
                    done
                })
                .await
                .unwrap_or_else(|d| Err(d.error("this file's removal")))?,
        };
        self.mark_served(deployment_id, item.via, &item.path).await;
        Ok(removed)
    }

    async fn served_file(&self, via: Via, path: &str) -> Result<Option<ServedFile>> {
        let row = match self.boot_index.served(via, path) {
            Some(known) => known,
            None => {
                let seen = self.boot_index.begin();
                let row: Option<(i64, i64, OffsetDateTime, Option<String>)> =
                    sqlx::query_as(sqlx::AssertSqlSafe(format!(
                        "SELECT f.id, f.deployment_id, f.created_at, f.file_path FROM served_files f \
                         JOIN deployments d ON d.id = f.deployment_id \
                         WHERE f.via = $1 AND f.path = $2 AND d.state NOT IN {FINAL_STATES} ORDER BY f.id LIMIT 1"
                    )))
                    .bind(via.as_str())
                    .bind(path)
                    .fetch_optional(&self.pool)
                    .await?;
                let row = row.map(|(id, deployment_id, version, file)| ServedRow {
                    id,
                    deployment_id,
                    version,
                    file,
                });
                self.boot_index.keep_served(via, path, row.clone(), seen);
                row
            }
        };
        let Some(ServedRow {
            id,
            deployment_id,
            version,
            file,
        }) = row
        else {
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
                let _loading = self.served.loading(id).lock().await;
                match self.served.get(id, version) {
                    Some(b) => b,
                    None => {
                        // Rewritten since the look-up: these are the newer
                        // bytes, kept under the older version, which the
                        // next look-up no longer names.
                        let content: Option<Vec<u8>> =
                            sqlx::query_scalar("SELECT content FROM served_files WHERE id = $1")
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
            "SELECT id FROM deployments WHERE token_hash = $1 AND state NOT IN {FINAL_STATES}"
        )))
        .bind(&token.0)
        .fetch_optional(&self.pool)
        .await?)
    }

    async fn record_callbacks(
        &self,
        calls: &[CallbackCall],
        max: u32,
    ) -> Result<Vec<CallbackReceipt>> {
        // Machines wait on these: the boot path's turn at the writer. The
        // deployments are held with a key-share lock only: an engine's
        // commit or a claim of deployments (which updates rows in an order
        // of its own) never waits for a group nor a group for them, so
        // they cannot deadlock. A callback that races the deployment's end
        // is stored for a finished deployment, and is never read. Rows are
        // taken in token order.
        let mut batch = self.begin_batch(crate::Lane::Callback).await?;
        batch.by_keys();
        let (mut receipts, mut new) = super::callbacks::judge_group(&mut batch, calls, max).await?;
        let now = OffsetDateTime::now_utc();
        let mut statements = batch.statements();
        super::callbacks::push_callbacks(&mut statements, calls, &new, now);
        if !ONE_WRITER && !new.is_empty() {
            // Another daemon may have stored one since the group read
            // them: what the insert gave back was stored here.
            let mut stored: HashSet<(i64, String)> = HashSet::new();
            for row in batch
                .run(statements)
                .await?
                .into_iter()
                .flat_map(|d| d.rows)
            {
                stored.insert(sqlx::FromRow::from_row(&row)?);
            }
            new.retain(|&(i, deployment_id)| {
                let first = stored.contains(&(deployment_id, calls[i].name.clone()));
                if !first {
                    // Another daemon stored it first: a replay.
                    receipts[i] = CallbackReceipt::Recorded {
                        deployment_id,
                        first: false,
                    };
                }
                first
            });
            statements = batch.statements();
        }
        // With one writer nothing came between the read and the insert:
        // each new callback is stored, and its event goes with the insert
        // and the commit, in one trip.
        super::helpers::push_events(
            &mut statements,
            &super::callbacks::callback_events(calls, &new, now),
        );
        batch.commit(statements).await?;
        Ok(receipts)
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
            .map(|r| CallbackRecord {
                name: r.name,
                method: r.method,
                body: r.body,
                received_at: r.received_at,
            })
            .collect())
    }
}

/// A file a deployment stops serving (`unserve_file`).
#[derive(Clone)]
pub(crate) struct Unserve {
    deployment_id: i64,
    via: Via,
    path: String,
}

impl Unserve {
    /// Whose removal it is (`Combine::lingering`).
    #[allow(
        dead_code,
        reason = "SQLite's removals go in groups; PostgreSQL's each alone"
    )]
    pub(crate) fn deployment(&self) -> i64 {
        self.deployment_id
    }
}

impl Backend {
    /// Removes `items` in one transaction, in a writer's turn as every
    /// write (outside it, on SQLite, the statement and the turn's writer
    /// each waited for the other in SQLite's busy handler: 1.7 s for one
    /// such DELETE at the end of a storm, when every deployment removes
    /// its script); whether each removed a file.
    async fn unserve_files(&self, items: &[Unserve]) -> Result<Vec<bool>> {
        let batch = self.begin_batch(crate::Lane::Ordinary).await?;
        let mut statements = batch.statements();
        for item in items {
            statements
                .next("DELETE FROM served_files WHERE deployment_id = ")
                .push_bind(item.deployment_id)
                .push(" AND via = ")
                .push_bind(item.via.as_str())
                .push(" AND path = ")
                .push_bind(item.path.clone());
        }
        let done = batch.commit(statements).await?;
        Ok(done.iter().map(|d| d.affected > 0).collect())
    }

    /// Removes one file in a transaction of its own.
    async fn unserve_one(&self, item: &Unserve) -> Result<bool> {
        let removed = self.unserve_files(std::slice::from_ref(item)).await?;
        Ok(removed.first().copied().unwrap_or(false))
    }

    /// Tells the boot index a served file changed: the files served, and
    /// the server's target too when it is a pxelinux config (BIOS machines
    /// of such a deployment get pxelinux).
    async fn mark_served(&self, deployment_id: i64, via: Via, path: &str) {
        if via == Via::Tftp && path.starts_with("pxelinux.cfg/") {
            self.mark_deployment(deployment_id).await;
        }
        self.boot_index.changed_file(via, path);
    }

    /// Tells the boot index a deployment ended or changed a pxelinux config
    /// it serves: its server's target and its files are read again
    /// (everything, if the server cannot be read).
    pub(super) async fn mark_deployment(&self, deployment_id: i64) {
        let server: std::result::Result<Option<i64>, _> =
            sqlx::query_scalar("SELECT server_id FROM deployments WHERE id = $1")
                .bind(deployment_id)
                .fetch_optional(&self.pool)
                .await;
        match server {
            Ok(Some(id)) => self.boot_index.changed_deployment(id, deployment_id),
            _ => self.boot_index.changed_all(),
        }
    }
}
