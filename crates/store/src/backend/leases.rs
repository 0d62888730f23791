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
use super::helpers::push_events;
use super::{Db, FOR_UPDATE, Statements};

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
        let steps = steps(changes, order);
        let mut batch = self.begin_batch(crate::Lane::Lease).await?;
        let mut held = vec![false; changes.len()];
        let mut events = Vec::new();
        // A step's statements go in one batch, with the release of the
        // other addresses of the clients whose binds the step before
        // wrote (it needs that step's answer); the last step's release
        // goes with the events and the commit. One step (the common
        // group): two trips.
        let mut bound: Vec<&LeaseClaim> = Vec::new();
        for step in &steps {
            let mut statements = batch.statements();
            let releases = push_release(&mut statements, &bound);
            match step {
                Step::Claims(round) => push_claims(&mut statements, changes, round),
                Step::LetGo(_, go) => push_let_go(&mut statements, go),
            }
            let mut done = batch.run(statements).await?.into_iter();
            if releases {
                next(&mut done)?;
            }
            bound = match step {
                Step::Claims(round) => {
                    read_claims(&mut done, changes, round, &mut held, &mut events)?
                }
                Step::LetGo(i, go) => {
                    held[*i] = next(&mut done)?.affected > 0;
                    if held[*i] {
                        events.push(let_go_event(go));
                    }
                    Vec::new()
                }
            };
        }
        let mut statements = batch.statements();
        push_release(&mut statements, &bound);
        push_events(&mut statements, &events);
        batch.commit(statements).await?;
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

/// A part of a lease group, in the order its statements run: claims of
/// distinct addresses (indices into the changes), or one release or
/// decline.
enum Step {
    Claims(Vec<usize>),
    LetGo(usize, LetGo),
}

/// A release (`until` None) or a decline (kept out until `until`).
struct LetGo {
    network_id: i64,
    ip: Ipv4Addr,
    mac: MacAddr,
    until: Option<i64>,
    now: i64,
}

/// The group's steps: claims of distinct addresses go in one round; a
/// second change of one address, a release or a decline ends it.
fn steps(changes: &[LeaseChange], order: Vec<usize>) -> Vec<Step> {
    let mut steps = Vec::new();
    let mut round: Vec<usize> = Vec::new();
    for i in order {
        if let Some(go) = let_go(&changes[i]) {
            if !round.is_empty() {
                steps.push(Step::Claims(std::mem::take(&mut round)));
            }
            steps.push(Step::LetGo(i, go));
            continue;
        }
        if round
            .last()
            .is_some_and(|&j| changes[j].address() == changes[i].address())
        {
            steps.push(Step::Claims(std::mem::take(&mut round)));
        }
        round.push(i);
    }
    if !round.is_empty() {
        steps.push(Step::Claims(round));
    }
    steps
}

type Done = crate::batch::Done<<Db as sqlx::Database>::Row>;

fn next(done: &mut impl Iterator<Item = Done>) -> Result<Done> {
    done.next().ok_or_else(|| {
        crate::StoreError::Database(sqlx::Error::Protocol(
            "a lease group's batch gave fewer results than statements".into(),
        ))
    })
}

fn claims<'a>(changes: &'a [LeaseChange], round: &[usize]) -> Vec<(usize, &'a LeaseClaim)> {
    round
        .iter()
        .filter_map(|&i| match &changes[i] {
            LeaseChange::Claim(c) => Some((i, c)),
            _ => None,
        })
        .collect()
}

/// Claims of distinct addresses (`round`, indices into `changes`), each
/// judged as if alone: a SELECT of the rows binds replace (a renewal
/// publishes nothing) and one conditional upsert for them all, returning
/// the rows it wrote (`read_claims` reads them back).
fn push_claims(statements: &mut Statements, changes: &[LeaseChange], round: &[usize]) {
    let claims = claims(changes, round);
    let binds: Vec<&LeaseClaim> = claims
        .iter()
        .map(|(_, c)| *c)
        .filter(|c| c.state == LeaseState::Bound)
        .collect();
    if !binds.is_empty() {
        let q = statements.next(LEASE_SELECT);
        q.push(" WHERE (network_id, ip) IN (");
        q.push_values(&binds, |mut row, c| {
            row.push_bind(c.network_id).push_bind(c.ip.to_string());
        });
        q.push(") ");
        q.push(FOR_UPDATE);
    }
    // The condition is evaluated under each row's lock, so of two daemons
    // claiming one free address only one wins.
    let q = statements
        .next("INSERT INTO leases (network_id, ip, mac, state, expires_at, hostname, updated_at) ");
    q.push_values(&claims, |mut row, (_, c)| {
        row.push_bind(c.network_id)
            .push_bind(c.ip.to_string())
            .push_bind(c.mac.to_string())
            .push_bind(c.state.as_str())
            .push_bind(c.expires_at)
            .push_bind(c.hostname.clone())
            .push_bind(c.now);
    });
    q.push(
        " ON CONFLICT (network_id, ip) DO UPDATE SET mac = excluded.mac, state = excluded.state, \
         expires_at = excluded.expires_at, hostname = excluded.hostname, updated_at = excluded.updated_at \
         WHERE (leases.mac = excluded.mac AND leases.state <> 'declined') \
            OR leases.expires_at <= excluded.updated_at OR leases.state = 'released' \
         RETURNING network_id, ip",
    );
}

/// A client holds one address per network: `bound`, binds just written,
/// let go of their clients' other addresses. False: nothing to release.
fn push_release(statements: &mut Statements, bound: &[&LeaseClaim]) -> bool {
    if bound.is_empty() {
        return false;
    }
    let q = statements.next("WITH c (network_id, mac, ip, at) AS (");
    q.push_values(bound, |mut row, c| {
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
    true
}

/// What the statements of `push_claims` gave: which claims held, and the
/// events of binds that are not renewals. The binds written, whose
/// clients' other addresses are to be released.
fn read_claims<'a>(
    done: &mut impl Iterator<Item = Done>,
    changes: &'a [LeaseChange],
    round: &[usize],
    held: &mut [bool],
    events: &mut Vec<(&'static str, serde_json::Value)>,
) -> Result<Vec<&'a LeaseClaim>> {
    use sqlx::FromRow;
    let claims = claims(changes, round);
    let binds = claims.iter().any(|(_, c)| c.state == LeaseState::Bound);
    let mut before: HashMap<(i64, String), LeaseRow> = HashMap::new();
    if binds {
        for row in next(done)?.rows {
            let r = LeaseRow::from_row(&row)?;
            before.insert((r.network_id, r.ip.clone()), r);
        }
    }
    let mut written = std::collections::HashSet::new();
    let mut bound = Vec::new();
    for row in next(done)?.rows {
        written.insert(<(i64, String)>::from_row(&row)?);
    }
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
    Ok(bound)
}

/// A release or a decline of the client's address: one statement of the
/// group's batch.
fn push_let_go(statements: &mut Statements, go: &LetGo) {
    let LetGo {
        network_id,
        ip,
        mac,
        until,
        now,
    } = *go;
    let (state, expires_at) = match until {
        None => ("released", now),
        Some(t) => ("declined", t),
    };
    statements
        .next("UPDATE leases SET state = ")
        .push_bind(state)
        .push(", expires_at = ")
        .push_bind(expires_at)
        .push(", updated_at = ")
        .push_bind(now)
        .push(" WHERE network_id = ")
        .push_bind(network_id)
        .push(" AND ip = ")
        .push_bind(ip.to_string())
        .push(" AND mac = ")
        .push_bind(mac.to_string())
        .push(" AND state IN ('offered', 'bound')");
}

/// The event of a release or decline that took.
fn let_go_event(go: &LetGo) -> (&'static str, serde_json::Value) {
    let LetGo {
        network_id,
        ip,
        mac,
        until,
        ..
    } = *go;
    let routing_key = match until {
        None => "dhcp.lease.released",
        Some(_) => "dhcp.lease.declined",
    };
    let payload = serde_json::to_value(LeaseLetGo {
        network_id,
        ip,
        mac,
        until,
    })
    .unwrap_or_default();
    (routing_key, payload)
}

/// The change as a release or decline; None for a claim.
fn let_go(change: &LeaseChange) -> Option<LetGo> {
    match *change {
        LeaseChange::Claim(_) => None,
        LeaseChange::Release {
            network_id,
            ip,
            mac,
            now,
        } => Some(LetGo {
            network_id,
            ip,
            mac,
            until: None,
            now,
        }),
        LeaseChange::Decline {
            network_id,
            ip,
            mac,
            until,
            now,
        } => Some(LetGo {
            network_id,
            ip,
            mac,
            until: Some(until),
            now,
        }),
    }
}
