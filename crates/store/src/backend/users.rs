//! `UserStore`: users, API tokens and SSH keys.

use async_trait::async_trait;
use time::OffsetDateTime;

use super::{Backend, Conn};
use crate::sql::rows::*;
use crate::sql::*;
use crate::types::*;
use crate::{Result, StoreError, UserStore};
use bootloader_core::model::{Name, PasswordHash, TokenHash};
use bootloader_core::published::events::PasswordChanged;

use super::helpers::*;

#[async_trait]
impl UserStore for Backend {
    async fn create_user(&self, spec: UserSpec) -> Result<User> {
        let mut turn = self.write_turn(crate::Lane::Ordinary).await?;
        let mut tx = turn.begin().await?;
        let user = insert_user(&mut tx, &spec).await?;
        tx.commit().await?;
        Ok(user)
    }

    async fn user(&self, name: &Name) -> Result<User> {
        let mut conn = self.pool.acquire().await?;
        fetch_user(&mut conn, name).await
    }

    async fn list_users(&self, page: Page) -> Result<Listing<User>> {
        let mut conn = self.pool.acquire().await?;
        let total = count(&mut conn, "SELECT COUNT(*) FROM users").await?;
        let (limit, offset) = limit(page);
        let rows: Vec<UserRow> = sqlx::query_as(
            "SELECT id, name, email, first_name, last_name, is_active, is_staff, created_at FROM users ORDER BY name LIMIT $1 OFFSET $2",
        )
        .bind(limit)
        .bind(offset)
        .fetch_all(&mut *conn)
        .await?;
        let items = rows.into_iter().map(convert::user).collect::<Result<_>>()?;
        Ok(Listing { total, items })
    }

    async fn update_user(&self, name: &Name, spec: UserSpec, read: &User) -> Result<User> {
        let mut turn = self.write_turn(crate::Lane::Ordinary).await?;
        let mut tx = turn.begin().await?;
        // Lock the row (PostgreSQL) so that the check holds until commit.
        sqlx::query(locked!("SELECT id FROM users WHERE name = $1"))
            .bind(name.as_str())
            .fetch_optional(&mut *tx)
            .await?;
        let current = fetch_user(&mut tx, name).await?;
        if current != *read {
            return Err(StoreError::Stale {
                what: "user",
                key: name.to_string(),
            });
        }
        if &spec.name != name && fetch_user(&mut tx, &spec.name).await.is_ok() {
            return Err(StoreError::conflict(
                "name",
                format!("user {} already exists", spec.name),
            ));
        }
        sqlx::query(
            "UPDATE users SET name = $1, email = $2, first_name = $3, last_name = $4, \
             is_active = $5, is_staff = $6 WHERE id = $7",
        )
        .bind(spec.name.as_str())
        .bind(&spec.email)
        .bind(&spec.first_name)
        .bind(&spec.last_name)
        .bind(spec.is_active)
        .bind(spec.is_staff)
        .bind(current.id)
        .execute(&mut *tx)
        .await?;
        let user = fetch_user(&mut tx, &spec.name).await?;
        emit(&mut tx, "user.updated", event(&user)).await?;
        tx.commit().await?;
        // Renamed, deactivated or made staff (or not): its tokens say so
        // from now on.
        self.tokens.forget_all();
        Ok(user)
    }

    async fn delete_user(&self, name: &Name) -> Result<()> {
        let mut turn = self.write_turn(crate::Lane::Ordinary).await?;
        let mut tx = turn.begin().await?;
        let user = fetch_user(&mut tx, name).await?;
        sqlx::query("DELETE FROM users WHERE id = $1")
            .bind(user.id)
            .execute(&mut *tx)
            .await?;
        emit(&mut tx, "user.deleted", event(&user)).await?;
        tx.commit().await?;
        self.tokens.forget_all();
        Ok(())
    }

    async fn set_password(&self, name: &Name, hash: Option<&PasswordHash>) -> Result<()> {
        let mut turn = self.write_turn(crate::Lane::Ordinary).await?;
        let mut tx = turn.begin().await?;
        let user = fetch_user(&mut tx, name).await?;
        match hash {
            Some(hash) => {
                sqlx::query(
                    "INSERT INTO user_passwords (user_id, hash, updated_at) VALUES ($1, $2, $3) \
                     ON CONFLICT (user_id) DO UPDATE SET hash = $2, updated_at = $3",
                )
                .bind(user.id)
                .bind(hash.as_str())
                .bind(now())
                .execute(&mut *tx)
                .await?;
            }
            None => {
                sqlx::query("DELETE FROM user_passwords WHERE user_id = $1")
                    .bind(user.id)
                    .execute(&mut *tx)
                    .await?;
            }
        }
        let payload = PasswordChanged {
            id: user.id,
            name: &user.name,
            set: hash.is_some(),
        };
        emit(&mut tx, "user.password", event(&payload)).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn password_hash(&self, name: &Name) -> Result<Option<PasswordHash>> {
        let mut conn = self.pool.acquire().await?;
        let user = fetch_user(&mut conn, name).await?;
        let stored: Option<String> =
            sqlx::query_scalar("SELECT hash FROM user_passwords WHERE user_id = $1")
                .bind(user.id)
                .fetch_optional(&mut *conn)
                .await?;
        stored
            .map(|text| {
                PasswordHash::from_stored(&text)
                    .map_err(|e| StoreError::Corrupt(format!("user {name}: {e}")))
            })
            .transpose()
    }

    async fn count_users(&self) -> Result<u64> {
        let mut conn = self.pool.acquire().await?;
        count(&mut conn, "SELECT COUNT(*) FROM users").await
    }

    async fn create_token(&self, new: NewApiToken) -> Result<ApiToken> {
        let mut turn = self.write_turn(crate::Lane::Ordinary).await?;
        let mut tx = turn.begin().await?;
        let token = insert_token(&mut tx, &new).await?;
        tx.commit().await?;
        Ok(token)
    }

    async fn authenticate(
        &self,
        hash: &TokenHash,
        at: OffsetDateTime,
    ) -> Result<Option<Principal>> {
        use crate::token_cache::{Found, Known, RECORDED_FOR};
        match self.tokens.find(&hash.0, at) {
            Some(Found::Valid(principal)) => return Ok(Some(principal)),
            Some(Found::Expired) => return Ok(None),
            None => {}
        }
        let since = self.tokens.begin();
        let mut conn = self.pool.acquire().await?;
        let row: Option<PrincipalRow> = sqlx::query_as(
            "SELECT t.id AS token_id, t.scope, t.expires_at, t.last_used_at, u.id AS user_id, u.name AS user_name, u.is_staff \
             FROM api_tokens t JOIN users u ON u.id = t.user_id \
             WHERE t.token_hash = $1 AND u.is_active",
        )
        .bind(&hash.0)
        .fetch_optional(&mut *conn)
        .await?;
        let Some(row) = row else { return Ok(None) };
        if row.expires_at.is_some_and(|e| e <= at) {
            return Ok(None);
        }
        let principal = Principal {
            user_id: row.user_id,
            user: stored(&row.user_name, "user name")?,
            is_staff: row.is_staff,
            by: SignedInBy::Token(row.token_id),
            scope: row.scope.parse().map_err(StoreError::Corrupt)?,
        };
        // Record use at most once a minute: reads should not queue
        // behind writers for a timestamp.
        let mut used_at = row.last_used_at.filter(|t| at - *t < RECORDED_FOR);
        if used_at.is_none() {
            let recorded = sqlx::query("UPDATE api_tokens SET last_used_at = $1 WHERE id = $2")
                .bind(at)
                .bind(row.token_id)
                .execute(&mut *conn)
                .await;
            match recorded {
                Ok(_) => used_at = Some(at),
                Err(e) => tracing::debug!(error = %e, "could not record token use"),
            }
        }
        // Kept until its use is to be recorded again; not kept if it could
        // not be recorded (the next request tries again).
        if let Some(used_at) = used_at {
            let known = Known {
                principal: principal.clone(),
                expires_at: row.expires_at,
                used_at,
            };
            self.tokens.keep(&hash.0, known, since);
        }
        Ok(Some(principal))
    }

    async fn list_tokens(&self, user: Option<&Name>, page: Page) -> Result<Listing<ApiToken>> {
        let mut conn = self.pool.acquire().await?;
        let name = user.map(|u| u.as_str().to_string());
        let total: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM api_tokens t JOIN users u ON u.id = t.user_id WHERE ($1 IS NULL OR u.name = $1)",
        )
        .bind(&name)
        .fetch_one(&mut *conn)
        .await?;
        let (limit, offset) = limit(page);
        let rows: Vec<TokenRow> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "{TOKEN_SELECT} WHERE ($1 IS NULL OR u.name = $1) ORDER BY t.id LIMIT $2 OFFSET $3"
        )))
        .bind(&name)
        .bind(limit)
        .bind(offset)
        .fetch_all(&mut *conn)
        .await?;
        let items = rows
            .into_iter()
            .map(convert::token)
            .collect::<Result<_>>()?;
        Ok(Listing {
            total: total.max(0) as u64,
            items,
        })
    }

    async fn revoke_token(&self, id_or_prefix: &str) -> Result<ApiToken> {
        let mut turn = self.write_turn(crate::Lane::Ordinary).await?;
        let mut tx = turn.begin().await?;
        let rows: Vec<TokenRow> = match id_or_prefix.parse::<i64>() {
            Ok(id) => {
                sqlx::query_as(sqlx::AssertSqlSafe(format!(
                    "{TOKEN_SELECT} WHERE t.id = $1"
                )))
                .bind(id)
                .fetch_all(&mut *tx)
                .await?
            }
            Err(_) => {
                sqlx::query_as(sqlx::AssertSqlSafe(format!(
                    "{TOKEN_SELECT} WHERE t.prefix = $1"
                )))
                .bind(id_or_prefix)
                .fetch_all(&mut *tx)
                .await?
            }
        };
        let row = match rows.len() {
            0 => return Err(StoreError::not_found("token", id_or_prefix)),
            1 => rows
                .into_iter()
                .next()
                .ok_or_else(|| StoreError::not_found("token", id_or_prefix))?,
            n => {
                return Err(StoreError::conflict(
                    "token",
                    format!("{n} tokens share this prefix; give the id"),
                ));
            }
        };
        let token = convert::token(row)?;
        sqlx::query("DELETE FROM api_tokens WHERE id = $1")
            .bind(token.id)
            .execute(&mut *tx)
            .await?;
        emit(&mut tx, "token.revoked", event(&token)).await?;
        tx.commit().await?;
        self.tokens.forget_all();
        Ok(token)
    }

    async fn add_ssh_key(&self, user: &Name, name: &str, key: &str) -> Result<SshKey> {
        let mut turn = self.write_turn(crate::Lane::Ordinary).await?;
        let mut tx = turn.begin().await?;
        let uid = user_id(&mut tx, user).await?;
        let ssh_key = insert_ssh_key(&mut tx, uid, user, name, key).await?;
        tx.commit().await?;
        Ok(ssh_key)
    }

    async fn ssh_key(&self, id: i64) -> Result<SshKey> {
        let mut conn = self.pool.acquire().await?;
        fetch_ssh_key(&mut conn, id).await
    }

    async fn list_ssh_keys(&self, user: Option<&Name>, page: Page) -> Result<Listing<SshKey>> {
        let mut conn = self.pool.acquire().await?;
        let name = user.map(|u| u.as_str().to_string());
        let total: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM ssh_authorized_keys k JOIN users u ON u.id = k.user_id WHERE ($1 IS NULL OR u.name = $1)",
        )
        .bind(&name)
        .fetch_one(&mut *conn)
        .await?;
        let (limit, offset) = limit(page);
        let rows: Vec<SshKeyRow> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "{SSH_KEY_SELECT} WHERE ($1 IS NULL OR u.name = $1) ORDER BY k.id LIMIT $2 OFFSET $3"
        )))
        .bind(&name)
        .bind(limit)
        .bind(offset)
        .fetch_all(&mut *conn)
        .await?;
        let items = rows
            .into_iter()
            .map(convert::ssh_key)
            .collect::<Result<_>>()?;
        Ok(Listing {
            total: total.max(0) as u64,
            items,
        })
    }

    async fn delete_ssh_key(&self, id: i64) -> Result<()> {
        let mut turn = self.write_turn(crate::Lane::Ordinary).await?;
        let mut tx = turn.begin().await?;
        let key = fetch_ssh_key(&mut tx, id).await?;
        sqlx::query("DELETE FROM ssh_authorized_keys WHERE id = $1")
            .bind(id)
            .execute(&mut *tx)
            .await?;
        emit(&mut tx, "ssh_key.deleted", event(&key)).await?;
        tx.commit().await?;
        Ok(())
    }
}

/// Writes a new user and its event (the caller's transaction).
pub(super) async fn insert_user(conn: &mut Conn, spec: &UserSpec) -> Result<User> {
    if fetch_user(conn, &spec.name).await.is_ok() {
        return Err(StoreError::conflict(
            "name",
            format!("user {} already exists", spec.name),
        ));
    }
    sqlx::query(
        "INSERT INTO users (name, email, first_name, last_name, is_active, is_staff, created_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(spec.name.as_str())
    .bind(&spec.email)
    .bind(&spec.first_name)
    .bind(&spec.last_name)
    .bind(spec.is_active)
    .bind(spec.is_staff)
    .bind(now())
    .execute(&mut *conn)
    .await?;
    let user = fetch_user(conn, &spec.name).await?;
    emit(conn, "user.created", event(&user)).await?;
    Ok(user)
}

/// Writes a new API token and its event.
pub(super) async fn insert_token(conn: &mut Conn, new: &NewApiToken) -> Result<ApiToken> {
    let user = user_id(conn, &new.user).await?;
    let id: i64 = sqlx::query_scalar(
        "INSERT INTO api_tokens (user_id, token_hash, prefix, scope, description, expires_at, created_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING id",
    )
    .bind(user)
    .bind(&new.hash.0)
    .bind(&new.prefix)
    .bind(new.scope.as_str())
    .bind(&new.description)
    .bind(new.expires_at)
    .bind(now())
    .fetch_one(&mut *conn)
    .await?;
    let row: TokenRow = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "{TOKEN_SELECT} WHERE t.id = $1"
    )))
    .bind(id)
    .fetch_one(&mut *conn)
    .await?;
    let token = convert::token(row)?;
    emit(conn, "token.created", event(&token)).await?;
    Ok(token)
}

/// Writes a new SSH key of user `uid` (named `user`) and its event.
pub(super) async fn insert_ssh_key(
    conn: &mut Conn,
    uid: i64,
    user: &Name,
    name: &str,
    key: &str,
) -> Result<SshKey> {
    let exists: Option<i64> =
        sqlx::query_scalar("SELECT id FROM ssh_authorized_keys WHERE user_id = $1 AND key = $2")
            .bind(uid)
            .bind(key)
            .fetch_optional(&mut *conn)
            .await?;
    if exists.is_some() {
        return Err(StoreError::conflict(
            "key",
            format!("user {user} already has this key"),
        ));
    }
    let id: i64 = sqlx::query_scalar(
        "INSERT INTO ssh_authorized_keys (user_id, name, key, created_at) VALUES ($1, $2, $3, $4) RETURNING id",
    )
    .bind(uid)
    .bind(name)
    .bind(key)
    .bind(now())
    .fetch_one(&mut *conn)
    .await?;
    let ssh_key = fetch_ssh_key(conn, id).await?;
    emit(conn, "ssh_key.created", event(&ssh_key)).await?;
    Ok(ssh_key)
}
