//! `EngineStore`: deployments started, read, claimed across daemons and moved on transition by transition.

use async_trait::async_trait;
use time::OffsetDateTime;

use super::Backend;
use crate::boot::*;
use crate::boot_sql::rows::DeploymentRow;
use crate::boot_sql::{DEPLOYMENT_RETURNING, DEPLOYMENT_SELECT, convert};
use crate::engine::*;
use crate::engine_sql::rows::*;
use crate::{Listing, Page, Result, StoreError};
use bootloader_core::model::{DeploymentState, Fqdn};

use super::Conn;
use super::boot::fetch_deployment;
use super::helpers::emit;

pub(super) async fn log(conn: &mut Conn, id: i64, level: LogLevel, message: &str) -> Result<()> {
    sqlx::query(
        "INSERT INTO deployment_log (deployment_id, at, level, message) VALUES ($1, $2, $3, $4)",
    )
    .bind(id)
    .bind(OffsetDateTime::now_utc())
    .bind(level.as_str())
    .bind(message)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// A commit's log lines, in order, in one statement.
async fn log_lines(conn: &mut Conn, id: i64, lines: &[(LogLevel, String)]) -> Result<()> {
    if lines.is_empty() {
        return Ok(());
    }
    let at = OffsetDateTime::now_utc();
    sqlx::QueryBuilder::<super::Db>::new(
        "INSERT INTO deployment_log (deployment_id, at, level, message) ",
    )
    .push_values(lines, |mut row, (level, message)| {
        row.push_bind(id)
            .push_bind(at)
            .push_bind(level.as_str())
            .push_bind(message);
    })
    .build()
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// Which deployments a daemon may take up: runnable ones of the servers in
/// location `$2` (all for NULL) that are free for runner `$1` at `$3`: no
/// daemon runs them, or their runner's hold has lapsed. A daemon holds the
/// deployments it runs by renewing one row of its own, `runner/<name>` in
/// `daemon_locks`, not each deployment's: `runner_until` is only the hold
/// a deployment was taken with, which covers it until its runner's row is
/// renewed. One text for the claims below.
macro_rules! runnable {
    () => {
        "step IS NOT NULL AND token_sealed IS NOT NULL \
         AND ($2 IS NULL OR server_id IN \
              (SELECT s.id FROM servers s JOIN locations l ON l.id = s.location_id WHERE l.name = $2))"
    };
}
macro_rules! free {
    () => {
        "(runner IS NULL OR ((runner_until IS NULL OR runner_until < $3) \
          AND NOT EXISTS (SELECT 1 FROM daemon_locks h \
              WHERE h.name = 'runner/' || deployments.runner AND h.until_unix >= $3)))"
    };
}

/// Renews runner `$1`'s hold until `$2`.
const HOLD_RUNNER: &str = "INSERT INTO daemon_locks (name, holder, until_unix) VALUES ('runner/' || $1, $1, $2) \
     ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, until_unix = excluded.until_unix";

/// Takes the free ones other daemons held, held until `$4`.
const CLAIM: &str = concat!(
    "UPDATE deployments SET runner = $1, runner_until = $4 WHERE ",
    runnable!(),
    " AND (runner IS NULL OR runner <> $1) AND ",
    free!(),
    " RETURNING id"
);

/// Those runner `$1` holds.
const HELD: &str = concat!(
    "SELECT id FROM deployments WHERE runner = $1 AND ",
    runnable!()
);

/// The claim's statements, for the test of their plans (`sqlite.rs`).
#[cfg(test)]
#[allow(
    dead_code,
    reason = "the PostgreSQL build of this file has no such test"
)]
pub(crate) fn claim_queries() -> Vec<String> {
    vec![CLAIM.to_string(), HELD.to_string()]
}

/// A deployment with its profile's text, its sealed token and its
/// deadlines (`EngineRow`): `DEPLOYMENT_SELECT` with those columns.
static ENGINE_SELECT: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    DEPLOYMENT_SELECT.replacen(
        " FROM deployments d ",
        ", p.source, d.token_sealed, d.action_deadline, d.step_deadline FROM deployments d ",
        1,
    ) + " WHERE d.id = $1"
});

/// A deployment as `start_deployment` wrote it, with its server's id.
#[derive(sqlx::FromRow)]
struct StartedRow {
    server_id: i64,
    #[sqlx(flatten)]
    record: DeploymentRow,
}

#[async_trait]
impl EngineStore for Backend {
    fn callback_notices(
        &self,
    ) -> Option<tokio::sync::broadcast::Receiver<crate::engine::CallbackNotice>> {
        self.notices()
    }

    async fn start_deployment(&self, new: &NewDeployment) -> Result<DeploymentRecord> {
        let (_writer, mut tx) = self.begin_write().await?;
        // Not under a key that rotate-secret has just replaced.
        super::helpers::check_current_key(&mut tx, &self.cipher).await?;
        let sealed = self.cipher.seal(new.token.expose())?;
        let now = OffsetDateTime::now_utc();
        // The server looked up, the deployment written and, when the
        // server is in the claiming daemon's location, taken up by it, in
        // one statement that gives the written row back.
        let (runner, location, until) = match &new.claim {
            Some(c) => (
                Some(c.runner.as_str()),
                c.location.as_deref(),
                Some(c.until),
            ),
            None => (None, None, None),
        };
        let row: Option<StartedRow> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "INSERT INTO deployments (server_id, profile_id, state, token_hash, token_sealed, step, \
             action_index, actions_done, repeat_of, created_at, updated_at, runner, runner_until) \
             SELECT s.id, $2, 'new', $3, $4, 'new', 0, 0, $5, $6, $6, \
             CASE WHEN $8 IS NULL OR l.name = $8 THEN $7 END, \
             CASE WHEN $7 IS NOT NULL AND ($8 IS NULL OR l.name = $8) THEN $9 END \
             FROM servers s JOIN locations l ON l.id = s.location_id WHERE s.fqdn = $1\
             {DEPLOYMENT_RETURNING}, server_id"
        )))
        .bind(new.server.as_str())
        .bind(new.profile_id)
        .bind(&new.token.hash().0)
        .bind(&sealed)
        .bind(new.repeat_of)
        .bind(now)
        .bind(runner)
        .bind(location)
        .bind(until)
        .fetch_optional(&mut *tx)
        .await
        .map_err(|e| match StoreError::from(e) {
            StoreError::Conflict { .. } => StoreError::conflict(
                "server",
                format!("{} already has an active deployment", new.server.as_str()),
            ),
            StoreError::InUse(_) => {
                StoreError::invalid("profile", format!("profile {} does not exist", new.profile_id))
            }
            other => other,
        })?;
        let row = row.ok_or_else(|| {
            StoreError::invalid(
                "server",
                format!("server {:?} does not exist", new.server.as_str()),
            )
        })?;
        let server_id = row.server_id;
        let record = convert::deployment(row.record)?;
        let id = record.id;
        log(
            &mut tx,
            id,
            LogLevel::Info,
            &format!(
                "deployment of {} with {} created",
                record.server, record.profile
            ),
        )
        .await?;
        emit(
            &mut tx,
            "deployment.new",
            serde_json::to_value(&record).unwrap_or_default(),
        )
        .await?;
        // Its runner's first moves, if the claim made it this daemon's:
        // one write where there were two. What the caller gets back is
        // the deployment as created, as its first event says.
        let mut finished = false;
        if let Some(then) = &new.then
            && record.runner.is_some()
            && record.runner == then.runner
        {
            let then = Transition { id, ..then.clone() };
            finished = write_transition(&mut tx, &then).await? == Some(true);
        }
        tx.commit().await?;
        self.boot_index.changed_server(server_id);
        if finished {
            self.mark_deployment(id).await;
        }
        Ok(record)
    }

    async fn engine_view(&self, id: i64) -> Result<EngineView> {
        let mut conn = self.pool.acquire().await?;
        let row: Option<EngineRow> = sqlx::query_as(sqlx::AssertSqlSafe(ENGINE_SELECT.as_str()))
            .bind(id)
            .fetch_optional(&mut *conn)
            .await?;
        let row = row.ok_or_else(|| StoreError::not_found("deployment", id))?;
        let token = match row.token_sealed {
            Some(sealed) => Some(self.cipher.open(&sealed)?),
            None => None,
        };
        let actions_done = row.record.actions_done.max(0) as u32;
        Ok(EngineView {
            record: convert::deployment(row.record)?,
            profile_source: row.source.into(),
            token,
            actions_done,
            action_deadline: row.action_deadline,
            step_deadline: row.step_deadline,
        })
    }

    async fn claim_deployments(
        &self,
        runner: &str,
        location: Option<&str>,
        now: i64,
        until: i64,
    ) -> Result<Vec<i64>> {
        let (_writer, mut tx) = self.begin_write().await?;
        // One row renewed however many deployments this daemon runs; only
        // the deployments that change hands are written.
        sqlx::query(HOLD_RUNNER)
            .bind(runner)
            .bind(until)
            .execute(&mut *tx)
            .await?;
        sqlx::query(CLAIM)
            .bind(runner)
            .bind(location)
            .bind(now)
            .bind(until)
            .execute(&mut *tx)
            .await?;
        let mut ids: Vec<i64> = sqlx::query_scalar(HELD)
            .bind(runner)
            .bind(location)
            .fetch_all(&mut *tx)
            .await?;
        tx.commit().await?;
        ids.sort_unstable();
        Ok(ids)
    }

    async fn release_deployments(&self, runner: &str) -> Result<()> {
        let (_writer, mut tx) = self.begin_write().await?;
        sqlx::query(
            "UPDATE deployments SET runner_until = 0 WHERE runner = $1 AND step IS NOT NULL",
        )
        .bind(runner)
        .execute(&mut *tx)
        .await?;
        sqlx::query("DELETE FROM daemon_locks WHERE name = 'runner/' || $1")
            .bind(runner)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    async fn commit_transition(&self, t: &Transition) -> Result<bool> {
        let (_writer, mut tx) = self.begin_write().await?;
        let Some(finished) = write_transition(&mut tx, t).await? else {
            return Ok(false);
        };
        tx.commit().await?;
        if finished {
            // No longer active: its server boots locally now, and its
            // files are no longer served.
            self.mark_deployment(t.id).await;
        }
        Ok(true)
    }

    async fn append_log(&self, id: i64, level: LogLevel, message: &str) -> Result<()> {
        let (_writer, mut tx) = self.begin_write().await?;
        log(&mut tx, id, level, message).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn deployment_log(
        &self,
        id: i64,
        after: Option<i64>,
        limit: u32,
    ) -> Result<Vec<LogEntry>> {
        let mut conn = self.pool.acquire().await?;
        // 404 for a deployment that does not exist.
        fetch_deployment(&mut conn, id).await?;
        let rows: Vec<LogRow> = sqlx::query_as(
            "SELECT id, at, level, message FROM deployment_log WHERE deployment_id = $1 AND id > $2 \
             ORDER BY id LIMIT $3",
        )
        .bind(id)
        .bind(after.unwrap_or(0))
        .bind(i64::from(limit))
        .fetch_all(&mut *conn)
        .await?;
        rows.into_iter()
            .map(|r| {
                let level = match r.level.as_str() {
                    "info" => LogLevel::Info,
                    "warn" => LogLevel::Warn,
                    "error" => LogLevel::Error,
                    other => return Err(StoreError::Corrupt(format!("log level {other:?}"))),
                };
                Ok(LogEntry {
                    id: r.id,
                    at: r.at,
                    level,
                    message: r.message,
                })
            })
            .collect()
    }

    async fn changed_deployments(
        &self,
        since: OffsetDateTime,
        limit: u32,
    ) -> Result<Vec<(i64, OffsetDateTime)>> {
        let mut conn = self.pool.acquire().await?;
        Ok(sqlx::query_as(
            "SELECT id, updated_at FROM deployments WHERE updated_at > $1 ORDER BY updated_at LIMIT $2",
        )
        .bind(since)
        .bind(i64::from(limit))
        .fetch_all(&mut *conn)
        .await?)
    }

    async fn list_deployments(
        &self,
        server: Option<&Fqdn>,
        state: Option<DeploymentState>,
        page: Page,
    ) -> Result<Listing<DeploymentRecord>> {
        let mut conn = self.pool.acquire().await?;
        let server = server.map(|s| s.as_str().to_string());
        let state = state.map(|s| s.as_str().to_string());
        // A server's deployments through `deployments_server`: a
        // `$1 IS NULL OR ...` condition would read every deployment.
        let cond = if server.is_some() {
            "WHERE d.server_id = (SELECT id FROM servers WHERE fqdn = $1) AND ($2 IS NULL OR d.state = $2)"
        } else {
            "WHERE $1 IS NULL AND ($2 IS NULL OR d.state = $2)"
        };
        let total: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
            "SELECT COUNT(*) FROM deployments d JOIN servers s ON s.id = d.server_id {cond}"
        )))
        .bind(&server)
        .bind(&state)
        .fetch_one(&mut *conn)
        .await?;
        let rows: Vec<DeploymentRow> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "{DEPLOYMENT_SELECT} {cond} ORDER BY d.id DESC LIMIT $3 OFFSET $4"
        )))
        .bind(&server)
        .bind(&state)
        .bind(i64::from(page.limit))
        .bind(page.offset.min(i64::MAX as u64) as i64)
        .fetch_all(&mut *conn)
        .await?;
        let items = rows
            .into_iter()
            .map(convert::deployment)
            .collect::<Result<Vec<_>>>()?;
        Ok(Listing {
            total: total.max(0) as u64,
            items,
        })
    }

    async fn delete_deployment(&self, id: i64) -> Result<DeploymentRecord> {
        let (_writer, mut tx) = self.begin_write().await?;
        let record = fetch_deployment(&mut tx, id).await?;
        if !record.state.is_final() || record.step.is_some() {
            return Err(StoreError::conflict(
                "state",
                format!(
                    "deployment {id} is {}{}: only one that has ended can be deleted (cancel it first)",
                    record.state,
                    record
                        .step
                        .as_deref()
                        .map(|s| format!(", running its {s} step"))
                        .unwrap_or_default()
                ),
            ));
        }
        sqlx::query("DELETE FROM deployments WHERE id = $1")
            .bind(id)
            .execute(&mut *tx)
            .await?;
        emit(
            &mut tx,
            "deployment.deleted",
            serde_json::to_value(&record).unwrap_or_default(),
        )
        .await?;
        tx.commit().await?;
        Ok(record)
    }
}

/// Writes transition `t` in `tx`: the deployment's row (unless its state
/// changed meanwhile or another daemon runs it: `None`), its log lines,
/// and its event when it publishes one. `Some(true)`: it has just
/// finished (the caller tells the boot index once committed).
async fn write_transition(tx: &mut Conn, t: &Transition) -> Result<Option<bool>> {
    let now = OffsetDateTime::now_utc();
    let finished = (t.state.is_final() && !t.from.is_final()).then_some(now);
    // The commit that settles a finished deployment (its
    // last step's actions done, the step cleared) publishes
    // the final record too, so that the last event equals
    // what the API shows; it was notified on entering the
    // state, so it is marked notified.
    let settled = t.state == t.from && t.state.is_final() && t.step.is_none();
    let publishes = t.state != t.from || settled;
    // A commit that publishes gets the row back as written and makes
    // its event from it, without reading it again; the others (an
    // action done) only learn that the row was written.
    let returning = if publishes {
        DEPLOYMENT_RETURNING
    } else {
        " RETURNING id"
    };
    let written = sqlx::query(sqlx::AssertSqlSafe(format!(
        "UPDATE deployments SET state = $1, step = $2, action_index = $3, actions_done = $4, \
             action_deadline = $5, step_deadline = $6, error = COALESCE($7, error), \
             finished_at = COALESCE(finished_at, $8), updated_at = $9 \
             WHERE id = $10 AND state = $11 AND ($12 IS NULL OR runner = $12){returning}"
    )))
    .bind(t.state.as_str())
    .bind(&t.step)
    .bind(i64::from(t.action_index))
    .bind(i64::from(t.actions_done))
    .bind(t.action_deadline)
    .bind(t.step_deadline)
    .bind(&t.error)
    .bind(finished)
    .bind(now)
    .bind(t.id)
    .bind(t.from.as_str())
    .bind(&t.runner)
    .fetch_optional(&mut *tx)
    .await?;
    let Some(written) = written else {
        return Ok(None);
    };
    log_lines(&mut *tx, t.id, &t.log).await?;
    if finished.is_some() {
        // Nothing serves them any more; the download cache
        // keeps downloaded files for the next deployment.
        sqlx::query("DELETE FROM served_files WHERE deployment_id = $1")
            .bind(t.id)
            .execute(&mut *tx)
            .await?;
        // The log holds each callback's name, method and
        // the start of its body.
        sqlx::query("DELETE FROM callbacks WHERE deployment_id = $1")
            .bind(t.id)
            .execute(&mut *tx)
            .await?;
    }
    if publishes {
        let record = convert::deployment(<DeploymentRow as sqlx::FromRow<_>>::from_row(&written)?)?;
        let key = format!("deployment.{}", t.state);
        let payload = serde_json::to_value(&record).unwrap_or_default();
        if settled {
            let now = OffsetDateTime::now_utc();
            sqlx::query(
                    "INSERT INTO outbox (routing_key, payload, created_at, notified_at) VALUES ($1, $2, $3, $3)",
                )
                .bind(&key)
                .bind(sqlx::types::Json(payload))
                .bind(now)
                .execute(&mut *tx)
                .await?;
        } else {
            emit(&mut *tx, &key, payload).await?;
        }
    }
    Ok(Some(finished.is_some()))
}
