//! `SessionStore`: web console sessions and users' console choices.

use async_trait::async_trait;
use time::{Duration, OffsetDateTime};

use super::Backend;
use super::helpers::*;
use crate::sql::rows::SessionRow;
use crate::sql::stored;
use crate::types::*;
use crate::{Result, SessionStore, StoreError};
use bootloader_core::model::{Name, Theme, TokenHash, TokenScope};

#[async_trait]
impl SessionStore for Backend {
    async fn create_session(&self, new: NewSession) -> Result<i64> {
        let mut turn = self.write_turn(crate::Lane::Ordinary).await?;
        let mut tx = turn.begin().await?;
        let user = user_id(&mut tx, &new.user).await?;
        let at = now();
        let id: i64 = sqlx::query_scalar(
            "INSERT INTO console_sessions (secret_hash, user_id, source, created_at, seen_at, expires_at) \
             VALUES ($1, $2, $3, $4, $4, $5) RETURNING id",
        )
        .bind(&new.hash.0)
        .bind(user)
        .bind(&new.source)
        .bind(at)
        .bind(new.expires_at)
        .fetch_one(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(id)
    }

    async fn session(
        &self,
        hash: &TokenHash,
        at: OffsetDateTime,
        idle: Duration,
    ) -> Result<Option<ConsoleSession>> {
        let mut conn = self.pool.acquire().await?;
        let row: Option<SessionRow> = sqlx::query_as(
            "SELECT s.id, s.source, s.created_at, s.seen_at, s.expires_at, \
                    u.id AS user_id, u.name AS user_name, u.email, u.is_staff, u.theme \
             FROM console_sessions s JOIN users u ON u.id = s.user_id \
             WHERE s.secret_hash = $1 AND u.is_active",
        )
        .bind(&hash.0)
        .fetch_optional(&mut *conn)
        .await?;
        let Some(row) = row else { return Ok(None) };
        if row.expires_at <= at || row.seen_at + idle <= at {
            return Ok(None);
        }
        // Record the visit at most once a minute: page views should not
        // queue behind writers for a timestamp.
        let mut seen_at = row.seen_at;
        if at - row.seen_at > Duration::minutes(1) {
            let recorded = sqlx::query("UPDATE console_sessions SET seen_at = $1 WHERE id = $2")
                .bind(at)
                .bind(row.id)
                .execute(&mut *conn)
                .await;
            match recorded {
                Ok(_) => seen_at = at,
                Err(e) => tracing::debug!(error = %e, "could not record a session's visit"),
            }
        }
        let theme = row
            .theme
            .as_deref()
            .map(|t| t.parse::<Theme>().map_err(StoreError::Corrupt))
            .transpose()?;
        Ok(Some(ConsoleSession {
            id: row.id,
            principal: Principal {
                user_id: row.user_id,
                user: stored(&row.user_name, "user name")?,
                is_staff: row.is_staff,
                by: SignedInBy::Session(row.id),
                scope: if row.is_staff {
                    TokenScope::Write
                } else {
                    TokenScope::Read
                },
            },
            email: row.email,
            theme,
            source: row.source,
            created_at: row.created_at,
            seen_at,
            expires_at: row.expires_at,
        }))
    }

    async fn end_session(&self, hash: &TokenHash) -> Result<()> {
        let mut turn = self.write_turn(crate::Lane::Ordinary).await?;
        let mut tx = turn.begin().await?;
        sqlx::query("DELETE FROM console_sessions WHERE secret_hash = $1")
            .bind(&hash.0)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    async fn end_sessions_of(&self, user: &Name, keep: Option<i64>) -> Result<u64> {
        let mut turn = self.write_turn(crate::Lane::Ordinary).await?;
        let mut tx = turn.begin().await?;
        let user = user_id(&mut tx, user).await?;
        let done = sqlx::query(
            "DELETE FROM console_sessions WHERE user_id = $1 AND ($2 IS NULL OR id <> $2)",
        )
        .bind(user)
        .bind(keep)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(done.rows_affected())
    }

    async fn purge_sessions(&self, at: OffsetDateTime, idle: Duration) -> Result<u64> {
        let mut turn = self.write_turn(crate::Lane::Ordinary).await?;
        let mut tx = turn.begin().await?;
        let done =
            sqlx::query("DELETE FROM console_sessions WHERE expires_at <= $1 OR seen_at <= $2")
                .bind(at)
                .bind(at - idle)
                .execute(&mut *tx)
                .await?;
        tx.commit().await?;
        Ok(done.rows_affected())
    }

    async fn set_theme(&self, user: &Name, theme: Option<Theme>) -> Result<()> {
        let mut turn = self.write_turn(crate::Lane::Ordinary).await?;
        let mut tx = turn.begin().await?;
        let done = sqlx::query("UPDATE users SET theme = $1 WHERE name = $2")
            .bind(theme.map(Theme::as_str))
            .bind(user.as_str())
            .execute(&mut *tx)
            .await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound {
                what: "user",
                key: user.to_string(),
            });
        }
        tx.commit().await?;
        Ok(())
    }
}
