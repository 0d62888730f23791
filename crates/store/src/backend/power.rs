//! `PowerStore`: BMC health and the record of power commands.

use async_trait::async_trait;
use bootloader_core::published::events::PowerDone;

use super::Backend;
use crate::power::*;
use crate::power_sql::rows::*;
use crate::{Result, StoreError};
use bootloader_core::model::Fqdn;

use super::Conn;

pub(super) async fn server_id(conn: &mut Conn, fqdn: &Fqdn) -> Result<i64> {
    sqlx::query_scalar("SELECT id FROM servers WHERE fqdn = $1")
        .bind(fqdn.as_str())
        .fetch_optional(&mut *conn)
        .await?
        .ok_or_else(|| StoreError::not_found("server", fqdn))
}

pub(super) async fn health(conn: &mut Conn, server_id: i64) -> Result<PowerHealth> {
    let row: Option<HealthRow> = sqlx::query_as(
        "SELECT last_success_at, last_failure_at, consecutive_failures, \
         last_error_kind, last_error, last_command, last_state, last_state_at, \
         last_bootdev, last_bootdev_at FROM power_health WHERE server_id = $1",
    )
    .bind(server_id)
    .fetch_optional(&mut *conn)
    .await?;
    Ok(row.map(PowerHealth::from).unwrap_or_default())
}

#[async_trait]
impl PowerStore for Backend {
    async fn record_power(&self, r: &PowerRecord) -> Result<PowerHealth> {
        let mut turn = self.write_turn(crate::Lane::Ordinary).await?;
        let mut tx = turn.begin().await?;
        let id = server_id(&mut tx, &r.server).await?;
        match &r.result {
            Ok(_) => {
                sqlx::query(
                    "INSERT INTO power_health (server_id, last_success_at, consecutive_failures, last_command, updated_at) \
                     VALUES ($1, $2, 0, $3, $2) \
                     ON CONFLICT (server_id) DO UPDATE SET last_success_at = $2, consecutive_failures = 0, \
                     last_command = $3, updated_at = $2",
                )
                .bind(id)
                .bind(r.at)
                .bind(&r.command)
                .execute(&mut *tx)
                .await?;
            }
            Err((kind, message)) => {
                sqlx::query(
                    "INSERT INTO power_health (server_id, last_failure_at, consecutive_failures, last_error_kind, \
                     last_error, last_command, updated_at) VALUES ($1, $2, 1, $3, $4, $5, $2) \
                     ON CONFLICT (server_id) DO UPDATE SET last_failure_at = $2, \
                     consecutive_failures = power_health.consecutive_failures + 1, last_error_kind = $3, \
                     last_error = $4, last_command = $5, updated_at = $2",
                )
                .bind(id)
                .bind(r.at)
                .bind(kind)
                .bind(message)
                .bind(&r.command)
                .execute(&mut *tx)
                .await?;
            }
        }
        if let Some(known) = &r.known {
            let column = if r.action == "status" {
                "last_state"
            } else {
                "last_bootdev"
            };
            sqlx::query(sqlx::AssertSqlSafe(format!(
                "UPDATE power_health SET {column} = $1, {column}_at = $2 WHERE server_id = $3"
            )))
            .bind(known.to_string())
            .bind(r.at)
            .bind(id)
            .execute(&mut *tx)
            .await?;
        }
        let (outcome, detail) = match &r.result {
            Ok(answer) => ("answered", answer.clone()),
            Err((kind, message)) => (
                if kind == "refused" {
                    "refused"
                } else {
                    "failed"
                },
                format!("{kind}: {message}"),
            ),
        };
        let detail = format!(
            "{detail} ({} driver, {} attempt{}, {} ms)",
            r.driver,
            r.attempts,
            if r.attempts == 1 { "" } else { "s" },
            r.duration_ms
        );
        sqlx::query(
            "INSERT INTO boot_events (at, mac, peer, phase, request, outcome, detail) \
             VALUES ($1, $2, $3, 'power', $4, $5, $6)",
        )
        .bind(r.at)
        .bind(r.mac.map(|m| m.to_string()))
        .bind(&r.bmc)
        .bind(&r.command)
        .bind(outcome)
        .bind(&detail)
        .execute(&mut *tx)
        .await?;
        let payload = serde_json::to_value(PowerDone {
            server: &r.server,
            action: &r.action,
            command: &r.command,
            driver: &r.driver,
            attempts: r.attempts,
            duration_ms: r.duration_ms,
            ok: r.result.is_ok(),
            answer: r.result.as_ref().ok().map(String::as_str),
            error_kind: r.result.as_ref().err().map(|e| e.0.as_str()),
            error: r.result.as_ref().err().map(|e| e.1.as_str()),
        })
        .unwrap_or_default();
        sqlx::query("INSERT INTO outbox (routing_key, payload, created_at) VALUES ($1, $2, $3)")
            .bind(format!("power.{}", r.action))
            .bind(sqlx::types::Json(payload))
            .bind(r.at)
            .execute(&mut *tx)
            .await?;
        let health = health(&mut tx, id).await?;
        tx.commit().await?;
        Ok(health)
    }

    async fn power_health(&self, server: &Fqdn) -> Result<PowerHealth> {
        let mut conn = self.pool.acquire().await?;
        let id = server_id(&mut conn, server).await?;
        health(&mut conn, id).await
    }

    async fn failing_bmcs(&self, limit: u32) -> Result<Vec<(Fqdn, PowerHealth)>> {
        let mut conn = self.pool.acquire().await?;
        let ids: Vec<(i64, String)> = sqlx::query_as(
            "SELECT s.id, s.fqdn FROM power_health h JOIN servers s ON s.id = h.server_id \
             WHERE h.consecutive_failures > 0 ORDER BY h.consecutive_failures DESC, s.fqdn LIMIT $1",
        )
        .bind(i64::from(limit))
        .fetch_all(&mut *conn)
        .await?;
        let mut out = Vec::with_capacity(ids.len());
        for (id, fqdn) in ids {
            let fqdn = fqdn
                .parse()
                .map_err(|_| StoreError::Corrupt(format!("stored FQDN {fqdn:?} does not parse")))?;
            out.push((fqdn, health(&mut conn, id).await?));
        }
        Ok(out)
    }
}
