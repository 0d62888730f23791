//! `Store`: ping, gauges and the secret key check.

use async_trait::async_trait;
use sqlx::Connection as _;

use super::{Backend, Conn};
use crate::sql::*;
use crate::types::*;
use crate::{Result, SecretCipher, Store, StoreError};

use super::helpers::*;

#[async_trait]
impl Store for Backend {
    fn backend(&self) -> &'static str {
        Self::BACKEND
    }

    async fn ping(&self) -> Result<()> {
        let mut conn = self.pool.acquire().await?;
        conn.ping().await?;
        Ok(())
    }

    async fn gauges(&self, now: i64) -> Result<Gauges> {
        let mut conn = self.pool.acquire().await?;
        let deployments: Vec<(String, i64)> =
            sqlx::query_as("SELECT state, COUNT(*) FROM deployments GROUP BY state")
                .fetch_all(&mut *conn)
                .await?;
        let leases: Vec<(String, i64)> = sqlx::query_as(
            "SELECT n.cidr, COUNT(l.ip) FROM networks n LEFT JOIN leases l ON l.network_id = n.id \
             AND l.state IN ('offered', 'bound') AND l.expires_at > $1 GROUP BY n.cidr",
        )
        .bind(now)
        .fetch_all(&mut *conn)
        .await?;
        Ok(Gauges {
            deployments,
            leases,
        })
    }

    async fn verify_secret_key(&self) -> Result<()> {
        let mut turn = self.write_turn(crate::Lane::Ordinary).await?;
        let mut tx = turn.begin().await?;
        let check: Option<String> = sqlx::query_scalar("SELECT value FROM settings WHERE key = $1")
            .bind(SECRET_CHECK_KEY)
            .fetch_optional(&mut *tx)
            .await?;
        match check {
            Some(hex_value) => {
                let sealed = hex::decode(&hex_value)
                    .map_err(|_| StoreError::Corrupt("secret check value".into()))?;
                self.cipher.open(&sealed)?;
            }
            None => {
                let sealed = hex::encode(self.cipher.seal(SECRET_CHECK_VALUE)?);
                sqlx::query("INSERT INTO settings (key, value) VALUES ($1, $2) ON CONFLICT (key) DO NOTHING")
                    .bind(SECRET_CHECK_KEY)
                    .bind(sealed)
                    .execute(&mut *tx)
                    .await?;
                // Another daemon may have won the race with its own key.
                check_current_key(&mut tx, &self.cipher).await?;
            }
        }
        tx.commit().await?;
        Ok(())
    }

    async fn rotate_secret(&self, new: &SecretCipher) -> Result<u64> {
        let mut turn = self.write_turn(crate::Lane::Ordinary).await?;
        let mut tx = turn.begin().await?;
        // Writers that seal a password hold this row shared; taking
        // it exclusively first means none is half-way through.
        let _: Option<String> =
            sqlx::query_scalar(locked!("SELECT value FROM settings WHERE key = $1"))
                .bind(SECRET_CHECK_KEY)
                .fetch_optional(&mut *tx)
                .await?;
        let mut n = 0u64;
        // Every sealed column: BMC passwords, shared credentials, secrets
        // attached to servers, deployments' callback tokens (templates
        // render them again after a restart).
        for (table, column) in [
            ("servers", "bmc_password_encrypted"),
            ("credentials", "password_encrypted"),
            ("server_secrets", "data_sealed"),
            ("deployments", "token_sealed"),
        ] {
            n += reseal(&mut tx, &self.cipher, new, table, column).await?;
        }
        sqlx::query(
            "INSERT INTO settings (key, value) VALUES ($1, $2) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
        )
        .bind(SECRET_CHECK_KEY)
        .bind(hex::encode(new.seal(SECRET_CHECK_VALUE)?))
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(n)
    }
}

/// Opens every value of `table.column` with `old` and seals it under
/// `new`, in the caller's transaction; returns how many.
async fn reseal(
    conn: &mut Conn,
    old: &SecretCipher,
    new: &SecretCipher,
    table: &str,
    column: &str,
) -> Result<u64> {
    let rows: Vec<(i64, Vec<u8>)> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT id, {column} FROM {table} WHERE {column} IS NOT NULL"
    )))
    .fetch_all(&mut *conn)
    .await?;
    let n = rows.len() as u64;
    for (id, sealed) in rows {
        let clear = old.open(&sealed)?;
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "UPDATE {table} SET {column} = $1 WHERE id = $2"
        )))
        .bind(new.seal(&clear)?)
        .bind(id)
        .execute(&mut *conn)
        .await?;
    }
    Ok(n)
}
