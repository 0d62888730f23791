//! `AgentStore`: the daemons sharing the database, as each reports itself.

use async_trait::async_trait;
use time::OffsetDateTime;

use super::helpers::*;
use super::{Backend, Conn, FOR_UPDATE};
use crate::agents::rows::{AGENT_SELECT, AgentRow};
use crate::agents::{Agent, AgentReport, AgentStore};
use crate::{Result, StoreError};

async fn fetch(conn: &mut Conn, name: &str, lock: &str) -> Result<Option<AgentRow>> {
    Ok(sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "{AGENT_SELECT} WHERE name = $1{lock}"
    )))
    .bind(name)
    .fetch_optional(&mut *conn)
    .await?)
}

fn json<T: serde::Serialize>(value: &T) -> String {
    serde_json::to_string(value).unwrap_or_else(|_| "[]".to_string())
}

#[async_trait]
impl AgentStore for Backend {
    async fn report_agent(&self, r: &AgentReport) -> Result<Agent> {
        let mut turn = self.write_turn(crate::Lane::Ordinary).await?;
        let mut tx = turn.begin().await?;
        let before = fetch(&mut tx, &r.name, FOR_UPDATE).await?;
        let started = before.as_ref().is_none_or(|b| b.started_at != r.started_at);
        sqlx::query(
            "INSERT INTO agents (name, location, url, version, started_at, seen_at, \
             stopped_at, listeners, services_down) \
             VALUES ($1, $2, $3, $4, $5, $6, NULL, $7, $8) \
             ON CONFLICT (name) DO UPDATE SET location = excluded.location, url = excluded.url, \
             version = excluded.version, started_at = excluded.started_at, \
             seen_at = excluded.seen_at, stopped_at = NULL, listeners = excluded.listeners, \
             services_down = excluded.services_down",
        )
        .bind(&r.name)
        .bind(&r.location)
        .bind(&r.url)
        .bind(&r.version)
        .bind(r.started_at)
        .bind(r.at)
        .bind(json(&r.listeners))
        .bind(json(&r.services_down))
        .execute(&mut *tx)
        .await?;
        let agent = fetch(&mut tx, &r.name, "")
            .await?
            .ok_or_else(|| StoreError::not_found("agent", &r.name))?
            .at(r.at)?;
        if started {
            emit(&mut tx, "agent.started", event(&agent)).await?;
        }
        tx.commit().await?;
        Ok(agent)
    }

    async fn agent_stopped(&self, name: &str, at: OffsetDateTime) -> Result<()> {
        let mut turn = self.write_turn(crate::Lane::Ordinary).await?;
        let mut tx = turn.begin().await?;
        let done = sqlx::query("UPDATE agents SET stopped_at = $1, seen_at = $1 WHERE name = $2")
            .bind(at)
            .bind(name)
            .execute(&mut *tx)
            .await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::not_found("agent", name));
        }
        let agent = fetch(&mut tx, name, "")
            .await?
            .ok_or_else(|| StoreError::not_found("agent", name))?
            .at(at)?;
        emit(&mut tx, "agent.stopped", event(&agent)).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn list_agents(&self, now: OffsetDateTime) -> Result<Vec<Agent>> {
        let mut conn = self.pool.acquire().await?;
        let rows: Vec<AgentRow> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "{AGENT_SELECT} ORDER BY location IS NOT NULL, location, name"
        )))
        .fetch_all(&mut *conn)
        .await?;
        rows.into_iter().map(|r| r.at(now)).collect()
    }

    async fn agent(&self, name: &str, now: OffsetDateTime) -> Result<Agent> {
        let mut conn = self.pool.acquire().await?;
        fetch(&mut conn, name, "")
            .await?
            .ok_or_else(|| StoreError::not_found("agent", name))?
            .at(now)
    }

    async fn delete_agent(&self, name: &str, now: OffsetDateTime) -> Result<Agent> {
        let mut turn = self.write_turn(crate::Lane::Ordinary).await?;
        let mut tx = turn.begin().await?;
        let agent = fetch(&mut tx, name, FOR_UPDATE)
            .await?
            .ok_or_else(|| StoreError::not_found("agent", name))?
            .at(now)?;
        sqlx::query("DELETE FROM agents WHERE id = $1")
            .bind(agent.id)
            .execute(&mut *tx)
            .await?;
        emit(&mut tx, "agent.deleted", event(&agent)).await?;
        tx.commit().await?;
        Ok(agent)
    }
}
