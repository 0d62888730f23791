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

use super::boot::fetch_deployment;
use super::helpers::emit;
use super::{Conn, Statements};

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

#[async_trait]
impl EngineStore for Backend {
    fn commits_in_groups(&self) -> bool {
        self.transition_group().is_some()
    }

    fn callback_notices(
        &self,
    ) -> Option<tokio::sync::broadcast::Receiver<crate::engine::CallbackNotice>> {
        self.notices()
    }

    async fn start_deployment(&self, new: &NewDeployment) -> Result<DeploymentRecord> {
        let start = super::Start::new(new, &self.cipher)?;
        let started = match self.start_group() {
            None => self.start_alone(&start).await,
            // Boxed as a transition's commit is (`commit_transition`).
            Some(group) => Box::pin(group.run(start, |starts| self.start_deployments(starts)))
                .await
                .unwrap_or_else(|d| Err(d.error("this start"))),
        };
        if let Err(StoreError::Invalid { field, .. }) = &started
            && field == "profile"
        {
            // Deleted by another daemon since it was read here.
            self.profiles.forget(new.profile_id);
        }
        started
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
        let mut turn = self.write_turn(crate::Lane::Ordinary).await?;
        let mut tx = turn.begin().await?;
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
        let mut turn = self.write_turn(crate::Lane::Ordinary).await?;
        let mut tx = turn.begin().await?;
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
        // Each way's state boxed when it is taken (the group's by its
        // leader, in `Combine`): inline, a transition queued behind a
        // storm's commits held room for both, two kilobytes each.
        let Some(group) = self.transition_group() else {
            return Box::pin(self.commit_transition_alone(t)).await;
        };
        group
            .run(t.clone(), |ts| self.commit_transitions(ts))
            .await
            .unwrap_or_else(|d| Err(d.error("this transition")))
    }

    async fn append_log(&self, id: i64, level: LogLevel, message: &str) -> Result<()> {
        let mut turn = self.write_turn(crate::Lane::Ordinary).await?;
        let mut tx = turn.begin().await?;
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
        let mut turn = self.write_turn(crate::Lane::Ordinary).await?;
        let mut tx = turn.begin().await?;
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

impl Backend {
    /// Commits `t` in a transaction of its own.
    pub(super) async fn commit_transition_alone(&self, t: &Transition) -> Result<bool> {
        let now = OffsetDateTime::now_utc();
        let mut batch = self.begin_batch(crate::Lane::Ordinary).await?;
        let mut statements = batch.statements();
        push_transition(&mut statements, t, now);
        let mut done = batch.run(statements).await?;
        let Some(written) = done.pop().and_then(|d| d.rows.into_iter().next()) else {
            batch.rollback().await?;
            return Ok(false);
        };
        let mut statements = batch.statements();
        let finished =
            push_after_transition(&mut statements, t, &written, now, Default::default())?;
        batch.commit(statements).await?;
        if let Some(server) = finished {
            // No longer active: its server boots locally now, and its
            // files are no longer served.
            self.boot_index.changed_deployment(server, t.id);
        }
        Ok(true)
    }
}

/// The first statement of transition `t`: the deployment's row, given
/// back as written, unless its state changed meanwhile or another daemon
/// runs it (no row).
fn push_transition(statements: &mut Statements, t: &Transition, now: OffsetDateTime) {
    let finished = (t.state.is_final() && !t.from.is_final()).then_some(now);
    // A commit that publishes gets the row back as written and makes
    // its event from it, without reading it again; the others (an
    // action done) only learn that the row was written.
    // One that finishes it gets its server too, for the boot index.
    let returning = match (publishes(t), finished.is_some()) {
        (true, true) => format!("{DEPLOYMENT_RETURNING}, server_id"),
        (true, false) => DEPLOYMENT_RETURNING.to_string(),
        (false, _) => " RETURNING id".to_string(),
    };
    statements
        .next("UPDATE deployments SET state = ")
        .push_bind(t.state.as_str())
        .push(", step = ")
        .push_bind(t.step.clone())
        .push(", action_index = ")
        .push_bind(i64::from(t.action_index))
        .push(", actions_done = ")
        .push_bind(i64::from(t.actions_done))
        .push(", action_deadline = ")
        .push_bind(t.action_deadline)
        .push(", step_deadline = ")
        .push_bind(t.step_deadline)
        .push(", error = COALESCE(")
        .push_bind(t.error.clone())
        .push(", error), finished_at = COALESCE(finished_at, ")
        .push_bind(finished)
        .push("), updated_at = ")
        .push_bind(now)
        .push(" WHERE id = ")
        .push_bind(t.id)
        .push(" AND state = ")
        .push_bind(t.from.as_str())
        .push(" AND (")
        .push_bind(t.runner.clone())
        .push(" IS NULL OR runner = ")
        .push_bind(t.runner.clone())
        .push(")")
        .push(returning);
}

/// Whether transition `t` publishes an event: a change of state, or the
/// commit that settles a finished deployment (its last step's actions
/// done, the step cleared), which publishes the final record too, so that
/// the last event equals what the API shows.
pub(super) fn publishes(t: &Transition) -> bool {
    t.state != t.from || settled(t)
}

/// The event transition `t` publishes, if any, made from its row as
/// written (`push_transition`'s).
pub(super) fn transition_event(
    t: &Transition,
    written: &<super::Db as sqlx::Database>::Row,
) -> Result<Option<serde_json::Value>> {
    if !publishes(t) {
        return Ok(None);
    }
    let record = convert::deployment(<DeploymentRow as sqlx::FromRow<_>>::from_row(written)?)?;
    let key = format!("deployment.{}", t.state);
    let payload = serde_json::to_value(&record).unwrap_or_default();
    // Settled: it was notified on entering the state.
    Ok(Some(super::helpers::outbox_row(&key, &payload, settled(t))))
}

pub(super) fn settled(t: &Transition) -> bool {
    t.state == t.from && t.state.is_final() && t.step.is_none()
}

/// What follows transition `t` once its row is written (`written`, as
/// `push_transition` gave it back): its log lines, and its event when it
/// publishes one. Its server's id if the deployment has just finished
/// (the caller tells the boot index once committed).
pub(super) fn push_after_transition(
    statements: &mut Statements,
    t: &Transition,
    written: &<super::Db as sqlx::Database>::Row,
    now: OffsetDateTime,
    (mut lines, mut events): (Vec<(LogLevel, String)>, Vec<serde_json::Value>),
) -> Result<Option<i64>> {
    let finished = t.state.is_final() && !t.from.is_final();
    lines.extend(t.log.iter().cloned());
    events.extend(transition_event(t, written)?);
    statements.together(|statements| {
        push_log_lines(statements, t.id, &lines, now);
        if finished {
            // Nothing serves them any more; the download cache
            // keeps downloaded files for the next deployment.
            statements
                .next("DELETE FROM served_files WHERE deployment_id = ")
                .push_bind(t.id);
            // The log holds each callback's name, method and
            // the start of its body.
            statements
                .next("DELETE FROM callbacks WHERE deployment_id = ")
                .push_bind(t.id);
        }
        super::helpers::push_outbox(statements, events, now);
    });
    if !finished {
        return Ok(None);
    }
    Ok(Some(sqlx::Row::try_get(written, "server_id")?))
}

/// Log lines of many deployments (`[deployment id, level, message]`
/// rows), in order, in one statement of a batch: a group's.
pub(super) fn push_group_log_lines(
    statements: &mut Statements,
    lines: Vec<serde_json::Value>,
    at: OffsetDateTime,
) {
    if lines.is_empty() {
        return;
    }
    let q = statements
        .next(
            "INSERT INTO deployment_log (deployment_id, at, level, message) \
             SELECT CAST(value ->> 0 AS BIGINT), ",
        )
        .push_bind(at)
        .push(", value ->> 1, value ->> 2 FROM ");
    super::helpers::push_json_rows(q, lines);
    q.push(" ORDER BY key");
}

/// A commit's log lines, in order, in one statement of a batch.
pub(super) fn push_log_lines(
    statements: &mut Statements,
    id: i64,
    lines: &[(LogLevel, String)],
    at: OffsetDateTime,
) {
    if lines.is_empty() {
        return;
    }
    statements
        .next("INSERT INTO deployment_log (deployment_id, at, level, message) ")
        .push_values(lines, |mut row, (level, message)| {
            row.push_bind(id)
                .push_bind(at)
                .push_bind(level.as_str())
                .push_bind(message.clone());
        });
}
