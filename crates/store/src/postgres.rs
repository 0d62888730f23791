//! The PostgreSQL backend, for sites that share state with a web layer or
//! run several daemons. The SQL itself lives in `backend/`.

use std::str::FromStr;
use std::time::Duration;

use sqlx::Database;
use sqlx::migrate::Migrator;
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};

use super::{Result, SecretCipher, StoreError};
use crate::settings::PostgresTarget;

static MIGRATIONS: Migrator = sqlx::migrate!("../../migrations/postgres");

pub struct PostgresStore {
    pool: PgPool,
    cipher: SecretCipher,
    served: super::served_cache::ServedCache,
    boot_index: super::boot_index::BootIndex,
}

impl PostgresStore {
    const BACKEND: &'static str = "postgres";
    const BEGIN_WRITE: &'static str = "BEGIN";

    /// A write transaction. PostgreSQL queues writers on row locks itself,
    /// so there is nothing to hold (the unit guard matches SQLite's).
    async fn begin_write(&self) -> Result<((), sqlx::Transaction<'static, sqlx::Postgres>)> {
        Ok(((), self.pool.begin_with(Self::BEGIN_WRITE).await?))
    }

    async fn connect(target: &PostgresTarget, max_connections: u32) -> Result<PgPool> {
        let options = match target {
            PostgresTarget::Url(url) => {
                PgConnectOptions::from_str(url).map_err(StoreError::Database)?
            }
            PostgresTarget::Parts {
                host,
                port,
                name,
                user,
                password,
            } => {
                let mut o = PgConnectOptions::new()
                    .host(host)
                    .port(*port)
                    .database(name)
                    .username(user);
                if let Some(p) = password {
                    o = o.password(p);
                }
                o
            }
        }
        .application_name("bootloader");
        PgPoolOptions::new()
            .max_connections(max_connections)
            .acquire_timeout(Duration::from_secs(10))
            .connect_with(options)
            .await
            .map_err(StoreError::Unavailable)
    }

    pub async fn open(
        target: &PostgresTarget,
        max_connections: u32,
        cipher: SecretCipher,
    ) -> Result<Self> {
        let pool = Self::connect(target, max_connections).await?;
        MIGRATIONS.run(&pool).await?;
        Ok(Self {
            pool,
            cipher,
            served: Default::default(),
            boot_index: super::boot_index::BootIndex::new(false),
        })
    }

    pub async fn migrate_only(
        target: &PostgresTarget,
        max_connections: u32,
    ) -> Result<Vec<String>> {
        let pool = Self::connect(target, max_connections).await?;
        let applied = pending(&MIGRATIONS, &pool).await?;
        MIGRATIONS.run(&pool).await?;
        pool.close().await;
        Ok(applied)
    }
}

/// Names of the migrations not yet applied to `pool`'s database.
pub(super) async fn pending<DB>(migrator: &Migrator, pool: &sqlx::Pool<DB>) -> Result<Vec<String>>
where
    DB: Database,
    <DB as Database>::Connection: sqlx::migrate::Migrate,
{
    let mut conn = pool.acquire().await?;
    use sqlx::migrate::Migrate;
    // A fresh database has no migrations table yet.
    conn.ensure_migrations_table(&migrator.table_name).await?;
    let applied: Vec<i64> = conn
        .list_applied_migrations(&migrator.table_name)
        .await?
        .into_iter()
        .map(|m| m.version)
        .collect();
    Ok(migrator
        .iter()
        .filter(|m| !applied.contains(&m.version))
        .map(|m| format!("{}_{}", m.version, m.description))
        .collect())
}

// The SQL of `backend/`, compiled for this backend.
type Db = sqlx::Postgres;
type Backend = PostgresStore;
/// The row-lock clause a read that decides a write needs.
const FOR_UPDATE: &str = " FOR UPDATE";
/// `sql` with the row lock a read that decides a write needs.
macro_rules! locked {
    ($sql:literal) => {
        concat!($sql, " FOR UPDATE")
    };
}
/// `sql` with the shared row lock a read that must not change under a
/// write needs.
macro_rules! shared {
    ($sql:literal) => {
        concat!($sql, " FOR SHARE")
    };
}
#[path = "backend/mod.rs"]
#[allow(
    clippy::duplicate_mod,
    reason = "the same SQL is compiled once per backend, with that backend's Db and Backend"
)]
mod backend;
