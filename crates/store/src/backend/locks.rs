//! `LockStore`: named holds on a job across daemons.

use async_trait::async_trait;

use super::{Backend, Conn};
use crate::Result;
use crate::engine::*;

#[async_trait]
impl LockStore for Backend {
    async fn hold_lock(&self, name: &str, holder: &str, now: i64, until: i64) -> Result<bool> {
        let mut turn = self.write_turn(crate::Lane::Ordinary).await?;
        let mut tx = turn.begin().await?;
        let held = hold(&mut tx, name, holder, now, until).await?;
        tx.commit().await?;
        Ok(held)
    }

    async fn release_lock(&self, name: &str, holder: &str) -> Result<()> {
        let mut turn = self.write_turn(crate::Lane::Ordinary).await?;
        let mut tx = turn.begin().await?;
        sqlx::query("DELETE FROM daemon_locks WHERE name = $1 AND holder = $2")
            .bind(name)
            .bind(holder)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }
}

/// Takes the named hold for `holder` until `until` if it is free, ended
/// before `now`, or already `holder`'s, in the caller's transaction.
pub(super) async fn hold(
    conn: &mut Conn,
    name: &str,
    holder: &str,
    now: i64,
    until: i64,
) -> Result<bool> {
    let done = sqlx::query(
        "INSERT INTO daemon_locks (name, holder, until_unix) VALUES ($1, $2, $4) \
         ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, until_unix = excluded.until_unix \
         WHERE daemon_locks.holder = excluded.holder OR daemon_locks.until_unix < $3",
    )
    .bind(name)
    .bind(holder)
    .bind(now)
    .bind(until)
    .execute(&mut *conn)
    .await?;
    Ok(done.rows_affected() == 1)
}
