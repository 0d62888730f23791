//! `OutboxStore`: the events written with each change, as the relay reads and marks them.

use async_trait::async_trait;
use time::OffsetDateTime;

use super::Backend;
use crate::sql::rows::*;
use crate::types::*;
use crate::{OutboxStore, Result};

use super::helpers::*;

#[async_trait]
impl OutboxStore for Backend {
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
            let mut turn = self.write_turn(crate::Lane::Ordinary).await?;
            let mut tx = turn.begin().await?;
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
        let rows: Vec<(
            i64,
            i64,
            String,
            sqlx::types::Json<serde_json::Value>,
            OffsetDateTime,
        )> = sqlx::query_as(
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
        let mut turn = self.write_turn(crate::Lane::Ordinary).await?;
        let mut tx = turn.begin().await?;
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
        let mut turn = self.write_turn(crate::Lane::Ordinary).await?;
        let mut tx = turn.begin().await?;
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
        let mut turn = self.write_turn(crate::Lane::Ordinary).await?;
        let mut tx = turn.begin().await?;
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
