//! The store: a trait of domain operations with two backends, embedded
//! SQLite (`sqlite.rs`) and PostgreSQL (`postgres.rs`). Both run the same
//! SQL, written once in `backend/` (one file per area, compiled for each);
//! each has its own migration set under
//! `migrations/`. Every change writes its outbox event in the same
//! transaction. BMC passwords are sealed by `cipher.rs` before they reach
//! SQL and are opened only by `bmc_password`.

pub mod agents;
mod batch;
pub mod boot;
mod boot_index;
mod boot_sql;
pub mod cipher;
pub(crate) mod combine;
pub mod engine;
mod engine_sql;
mod grouped;
mod kept;
pub mod older;
mod postgres;
pub mod power;
mod power_sql;
mod profile_cache;
mod served_cache;
mod settings;
mod sql;
mod sqlite;
mod token_cache;
mod types;

/// Whose write it is. SQLite has one writer at a time, and a boot storm
/// queues thousands of writes: the boot path's, which a machine waits on,
/// go first (a lease group before a callback before everything else).
/// PostgreSQL queues writers on row locks itself; there a lease group and
/// a callback group each have a connection of their own, so that they
/// never wait for one behind the engine's writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Lane {
    /// Workflow commits, the API, the timeline: everything else.
    Ordinary,
    /// An installer's callback, answered once stored.
    Callback,
    /// A lease group: DHCP answers waiting to be sent.
    Lease,
}

use std::sync::Arc;

use async_trait::async_trait;
use time::OffsetDateTime;

pub use agents::{Agent, AgentListener, AgentReport, AgentState, AgentStore};
pub use boot::{BootStore, LeaseStore, TimelineStore};
pub use cipher::{CipherError, SecretCipher};
pub use combine::Linger;
pub use engine::{EngineStore, LockStore};
pub use older::OlderImportStore;
pub use postgres::PostgresStore;
pub use power::PowerStore;
pub use settings::{DatabaseConfig, PostgresTarget};
pub use sqlite::SqliteStore;
pub use types::*;

use bootloader_core::model::{Fqdn, Name, PasswordHash, Secret, Theme, TokenHash};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{what} {key:?} not found")]
    NotFound { what: &'static str, key: String },
    /// A uniqueness rule would break; `field` names the input field.
    #[error("{field}: {message}")]
    Conflict { field: String, message: String },
    /// The input refers to something that does not fit (an address outside
    /// every network, a label that does not exist); `field` names it.
    #[error("{field}: {message}")]
    Invalid { field: String, message: String },
    /// The object changed after the caller read it; read again and retry.
    #[error("{what} {key:?} changed while this update was prepared")]
    Stale { what: &'static str, key: String },
    /// The object is still referred to by others.
    #[error("{0}")]
    InUse(String),
    #[error("database unavailable: {0}")]
    Unavailable(#[source] sqlx::Error),
    #[error("database error: {0}")]
    Database(#[source] sqlx::Error),
    #[error("migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("secret key: {0}")]
    Cipher(#[from] CipherError),
    #[error("stored data is inconsistent: {0}")]
    Corrupt(String),
}

impl StoreError {
    pub fn not_found(what: &'static str, key: impl ToString) -> Self {
        Self::NotFound {
            what,
            key: key.to_string(),
        }
    }

    pub fn conflict(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self::Conflict {
            field: field.into(),
            message: message.into(),
        }
    }

    pub fn invalid(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self::Invalid {
            field: field.into(),
            message: message.into(),
        }
    }
}

impl From<sqlx::Error> for StoreError {
    fn from(e: sqlx::Error) -> Self {
        match &e {
            sqlx::Error::Io(_)
            | sqlx::Error::PoolTimedOut
            | sqlx::Error::PoolClosed
            | sqlx::Error::Tls(_) => Self::Unavailable(e),
            sqlx::Error::Database(db) if passing(&**db) => Self::Unavailable(e),
            sqlx::Error::Database(db) if db.is_unique_violation() => Self::Conflict {
                field: "(unique)".to_string(),
                message: format!("already exists ({})", db.message()),
            },
            sqlx::Error::Database(db) if db.is_foreign_key_violation() => {
                Self::InUse(format!("still referred to ({})", db.message()))
            }
            _ => Self::Database(e),
        }
    }
}

/// Whether the database refused for a while, not for what was asked: busy
/// or locked (SQLite), a transaction rolled back by a conflict or a
/// deadlock, a lock not granted in time, a statement cancelled by its
/// timeout, a connection lost, the server short of resources or shutting
/// down (PostgreSQL's classes 08, 40, 53, 57 and 58, and 55P03, 55006).
/// The same statement may succeed later.
fn passing(db: &dyn sqlx::error::DatabaseError) -> bool {
    if let Some(pg) = db.try_downcast_ref::<sqlx::postgres::PgDatabaseError>() {
        let code = pg.code();
        let class = code.get(..2).unwrap_or_default();
        return matches!(class, "08" | "40" | "53" | "57" | "58")
            || matches!(code, "55P03" | "55006");
    }
    if let Some(code) = db
        .try_downcast_ref::<sqlx::sqlite::SqliteError>()
        .and_then(sqlx::error::DatabaseError::code)
        .and_then(|c| c.parse::<i32>().ok())
    {
        // The primary code: SQLITE_BUSY (5), SQLITE_LOCKED (6).
        return matches!(code & 0xff, 5 | 6);
    }
    false
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// The whole store, as start-up opens it: every area's operations, and
/// what concerns the database as a whole (health, gauges, the secret key).
/// A consumer takes the narrow trait of the area it works in, not this.
#[async_trait]
pub trait Store:
    InventoryStore
    + UserStore
    + SessionStore
    + ProfileStore
    + OutboxStore
    + BootStore
    + LeaseStore
    + TimelineStore
    + EngineStore
    + LockStore
    + PowerStore
    + AgentStore
    + OlderImportStore
    + Send
    + Sync
    + 'static
{
    /// `sqlite` or `postgres`.
    fn backend(&self) -> &'static str;
    async fn ping(&self) -> Result<()>;

    /// What `/metrics` reads at each scrape: deployments per state, and
    /// addresses held (offered or bound, not expired at `now`, unix
    /// seconds) per network.
    async fn gauges(&self, now: i64) -> Result<Gauges>;
    /// Checks that the configured key opens what is stored, and records a
    /// check value on first use.
    async fn verify_secret_key(&self) -> Result<()>;
    /// Re-encrypts every stored secret under `new` in one transaction.
    /// Returns how many values were re-encrypted.
    async fn rotate_secret(&self, new: &SecretCipher) -> Result<u64>;
}

/// Locations, networks, labels, credentials, servers and their interfaces.
/// Every change writes its outbox event in the same transaction.
#[async_trait]
pub trait InventoryStore: Send + Sync + 'static {
    async fn create_location(&self, new: NewLocation) -> Result<Location>;
    async fn location(&self, name: &Name) -> Result<Location>;
    async fn list_locations(&self, page: Page) -> Result<Listing<Location>>;
    async fn update_location(&self, name: &Name, patch: LocationPatch) -> Result<Location>;
    async fn delete_location(&self, name: &Name) -> Result<()>;

    async fn create_network(&self, spec: NetworkSpec) -> Result<Network>;
    async fn network(&self, id: i64) -> Result<Network>;
    async fn list_networks(&self, location: Option<&Name>, page: Page) -> Result<Listing<Network>>;
    /// Updates replace the whole object with `spec`, which the caller
    /// merged from a read; `read_at` is the `updated_at` of that read, and a
    /// newer row gives [`StoreError::Stale`] instead of losing a change.
    async fn update_network(
        &self,
        id: i64,
        spec: NetworkSpec,
        read_at: OffsetDateTime,
    ) -> Result<Network>;
    async fn delete_network(&self, id: i64) -> Result<()>;

    async fn create_label(&self, name: &Name, description: &str) -> Result<Label>;
    async fn label(&self, name: &Name) -> Result<Label>;
    async fn list_labels(&self, page: Page) -> Result<Listing<Label>>;
    async fn update_label(&self, name: &Name, new_name: &Name, description: &str) -> Result<Label>;
    async fn delete_label(&self, name: &Name) -> Result<()>;

    async fn create_credential(&self, spec: CredentialSpec) -> Result<Credential>;
    async fn credential(&self, name: &Name) -> Result<Credential>;
    async fn list_credentials(&self, page: Page) -> Result<Listing<Credential>>;
    async fn update_credential(
        &self,
        name: &Name,
        spec: CredentialSpec,
        read_at: OffsetDateTime,
    ) -> Result<Credential>;
    async fn delete_credential(&self, name: &Name) -> Result<()>;

    async fn create_server(&self, spec: ServerSpec) -> Result<Server>;
    /// Creates every server or none; errors are collected per input index.
    async fn import_servers(
        &self,
        specs: Vec<ServerSpec>,
    ) -> Result<Vec<Server>, Vec<(usize, StoreError)>>;
    async fn server(&self, fqdn: &Fqdn) -> Result<Server>;
    async fn list_servers(&self, filter: &ServerFilter, page: Page) -> Result<Listing<Server>>;
    async fn update_server(
        &self,
        fqdn: &Fqdn,
        spec: ServerSpec,
        read_at: OffsetDateTime,
    ) -> Result<Server>;
    async fn delete_server(&self, fqdn: &Fqdn) -> Result<()>;
    /// The BMC username and clear password of a server (its own, or its
    /// named credential's). For the power drivers only; never for the API.
    async fn bmc_login(&self, fqdn: &Fqdn) -> Result<Option<(String, String)>>;

    async fn create_interface(&self, server: &Fqdn, spec: InterfaceSpec) -> Result<Interface>;
    async fn interface(&self, id: i64) -> Result<Interface>;
    async fn list_interfaces(
        &self,
        server: Option<&Fqdn>,
        page: Page,
    ) -> Result<Listing<Interface>>;
    /// Writes `spec` over the interface as the caller `read` it; `Stale`
    /// if it changed since (the caller merges again).
    async fn update_interface(
        &self,
        id: i64,
        spec: InterfaceSpec,
        read: &Interface,
    ) -> Result<Interface>;
    async fn delete_interface(&self, id: i64) -> Result<()>;

    /// The name (a server's FQDN) of the `kind` object with this id: how
    /// the older API's numeric URLs reach objects addressed by name.
    async fn key_of(&self, kind: Keyed, id: i64) -> Result<String>;
    /// Attaches a named secret to a server (the older system's
    /// credentials; `ipmi_username` and `ipmi_password` are the BMC login
    /// of a server that names none of its own).
    async fn add_server_secret(
        &self,
        server: &Fqdn,
        name: &str,
        data: &Secret,
    ) -> Result<ServerSecret>;
    async fn server_secret(&self, id: i64) -> Result<ServerSecret>;
    /// Secrets of one server (by id) or all, of one name or all, in id
    /// order.
    async fn server_secrets(
        &self,
        server_id: Option<i64>,
        name: Option<&str>,
    ) -> Result<Vec<ServerSecret>>;
    async fn delete_server_secret(&self, id: i64) -> Result<()>;
}

/// Users, their API tokens and SSH keys.
#[async_trait]
pub trait UserStore: Send + Sync + 'static {
    async fn create_user(&self, spec: UserSpec) -> Result<User>;
    async fn user(&self, name: &Name) -> Result<User>;
    async fn list_users(&self, page: Page) -> Result<Listing<User>>;
    /// Writes `spec` over the user as the caller `read` them; `Stale` if
    /// they changed since (the caller merges again).
    async fn update_user(&self, name: &Name, spec: UserSpec, read: &User) -> Result<User>;
    async fn delete_user(&self, name: &Name) -> Result<()>;
    async fn count_users(&self) -> Result<u64>;
    /// Sets (or with `None` removes) the user's console password, with a
    /// `user.password` event (which says whether one is set, never more).
    async fn set_password(&self, name: &Name, hash: Option<&PasswordHash>) -> Result<()>;
    /// The user's password hash, if they have one.
    async fn password_hash(&self, name: &Name) -> Result<Option<PasswordHash>>;

    async fn create_token(&self, new: NewApiToken) -> Result<ApiToken>;
    /// The principal for a presented token, if it exists and has not
    /// expired at `now`; records its last use.
    async fn authenticate(
        &self,
        hash: &TokenHash,
        now: time::OffsetDateTime,
    ) -> Result<Option<Principal>>;
    async fn list_tokens(&self, user: Option<&Name>, page: Page) -> Result<Listing<ApiToken>>;
    /// Revokes by id or by prefix (the first characters of the token).
    async fn revoke_token(&self, id_or_prefix: &str) -> Result<ApiToken>;

    async fn add_ssh_key(&self, user: &Name, name: &str, key: &str) -> Result<SshKey>;
    async fn ssh_key(&self, id: i64) -> Result<SshKey>;
    async fn list_ssh_keys(&self, user: Option<&Name>, page: Page) -> Result<Listing<SshKey>>;
    async fn delete_ssh_key(&self, id: i64) -> Result<()>;
}

/// Web console sessions and what a user chose for the console.
#[async_trait]
pub trait SessionStore: Send + Sync + 'static {
    /// Opens a session for an existing user; returns its id.
    async fn create_session(&self, new: NewSession) -> Result<i64>;
    /// The session whose secret hashes to `hash`, if it is open at `now`:
    /// not past `expires_at` and seen within `idle`. Records that it was
    /// seen (at most once a minute).
    async fn session(
        &self,
        hash: &TokenHash,
        now: time::OffsetDateTime,
        idle: time::Duration,
    ) -> Result<Option<ConsoleSession>>;
    /// Ends one session (signing out). Ending one already gone is not an
    /// error.
    async fn end_session(&self, hash: &TokenHash) -> Result<()>;
    /// Ends every session of a user but `keep` (a new password ends the
    /// others); returns how many ended.
    async fn end_sessions_of(&self, user: &Name, keep: Option<i64>) -> Result<u64>;
    /// Removes sessions that ended by time before `now`; returns how many.
    async fn purge_sessions(&self, now: time::OffsetDateTime, idle: time::Duration) -> Result<u64>;
    /// Sets (or with `None` clears) the user's console theme.
    async fn set_theme(&self, user: &Name, theme: Option<Theme>) -> Result<()>;
}

/// Uploaded profiles, immutable once stored.
#[async_trait]
pub trait ProfileStore: Send + Sync + 'static {
    /// Stores a validated profile's source. Name and version are unique;
    /// a stored profile never changes.
    async fn create_profile(
        &self,
        name: &str,
        version: &str,
        source: &str,
        action_count: u64,
    ) -> Result<StoredProfile>;
    async fn profile(&self, id: i64) -> Result<StoredProfile>;
    async fn profile_by_name_version(&self, name: &str, version: &str) -> Result<StoredProfile>;
    async fn list_profiles(
        &self,
        filter: &ProfileFilter,
        page: Page,
    ) -> Result<Listing<StoredProfile>>;
    async fn delete_profile(&self, id: i64) -> Result<()>;
}

/// The outbox as the relay and the notifier read it.
#[async_trait]
pub trait OutboxStore: Send + Sync + 'static {
    /// Unsent events, oldest first.
    async fn pending_events(&self, limit: u32) -> Result<Vec<OutboxEvent>>;
    /// Marks events published (the broker confirmed them).
    async fn mark_events_sent(&self, ids: &[i64]) -> Result<()>;
    /// Events not yet published, and when the oldest was written.
    async fn outbox_backlog(&self) -> Result<(u64, Option<OffsetDateTime>)>;
    /// Deletes outbox rows written before `before` that are done with: sent
    /// to the broker (or, with `unsent_too`, whether sent or not: no broker
    /// is configured) and, for the notified kinds, notified. Returns how
    /// many.
    async fn prune_outbox(&self, before: OffsetDateTime, unsent_too: bool) -> Result<u64>;
    /// Deployment events that notifications have not dealt with yet
    /// (`deployment.new`, `.complete`, `.error`), oldest first.
    async fn pending_notifications(&self, limit: u32) -> Result<Vec<OutboxEvent>>;
    /// Marks an event's notifications sent (or given up).
    async fn mark_notified(&self, id: i64) -> Result<()>;
}

/// Opens the configured database, applies pending migrations and checks
/// the secret key.
pub async fn open(db: &DatabaseConfig, cipher: SecretCipher) -> Result<Arc<dyn Store>> {
    let store: Arc<dyn Store> = match db {
        DatabaseConfig::Sqlite { path } => Arc::new(SqliteStore::open(path, cipher).await?),
        DatabaseConfig::Postgres {
            target,
            max_connections,
        } => Arc::new(PostgresStore::open(target, *max_connections, cipher).await?),
    };
    store.verify_secret_key().await?;
    Ok(store)
}

/// Applies pending migrations without opening the store for use.
pub async fn migrate(db: &DatabaseConfig) -> Result<Vec<String>> {
    match db {
        DatabaseConfig::Sqlite { path } => SqliteStore::migrate_only(path).await,
        DatabaseConfig::Postgres {
            target,
            max_connections,
        } => PostgresStore::migrate_only(target, *max_connections).await,
    }
}
