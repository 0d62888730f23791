//! A group of installers' callbacks, in the callback writer's transaction
//! (`BootStore::record_callbacks`): judged against what the tokens'
//! deployments hold, the new ones inserted, their events.

use std::collections::{HashMap, HashSet};

use bootloader_core::published::events::CallbackReceived;
use time::OffsetDateTime;

use crate::Result;
use crate::boot::{CallbackCall, CallbackReceipt};
use crate::boot_sql::FINAL_STATES;

use super::FOR_KEY_SHARE;

/// Reads what a group's tokens name (their active deployments, in token
/// order, key-share locked on PostgreSQL) and the names each holds
/// already, and judges each callback in turn: a replay, a new name, or one
/// past the deployment's share. The receipts, and the new ones (their
/// place in `calls` and their deployment).
pub(super) async fn judge_group(
    batch: &mut super::Batch<'_>,
    calls: &[CallbackCall],
    max: u32,
) -> Result<(Vec<CallbackReceipt>, Vec<(usize, i64)>)> {
    use sqlx::FromRow;
    let mut tokens: Vec<&str> = calls.iter().map(|c| c.token.0.as_str()).collect();
    tokens.sort_unstable();
    tokens.dedup();
    // The tokens as one value: the same texts for any group, which
    // SQLite keeps prepared.
    let tokens: Vec<serde_json::Value> = tokens.iter().map(|t| serde_json::json!([t])).collect();
    let mut statements = batch.statements();
    let q = statements.next(
        "SELECT id, token_hash FROM deployments WHERE token_hash IN (SELECT value ->> 0 FROM ",
    );
    super::helpers::push_json_rows(q, tokens.clone());
    q.push(format!(
        ") AND state NOT IN {FINAL_STATES} ORDER BY token_hash{FOR_KEY_SHARE}"
    ));
    // What each of them holds already.
    let q = statements.next(
        "SELECT c.deployment_id, c.name FROM callbacks c \
         JOIN deployments d ON d.id = c.deployment_id WHERE d.token_hash IN (SELECT value ->> 0 FROM ",
    );
    super::helpers::push_json_rows(q, tokens);
    q.push(format!(") AND d.state NOT IN {FINAL_STATES}"));
    let mut done = batch.run(statements).await?.into_iter();
    let mut by_token: HashMap<String, i64> = HashMap::new();
    let mut held: HashMap<i64, HashSet<String>> = HashMap::new();
    for row in done.next().map(|d| d.rows).unwrap_or_default() {
        let (id, token): (i64, String) = FromRow::from_row(&row)?;
        by_token.insert(token, id);
    }
    for row in done.next().map(|d| d.rows).unwrap_or_default() {
        let (id, name): (i64, String) = FromRow::from_row(&row)?;
        held.entry(id).or_default().insert(name);
    }
    let mut receipts = Vec::with_capacity(calls.len());
    let mut new: Vec<(usize, i64)> = Vec::new();
    for (i, call) in calls.iter().enumerate() {
        let Some(&deployment_id) = by_token.get(call.token.0.as_str()) else {
            receipts.push(CallbackReceipt::UnknownToken);
            continue;
        };
        let names = held.entry(deployment_id).or_default();
        if names.contains(&call.name) {
            receipts.push(CallbackReceipt::Recorded {
                deployment_id,
                first: false,
            });
        } else if names.len() >= max as usize {
            receipts.push(CallbackReceipt::Full { deployment_id });
        } else {
            names.insert(call.name.clone());
            receipts.push(CallbackReceipt::Recorded {
                deployment_id,
                first: true,
            });
            new.push((i, deployment_id));
        }
    }
    Ok((receipts, new))
}

/// The insert of the new callbacks (`new`, as `judge_group` gave them),
/// giving back those it stored (a row another daemon stored meanwhile is
/// left as it is).
pub(super) fn push_callbacks(
    statements: &mut super::Statements,
    calls: &[CallbackCall],
    new: &[(usize, i64)],
    now: OffsetDateTime,
) {
    if new.is_empty() {
        return;
    }
    let rows = new
        .iter()
        .map(|&(i, deployment_id)| {
            let call = &calls[i];
            serde_json::json!([deployment_id, call.name, call.method, call.body])
        })
        .collect();
    let q = statements
        .next(
            "INSERT INTO callbacks (deployment_id, name, method, body, received_at) \
             SELECT CAST(value ->> 0 AS BIGINT), value ->> 1, value ->> 2, value ->> 3, ",
        )
        .push_bind(now)
        .push(" FROM ");
    super::helpers::push_json_rows(q, rows);
    // `WHERE true`: SQLite would read the `ON` of the upsert as the
    // table's join constraint.
    q.push(
        " WHERE true ORDER BY key ON CONFLICT (deployment_id, name) DO NOTHING \
         RETURNING deployment_id, name",
    );
}

/// The events of the callbacks stored (`stored`, places in `calls` and
/// their deployments).
pub(super) fn callback_events(
    calls: &[CallbackCall],
    stored: &[(usize, i64)],
    now: OffsetDateTime,
) -> Vec<(&'static str, serde_json::Value)> {
    stored
        .iter()
        .map(|&(i, deployment_id)| {
            let call = &calls[i];
            let payload = serde_json::to_value(CallbackReceived {
                deployment_id,
                name: &call.name,
                method: &call.method,
                received_at: now,
            })
            .unwrap_or_default();
            ("deployment.callback", payload)
        })
        .collect()
}
