//! `TimelineStore`: the boot timeline and the MACs no server has.

use async_trait::async_trait;
use time::OffsetDateTime;

use super::Backend;
use crate::Result;
use crate::boot::*;
use crate::boot_sql::convert;
use crate::boot_sql::rows::*;
use bootloader_core::model::MacAddr;

/// Timeline rows written by one statement, at most (seven bound values
/// each, well under both databases' limits).
const EVENTS_PER_INSERT: usize = 500;

#[async_trait]
impl TimelineStore for Backend {
    async fn record_boot_events(&self, events: &[BootEvent]) -> Result<()> {
        if events.is_empty() {
            return Ok(());
        }
        // Many rows per statement, every statement and the commit in one
        // batch: each trip to the database's thread and back costs more
        // than the row.
        let batch = self.begin_batch(crate::Lane::Ordinary).await?;
        let mut statements = batch.statements();
        for chunk in events.chunks(EVENTS_PER_INSERT) {
            statements
                .next("INSERT INTO boot_events (at, mac, peer, phase, request, outcome, detail) ")
                .push_values(chunk, |mut row, e| {
                    row.push_bind(e.at)
                        .push_bind(e.mac.map(|m| m.to_string()))
                        .push_bind(e.peer.as_str())
                        .push_bind(e.phase.as_str())
                        .push_bind(e.request.as_str())
                        .push_bind(e.outcome.as_str())
                        .push_bind(e.detail.as_str());
                });
        }
        batch.commit(statements).await?;
        Ok(())
    }

    async fn boot_events(
        &self,
        macs: &[MacAddr],
        before: Option<i64>,
        limit: u32,
    ) -> Result<Vec<(i64, BootEvent)>> {
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
        let mut turn = self.write_turn(crate::Lane::Ordinary).await?;
        let mut tx = turn.begin().await?;
        let old = sqlx::query("DELETE FROM boot_events WHERE at < $1")
            .bind(before)
            .execute(&mut *tx)
            .await?;
        // Ids grow with each insert: the newest `keep` stay
        // (fewer where ids have gaps).
        let keep = i64::try_from(keep).unwrap_or(i64::MAX);
        let over = sqlx::query(
            "DELETE FROM boot_events WHERE id <= (SELECT MAX(id) FROM boot_events) - $1",
        )
        .bind(keep)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(old.rows_affected() + over.rows_affected())
    }
}
