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
use super::{Db, FOR_UPDATE, RELEASE_CHECKED, Statements};

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
        // Each step's events are decided in SQL on the rows before its
        // statements, so nothing waits for an answer but the release of
        // binding clients' other addresses. With `RELEASE_CHECKED` that
        // goes in the step too and the whole group is one trip; otherwise
        // each step's batch runs before the next, which carries the release
        // built from the binds the step wrote, and the last one's goes with
        // the commit.
        let at = super::helpers::now();
        let mut statements = batch.statements();
        let mut expect: Vec<Expect> = Vec::new();
        for step in &steps {
            match step {
                Step::Claims(round) => {
                    let claims = claims(changes, round);
                    let binds: Vec<&LeaseClaim> = claims
                        .iter()
                        .map(|(_, c)| *c)
                        .filter(|c| c.state == LeaseState::Bound)
                        .collect();
                    if !binds.is_empty() {
                        push_bound_events(&mut statements, &binds, at);
                        expect.push(Expect::Nothing);
                    }
                    push_claims(&mut statements, &claims);
                    expect.push(Expect::Claims(round));
                    if RELEASE_CHECKED && !binds.is_empty() {
                        push_release(&mut statements, &binds, true);
                        expect.push(Expect::Nothing);
                    }
                }
                Step::LetGo(i, go) => {
                    push_let_go(&mut statements, go, at);
                    expect.extend([Expect::Nothing, Expect::LetGo(*i)]);
                }
            }
            if !RELEASE_CHECKED {
                let ready = std::mem::replace(&mut statements, batch.statements());
                let done = batch.run(ready).await?;
                let written = read(done, &std::mem::take(&mut expect), changes, &mut held)?;
                if !written.is_empty() {
                    push_release(&mut statements, &written, false);
                    expect.push(Expect::Nothing);
                }
            }
        }
        let done = batch.commit(statements).await?;
        read(done, &expect, changes, &mut held)?;
        Ok(held)
    }

    async fn take_slice(
        &self,
        name: &str,
        holder: &str,
        (now, until): (i64, i64),
        network_id: i64,
    ) -> Result<Option<Vec<Lease>>> {
        let mut turn = self.write_turn(crate::Lane::Lease).await?;
        let mut tx = turn.begin().await?;
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

/// What a statement of a lease group's batch answers for.
enum Expect<'a> {
    Nothing,
    /// The upsert of these claims: the rows it wrote.
    Claims(&'a [usize]),
    /// The release or decline of this change: whether it took.
    LetGo(usize),
}

/// Reads a batch's results as `expect` says; the binds written, whose
/// clients' other addresses are to be released.
fn read<'a>(
    done: Vec<Done>,
    expect: &[Expect],
    changes: &'a [LeaseChange],
    held: &mut [bool],
) -> Result<Vec<&'a LeaseClaim>> {
    use sqlx::FromRow;
    if done.len() != expect.len() {
        return Err(crate::StoreError::Database(sqlx::Error::Protocol(format!(
            "a lease group's batch gave {} results for {} statements",
            done.len(),
            expect.len()
        ))));
    }
    let mut bound = Vec::new();
    for (done, expect) in done.into_iter().zip(expect) {
        match *expect {
            Expect::Nothing => {}
            Expect::LetGo(i) => held[i] = done.affected > 0,
            Expect::Claims(round) => {
                let mut written = std::collections::HashSet::new();
                for row in done.rows {
                    written.insert(<(i64, String)>::from_row(&row)?);
                }
                for (i, c) in claims(changes, round) {
                    if written.contains(&(c.network_id, c.ip.to_string())) {
                        held[i] = true;
                        if c.state == LeaseState::Bound {
                            bound.push(c);
                        }
                    }
                }
            }
        }
    }
    Ok(bound)
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

/// The `dhcp.lease.bound` events of the binds of a round, decided on the
/// rows before the round's upsert (so it runs first): a bind the upsert
/// will write (`push_claims`'s condition) that is not a renewal of the
/// client's own bound lease. The rows are locked here on PostgreSQL, in
/// address order.
fn push_bound_events(statements: &mut Statements, binds: &[&LeaseClaim], at: time::OffsetDateTime) {
    let q = statements.next("WITH c (n, network_id, ip, mac, at, payload) AS (");
    q.push_values(binds.iter().enumerate(), |mut row, (n, c)| {
        let lease = Lease {
            network_id: c.network_id,
            ip: c.ip,
            mac: c.mac,
            state: LeaseState::Bound,
            expires_at: c.expires_at,
            hostname: c.hostname.clone(),
            updated_at: c.now,
        };
        row.push_bind(n as i64)
            .push_bind(c.network_id)
            .push_bind(c.ip.to_string())
            .push_bind(c.mac.to_string())
            .push_bind(c.now)
            .push_bind(sqlx::types::Json(super::helpers::event(&lease)));
    });
    q.push(
        "), l AS (SELECT network_id, ip, mac, state, expires_at FROM leases \
         WHERE (network_id, ip) IN (SELECT network_id, ip FROM c)",
    );
    q.push(FOR_UPDATE);
    q.push(
        ") INSERT INTO outbox (routing_key, payload, created_at) \
         SELECT 'dhcp.lease.bound', c.payload, ",
    );
    q.push_bind(at);
    q.push(
        " FROM c LEFT JOIN l ON l.network_id = c.network_id AND l.ip = c.ip \
         WHERE l.ip IS NULL \
            OR (((l.mac = c.mac AND l.state <> 'declined') OR l.expires_at <= c.at OR l.state = 'released') \
                AND NOT (l.mac = c.mac AND l.state = 'bound' AND l.expires_at > c.at)) \
         ORDER BY c.n",
    );
}

/// Claims of distinct addresses, each judged as if alone: one conditional
/// upsert for them all, returning the rows it wrote (`read`).
fn push_claims(statements: &mut Statements, claims: &[(usize, &LeaseClaim)]) {
    // The condition is evaluated under each row's lock, so of two daemons
    // claiming one free address only one wins.
    let q = statements
        .next("INSERT INTO leases (network_id, ip, mac, state, expires_at, hostname, updated_at) ");
    q.push_values(claims, |mut row, (_, c)| {
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

/// A client holds one address per network: the binds let go of their
/// clients' other addresses. `checked`: the binds are those of the round
/// just upserted, and only those it wrote (the row is now the bind) let
/// go; otherwise they are the binds it wrote, read from its answer.
fn push_release(statements: &mut Statements, binds: &[&LeaseClaim], checked: bool) {
    let q = statements.next("WITH c (network_id, mac, ip, at) AS (");
    q.push_values(binds, |mut row, c| {
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
    if checked {
        q.push(
            " AND EXISTS (SELECT 1 FROM leases w WHERE w.network_id = c.network_id \
             AND w.ip = c.ip AND w.mac = c.mac AND w.state = 'bound' AND w.updated_at = c.at)",
        );
    }
}

/// A release or a decline of the client's address: its event if it will
/// take (the row locked here on PostgreSQL), then the change.
fn push_let_go(statements: &mut Statements, go: &LetGo, at: time::OffsetDateTime) {
    let LetGo {
        network_id,
        ip,
        mac,
        until,
        now,
    } = *go;
    let (state, expires_at, routing_key) = match until {
        None => ("released", now, "dhcp.lease.released"),
        Some(t) => ("declined", t, "dhcp.lease.declined"),
    };
    let payload = super::helpers::event(&LeaseLetGo {
        network_id,
        ip,
        mac,
        until,
    });
    let q = statements.next("INSERT INTO outbox (routing_key, payload, created_at) SELECT ");
    q.push_bind(routing_key)
        .push(", ")
        .push_bind(sqlx::types::Json(payload))
        .push(", ")
        .push_bind(at)
        .push(" WHERE EXISTS (SELECT 1 FROM leases WHERE network_id = ")
        .push_bind(network_id)
        .push(" AND ip = ")
        .push_bind(ip.to_string())
        .push(" AND mac = ")
        .push_bind(mac.to_string())
        .push(" AND state IN ('offered', 'bound')")
        .push(FOR_UPDATE)
        .push(")");
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
