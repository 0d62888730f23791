//! Transitions of different deployments committed together
//! (`combine.rs`, `transition_group`): one transaction and two trips for
//! a group, each transition judged as if alone.

use time::OffsetDateTime;

use super::engine::{push_group_log_lines, transition_event};
use super::{Backend, Statements};
use crate::Result;
use crate::boot_sql::DEPLOYMENT_RETURNING;
use crate::engine::Transition;

impl Backend {
    /// Commits transitions of different deployments in one transaction,
    /// two trips for the lot (the rows written, then what follows each),
    /// each judged as if alone. If the group fails, each is committed
    /// alone, so that one bad transition fails only itself.
    pub(super) async fn commit_transitions(&self, ts: Vec<Transition>) -> Vec<Result<bool>> {
        if ts.len() > 1 {
            match self.commit_group(&ts).await {
                Ok(written) => return written.into_iter().map(Ok).collect(),
                Err(e) => {
                    tracing::debug!(error = %e, transitions = ts.len(), "a group of transitions failed; each is committed alone");
                }
            }
        }
        let mut done = Vec::with_capacity(ts.len());
        for t in &ts {
            done.push(self.commit_transition_alone(t).await);
        }
        done
    }

    /// The group in one transaction and two trips, each of a few
    /// statements whose text is the same whatever the group's size and
    /// kinds (so that SQLite keeps them prepared): the rows written
    /// (`push_round`), then the log lines, the files and callbacks of
    /// those that finished, and the events (`push_after_group`).
    async fn commit_group(&self, ts: &[Transition]) -> Result<Vec<bool>> {
        let now = OffsetDateTime::now_utc();
        let mut batch = self.begin_batch(crate::Lane::Ordinary).await?;
        batch.by_keys();
        let rounds = rounds(ts);
        let mut statements = batch.statements();
        for round in &rounds {
            push_round(&mut statements, ts, round, now);
        }
        let done = batch.run(statements).await?;
        let mut written: Vec<Option<<super::Db as sqlx::Database>::Row>> =
            (0..ts.len()).map(|_| None).collect();
        for (round, d) in rounds.iter().zip(done) {
            let mut rows = std::collections::HashMap::with_capacity(d.rows.len());
            for row in d.rows {
                rows.insert(sqlx::Row::try_get::<i64, _>(&row, "id")?, row);
            }
            for &i in round {
                written[i] = rows.remove(&ts[i].id);
            }
        }
        let mut statements = batch.statements();
        let finished = push_after_group(&mut statements, ts, &written, now)?;
        batch.commit(statements).await?;
        for (server, id) in finished {
            self.boot_index.changed_deployment(server, id);
        }
        Ok(written.iter().map(Option::is_some).collect())
    }
}

/// The group's transitions in rounds, each deployment at most once per
/// round and its transitions in the order they came (an operator's cancel
/// may follow the engine's own move of the same deployment): one
/// statement per round, run in order, is each transition judged as if
/// alone.
fn rounds(ts: &[Transition]) -> Vec<Vec<usize>> {
    let mut seen: std::collections::HashMap<i64, usize> = std::collections::HashMap::new();
    let mut rounds: Vec<Vec<usize>> = Vec::new();
    for (i, t) in ts.iter().enumerate() {
        let n = seen.entry(t.id).or_default();
        if rounds.len() <= *n {
            rounds.push(Vec::new());
        }
        rounds[*n].push(i);
        *n += 1;
    }
    rounds
}

/// One round's transitions (`round`, indices into `ts`) in one statement:
/// each deployment's row is written unless its state changed meanwhile or
/// another daemon runs it, and given back as written, with its server.
fn push_round(
    statements: &mut Statements,
    ts: &[Transition],
    round: &[usize],
    now: OffsetDateTime,
) {
    let rows = round
        .iter()
        .map(|&i| {
            let t = &ts[i];
            let finishes = t.state.is_final() && !t.from.is_final();
            serde_json::json!([
                t.id,
                t.from.as_str(),
                t.state.as_str(),
                t.step,
                t.action_index,
                t.actions_done,
                t.action_deadline,
                t.step_deadline,
                t.error,
                i64::from(finishes),
                t.runner,
            ])
        })
        .collect();
    let q = statements
        .next(
            "UPDATE deployments SET state = j.t_state, step = j.t_step, \
             action_index = j.t_action_index, actions_done = j.t_actions_done, \
             action_deadline = j.t_action_deadline, step_deadline = j.t_step_deadline, \
             error = COALESCE(j.t_error, deployments.error), \
             finished_at = COALESCE(deployments.finished_at, CASE WHEN j.t_finishes = 1 THEN ",
        )
        .push_bind(now)
        .push(" END), updated_at = ")
        .push_bind(now)
        // The rows' columns named apart from the table's: PostgreSQL
        // takes a bare `state` in `RETURNING` for either.
        .push(
            " FROM (SELECT CAST(value ->> 0 AS BIGINT) AS t_id, value ->> 1 AS t_from, \
             value ->> 2 AS t_state, value ->> 3 AS t_step, CAST(value ->> 4 AS BIGINT) AS t_action_index, \
             CAST(value ->> 5 AS BIGINT) AS t_actions_done, CAST(value ->> 6 AS BIGINT) AS t_action_deadline, \
             CAST(value ->> 7 AS BIGINT) AS t_step_deadline, value ->> 8 AS t_error, \
             CAST(value ->> 9 AS BIGINT) AS t_finishes, value ->> 10 AS t_runner FROM ",
        );
    super::helpers::push_json_rows(q, rows);
    q.push(
        ") AS j WHERE deployments.id = j.t_id AND deployments.state = j.t_from \
         AND (j.t_runner IS NULL OR deployments.runner = j.t_runner)",
    )
    .push(DEPLOYMENT_RETURNING)
    .push(", server_id");
}

/// What follows the group's written transitions (`written[i]`, the row
/// of `ts[i]` if written), in `ts`'s order: their log lines, the files
/// and callbacks of those that finished, their events. The servers and
/// ids of the deployments that finished.
fn push_after_group(
    statements: &mut Statements,
    ts: &[Transition],
    written: &[Option<<super::Db as sqlx::Database>::Row>],
    now: OffsetDateTime,
) -> Result<Vec<(i64, i64)>> {
    let mut lines = Vec::new();
    let mut ended = Vec::new();
    let mut finished = Vec::new();
    let mut events = Vec::new();
    for (t, row) in ts.iter().zip(written) {
        let Some(row) = row else { continue };
        for (level, message) in &t.log {
            lines.push(serde_json::json!([t.id, level.as_str(), message]));
        }
        if t.state.is_final() && !t.from.is_final() {
            ended.push(serde_json::json!([t.id]));
            finished.push((sqlx::Row::try_get(row, "server_id")?, t.id));
        }
        events.extend(transition_event(t, row)?);
    }
    statements.together(|statements| {
    push_group_log_lines(statements, lines, now);
    if !ended.is_empty() {
        // Nothing serves them any more; the download cache keeps
        // downloaded files for the next deployment. The log holds each
        // callback's name, method and the start of its body.
        for table in ["served_files", "callbacks"] {
            let q = statements
                .next(&format!("DELETE FROM {table} WHERE deployment_id IN (SELECT CAST(value ->> 0 AS BIGINT) FROM "));
            super::helpers::push_json_rows(q, ended.clone());
            q.push(")");
        }
    }
    super::helpers::push_outbox(statements, events, now);
    });
    Ok(finished)
}
