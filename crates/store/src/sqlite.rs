//! The embedded SQLite backend: one file in the data dir, WAL mode,
//! foreign keys on. The SQL itself lives in `backend/`.

use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};

use super::{Lane, Result, SecretCipher, StoreError};

static MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("../../migrations/sqlite");

pub struct SqliteStore {
    pool: SqlitePool,
    cipher: SecretCipher,
    /// The check value this key opened (`cipher.rs`).
    verified_check: super::cipher::VerifiedCheck,
    /// One writer at a time, queued here in order. SQLite allows a single
    /// writer; left to its busy handler, waiting writers sleep and retry
    /// with growing pauses, and under a burst (a boot storm's DHCP) the
    /// throughput collapses to a few transactions a second. The
    /// checkpointer takes a turn here too, to let the WAL start over.
    writer: std::sync::Arc<tokio::sync::Mutex<Writer>>,
    /// A write waits here first, one per lane (see `Lane`), so that at
    /// most one write of each lane waits on `writer` at a time: a lease
    /// group then waits for at most a few transactions, not behind every
    /// workflow commit of a boot storm. The lease lane has no gate: its
    /// one writer task writes one group at a time.
    gates: [tokio::sync::Mutex<()>; 2],
    served: std::sync::Arc<super::served_cache::ServedCache>,
    /// Profile versions as read (`profile_cache.rs`).
    profiles: std::sync::Arc<super::profile_cache::ProfileCache>,
    /// Off for good (`token_cache.rs`): the command line revokes behind
    /// the daemon's back.
    tokens: super::token_cache::TokenCache,
    /// On once the daemon serves (`warm_boot_index`); the command line
    /// writing the same file leaves word of its changes (`boot_index.rs`).
    boot_index: std::sync::Arc<super::boot_index::BootIndex>,
    /// The task that copies the WAL back into the file (`checkpoints`).
    checkpointer: tokio::task::AbortHandle,
    /// The task that reads the index again when it must (`keep_warm`).
    warmer: tokio::task::AbortHandle,
    /// Deployments' transitions committed together (`combine.rs`).
    transitions: TransitionGroup,
    /// Files deployments stop serving, removed together (a storm's
    /// machines each remove their script as they finish).
    unserves: UnserveGroup,
    /// Deployments started together.
    starts: StartGroup,
}

type UnserveGroup = super::combine::Combine<backend::Unserve, Result<bool>>;

type TransitionGroup = super::combine::Combine<crate::engine::Transition, Result<bool>>;

type StartGroup = super::combine::Combine<backend::Start, Result<crate::boot::DeploymentRecord>>;

impl Drop for SqliteStore {
    fn drop(&mut self) {
        self.checkpointer.abort();
        self.warmer.abort();
    }
}

/// How long a statement waits for SQLite's lock (writers queue in
/// `writer` first, so this is for the command line and checkpoints).
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

/// How often the WAL is copied back into the database file.
const CHECKPOINT_EVERY: Duration = Duration::from_secs(1);

/// The WAL's length (in pages: 64 MiB of 4 KiB pages) past which the
/// checkpoint is made in a writer's turn, so that the WAL starts over.
const WAL_RESTART_PAGES: i64 = 16_384;

/// Copies the WAL back into the database file now and then, on a reader's
/// connection and outside the writers' turn. SQLite's own automatic
/// checkpoint runs inside the commit that crosses its threshold, with
/// two fsyncs, while that writer still holds the one write turn: every
/// lease group queued behind it (a DHCP ACK waiting for its commit)
/// waited for the disk. A PASSIVE checkpoint never blocks a writer.
///
/// But under a steady stream of writes (a boot storm) a PASSIVE checkpoint
/// never catches up with the last commit, and SQLite starts the WAL over
/// only once it has: the WAL grew to 1.3 GB over a 10,000-machine storm,
/// and a daemon started after a crash read all of it before its first
/// query (13 s). Past `WAL_RESTART_PAGES` the checkpoint is made in a
/// writer's turn (no commit comes in meanwhile; readers are waited for,
/// and they are short) and restarts the WAL: the next commit writes it
/// from its start, and a restart after a crash reads only what was written
/// since. The file keeps its largest size (160 MiB after a storm):
/// truncating it as well held the turn 40 ms (median; 65 at most) where a
/// restart holds it 10 ms (39 at most), every 2 s under a storm.
async fn checkpoints(pool: SqlitePool, writer: std::sync::Arc<tokio::sync::Mutex<Writer>>) {
    let mut every = tokio::time::interval(CHECKPOINT_EVERY);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        every.tick().await;
        if pool.is_closed() {
            return;
        }
        let done: std::result::Result<(i64, i64, i64), sqlx::Error> =
            sqlx::query_as("PRAGMA wal_checkpoint(PASSIVE)")
                .fetch_one(&pool)
                .await;
        match done {
            Ok((_, wal, _)) if wal >= WAL_RESTART_PAGES => {
                let started = std::time::Instant::now();
                match restart_wal(&pool, &writer).await {
                    Ok((0, _, _)) => tracing::debug!(
                        wal,
                        took_ms = started.elapsed().as_millis() as u64,
                        "WAL started over"
                    ),
                    // Tried again at the next tick.
                    Ok(_) => {
                        tracing::debug!(wal, "the WAL cannot start over yet: a reader holds it")
                    }
                    Err(e) => tracing::warn!(error = %e, "cannot checkpoint the SQLite WAL"),
                }
            }
            Ok((_, wal, copied)) if copied < wal => {
                tracing::debug!(wal, copied, "WAL checkpoint stopped at a reader");
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "cannot checkpoint the SQLite WAL"),
        }
    }
}

/// How long the WAL's restart waits for readers to finish, in a writer's
/// turn (every write waits meanwhile): a long read (an export, say) makes
/// it give up until the next tick rather than hold the writers.
const WAL_RESTART_WAIT_MS: u64 = 200;

/// `PRAGMA wal_checkpoint(RESTART)` in a writer's turn, waiting at most
/// `WAL_RESTART_WAIT_MS` for readers; its row (busy, WAL pages, copied).
async fn restart_wal(
    pool: &SqlitePool,
    writer: &tokio::sync::Mutex<Writer>,
) -> std::result::Result<(i64, i64, i64), sqlx::Error> {
    // The connection first: the turn is not held while readers keep
    // every connection.
    let mut conn = pool.acquire().await?;
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "PRAGMA busy_timeout = {WAL_RESTART_WAIT_MS}"
    )))
    .execute(&mut *conn)
    .await?;
    let done = {
        let _turn = writer.lock().await;
        sqlx::query_as("PRAGMA wal_checkpoint(RESTART)")
            .fetch_one(&mut *conn)
            .await
    };
    let restored = sqlx::query(sqlx::AssertSqlSafe(format!(
        "PRAGMA busy_timeout = {}",
        BUSY_TIMEOUT.as_millis()
    )))
    .execute(&mut *conn)
    .await;
    if restored.is_err() {
        // Not lent again with the short wait.
        conn.close_on_drop();
    }
    done
}

/// Batches of at most this many statements are kept prepared by sqlx.
const KEPT_BATCH: usize = 16;

/// The one connection every write goes through, one turn at a time. It
/// is kept from turn to turn, not lent back to a pool: SQLite throws a
/// connection's page cache away whenever another connection has written,
/// so writes spread over several connections (one per lane, before) each
/// read their pages again (~120 reads per booted machine at light load),
/// and sqlx pings every pooled connection it takes back (a trip to the
/// connection's thread and back after every transaction).
pub(crate) struct Writer {
    /// None once a batch was dropped inside its transaction (its task
    /// cancelled): the connection is closed then, which rolls the
    /// transaction back and lets SQLite's write lock go at once, and the
    /// next turn opens another (`settle`).
    conn: Option<sqlx::SqliteConnection>,
    options: SqliteConnectOptions,
}

impl Writer {
    async fn open(options: SqliteConnectOptions) -> Result<Self> {
        let mut writer = Writer {
            conn: None,
            options,
        };
        writer.settle().await?;
        Ok(writer)
    }

    /// Ready for a turn: the connection, opened again if it was closed.
    async fn settle(&mut self) -> Result<()> {
        if self.conn.is_none() {
            let conn = sqlx::ConnectOptions::connect(&self.options)
                .await
                .map_err(StoreError::Unavailable)?;
            self.conn = Some(conn);
        }
        Ok(())
    }

    /// The turn's connection (`settle` opened it).
    fn conn(&mut self) -> Result<&mut sqlx::SqliteConnection> {
        self.conn
            .as_mut()
            .ok_or(StoreError::Unavailable(sqlx::Error::PoolClosed))
    }
}

/// A writer's turn: held while its transaction runs.
pub(crate) struct WriteTurn<'a> {
    writer: tokio::sync::MutexGuard<'a, Writer>,
    _gate: Option<tokio::sync::MutexGuard<'a, ()>>,
}

impl WriteTurn<'_> {
    /// The turn's transaction (`BEGIN IMMEDIATE`), on the writer's
    /// connection; rolled back if dropped uncommitted.
    pub(crate) async fn begin(&mut self) -> Result<sqlx::Transaction<'_, sqlx::Sqlite>> {
        use sqlx::Connection;
        Ok(self
            .writer
            .conn()?
            .begin_with(SqliteStore::BEGIN_WRITE)
            .await?)
    }
}

/// A write transaction sent to SQLite in batches, each one trip to the
/// connection's thread (`batch.rs`), in a writer's turn.
pub(crate) struct Batch<'a> {
    turn: WriteTurn<'a>,
    /// The transaction's `BEGIN` went with an earlier batch.
    begun: bool,
    /// A transaction may be open that no `COMMIT` or `ROLLBACK` ended (the
    /// batch was dropped half-way): the writer's connection is then
    /// closed, which rolls it back, rather than used again inside it.
    open: bool,
}

/// The statements of one batch, in one string; `?` placeholders only.
pub(crate) struct Statements {
    sql: sqlx::QueryBuilder<sqlx::Sqlite>,
    count: usize,
    /// How many of the first statements the batch itself added (`BEGIN`).
    added: usize,
}

impl Statements {
    /// Starts the next statement with `sql`; its values go in with
    /// `push_bind`.
    pub(crate) fn next(&mut self, sql: &str) -> &mut sqlx::QueryBuilder<sqlx::Sqlite> {
        if self.count > 0 {
            self.sql.push(";\n");
        }
        self.count += 1;
        self.sql.push(sql)
    }

    /// The statements `push` adds, which write and give back nothing the
    /// caller reads (PostgreSQL's may be one statement): here they go in
    /// the batch as they are, one trip whatever it holds.
    pub(crate) fn together(&mut self, push: impl FnOnce(&mut Self)) {
        push(self);
    }
}

impl Batch<'_> {
    /// PostgreSQL's hint that the statements name their rows by key;
    /// SQLite's planner needs none.
    pub(crate) fn by_keys(&mut self) {}

    /// An empty batch for this transaction.
    pub(crate) fn statements(&self) -> Statements {
        let mut s = Statements {
            sql: sqlx::QueryBuilder::new(""),
            count: 0,
            added: 0,
        };
        if !self.begun {
            s.next(SqliteStore::BEGIN_WRITE);
            s.added = 1;
        }
        s
    }

    /// Runs `statements` in the transaction; each one's rows and count.
    pub(crate) async fn run(
        &mut self,
        statements: Statements,
    ) -> Result<Vec<crate::batch::Done<sqlx::sqlite::SqliteRow>>> {
        self.send(statements).await
    }

    /// Runs `statements` and commits, in one trip.
    pub(crate) async fn commit(
        mut self,
        mut statements: Statements,
    ) -> Result<Vec<crate::batch::Done<sqlx::sqlite::SqliteRow>>> {
        statements.next("COMMIT");
        let mut done = self.send(statements).await?;
        done.pop();
        self.open = false;
        Ok(done)
    }

    /// Ends the transaction without a change.
    pub(crate) async fn rollback(mut self) -> Result<()> {
        if self.open {
            sqlx::query("ROLLBACK")
                .execute(self.turn.writer.conn()?)
                .await?;
            self.open = false;
        }
        Ok(())
    }

    async fn send(
        &mut self,
        mut statements: Statements,
    ) -> Result<Vec<crate::batch::Done<sqlx::sqlite::SqliteRow>>> {
        use sqlx::Executor;
        if statements.added > 0 {
            self.begun = true;
            self.open = true;
        }
        let expected = statements.count - statements.added;
        // sqlx keeps every distinct text it prepared (100 per connection):
        // a batch of many statements, whose text changes with the group's
        // size and kinds, would keep megabytes of SQLite's programs each.
        let keep = statements.count <= KEPT_BATCH;
        let results = crate::batch::split(
            self.turn
                .writer
                .conn()?
                .fetch_many(statements.sql.build().persistent(keep)),
            |r| r.rows_affected(),
            statements.added,
        )
        .await;
        let e = match results {
            Ok(done) if done.len() == expected => return Ok(done),
            Ok(done) => StoreError::Database(sqlx::Error::Protocol(format!(
                "a batch of {expected} statements gave {} results",
                done.len()
            ))),
            Err(e) => e.into(),
        };
        // A failed statement leaves the transaction open: it is rolled
        // back here, so that the connection can be lent again.
        if sqlx::query("ROLLBACK")
            .execute(self.turn.writer.conn()?)
            .await
            .is_ok()
        {
            self.open = false;
        }
        Err(e)
    }
}

impl Drop for Batch<'_> {
    fn drop(&mut self) {
        if self.open {
            self.turn.writer.conn = None;
        }
    }
}

impl SqliteStore {
    const BACKEND: &'static str = "sqlite";
    /// Takes the write lock at once, so that two writers queue on the busy
    /// timeout instead of failing on a lock upgrade.
    const BEGIN_WRITE: &'static str = "BEGIN IMMEDIATE";

    /// How every connection to the file at `path` is opened.
    fn options(path: &Path) -> Result<SqliteConnectOptions> {
        if let Some(parent) = path.parent()
            && !parent.as_os_str().is_empty()
        {
            std::fs::create_dir_all(parent).map_err(|e| {
                StoreError::Unavailable(sqlx::Error::Configuration(
                    format!("cannot create {}: {e}", parent.display()).into(),
                ))
            })?;
        }
        Ok(SqliteConnectOptions::from_str("sqlite://")
            .map_err(StoreError::Database)?
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .foreign_keys(true)
            // `checkpoints` does it, off the writers' path.
            .pragma("wal_autocheckpoint", "0")
            .busy_timeout(BUSY_TIMEOUT))
    }

    async fn connect(path: &Path, connections: u32) -> Result<SqlitePool> {
        // sqlx pings a pooled connection before lending it by default: for
        // SQLite a whole extra trip to the connection's thread and back for
        // every statement, to check a file handle that cannot go away. The
        // ping on its return stays (sqlx always makes it).
        let pool = SqlitePoolOptions::new()
            .max_connections(connections)
            .test_before_acquire(false)
            .connect_with(Self::options(path)?)
            .await
            .map_err(StoreError::Unavailable)?;
        Ok(pool)
    }

    pub async fn open(path: &Path, cipher: SecretCipher) -> Result<Self> {
        let pool = Self::connect(path, 4).await?;
        MIGRATIONS.run(&pool).await?;
        let writer = Writer::open(Self::options(path)?).await?;
        // Off until the daemon turns it on and reads it ahead
        // (`warm_boot_index`) before it serves: a command-line command
        // opening the store needs none of it, and leaves word of its
        // changes for the daemon instead.
        let boot_index = std::sync::Arc::new(super::boot_index::BootIndex::with_stamp(
            super::boot_index::Stamp::beside(path),
        ));
        let served = std::sync::Arc::new(super::served_cache::ServedCache::default());
        let warmer = tokio::spawn(backend::keep_warm(
            pool.clone(),
            std::sync::Arc::downgrade(&boot_index),
            std::sync::Arc::downgrade(&served),
        ))
        .abort_handle();
        let writer = std::sync::Arc::new(tokio::sync::Mutex::new(writer));
        let checkpointer = tokio::spawn(checkpoints(pool.clone(), writer.clone())).abort_handle();
        Ok(Self {
            pool,
            cipher,
            verified_check: Default::default(),
            writer,
            gates: Default::default(),
            served,
            profiles: Default::default(),
            tokens: super::token_cache::TokenCache::off(),
            boot_index,
            checkpointer,
            warmer,
            transitions: super::combine::Combine::lingering(|t| t.id),
            unserves: super::combine::Combine::lingering(backend::Unserve::deployment),
            starts: Default::default(),
        })
    }

    /// A writer's turn in `lane` (after the writes of its lane before it,
    /// ahead of those of the lanes after it still waiting); its
    /// transaction begins with `WriteTurn::begin`.
    async fn write_turn(&self, lane: Lane) -> Result<WriteTurn<'_>> {
        let gate = match lane {
            Lane::Ordinary => Some(self.gates[0].lock().await),
            Lane::Callback => Some(self.gates[1].lock().await),
            Lane::Lease => None,
        };
        let mut writer = self.writer.lock().await;
        writer.settle().await?;
        Ok(WriteTurn {
            writer,
            _gate: gate,
        })
    }

    /// A write transaction of `lane` sent in batches (`batch.rs`).
    async fn begin_batch(&self, lane: Lane) -> Result<Batch<'_>> {
        Ok(Batch {
            turn: self.write_turn(lane).await?,
            begun: false,
            open: false,
        })
    }

    /// One writer commits at a time: transitions that wait together are
    /// committed together.
    fn transition_group(&self) -> Option<&TransitionGroup> {
        Some(&self.transitions)
    }

    fn unserve_group(&self) -> Option<&UnserveGroup> {
        Some(&self.unserves)
    }

    /// Deployments started at once take one writer's turn together.
    fn start_group(&self) -> Option<&StartGroup> {
        Some(&self.starts)
    }

    /// Every callback reaches this process's handler.
    fn notices(&self) -> Option<tokio::sync::broadcast::Receiver<crate::engine::CallbackNotice>> {
        None
    }

    pub async fn migrate_only(path: &Path) -> Result<Vec<String>> {
        let pool = Self::connect(path, 1).await?;
        let applied = super::postgres::pending(&MIGRATIONS, &pool).await?;
        MIGRATIONS.run(&pool).await?;
        pool.close().await;
        Ok(applied)
    }
}

// The SQL of `backend/`, compiled for this backend.
type Db = sqlx::Sqlite;
type Backend = SqliteStore;
/// The daemon's `warm_boot_index` turns the boot index on: every other
/// writer leaves word of its changes (`boot_index::Stamp`).
const WARMING_TURNS_INDEX_ON: bool = true;
/// The row-lock clause a read that decides a write needs.
const FOR_UPDATE: &str = "";
/// A lease group releases binding clients' other addresses in the step
/// that binds, checked against the rows the step wrote: a statement more
/// costs no trip here, and the whole group goes in one.
const RELEASE_CHECKED: bool = true;
/// A row lock that keeps the row (its key) but lets others update it.
const FOR_KEY_SHARE: &str = "";
/// One writer at a time (`BEGIN IMMEDIATE`): nothing commits between a
/// write transaction's read and its write.
const ONE_WRITER: bool = true;
/// Around one bound value holding a JSON array of arrays: a table of
/// its rows, each one's array as `value` and its place as `key`
/// (`helpers::push_json_rows`).
const JSON_ROWS: (&str, &str) = ("json_each(", ")");
/// Around text read from such a row, as the outbox's payload column
/// takes it (text here).
const JSON_PAYLOAD: (&str, &str) = ("", "");
/// Around hex text read from such a row, as a bytes column takes it.
const HEX_BYTES: (&str, &str) = ("unhex(", ")");
/// `sql` with the row lock a read that decides a write needs.
macro_rules! locked {
    ($sql:literal) => {
        concat!($sql, "")
    };
}
/// `sql` with the shared row lock a read that must not change under a
/// write needs.
macro_rules! shared {
    ($sql:literal) => {
        concat!($sql, "")
    };
}
#[path = "backend/mod.rs"]
#[allow(
    clippy::duplicate_mod,
    reason = "the same SQL is compiled once per backend, with that backend's Db and Backend"
)]
mod backend;

#[cfg(test)]
mod tests {
    use super::*;

    /// The step of SQLite's plan of `sql` that reads the deployments
    /// table (`reads` tells it by its text), and the whole plan.
    async fn deployments_step(
        store: &SqliteStore,
        sql: &str,
        reads: impl Fn(&str) -> bool,
    ) -> (String, Vec<String>) {
        let plan: Vec<(i64, i64, i64, String)> =
            sqlx::query_as(sqlx::AssertSqlSafe(format!("EXPLAIN QUERY PLAN {sql}")))
                .fetch_all(&store.pool)
                .await
                .unwrap();
        let lines: Vec<String> = plan.into_iter().map(|p| p.3).collect();
        let step = lines
            .iter()
            .find(|l| reads(l))
            .unwrap_or_else(|| panic!("no step reads deployments: {lines:?}"))
            .clone();
        (step, lines)
    }

    async fn open_empty(dir: &tempfile::TempDir) -> SqliteStore {
        SqliteStore::open(
            &dir.path().join("plans.sqlite3"),
            SecretCipher::from_passphrase("plans"),
        )
        .await
        .unwrap()
    }

    /// A scratch table `t (x INTEGER PRIMARY KEY)` and its rows.
    async fn scratch(store: &SqliteStore) -> Vec<i64> {
        sqlx::query("CREATE TABLE IF NOT EXISTS t (x INTEGER PRIMARY KEY)")
            .execute(&store.pool)
            .await
            .unwrap();
        sqlx::query_scalar("SELECT x FROM t ORDER BY x")
            .fetch_all(&store.pool)
            .await
            .unwrap()
    }

    /// The lease lane's next writer: one row, committed.
    async fn commit_one(store: &SqliteStore, x: i64) {
        let batch = store.begin_batch(Lane::Lease).await.unwrap();
        let mut s = batch.statements();
        insert(&mut s, x);
        batch.commit(s).await.unwrap();
    }

    fn insert(statements: &mut Statements, x: i64) {
        statements
            .next("INSERT INTO t (x) VALUES (")
            .push_bind(x)
            .push(") RETURNING x");
    }

    /// A batch's statements run in one trip, and each one's rows and count
    /// come back in its place; what it wrote is there once committed.
    #[tokio::test]
    async fn a_batch_gives_each_statement_its_results() {
        let dir = tempfile::tempdir().unwrap();
        let store = open_empty(&dir).await;
        scratch(&store).await;
        let mut batch = store.begin_batch(Lane::Ordinary).await.unwrap();
        let mut s = batch.statements();
        insert(&mut s, 1);
        insert(&mut s, 2);
        s.next("UPDATE t SET x = x + 10 WHERE x > ").push_bind(0);
        let done = batch.run(s).await.unwrap();
        let rows: Vec<usize> = done.iter().map(|d| d.rows.len()).collect();
        let affected: Vec<u64> = done.iter().map(|d| d.affected).collect();
        assert_eq!((rows, affected), (vec![1, 1, 0], vec![1, 1, 2]));
        let mut s = batch.statements();
        s.next("SELECT x FROM t WHERE x > ").push_bind(11);
        let done = batch.commit(s).await.unwrap();
        assert_eq!(done.len(), 1);
        assert_eq!(done[0].rows.len(), 1);
        assert_eq!(scratch(&store).await, [11, 12]);
    }

    /// A batch that does not commit leaves nothing, and the writer's
    /// connection serves the next writer: when a statement fails (the
    /// transaction is rolled back), and when the batch is dropped between
    /// its trips, its task cancelled (the writer's connection is closed,
    /// not used again inside an open transaction, and opened again).
    #[tokio::test]
    async fn a_batch_that_does_not_commit_leaves_nothing() {
        // The rows of its one trip; whether that trip fails.
        let cases: [(&[i64], bool); 2] = [(&[1, 2, 1], true), (&[1], false)];
        for (rows, fails) in cases {
            let dir = tempfile::tempdir().unwrap();
            let store = open_empty(&dir).await;
            scratch(&store).await;
            let mut batch = store.begin_batch(Lane::Lease).await.unwrap();
            let mut s = batch.statements();
            for &x in rows {
                insert(&mut s, x);
            }
            assert_eq!(batch.run(s).await.is_err(), fails, "{rows:?}");
            drop(batch);
            assert!(scratch(&store).await.is_empty(), "{rows:?}");
            commit_one(&store, 3).await;
            assert_eq!(scratch(&store).await, [3], "{rows:?}");
        }
    }

    /// A statement that keeps SQLite's thread busy for tens of
    /// milliseconds, so that a trip that begins with it is still under
    /// way after its first poll, however fast the machine.
    fn slow(statements: &mut Statements) {
        statements.next(
            "WITH RECURSIVE c(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM c WHERE n < 500000) \
             SELECT COUNT(*) FROM c",
        );
    }

    /// Polls `trip` once (its statements go to SQLite's thread), then
    /// drops it, as a cancelled task would.
    async fn cancel_in_flight<T>(trip: impl std::future::Future<Output = T>) {
        tokio::select! {
            biased;
            _ = trip => panic!("the trip came back within its first poll"),
            () = std::future::ready(()) => {}
        }
    }

    /// A write cancelled while its trip is under way (the task dropped
    /// after sending it) leaves nothing, or all of it when that trip was
    /// the commit; SQLite's write lock is let go at once, and the writer
    /// serves the next turn. So does a turn's transaction dropped
    /// uncommitted.
    #[tokio::test]
    async fn a_write_cancelled_in_flight_leaves_the_writer_ready() {
        for commits in [false, true] {
            let dir = tempfile::tempdir().unwrap();
            let store = open_empty(&dir).await;
            scratch(&store).await;
            let mut batch = store.begin_batch(Lane::Callback).await.unwrap();
            let mut s = batch.statements();
            slow(&mut s);
            insert(&mut s, 1);
            if commits {
                cancel_in_flight(batch.commit(s)).await;
            } else {
                cancel_in_flight(batch.run(s)).await;
                drop(batch);
                // SQLite's write lock is let go: a write outside the
                // turns (the visit stamps) gets it.
                sqlx::query("INSERT INTO t (x) VALUES (2)")
                    .execute(&store.pool)
                    .await
                    .unwrap();
            }
            commit_one(&store, 3).await;
            let rows = scratch(&store).await;
            if commits {
                assert!(rows == [3] || rows == [1, 3], "{rows:?}");
            } else {
                assert_eq!(rows, [2, 3]);
            }
        }
        let dir = tempfile::tempdir().unwrap();
        let store = open_empty(&dir).await;
        scratch(&store).await;
        {
            let mut turn = store.write_turn(Lane::Ordinary).await.unwrap();
            let mut tx = turn.begin().await.unwrap();
            sqlx::query("INSERT INTO t (x) VALUES (1)")
                .execute(&mut *tx)
                .await
                .unwrap();
        }
        commit_one(&store, 3).await;
        assert_eq!(scratch(&store).await, [3]);
    }

    /// The claim every daemon makes every 10 seconds, in a write
    /// transaction, reads only the deployments with a step to take, not
    /// every deployment ever made (a site keeps them all as history).
    #[tokio::test]
    async fn the_claim_reads_only_runnable_deployments() {
        let dir = tempfile::tempdir().unwrap();
        let store = open_empty(&dir).await;
        for sql in backend::claim_queries() {
            let (deployments, lines) =
                deployments_step(&store, &sql, |l| l.contains(" deployments")).await;
            assert!(
                deployments.contains("USING INDEX deployments_runnable"),
                "{deployments:?} in {lines:?}\nfor {sql}"
            );
        }
    }

    /// Each interface's boot target is read with its server's active
    /// deployment through an index, on the SQLite this build bundles:
    /// SQLite 3.51 used the partial index `deployments_one_active` only
    /// for a query naming its condition as the index does, and there was
    /// no other, so it read every deployment for each interface (13 s to
    /// read the boot index of 10,000 servers).
    #[tokio::test]
    async fn active_deployments_are_found_by_server_through_an_index() {
        let dir = tempfile::tempdir().unwrap();
        let store = open_empty(&dir).await;
        for sql in backend::by_server_queries() {
            let (deployments, lines) =
                deployments_step(&store, &sql, |l| l.contains(" d ") || l.ends_with(" d")).await;
            assert!(
                deployments.starts_with("SEARCH d USING INDEX deployments_one_active")
                    || deployments.starts_with("SEARCH d USING INDEX deployments_server"),
                "{deployments:?} in {lines:?}\nfor {sql}"
            );
        }
    }
}
