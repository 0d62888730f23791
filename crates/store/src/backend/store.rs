//! `Store`: ping, gauges and the secret key check.

use async_trait::async_trait;
use sqlx::Connection as _;

use super::Backend;
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
        let (_writer, mut tx) = self.begin_write().await?;
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
        let (_writer, mut tx) = self.begin_write().await?;
        // Writers that seal a password hold this row shared; taking
        // it exclusively first means none is half-way through.
        let _: Option<String> =
            sqlx::query_scalar(locked!("SELECT value FROM settings WHERE key = $1"))
                .bind(SECRET_CHECK_KEY)
                .fetch_optional(&mut *tx)
                .await?;
        let mut n = 0u64;
        let servers: Vec<(i64, Vec<u8>)> = sqlx::query_as(
            "SELECT id, bmc_password_encrypted FROM servers WHERE bmc_password_encrypted IS NOT NULL",
        )
        .fetch_all(&mut *tx)
        .await?;
        for (id, sealed) in servers {
            let clear = self.cipher.open(&sealed)?;
            sqlx::query("UPDATE servers SET bmc_password_encrypted = $1 WHERE id = $2")
                .bind(new.seal(&clear)?)
                .bind(id)
                .execute(&mut *tx)
                .await?;
            n += 1;
        }
        let credentials: Vec<(i64, Vec<u8>)> =
            sqlx::query_as("SELECT id, password_encrypted FROM credentials")
                .fetch_all(&mut *tx)
                .await?;
        for (id, sealed) in credentials {
            let clear = self.cipher.open(&sealed)?;
            sqlx::query("UPDATE credentials SET password_encrypted = $1 WHERE id = $2")
                .bind(new.seal(&clear)?)
                .bind(id)
                .execute(&mut *tx)
                .await?;
            n += 1;
        }
        let attached: Vec<(i64, Vec<u8>)> =
            sqlx::query_as("SELECT id, data_sealed FROM server_secrets")
                .fetch_all(&mut *tx)
                .await?;
        for (id, sealed) in attached {
            let clear = self.cipher.open(&sealed)?;
            sqlx::query("UPDATE server_secrets SET data_sealed = $1 WHERE id = $2")
                .bind(new.seal(&clear)?)
                .bind(id)
                .execute(&mut *tx)
                .await?;
            n += 1;
        }
        // Deployments' callback tokens (templates render them again
        // after a restart).
        let tokens: Vec<(i64, Vec<u8>)> = sqlx::query_as(
            "SELECT id, token_sealed FROM deployments WHERE token_sealed IS NOT NULL",
        )
        .fetch_all(&mut *tx)
        .await?;
        for (id, sealed) in tokens {
            let clear = self.cipher.open(&sealed)?;
            sqlx::query("UPDATE deployments SET token_sealed = $1 WHERE id = $2")
                .bind(new.seal(&clear)?)
                .bind(id)
                .execute(&mut *tx)
                .await?;
            n += 1;
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
