//! Store operations of the deployment engine: starting a deployment with
//! its sealed callback token, reading where one stands, committing each
//! transition with its log lines and outbox event in one transaction, and
//! the deployment log. The SQL is in `engine_sql.rs`.

use async_trait::async_trait;

pub use bootloader_core::model::LogLevel;
use bootloader_core::model::{CallbackToken, DeploymentState, Fqdn};

use crate::boot::DeploymentRecord;
use crate::{Listing, Page, Result};
pub use bootloader_core::published::deployment::LogEntry;

/// A deployment to start.
pub struct NewDeployment {
    pub server: Fqdn,
    pub profile_id: i64,
    pub token: CallbackToken,
    pub repeat_of: Option<i64>,
    /// Taken up at once by the daemon starting it, in the same
    /// transaction, if it may run it (as `EngineStore::claim_deployments`
    /// judges).
    pub claim: Option<Claim>,
    /// The claiming daemon's first moves, those that run nothing (the
    /// `new` step done, the first action's deadline armed), written in the
    /// same transaction when the deployment is claimed by it; the
    /// transition's `id` is the new deployment's, whatever it says.
    pub then: Option<Transition>,
}

/// A daemon taking a deployment up: its name, the location whose servers
/// it runs (all for `None`), now and until when it holds it (unix seconds).
#[derive(Debug, Clone)]
pub struct Claim {
    pub runner: String,
    pub location: Option<String>,
    pub now: i64,
    pub until: i64,
}

/// What the engine needs of a deployment.
#[derive(Debug, Clone)]
pub struct EngineView {
    pub record: DeploymentRecord,
    /// The profile's YAML, as uploaded (shared: thousands of waiting
    /// deployments hold their view, most of them of one profile).
    pub profile_source: std::sync::Arc<str>,
    /// The callback token, opened; `None` for deployments the engine does
    /// not run (made through the store directly, before the engine).
    pub token: Option<String>,
    pub actions_done: u32,
    /// Unix seconds.
    pub action_deadline: Option<i64>,
    pub step_deadline: Option<i64>,
}

/// One step of a deployment's life, committed at once: the new position,
/// deadlines, error, log lines, and an outbox event when the state changed.
#[derive(Debug, Clone)]
pub struct Transition {
    pub id: i64,
    /// The state the engine read; the commit fails if it changed since
    /// (cancelled meanwhile).
    pub from: DeploymentState,
    pub state: DeploymentState,
    pub step: Option<String>,
    pub action_index: u32,
    pub actions_done: u32,
    pub action_deadline: Option<i64>,
    pub step_deadline: Option<i64>,
    pub error: Option<String>,
    pub log: Vec<(LogLevel, String)>,
    /// The daemon committing on behalf of its engine task: the commit is
    /// refused if another daemon has taken the deployment over. `None` for
    /// an operator's request (cancel), which any daemon may commit.
    pub runner: Option<String>,
}

/// A callback stored by any daemon on the database, as the database tells
/// it (PostgreSQL).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CallbackNotice {
    /// A callback of this deployment was stored.
    Stored(i64),
    /// Callbacks may have been stored unseen (the listening connection was
    /// lost and is back): every waiting deployment should look.
    Unknown,
}

/// What the deployment engine reads and commits: starting a deployment,
/// its view and transitions, claims across daemons, its log.
#[async_trait]
pub trait EngineStore: Send + Sync + 'static {
    /// Callbacks as they are stored, by whichever daemon took them: `None`
    /// where every callback reaches this daemon's own handler (SQLite).
    fn callback_notices(&self) -> Option<tokio::sync::broadcast::Receiver<CallbackNotice>> {
        None
    }

    /// Whether concurrent `commit_transition`s are committed together
    /// (SQLite): a commit waiting for its group holds no connection, so
    /// callers need not take turns for it.
    fn commits_in_groups(&self) -> bool {
        false
    }

    /// Creates a deployment in state `new` at the start of its profile.
    /// A server with an active deployment is a conflict.
    async fn start_deployment(&self, new: &NewDeployment) -> Result<DeploymentRecord>;
    async fn engine_view(&self, id: i64) -> Result<EngineView>;
    /// Takes the runnable deployments that no live daemon runs (no runner,
    /// `runner` itself, or a runner whose hold ended before `now`), of the
    /// servers in `location` (all servers for `None`), and holds them for
    /// `runner` until `until` (unix seconds). Returns every deployment
    /// `runner` holds now, in id order.
    async fn claim_deployments(
        &self,
        runner: &str,
        location: Option<&str>,
        now: i64,
        until: i64,
    ) -> Result<Vec<i64>>;
    /// Lets go of `runner`'s deployments (the daemon stops): another daemon
    /// may take them at once.
    async fn release_deployments(&self, runner: &str) -> Result<()>;
    /// Commits `t`; `false` when the deployment's state is no longer
    /// `t.from`, or another daemon runs it now (nothing is written then).
    async fn commit_transition(&self, t: &Transition) -> Result<bool>;
    async fn append_log(&self, id: i64, level: LogLevel, message: &str) -> Result<()>;
    /// Log entries with ids above `after`, oldest first.
    async fn deployment_log(
        &self,
        id: i64,
        after: Option<i64>,
        limit: u32,
    ) -> Result<Vec<LogEntry>>;
    /// Deployments changed after `since` (their id and when), oldest
    /// change first, at most `limit`: what the console's live pages wait
    /// on, one query for every open page.
    async fn changed_deployments(
        &self,
        since: time::OffsetDateTime,
        limit: u32,
    ) -> Result<Vec<(i64, time::OffsetDateTime)>>;
    async fn list_deployments(
        &self,
        server: Option<&Fqdn>,
        state: Option<DeploymentState>,
        page: Page,
    ) -> Result<Listing<DeploymentRecord>>;
    /// Deletes a deployment that has ended and has nothing left to run,
    /// with its log, callbacks and served files; an active one is a
    /// conflict.
    async fn delete_deployment(&self, id: i64) -> Result<DeploymentRecord>;
}

/// Named leases on a job across the daemons sharing one database (the
/// relay's, the outbox pruner's): held until `until`, renewed by the
/// holder, taken over by another once expired.
#[async_trait]
pub trait LockStore: Send + Sync + 'static {
    /// Takes the named duty for `holder` until `until` if it is free, ended
    /// before `now`, or already `holder`'s; `false` if another holds it.
    async fn hold_lock(&self, name: &str, holder: &str, now: i64, until: i64) -> Result<bool>;
    async fn release_lock(&self, name: &str, holder: &str) -> Result<()>;
}
