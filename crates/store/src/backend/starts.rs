//! Deployments started (`EngineStore::start_deployment`), alone or
//! together (`combine.rs`, `start_group`): a group is one transaction and
//! the same few statements whatever its size, each start judged as if
//! alone. A group that fails is started one by one, so that a bad start
//! (a server that has an active deployment, a profile deleted meanwhile)
//! fails only itself.

use std::collections::HashMap;

use time::OffsetDateTime;

use super::engine::{
    push_after_transition, push_group_log_lines, push_log_lines, transition_event,
};
use super::{Backend, HEX_BYTES, Statements};
use crate::boot::DeploymentRecord;
use crate::boot_sql::rows::DeploymentRow;
use crate::boot_sql::{DEPLOYMENT_RETURNING, convert};
use crate::cipher::SecretCipher;
use crate::engine::{Claim, LogLevel, NewDeployment, Transition};
use crate::{Result, StoreError};
use bootloader_core::model::Fqdn;

/// A deployment to start, as its statements take it.
pub(crate) struct Start {
    server: Fqdn,
    profile_id: i64,
    token_hash: String,
    sealed: Vec<u8>,
    repeat_of: Option<i64>,
    claim: Option<Claim>,
    /// Its first moves, made in the row as it is written if the claim
    /// makes it the claimer's (and theirs: a move committed for another
    /// runner would be refused).
    then: Option<Transition>,
}

impl Start {
    pub(super) fn new(new: &NewDeployment, cipher: &SecretCipher) -> Result<Self> {
        let claimer = new.claim.as_ref().map(|c| c.runner.as_str());
        let then = new.then.clone().filter(|t| {
            claimer.is_some() && (t.runner.is_none() || t.runner.as_deref() == claimer)
        });
        Ok(Self {
            server: new.server.clone(),
            profile_id: new.profile_id,
            token_hash: new.token.hash().0,
            sealed: cipher.seal(new.token.expose())?,
            repeat_of: new.repeat_of,
            claim: new.claim.clone(),
            then,
        })
    }

    /// The row's columns where the first moves leave them, written when
    /// the deployment is taken up; the same as created without moves.
    fn moved(&self) -> Moved {
        match &self.then {
            Some(t) => Moved {
                state: t.state.as_str(),
                step: t.step.clone(),
                action_index: i64::from(t.action_index),
                actions_done: i64::from(t.actions_done),
                action_deadline: t.action_deadline,
                step_deadline: t.step_deadline,
                error: t.error.clone(),
                finishes: t.state.is_final() && !t.from.is_final(),
            },
            None => Moved {
                state: "new",
                step: Some("new".to_string()),
                action_index: 0,
                actions_done: 0,
                action_deadline: None,
                step_deadline: None,
                error: None,
                finishes: false,
            },
        }
    }

    fn conflict(&self, e: StoreError) -> StoreError {
        match e {
            StoreError::Conflict { .. } => StoreError::conflict(
                "server",
                format!("{} already has an active deployment", self.server.as_str()),
            ),
            StoreError::InUse(_) => StoreError::invalid(
                "profile",
                format!("profile {} does not exist", self.profile_id),
            ),
            other => other,
        }
    }

    fn no_server(&self) -> StoreError {
        StoreError::invalid(
            "server",
            format!("server {:?} does not exist", self.server.as_str()),
        )
    }
}

/// The row's columns where a start's first moves leave them.
struct Moved {
    state: &'static str,
    step: Option<String>,
    action_index: i64,
    actions_done: i64,
    action_deadline: Option<i64>,
    step_deadline: Option<i64>,
    error: Option<String>,
    finishes: bool,
}

/// A deployment as its start wrote it, with its server's id.
#[derive(sqlx::FromRow)]
struct StartedRow {
    server_id: i64,
    #[sqlx(flatten)]
    record: DeploymentRow,
}

/// A start as written: the deployment as created (what the caller and
/// its first event get), its server's id (for the boot index), and its
/// first moves if it was taken up with them.
struct Written {
    record: DeploymentRecord,
    server_id: i64,
    moved: Option<Transition>,
}

fn written(start: &Start, started: &<super::Db as sqlx::Database>::Row) -> Result<Written> {
    let row = <StartedRow as sqlx::FromRow<_>>::from_row(started)?;
    let moved = start
        .then
        .as_ref()
        .filter(|_| row.record.runner.is_some())
        .map(|t| Transition {
            id: row.record.id,
            ..t.clone()
        });
    let record = convert::deployment(DeploymentRow {
        state: "new".to_string(),
        step: Some("new".to_string()),
        action_index: 0,
        actions_done: 0,
        error: None,
        updated_at: row.record.created_at,
        finished_at: None,
        ..row.record
    })?;
    Ok(Written {
        record,
        server_id: row.server_id,
        moved,
    })
}

impl Written {
    fn created(&self) -> (LogLevel, String) {
        (
            LogLevel::Info,
            format!(
                "deployment of {} with {} created",
                self.record.server, self.record.profile
            ),
        )
    }

    fn new_event(&self) -> serde_json::Value {
        super::helpers::outbox_row(
            "deployment.new",
            &serde_json::to_value(&self.record).unwrap_or_default(),
            false,
        )
    }
}

/// The statement that starts `starts` (one alone, or a group's) at
/// once: each server looked up by name, each deployment written and,
/// when its server is in the claiming daemon's location, taken up by it
/// with its first moves already made; a row comes back, with its
/// server's id, for each start whose server exists. One text whatever
/// they hold, for SQLite's cache of prepared statements (two: with the
/// secret key's check folded in, when `verified` is the check value, and
/// without).
fn push_starts(
    statements: &mut Statements,
    starts: &[Start],
    now: OffsetDateTime,
    verified: Option<&str>,
) {
    let rows = starts
        .iter()
        .map(|s| {
            let m = s.moved();
            let claim = s.claim.as_ref();
            serde_json::json!([
                s.server.as_str(),
                s.profile_id,
                s.token_hash,
                hex::encode(&s.sealed),
                s.repeat_of,
                m.state,
                m.step,
                m.action_index,
                m.actions_done,
                m.action_deadline,
                m.step_deadline,
                m.error,
                i64::from(m.finishes),
                claim.map(|c| c.runner.as_str()),
                claim.and_then(|c| c.location.as_deref()),
                claim.map(|c| c.until),
            ])
        })
        .collect();
    let q = statements.next(
        "INSERT INTO deployments (server_id, profile_id, token_hash, token_sealed, repeat_of, \
         created_at, updated_at, state, step, action_index, actions_done, action_deadline, \
         step_deadline, error, finished_at, runner, runner_until) ",
    );
    q.push(
        "SELECT c.server_id, c.profile_id, c.token_hash, c.sealed, c.repeat_of, c.at, c.at, \
         CASE WHEN c.taken = 1 THEN c.t_state ELSE 'new' END, \
         CASE WHEN c.taken = 1 THEN c.t_step ELSE 'new' END, \
         CASE WHEN c.taken = 1 THEN c.t_action_index ELSE 0 END, \
         CASE WHEN c.taken = 1 THEN c.t_actions_done ELSE 0 END, \
         CASE WHEN c.taken = 1 THEN c.t_action_deadline END, \
         CASE WHEN c.taken = 1 THEN c.t_step_deadline END, \
         CASE WHEN c.taken = 1 THEN c.t_error END, \
         CASE WHEN c.taken = 1 AND c.t_finishes = 1 THEN c.at END, \
         CASE WHEN c.taken = 1 THEN c.t_runner END, \
         CASE WHEN c.taken = 1 THEN c.t_until END \
         FROM (SELECT s.id AS server_id, CAST(value ->> 1 AS BIGINT) AS profile_id, \
         value ->> 2 AS token_hash, ",
    )
    .push(HEX_BYTES.0)
    .push("value ->> 3")
    .push(HEX_BYTES.1)
    .push(" AS sealed, CAST(value ->> 4 AS BIGINT) AS repeat_of, ")
    .push_bind(now)
    .push(
        " AS at, value ->> 5 AS t_state, value ->> 6 AS t_step, \
         CAST(value ->> 7 AS BIGINT) AS t_action_index, CAST(value ->> 8 AS BIGINT) AS t_actions_done, \
         CAST(value ->> 9 AS BIGINT) AS t_action_deadline, CAST(value ->> 10 AS BIGINT) AS t_step_deadline, \
         value ->> 11 AS t_error, CAST(value ->> 12 AS BIGINT) AS t_finishes, \
         value ->> 13 AS t_runner, CAST(value ->> 15 AS BIGINT) AS t_until, \
         CASE WHEN value ->> 13 IS NOT NULL AND (value ->> 14 IS NULL OR l.name = value ->> 14) \
         THEN 1 ELSE 0 END AS taken, key FROM ",
    );
    super::helpers::push_json_rows(q, rows);
    q.push(
        " JOIN servers s ON s.fqdn = value ->> 0 JOIN locations l ON l.id = s.location_id) AS c",
    );
    if let Some(verified) = verified {
        super::helpers::push_key_still(q, verified);
    }
    q.push(" ORDER BY c.key")
        .push(DEPLOYMENT_RETURNING)
        .push(", server_id");
}

impl Backend {
    /// The start statements' beginning: the secret key's check, or the
    /// check value last verified to fold into the insert (`cipher.rs`).
    fn push_start_check(&self, statements: &mut Statements) -> Option<String> {
        let verified = self.verified_check.get();
        if verified.is_none() {
            super::helpers::push_current_key(statements);
        }
        verified
    }

    /// The key's check of a start's first trip: with the check folded
    /// in (`verified`), true if every start wrote its row; if some did
    /// not (a server missing, or the check value changed, and then none
    /// did) the value read again in the transaction tells which: false
    /// if it changed (the caller starts again, with the check). Without
    /// it, the check's row checked and its value remembered.
    async fn started_under_key(
        &self,
        batch: &mut super::Batch<'_>,
        verified: Option<&str>,
        done: &mut Vec<crate::batch::Done<<super::Db as sqlx::Database>::Row>>,
        all_written: bool,
    ) -> Result<bool> {
        let key = match verified {
            Some(_) if all_written => return Ok(true),
            Some(_) => {
                let mut statements = batch.statements();
                super::helpers::push_current_key(&mut statements);
                let mut read = batch.run(statements).await?;
                read.pop().and_then(|d| d.rows.into_iter().next())
            }
            None => done.pop().and_then(|d| d.rows.into_iter().next()),
        };
        let value = super::helpers::check_key_row(key, &self.cipher)?;
        let unchanged = verified.is_none() || value.as_deref() == verified;
        self.verified_check.set(value);
        Ok(unchanged)
    }
}

impl Backend {
    /// Starts `start` in a transaction of its own.
    pub(super) async fn start_alone(&self, start: &Start) -> Result<DeploymentRecord> {
        let now = OffsetDateTime::now_utc();
        // Not under a key that rotate-secret has just replaced: the check
        // value read in the transaction (or required unchanged by the
        // insert), the deployment written with it.
        let (batch, started) = loop {
            let mut batch = self.begin_batch(crate::Lane::Ordinary).await?;
            // Its server looked up by name through the JSON row, as a group's.
            batch.by_keys();
            let mut statements = batch.statements();
            let verified = self.push_start_check(&mut statements);
            push_starts(
                &mut statements,
                std::slice::from_ref(start),
                now,
                verified.as_deref(),
            );
            let mut done = batch.run(statements).await.map_err(|e| start.conflict(e))?;
            let started = done.pop().and_then(|d| d.rows.into_iter().next());
            let all_written = started.is_some();
            match self
                .started_under_key(&mut batch, verified.as_deref(), &mut done, all_written)
                .await
            {
                Ok(true) => break (batch, started),
                Ok(false) => batch.rollback().await?,
                Err(e) => {
                    batch.rollback().await?;
                    return Err(e);
                }
            }
        };
        let Some(started) = started else {
            batch.rollback().await?;
            return Err(start.no_server());
        };
        let w = written(start, &started)?;
        let id = w.record.id;
        // The first moves' log lines and events each in one statement
        // with the creation's.
        let mut statements = batch.statements();
        let finished = match &w.moved {
            Some(then) => push_after_transition(
                &mut statements,
                then,
                &started,
                now,
                (vec![w.created()], vec![w.new_event()]),
            )?,
            // Not this daemon's: its runner makes the moves.
            None => {
                statements.together(|statements| {
                    push_log_lines(statements, id, &[w.created()], now);
                    super::helpers::push_outbox(statements, vec![w.new_event()], now);
                });
                None
            }
        };
        batch.commit(statements).await?;
        self.boot_index.changed_server(w.server_id);
        if let Some(server) = finished {
            self.boot_index.changed_deployment(server, id);
        }
        Ok(w.record)
    }

    /// Starts `starts`, together if there are several and the group
    /// commits; otherwise each alone.
    pub(super) async fn start_deployments(
        &self,
        starts: Vec<Start>,
    ) -> Vec<Result<DeploymentRecord>> {
        if starts.len() > 1 {
            match self.commit_starts(&starts).await {
                Ok(started) => return started,
                Err(e) => {
                    tracing::debug!(error = %e, starts = starts.len(), "a group of starts failed; each is started alone");
                }
            }
        }
        let mut done = Vec::with_capacity(starts.len());
        for start in &starts {
            done.push(self.start_alone(start).await);
        }
        done
    }

    /// The group in one transaction and two trips on SQLite (the key's
    /// check and the rows written, then the log lines and events); a
    /// start whose server does not exist fails alone. Two starts of one
    /// server fail the group (the second finds the first active).
    async fn commit_starts(&self, starts: &[Start]) -> Result<Vec<Result<DeploymentRecord>>> {
        let now = OffsetDateTime::now_utc();
        let mut batch = self.begin_batch(crate::Lane::Ordinary).await?;
        // The servers looked up by name, one by one.
        batch.by_keys();
        let mut statements = batch.statements();
        let verified = self.push_start_check(&mut statements);
        push_starts(&mut statements, starts, now, verified.as_deref());
        let mut done = batch.run(statements).await?;
        let rows = done.pop().map(|d| d.rows).unwrap_or_default();
        let all_written = rows.len() == starts.len();
        match self
            .started_under_key(&mut batch, verified.as_deref(), &mut done, all_written)
            .await
        {
            Ok(true) => {}
            // The key's check value changed: each start alone, checking it.
            Ok(false) => {
                batch.rollback().await?;
                return Err(StoreError::conflict(
                    "secret key",
                    "the secret key's check value changed",
                ));
            }
            Err(e) => {
                batch.rollback().await?;
                return Err(e);
            }
        }
        let mut by_server: HashMap<String, _> = HashMap::with_capacity(rows.len());
        for row in rows {
            by_server.insert(sqlx::Row::try_get::<String, _>(&row, "fqdn")?, row);
        }
        let mut lines = Vec::new();
        let mut events = Vec::new();
        let mut answers = Vec::with_capacity(starts.len());
        let mut changed = Vec::new();
        for start in starts {
            let Some(started) = by_server.remove(start.server.as_str()) else {
                answers.push(Err(start.no_server()));
                continue;
            };
            let w = written(start, &started)?;
            let id = w.record.id;
            let (level, message) = w.created();
            lines.push(serde_json::json!([id, level.as_str(), message]));
            events.push(w.new_event());
            let mut ended = None;
            if let Some(then) = &w.moved {
                for (level, message) in &then.log {
                    lines.push(serde_json::json!([id, level.as_str(), message]));
                }
                events.extend(transition_event(then, &started)?);
                ended = (then.state.is_final() && !then.from.is_final()).then_some(id);
            }
            changed.push((w.server_id, ended));
            answers.push(Ok(w.record));
        }
        let mut statements = batch.statements();
        statements.together(|statements| {
            push_group_log_lines(statements, lines, now);
            super::helpers::push_outbox(statements, events, now);
        });
        batch.commit(statements).await?;
        for (server, ended) in changed {
            self.boot_index.changed_server(server);
            if let Some(id) = ended {
                self.boot_index.changed_deployment(server, id);
            }
        }
        Ok(answers)
    }
}
