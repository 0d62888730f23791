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

/// Where migrations 0016 and 0017's triggers say what changed the boot answers, and
/// which deployment got a callback; 0020's, which profile was deleted;
/// 0021's, that a token or a user changed.
const BOOT_CHANNEL: &str = "bootloader_boot";
const CALLBACK_CHANNEL: &str = "bootloader_callback";
const PROFILE_CHANNEL: &str = "bootloader_profile";
const AUTH_CHANNEL: &str = "bootloader_auth";

/// Keeps this daemon told of every daemon's changes (its own included):
/// listens on a connection of its own, hands the boot index what changed
/// and the engine which deployment got a callback. The index is on only
/// while it listens; a lost connection turns it off (every look-up reads
/// the database) until it listens again, and then the engine is told that
/// callbacks may have been missed. Ends once the store is gone.
async fn follow_changes(
    pool: PgPool,
    index: std::sync::Weak<super::boot_index::BootIndex>,
    profiles: std::sync::Weak<super::profile_cache::ProfileCache>,
    tokens: std::sync::Weak<super::token_cache::TokenCache>,
    callbacks: tokio::sync::broadcast::Sender<crate::engine::CallbackNotice>,
) {
    use crate::engine::CallbackNotice;
    loop {
        if index.strong_count() == 0 {
            return;
        }
        let listening = async {
            let mut listener = sqlx::postgres::PgListener::connect_with(&pool).await?;
            listener
                .listen_all([
                    BOOT_CHANNEL,
                    CALLBACK_CHANNEL,
                    PROFILE_CHANNEL,
                    AUTH_CHANNEL,
                ])
                .await?;
            Ok::<_, sqlx::Error>(listener)
        }
        .await;
        let mut listener = match listening {
            Ok(l) => l,
            Err(e) => {
                tracing::warn!(error = %e, "boot index: cannot listen for other daemons' changes; reading the database meanwhile");
                tokio::time::sleep(Duration::from_secs(5)).await;
                continue;
            }
        };
        match index.upgrade() {
            Some(i) => {
                i.set_enabled(true);
                if let Err(e) = backend::warm_index(&pool, &i).await {
                    tracing::warn!(error = %e, "cannot read the boot index ahead");
                }
            }
            None => return,
        }
        if let Some(p) = profiles.upgrade() {
            p.set_on(true);
        }
        if let Some(t) = tokens.upgrade() {
            t.set_on(true);
        }
        // No receiver yet is not an error.
        let _ = callbacks.send(CallbackNotice::Unknown);
        let lost = loop {
            match listener.try_recv().await {
                Ok(Some(n)) if n.channel() == CALLBACK_CHANNEL => {
                    let notice = n
                        .payload()
                        .parse()
                        .map_or(CallbackNotice::Unknown, CallbackNotice::Stored);
                    let _ = callbacks.send(notice);
                }
                Ok(Some(n)) if n.channel() == PROFILE_CHANNEL => {
                    if let Some(p) = profiles.upgrade() {
                        match n.payload().parse() {
                            Ok(id) => p.forget(id),
                            // Which one is not said: all of them.
                            Err(_) => p.set_on(true),
                        }
                    }
                }
                Ok(Some(n)) if n.channel() == AUTH_CHANNEL => {
                    if let Some(t) = tokens.upgrade() {
                        t.forget_all();
                    }
                }
                Ok(Some(n)) => match index.upgrade() {
                    Some(i) => i.notice(n.payload()),
                    None => return,
                },
                Ok(None) => break "the connection was lost".to_string(),
                Err(e) => break e.to_string(),
            }
        };
        match index.upgrade() {
            Some(i) => i.set_enabled(false),
            None => return,
        }
        if let Some(p) = profiles.upgrade() {
            p.set_on(false);
        }
        if let Some(t) = tokens.upgrade() {
            t.set_on(false);
        }
        tracing::warn!(error = %lost, "boot index: no longer told of other daemons' changes; reading the database until listening again");
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

pub struct PostgresStore {
    pool: PgPool,
    /// A connection each for lease groups and callback groups (`Lane`).
    lanes: [PgPool; 2],
    cipher: SecretCipher,
    /// The check value this key opened (`cipher.rs`).
    verified_check: super::cipher::VerifiedCheck,
    served: std::sync::Arc<super::served_cache::ServedCache>,
    /// Profile versions as read (`profile_cache.rs`).
    profiles: std::sync::Arc<super::profile_cache::ProfileCache>,
    /// API tokens as authenticated (`token_cache.rs`).
    tokens: std::sync::Arc<super::token_cache::TokenCache>,
    boot_index: std::sync::Arc<super::boot_index::BootIndex>,
    callbacks: tokio::sync::broadcast::Sender<crate::engine::CallbackNotice>,
    /// Deployments' transitions committed together (`combine.rs`).
    transitions: super::combine::Combine<crate::engine::Transition, Result<bool>>,
    /// Deployments started together.
    starts: StartGroup,
}

/// A write transaction whose statements come in batches (`batch.rs`).
/// It begins with its first statements that do not end it: a batch of one
/// statement committed at once runs as that statement alone (PostgreSQL
/// commits it by itself), without the two trips of `BEGIN` and `COMMIT`.
pub(crate) struct Batch<'a> {
    /// The lane's connections.
    pool: &'a PgPool,
    tx: Option<sqlx::Transaction<'static, sqlx::Postgres>>,
    /// How the transaction begins (`by_keys`).
    begin: &'static str,
}

/// The statements of one batch; PostgreSQL prepares one statement at a
/// time.
pub(crate) struct Statements {
    list: Vec<sqlx::QueryBuilder<sqlx::Postgres>>,
    /// How many statements the last one holds as parts of one `WITH`,
    /// while `together` gathers them.
    joined: Option<usize>,
}

impl Statements {
    /// Starts the next statement with `sql`; its values go in with
    /// `push_bind`.
    pub(crate) fn next(&mut self, sql: &str) -> &mut sqlx::QueryBuilder<sqlx::Postgres> {
        match &mut self.joined {
            Some(0) => self.list.push(sqlx::QueryBuilder::new("WITH w0 AS (")),
            Some(n) => {
                let at = self.list.len() - 1;
                self.list[at].push(format!("), w{n} AS ("));
            }
            None => self.list.push(sqlx::QueryBuilder::new("")),
        }
        if let Some(n) = &mut self.joined {
            *n += 1;
        }
        let at = self.list.len() - 1;
        self.list[at].push(sql)
    }

    /// The statements `push` adds, which write and give back nothing
    /// the caller reads, as one statement: a `WITH` of each (PostgreSQL
    /// runs every part of it, on one snapshot, in one trip). They must
    /// not depend on each other's writes, nor write one row twice; their
    /// `Done`s are the one statement's.
    pub(crate) fn together(&mut self, push: impl FnOnce(&mut Self)) {
        self.joined = Some(0);
        push(self);
        if let Some(n) = self.joined.take()
            && n > 0
        {
            let at = self.list.len() - 1;
            self.list[at].push(") SELECT 1");
        }
    }
}

impl Batch<'_> {
    /// The batch's statements join a few JSON rows (`JSON_ROWS`), whose
    /// count the planner guesses at 100, to the rows they name by key:
    /// they are planned without hash and merge joins, so that the keys'
    /// indexes are the way. Joined by hash, a transition group's `UPDATE`
    /// read every deployment (2.5 ms for four rows with 10,000 of them),
    /// and its generic plan, made once per connection while the table was
    /// small, stayed so as it grew; so did a callback group's reads (3.4
    /// ms). Not for every batch: a lease group's statements need their
    /// hash joins (17-37 ms each without). The settings end with the
    /// transaction, and the `BEGIN` takes them in its one trip. Before
    /// the first statement runs.
    pub(crate) fn by_keys(&mut self) {
        self.begin = PostgresStore::BEGIN_BY_KEYS;
    }

    pub(crate) fn statements(&self) -> Statements {
        Statements {
            list: Vec::new(),
            joined: None,
        }
    }

    /// Runs `statements` in the transaction; each one's rows and count.
    pub(crate) async fn run(
        &mut self,
        statements: Statements,
    ) -> Result<Vec<crate::batch::Done<sqlx::postgres::PgRow>>> {
        use sqlx::Executor;
        let tx = match &mut self.tx {
            Some(tx) => tx,
            None => self.tx.insert(self.pool.begin_with(self.begin).await?),
        };
        let mut done = Vec::with_capacity(statements.list.len());
        for mut q in statements.list {
            let one =
                crate::batch::split(tx.fetch_many(q.build()), |r| r.rows_affected(), 0).await?;
            done.extend(one);
        }
        Ok(done)
    }

    /// Ends the transaction without a change.
    pub(crate) async fn rollback(self) -> Result<()> {
        if let Some(tx) = self.tx {
            tx.rollback().await?;
        }
        Ok(())
    }

    /// Runs `statements`, then commits.
    pub(crate) async fn commit(
        mut self,
        mut statements: Statements,
    ) -> Result<Vec<crate::batch::Done<sqlx::postgres::PgRow>>> {
        if self.tx.is_none() && statements.list.len() <= 1 {
            use sqlx::Executor;
            let Some(mut q) = statements.list.pop() else {
                return Ok(Vec::new());
            };
            let done =
                crate::batch::split(self.pool.fetch_many(q.build()), |r| r.rows_affected(), 0)
                    .await?;
            return Ok(done);
        }
        let done = self.run(statements).await?;
        if let Some(tx) = self.tx {
            tx.commit().await?;
        }
        Ok(done)
    }
}

type StartGroup = super::combine::Combine<backend::Start, Result<crate::boot::DeploymentRecord>>;

/// A write's turn (SQLite's holds its one writer): the pool its
/// transaction begins on.
pub(crate) struct WriteTurn<'a> {
    pool: &'a PgPool,
}

impl WriteTurn<'_> {
    /// The turn's transaction.
    pub(crate) async fn begin(&mut self) -> Result<sqlx::Transaction<'static, sqlx::Postgres>> {
        Ok(self.pool.begin_with(PostgresStore::BEGIN_WRITE).await?)
    }
}

impl PostgresStore {
    const BACKEND: &'static str = "postgres";
    const BEGIN_WRITE: &'static str = "BEGIN";
    /// `Batch::by_keys`'s beginning.
    const BEGIN_BY_KEYS: &'static str =
        "BEGIN; SET LOCAL enable_hashjoin = off; SET LOCAL enable_mergejoin = off";

    /// A write's turn in `lane`. PostgreSQL queues writers on row locks
    /// itself, so there is nothing to wait for here; but its pool is
    /// shared by the engine's tasks: the boot path's groups write on
    /// connections of their own.
    async fn write_turn(&self, lane: super::Lane) -> Result<WriteTurn<'_>> {
        Ok(WriteTurn {
            pool: self.lane(lane),
        })
    }

    /// The connections of `lane`'s writes.
    fn lane(&self, lane: super::Lane) -> &PgPool {
        match lane {
            super::Lane::Ordinary => &self.pool,
            super::Lane::Callback => &self.lanes[0],
            super::Lane::Lease => &self.lanes[1],
        }
    }

    /// A write transaction of `lane` taking its statements in batches
    /// (`batch.rs`); here they still go one at a time, and the transaction
    /// begins with the first of them (`Batch`).
    async fn begin_batch(&self, lane: super::Lane) -> Result<Batch<'_>> {
        Ok(Batch {
            pool: self.lane(lane),
            tx: None,
            begin: Self::BEGIN_WRITE,
        })
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
        let lanes = [
            Self::connect(target, 1).await?,
            Self::connect(target, 1).await?,
        ];
        // Off until this daemon listens for the others' changes.
        let boot_index = std::sync::Arc::new(super::boot_index::BootIndex::off());
        // Off until this daemon listens for the others' deletions.
        let profiles = std::sync::Arc::new(super::profile_cache::ProfileCache::off());
        // And until it listens for changes of tokens and users.
        let tokens = std::sync::Arc::new(super::token_cache::TokenCache::off());
        let (callbacks, _) = tokio::sync::broadcast::channel(1024);
        tokio::spawn(follow_changes(
            pool.clone(),
            std::sync::Arc::downgrade(&boot_index),
            std::sync::Arc::downgrade(&profiles),
            std::sync::Arc::downgrade(&tokens),
            callbacks.clone(),
        ));
        let served = std::sync::Arc::new(super::served_cache::ServedCache::default());
        tokio::spawn(backend::keep_warm(
            pool.clone(),
            std::sync::Arc::downgrade(&boot_index),
            std::sync::Arc::downgrade(&served),
        ));
        Ok(Self {
            pool,
            lanes,
            cipher,
            verified_check: Default::default(),
            served,
            profiles,
            tokens,
            boot_index,
            callbacks,
            transitions: super::combine::Combine::lingering(|t| t.id),
            starts: Default::default(),
        })
    }

    fn notices(&self) -> Option<tokio::sync::broadcast::Receiver<crate::engine::CallbackNotice>> {
        Some(self.callbacks.subscribe())
    }

    /// Files are removed side by side, each on a connection of its own.
    fn unserve_group(&self) -> Option<&super::combine::Combine<backend::Unserve, Result<bool>>> {
        None
    }

    /// Transitions that wait together commit together, as on SQLite:
    /// one transaction (one WAL flush) and a few statements for the group
    /// where each was a transaction of five. Each row's update is still
    /// judged on its latest version (PostgreSQL checks an `UPDATE`'s
    /// conditions again once it holds the row), so a transition another
    /// daemon overtook is refused as it was alone.
    fn transition_group(
        &self,
    ) -> Option<&super::combine::Combine<crate::engine::Transition, Result<bool>>> {
        Some(&self.transitions)
    }

    /// Deployments started at once are written together: one transaction
    /// (one WAL flush, one round of notifications) for the group.
    fn start_group(&self) -> Option<&StartGroup> {
        Some(&self.starts)
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
/// The listener turns the boot index on, once it hears every writer's
/// changes; `warm_boot_index` only reads it ahead.
const WARMING_TURNS_INDEX_ON: bool = false;
type Db = sqlx::Postgres;
type Backend = PostgresStore;
/// The row-lock clause a read that decides a write needs.
const FOR_UPDATE: &str = " FOR UPDATE";
/// A lease group releases binding clients' other addresses in the batch
/// after the step that binds, built from the rows the step returned: each
/// statement is a round trip anyway, and the check of the written rows
/// cost 0.7 ms a group here (BENCHMARKS.md, 2026-12-06).
const RELEASE_CHECKED: bool = false;
/// A row lock that keeps the row (its key) but lets others update it.
const FOR_KEY_SHARE: &str = " FOR KEY SHARE";
/// Writers side by side (other daemons too): another may commit between
/// a write transaction's read and its write.
const ONE_WRITER: bool = false;
/// Around one bound value holding a JSON array of arrays: a table of
/// its rows, each one's array as `value` and its place as `key`
/// (`helpers::push_json_rows`).
const JSON_ROWS: (&str, &str) = (
    "json_array_elements(CAST(",
    " AS json)) WITH ORDINALITY AS json_rows(value, key)",
);
/// Around text read from such a row, as the outbox's payload column
/// takes it (JSONB here).
const JSON_PAYLOAD: (&str, &str) = ("CAST(", " AS jsonb)");
/// Around hex text read from such a row, as a bytes column takes it.
const HEX_BYTES: (&str, &str) = ("decode(", ", 'hex')");
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
