//! What `bootloader import-legacy` hands the store: an older system's
//! rows, already read and validated by the daemon, each with the older
//! table's key so that a second run finds what the first brought over
//! (`older_imports`). The store writes them all in one transaction, or
//! none (`ImportMode`), and says what became of each.

use time::OffsetDateTime;

use bootloader_core::model::{
    CallbackToken, DeploymentState, LogLevel, Name, PasswordHash, Secret, TokenHash, TokenScope,
};

use crate::types::{NetworkSpec, NewLocation, ServerSpec, UserSpec};

/// One older row: the key it had there, and what it becomes here.
#[derive(Debug, Clone)]
pub struct Older<T> {
    pub older_id: String,
    pub item: T,
}

/// A row the daemon could not bring over (bad data in the older
/// database), with the reason; listed beside the conflicts.
#[derive(Debug, Clone)]
pub struct Unusable {
    pub kind: &'static str,
    pub older_id: String,
    pub key: String,
    pub reason: String,
}

#[derive(Debug, Clone)]
pub struct OlderSecret {
    /// The older server's key (`servers` rows' `older_id`).
    pub server: String,
    pub name: String,
    pub data: Secret,
}

#[derive(Debug, Clone)]
pub struct OlderProfile {
    pub name: String,
    pub version: String,
    /// The document as the older system stored it (JSON), which the
    /// daemon's YAML parser reads as it is.
    pub source: String,
    pub action_count: u64,
}

#[derive(Debug, Clone)]
pub struct OlderUser {
    pub spec: UserSpec,
    /// `None` for a user who had no usable password there.
    pub password: Option<PasswordHash>,
}

#[derive(Debug, Clone)]
pub struct OlderToken {
    /// The older user's key.
    pub user: String,
    pub hash: TokenHash,
    pub prefix: String,
    pub scope: TokenScope,
}

#[derive(Debug, Clone)]
pub struct OlderSshKey {
    pub user: String,
    /// What the key is called (its comment).
    pub name: String,
    pub key: String,
}

#[derive(Debug, Clone)]
pub struct OlderLogLine {
    pub at: OffsetDateTime,
    pub level: LogLevel,
    pub message: String,
}

/// A past deployment, kept as read-only history: it is written ended, so
/// no engine ever runs it.
#[derive(Debug)]
pub struct OlderDeployment {
    pub server: String,
    pub profile: String,
    pub state: DeploymentState,
    pub error: Option<String>,
    /// The actions it had done, from the older progress (16.6 per step).
    pub actions_done: u32,
    pub token: CallbackToken,
    pub created: OffsetDateTime,
    pub modified: OffsetDateTime,
    pub log: Vec<OlderLogLine>,
}

/// Everything one older database holds that the daemon keeps, in the
/// order it is written (what refers to something comes after it).
#[derive(Debug, Default)]
pub struct OlderData {
    /// The older database, as `host:port/name`: ids are unique only in it.
    pub source: String,
    pub locations: Vec<Older<NewLocation>>,
    pub labels: Vec<Older<Name>>,
    pub networks: Vec<Older<NetworkSpec>>,
    pub servers: Vec<Older<ServerSpec>>,
    pub secrets: Vec<Older<OlderSecret>>,
    pub profiles: Vec<Older<OlderProfile>>,
    pub users: Vec<Older<OlderUser>>,
    pub tokens: Vec<Older<OlderToken>>,
    pub ssh_keys: Vec<Older<OlderSshKey>>,
    pub deployments: Vec<Older<OlderDeployment>>,
}

/// Whether the import is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ImportMode {
    /// Everything is tried in a transaction that is rolled back: the
    /// report is exactly what a real run would do.
    DryRun,
    /// Written only if nothing conflicts.
    AllOrNothing,
    /// Written; rows that conflict are left out (and listed).
    SkipConflicts,
}

/// What became of one older row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RowOutcome {
    Created,
    /// An object here already had its name and the same meaning (a
    /// location or label of that name, a network of that location and
    /// range, the same profile document, the user's own token or key):
    /// the older row now points at it.
    Adopted,
    /// Brought over by an earlier run: nothing changes.
    AlreadyImported,
    /// Cannot be written as it is; the reason names what is in the way.
    Conflict(String),
}

#[derive(Debug, Clone)]
pub struct ImportRow {
    pub kind: &'static str,
    pub older_id: String,
    /// What an operator knows it by (a name, an FQDN, `name==version`).
    pub key: String,
    pub outcome: RowOutcome,
    /// Something to know about a row that was written (a user without a
    /// password, say).
    pub note: Option<String>,
}

#[derive(Debug, Clone, Default)]
pub struct ImportReport {
    pub rows: Vec<ImportRow>,
    /// Whether the transaction was committed.
    pub written: bool,
}

impl ImportReport {
    pub fn conflicts(&self) -> impl Iterator<Item = &ImportRow> {
        self.rows
            .iter()
            .filter(|r| matches!(r.outcome, RowOutcome::Conflict(_)))
    }

    /// How many rows of `kind` had an outcome like `outcome` (by variant).
    pub fn count(&self, kind: &str, outcome: &RowOutcome) -> usize {
        self.rows
            .iter()
            .filter(|r| {
                r.kind == kind
                    && std::mem::discriminant(&r.outcome) == std::mem::discriminant(outcome)
            })
            .count()
    }
}

/// The store's side of the import.
#[async_trait::async_trait]
pub trait OlderImportStore: Send + Sync + 'static {
    /// Writes `data` in one transaction as `mode` says; `unusable` rows
    /// are reported as conflicts (they count against `AllOrNothing`).
    /// Secrets are sealed under the store's key.
    async fn import_older(
        &self,
        data: &OlderData,
        unusable: &[Unusable],
        mode: ImportMode,
    ) -> crate::Result<ImportReport>;
}
