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

use super::boot::*;
use super::helpers::emit;
use super::{Conn, FOR_UPDATE};

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

    async fn network_leases(&self, network_id: i64) -> Result<Vec<Lease>> {
        let rows: Vec<LeaseRow> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "{LEASE_SELECT} WHERE network_id = $1"
        )))
        .bind(network_id)
        .fetch_all(&self.pool)
        .await?;
        rows.into_iter().map(convert::lease).collect()
    }

    async fn apply_lease_changes(&self, changes: &[LeaseChange]) -> Result<Vec<bool>> {
        // Rows are locked in address order (changes to one address keep
        // theirs), so that two daemons' groups never wait on each other.
        let mut order: Vec<usize> = (0..changes.len()).collect();
        order.sort_by_key(|&i| changes[i].address());
        let (_writer, mut tx) = self.begin_write().await?;
        let mut held = vec![false; changes.len()];
        for i in order {
            held[i] = match &changes[i] {
                LeaseChange::Claim(c) => claim(&mut tx, c).await?,
                LeaseChange::Release {
                    network_id,
                    ip,
                    mac,
                    now,
                } => let_go(&mut tx, (*network_id, *ip, *mac), None, *now).await?,
                LeaseChange::Decline {
                    network_id,
                    ip,
                    mac,
                    until,
                    now,
                } => let_go(&mut tx, (*network_id, *ip, *mac), Some(*until), *now).await?,
            };
        }
        tx.commit().await?;
        Ok(held)
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

/// One claim inside the group's transaction.
async fn claim(conn: &mut Conn, c: &LeaseClaim) -> Result<bool> {
    let mac = c.mac.to_string();
    // Only a bind asks whether it renews (a renewal publishes nothing).
    let before: Option<LeaseRow> = if c.state == LeaseState::Bound {
        sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "{LEASE_SELECT} WHERE network_id = $1 AND ip = $2 {FOR_UPDATE}"
        )))
        .bind(c.network_id)
        .bind(c.ip.to_string())
        .fetch_optional(&mut *conn)
        .await?
    } else {
        None
    };
    // The condition is evaluated under the row's lock, so of two daemons
    // claiming one free address only one wins.
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
    .execute(&mut *conn)
    .await?;
    if done.rows_affected() == 0 {
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
        .execute(&mut *conn)
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
                conn,
                "dhcp.lease.bound",
                serde_json::to_value(&lease).unwrap_or_default(),
            )
            .await?;
        }
    }
    Ok(true)
}

/// A release (`until` None) or a decline (kept out until `until`) of the
/// client's address, inside the group's transaction.
async fn let_go(
    conn: &mut Conn,
    (network_id, ip, mac): (i64, Ipv4Addr, MacAddr),
    until: Option<i64>,
    now: i64,
) -> Result<bool> {
    let (state, expires_at, routing_key) = match until {
        None => ("released", now, "dhcp.lease.released"),
        Some(t) => ("declined", t, "dhcp.lease.declined"),
    };
    let done = sqlx::query(
        "UPDATE leases SET state = $1, expires_at = $2, updated_at = $3 \
         WHERE network_id = $4 AND ip = $5 AND mac = $6 AND state IN ('offered', 'bound')",
    )
    .bind(state)
    .bind(expires_at)
    .bind(now)
    .bind(network_id)
    .bind(ip.to_string())
    .bind(mac.to_string())
    .execute(&mut *conn)
    .await?;
    if done.rows_affected() == 0 {
        return Ok(false);
    }
    let payload = serde_json::to_value(LeaseLetGo {
        network_id,
        ip,
        mac,
        until,
    })
    .unwrap_or_default();
    emit(conn, routing_key, payload).await?;
    Ok(true)
}
