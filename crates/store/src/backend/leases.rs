//! `LeaseStore`: DHCP leases, claimed one holder at a time.

use bootloader_core::published::events::LeaseLetGo;
use std::net::Ipv4Addr;

use async_trait::async_trait;

use super::Backend;
use crate::boot::*;
use crate::boot_sql::convert;
use crate::boot_sql::rows::*;
use crate::{Listing, Page, Result};
use bootloader_core::model::{LeaseState, MacAddr};

use super::FOR_UPDATE;
use super::boot::*;
use super::helpers::emit;

#[async_trait]
impl LeaseStore for Backend {
    async fn lease_of(&self, network_id: i64, mac: MacAddr) -> Result<Option<Lease>> {
        let row: Option<LeaseRow> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "{LEASE_SELECT} WHERE network_id = $1 AND mac = $2 ORDER BY updated_at DESC, expires_at DESC LIMIT 1"
        )))
        .bind(network_id)
        .bind(mac.to_string())
        .fetch_optional(&self.pool)
        .await?;
        row.map(convert::lease).transpose()
    }

    async fn lease_at(&self, network_id: i64, ip: Ipv4Addr) -> Result<Option<Lease>> {
        let row: Option<LeaseRow> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "{LEASE_SELECT} WHERE network_id = $1 AND ip = $2"
        )))
        .bind(network_id)
        .bind(ip.to_string())
        .fetch_optional(&self.pool)
        .await?;
        row.map(convert::lease).transpose()
    }

    async fn claim_lease(&self, c: &LeaseClaim) -> Result<bool> {
        let (_writer, mut tx) = self.begin_write().await?;
        let before: Option<LeaseRow> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "{LEASE_SELECT} WHERE network_id = $1 AND ip = $2 {for_update}",
            for_update = FOR_UPDATE
        )))
        .bind(c.network_id)
        .bind(c.ip.to_string())
        .fetch_optional(&mut *tx)
        .await?;
        let mac = c.mac.to_string();
        // The condition is evaluated under the row's lock, so of
        // two daemons claiming one free address only one wins.
        let done = sqlx::query(
            "INSERT INTO leases (network_id, ip, mac, state, expires_at, hostname, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7) \
             ON CONFLICT (network_id, ip) DO UPDATE SET mac = excluded.mac, state = excluded.state, \
             expires_at = excluded.expires_at, hostname = excluded.hostname, updated_at = excluded.updated_at \
             WHERE (leases.mac = excluded.mac AND leases.state <> 'declined') \
                OR leases.expires_at <= excluded.updated_at OR leases.state = 'released'",
        )
        .bind(c.network_id)
        .bind(c.ip.to_string())
        .bind(&mac)
        .bind(c.state.as_str())
        .bind(c.expires_at)
        .bind(&c.hostname)
        .bind(c.now)
        .execute(&mut *tx)
        .await?;
        if done.rows_affected() == 0 {
            tx.rollback().await?;
            return Ok(false);
        }
        if c.state == LeaseState::Bound {
            // A client holds one address per network.
            sqlx::query(
                "UPDATE leases SET state = 'released', expires_at = $1, updated_at = $1 \
                 WHERE network_id = $2 AND mac = $3 AND ip <> $4 AND state IN ('offered', 'bound')",
            )
            .bind(c.now)
            .bind(c.network_id)
            .bind(&mac)
            .bind(c.ip.to_string())
            .execute(&mut *tx)
            .await?;
            let renewal = before
                .as_ref()
                .is_some_and(|b| b.mac == mac && b.state == "bound" && b.expires_at > c.now);
            if !renewal {
                let lease = Lease {
                    network_id: c.network_id,
                    ip: c.ip,
                    mac: c.mac,
                    state: LeaseState::Bound,
                    expires_at: c.expires_at,
                    hostname: c.hostname.clone(),
                    updated_at: c.now,
                };
                emit(
                    &mut tx,
                    "dhcp.lease.bound",
                    serde_json::to_value(&lease).unwrap_or_default(),
                )
                .await?;
            }
        }
        tx.commit().await?;
        Ok(true)
    }

    async fn release_lease(
        &self,
        network_id: i64,
        ip: Ipv4Addr,
        mac: MacAddr,
        now: i64,
    ) -> Result<bool> {
        let (_writer, mut tx) = self.begin_write().await?;
        let done = sqlx::query(
            "UPDATE leases SET state = 'released', expires_at = $1, updated_at = $1 \
             WHERE network_id = $2 AND ip = $3 AND mac = $4 AND state IN ('offered', 'bound')",
        )
        .bind(now)
        .bind(network_id)
        .bind(ip.to_string())
        .bind(mac.to_string())
        .execute(&mut *tx)
        .await?;
        let released = done.rows_affected() > 0;
        if released {
            let payload = serde_json::to_value(LeaseLetGo {
                network_id,
                ip,
                mac,
                until: None,
            })
            .unwrap_or_default();
            emit(&mut tx, "dhcp.lease.released", payload).await?;
        }
        tx.commit().await?;
        Ok(released)
    }

    async fn decline_lease(
        &self,
        network_id: i64,
        ip: Ipv4Addr,
        mac: MacAddr,
        until: i64,
        now: i64,
    ) -> Result<bool> {
        let (_writer, mut tx) = self.begin_write().await?;
        let done = sqlx::query(
            "UPDATE leases SET state = 'declined', expires_at = $1, updated_at = $2 \
             WHERE network_id = $3 AND ip = $4 AND mac = $5 AND state IN ('offered', 'bound')",
        )
        .bind(until)
        .bind(now)
        .bind(network_id)
        .bind(ip.to_string())
        .bind(mac.to_string())
        .execute(&mut *tx)
        .await?;
        let declined = done.rows_affected() > 0;
        if declined {
            let payload = serde_json::to_value(LeaseLetGo {
                network_id,
                ip,
                mac,
                until: Some(until),
            })
            .unwrap_or_default();
            emit(&mut tx, "dhcp.lease.declined", payload).await?;
        }
        tx.commit().await?;
        Ok(declined)
    }

    async fn held_leases(&self, now: i64) -> Result<Vec<(i64, u64)>> {
        let mut conn = self.pool.acquire().await?;
        let rows: Vec<(i64, i64)> = sqlx::query_as(
            "SELECT network_id, COUNT(*) FROM leases \
             WHERE state IN ('offered', 'bound') AND expires_at > $1 GROUP BY network_id",
        )
        .bind(now)
        .fetch_all(&mut *conn)
        .await?;
        Ok(rows
            .into_iter()
            .map(|(network, n)| (network, n.max(0) as u64))
            .collect())
    }

    async fn list_leases(&self, network_id: Option<i64>, page: Page) -> Result<Listing<Lease>> {
        let mut conn = self.pool.acquire().await?;
        // Addresses sort as text here; the API sorts each page.
        let (total, rows): (i64, Vec<LeaseRow>) = match network_id {
            Some(n) => (
                sqlx::query_scalar("SELECT COUNT(*) FROM leases WHERE network_id = $1")
                    .bind(n)
                    .fetch_one(&mut *conn)
                    .await?,
                sqlx::query_as(sqlx::AssertSqlSafe(format!(
                    "{LEASE_SELECT} WHERE network_id = $1 ORDER BY network_id, ip LIMIT $2 OFFSET $3"
                )))
                .bind(n)
                .bind(i64::from(page.limit))
                .bind(page.offset as i64)
                .fetch_all(&mut *conn)
                .await?,
            ),
            None => (
                sqlx::query_scalar("SELECT COUNT(*) FROM leases")
                    .fetch_one(&mut *conn)
                    .await?,
                sqlx::query_as(sqlx::AssertSqlSafe(format!(
                    "{LEASE_SELECT} ORDER BY network_id, ip LIMIT $1 OFFSET $2"
                )))
                .bind(i64::from(page.limit))
                .bind(page.offset as i64)
                .fetch_all(&mut *conn)
                .await?,
            ),
        };
        Ok(Listing {
            total: total.max(0) as u64,
            items: rows
                .into_iter()
                .map(convert::lease)
                .collect::<Result<_>>()?,
        })
    }
}
