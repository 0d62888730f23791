//! `LeaseStore`: DHCP leases, claimed one holder at a time.

use bootloader_core::published::events::LeaseLetGo;
use std::collections::HashMap;
use std::net::Ipv4Addr;

use async_trait::async_trait;

use super::Backend;
use crate::boot::*;
use crate::boot_sql::convert;
use crate::boot_sql::rows::*;
use crate::{Listing, Page, Result};
use bootloader_core::model::{LeaseState, MacAddr};

use super::boot::*;
use super::helpers::emit_all;
use super::{Conn, Db, FOR_UPDATE};

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
        let (_writer, mut tx) = self.begin_write_in(crate::Lane::Lease).await?;
        let mut held = vec![false; changes.len()];
        let mut events = Vec::new();
        // Claims of distinct addresses go in one statement (a round); a
        // second change of one address, a release or a decline ends it.
        let mut round: Vec<usize> = Vec::new();
        for i in order {
            if let LeaseChange::Claim(_) = &changes[i]
                && round
                    .last()
                    .is_none_or(|&j| changes[j].address() != changes[i].address())
            {
                round.push(i);
                continue;
            }
            claim_round(&mut tx, changes, &round, &mut held, &mut events).await?;
            round.clear();
            held[i] = match &changes[i] {
                LeaseChange::Claim(_) => {
                    round.push(i);
                    continue;
                }
                LeaseChange::Release {
                    network_id,
                    ip,
                    mac,
                    now,
                } => let_go(&mut tx, (*network_id, *ip, *mac), None, *now, &mut events).await?,
                LeaseChange::Decline {
                    network_id,
                    ip,
                    mac,
                    until,
                    now,
                } => {
                    let at = (*network_id, *ip, *mac);
                    let_go(&mut tx, at, Some(*until), *now, &mut events).await?
                }
            };
        }
        claim_round(&mut tx, changes, &round, &mut held, &mut events).await?;
        let events: Vec<(&str, serde_json::Value)> =
            events.iter().map(|(k, v)| (*k, v.clone())).collect();
        emit_all(&mut tx, &events).await?;
        tx.commit().await?;
        Ok(held)
    }

    async fn take_slice(
        &self,
        name: &str,
        holder: &str,
        (now, until): (i64, i64),
        network_id: i64,
    ) -> Result<Option<Vec<Lease>>> {
        let (_writer, mut tx) = self.begin_write_in(crate::Lane::Lease).await?;
        if !super::locks::hold(&mut tx, name, holder, now, until).await? {
            tx.commit().await?;
            return Ok(None);
        }
        let rows: Vec<LeaseRow> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "{LEASE_SELECT} WHERE network_id = $1"
        )))
        .bind(network_id)
        .fetch_all(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(Some(
            rows.into_iter()
                .map(convert::lease)
                .collect::<Result<_>>()?,
        ))
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

/// Claims of distinct addresses (`round`, indices into `changes`), each
/// judged as if alone: one SELECT of the rows binds replace (a renewal
/// publishes nothing), one conditional upsert for them all, returning the
/// rows it wrote, and one UPDATE letting go of the other addresses of
/// the clients that bound.
async fn claim_round(
    conn: &mut Conn,
    changes: &[LeaseChange],
    round: &[usize],
    held: &mut [bool],
    events: &mut Vec<(&'static str, serde_json::Value)>,
) -> Result<()> {
    let claims: Vec<(usize, &LeaseClaim)> = round
        .iter()
        .filter_map(|&i| match &changes[i] {
            LeaseChange::Claim(c) => Some((i, c)),
            _ => None,
        })
        .collect();
    if claims.is_empty() {
        return Ok(());
    }
    let binds: Vec<&LeaseClaim> = claims
        .iter()
        .map(|(_, c)| *c)
        .filter(|c| c.state == LeaseState::Bound)
        .collect();
    let mut before: HashMap<(i64, String), LeaseRow> = HashMap::new();
    if !binds.is_empty() {
        let mut q = sqlx::QueryBuilder::<Db>::new(LEASE_SELECT);
        q.push(" WHERE (network_id, ip) IN (");
        q.push_values(&binds, |mut row, c| {
            row.push_bind(c.network_id).push_bind(c.ip.to_string());
        });
        q.push(") ");
        q.push(FOR_UPDATE);
        let rows: Vec<LeaseRow> = q.build_query_as().fetch_all(&mut *conn).await?;
        before = rows
            .into_iter()
            .map(|r| ((r.network_id, r.ip.clone()), r))
            .collect();
    }
    // The condition is evaluated under each row's lock, so of two daemons
    // claiming one free address only one wins.
    let mut q = sqlx::QueryBuilder::<Db>::new(
        "INSERT INTO leases (network_id, ip, mac, state, expires_at, hostname, updated_at) ",
    );
    q.push_values(&claims, |mut row, (_, c)| {
        row.push_bind(c.network_id)
            .push_bind(c.ip.to_string())
            .push_bind(c.mac.to_string())
            .push_bind(c.state.as_str())
            .push_bind(c.expires_at)
            .push_bind(c.hostname.as_str())
            .push_bind(c.now);
    });
    q.push(
        " ON CONFLICT (network_id, ip) DO UPDATE SET mac = excluded.mac, state = excluded.state, \
         expires_at = excluded.expires_at, hostname = excluded.hostname, updated_at = excluded.updated_at \
         WHERE (leases.mac = excluded.mac AND leases.state <> 'declined') \
            OR leases.expires_at <= excluded.updated_at OR leases.state = 'released' \
         RETURNING network_id, ip",
    );
    let written: Vec<(i64, String)> = q.build_query_as().fetch_all(&mut *conn).await?;
    let written: std::collections::HashSet<(i64, String)> = written.into_iter().collect();
    let mut bound = Vec::new();
    for (i, c) in &claims {
        let key = (c.network_id, c.ip.to_string());
        if !written.contains(&key) {
            continue;
        }
        held[*i] = true;
        if c.state != LeaseState::Bound {
            continue;
        }
        bound.push(*c);
        let mac = c.mac.to_string();
        let renewal = before
            .get(&key)
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
            events.push((
                "dhcp.lease.bound",
                serde_json::to_value(&lease).unwrap_or_default(),
            ));
        }
    }
    if !bound.is_empty() {
        // A client holds one address per network.
        let mut q = sqlx::QueryBuilder::<Db>::new("WITH c (network_id, mac, ip, at) AS (");
        q.push_values(&bound, |mut row, c| {
            row.push_bind(c.network_id)
                .push_bind(c.mac.to_string())
                .push_bind(c.ip.to_string())
                .push_bind(c.now);
        });
        q.push(
            ") UPDATE leases SET state = 'released', expires_at = c.at, updated_at = c.at FROM c \
             WHERE leases.network_id = c.network_id AND leases.mac = c.mac AND leases.ip <> c.ip \
             AND leases.state IN ('offered', 'bound')",
        );
        q.build().execute(&mut *conn).await?;
    }
    Ok(())
}

/// A release (`until` None) or a decline (kept out until `until`) of the
/// client's address, inside the group's transaction.
async fn let_go(
    conn: &mut Conn,
    (network_id, ip, mac): (i64, Ipv4Addr, MacAddr),
    until: Option<i64>,
    now: i64,
    events: &mut Vec<(&'static str, serde_json::Value)>,
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
    events.push((routing_key, payload));
    Ok(true)
}
