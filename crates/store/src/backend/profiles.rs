//! `ProfileStore`: profile versions.

use async_trait::async_trait;
use bootloader_core::published::events::{ProfileCreated, ProfileDeleted};

use super::{Backend, Conn};
use crate::sql::rows::*;
use crate::sql::*;
use crate::types::*;
use crate::{ProfileStore, Result, StoreError};

use super::helpers::*;

#[async_trait]
impl ProfileStore for Backend {
    async fn create_profile(
        &self,
        name: &str,
        version: &str,
        source: &str,
        action_count: u64,
    ) -> Result<StoredProfile> {
        let mut turn = self.write_turn(crate::Lane::Ordinary).await?;
        let mut tx = turn.begin().await?;
        let profile = insert_profile(&mut tx, name, version, source, action_count).await?;
        tx.commit().await?;
        Ok(profile)
    }

    async fn profile(&self, id: i64) -> Result<StoredProfile> {
        if let Some(p) = self.profiles.by_id(id) {
            return Ok(p);
        }
        let since = self.profiles.begin();
        let mut conn = self.pool.acquire().await?;
        let row: Option<ProfileRow> = sqlx::query_as(
            "SELECT id, name, version, source, action_count, created_at FROM profiles WHERE id = $1",
        )
        .bind(id)
        .fetch_optional(&mut *conn)
        .await?;
        let profile = convert::profile(row.ok_or_else(|| StoreError::not_found("profile", id))?);
        self.profiles.keep(&profile, since);
        Ok(profile)
    }

    async fn profile_by_name_version(&self, name: &str, version: &str) -> Result<StoredProfile> {
        if let Some(p) = self.profiles.by_name(name, version) {
            return Ok(p);
        }
        let since = self.profiles.begin();
        let mut conn = self.pool.acquire().await?;
        let row: Option<ProfileRow> = sqlx::query_as(
            "SELECT id, name, version, source, action_count, created_at FROM profiles WHERE name = $1 AND version = $2",
        )
        .bind(name)
        .bind(version)
        .fetch_optional(&mut *conn)
        .await?;
        let profile = convert::profile(
            row.ok_or_else(|| StoreError::not_found("profile", format!("{name}=={version}")))?,
        );
        self.profiles.keep(&profile, since);
        Ok(profile)
    }

    async fn list_profiles(
        &self,
        filter: &ProfileFilter,
        page: Page,
    ) -> Result<Listing<StoredProfile>> {
        let mut conn = self.pool.acquire().await?;
        let cond = "WHERE ($1 IS NULL OR name = $1) AND ($2 IS NULL OR version = $2)";
        let total: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
            "SELECT COUNT(*) FROM profiles {cond}"
        )))
        .bind(&filter.name)
        .bind(&filter.version)
        .fetch_one(&mut *conn)
        .await?;
        let (limit, offset) = limit(page);
        let rows: Vec<ProfileRow> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT id, name, version, source, action_count, created_at FROM profiles {cond} ORDER BY id LIMIT $3 OFFSET $4"
        )))
        .bind(&filter.name)
        .bind(&filter.version)
        .bind(limit)
        .bind(offset)
        .fetch_all(&mut *conn)
        .await?;
        Ok(Listing {
            total: total.max(0) as u64,
            items: rows.into_iter().map(convert::profile).collect(),
        })
    }

    async fn delete_profile(&self, id: i64) -> Result<()> {
        let mut turn = self.write_turn(crate::Lane::Ordinary).await?;
        let mut tx = turn.begin().await?;
        let used: i64 =
            sqlx::query_scalar("SELECT COUNT(*) FROM deployments WHERE profile_id = $1")
                .bind(id)
                .fetch_one(&mut *tx)
                .await?;
        if used > 0 {
            return Err(StoreError::InUse(format!(
                "profile {id} was used by {used} deployment(s), which keep it as their record of what ran"
            )));
        }
        let deleted = sqlx::query("DELETE FROM profiles WHERE id = $1")
            .bind(id)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        self.profiles.forget(id);
        if deleted == 0 {
            return Err(StoreError::not_found("profile", id));
        }
        emit(
            &mut tx,
            "profile.deleted",
            serde_json::to_value(ProfileDeleted { id }).unwrap_or_default(),
        )
        .await?;
        tx.commit().await?;
        Ok(())
    }
}

/// Writes a new profile version and its event (the caller's transaction).
pub(super) async fn insert_profile(
    conn: &mut Conn,
    name: &str,
    version: &str,
    source: &str,
    action_count: u64,
) -> Result<StoredProfile> {
    let exists: Option<i64> =
        sqlx::query_scalar("SELECT id FROM profiles WHERE name = $1 AND version = $2")
            .bind(name)
            .bind(version)
            .fetch_optional(&mut *conn)
            .await?;
    if let Some(id) = exists {
        return Err(StoreError::conflict(
            "version",
            format!(
                "profile {name}=={version} already exists (id {id}); profiles are immutable, upload a new version"
            ),
        ));
    }
    let row: ProfileRow = sqlx::query_as(
        "INSERT INTO profiles (name, version, source, action_count, created_at) VALUES ($1, $2, $3, $4, $5) \
         RETURNING id, name, version, source, action_count, created_at",
    )
    .bind(name)
    .bind(version)
    .bind(source)
    .bind(i64::try_from(action_count).unwrap_or(i64::MAX))
    .bind(now())
    .fetch_one(&mut *conn)
    .await?;
    let profile = convert::profile(row);
    emit(
        conn,
        "profile.created",
        serde_json::to_value(ProfileCreated {
            id: profile.id,
            name: &profile.name,
            version: &profile.version,
        })
        .unwrap_or_default(),
    )
    .await?;
    Ok(profile)
}
