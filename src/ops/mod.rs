//! The operations layer: one function per use case. Each takes who acts
//! (`Actor`) and typed input, and returns a domain result or an `Error`.
//! The REST API, the broker's command queue and the CLI call these; none
//! of them carries out its work by forging a request to another.
//!
//! - `error.rs`: the one error type, with its status and JSON body.
//! - `input.rs`: JSON input and object keys read the same way for every
//!   adapter.
//! - `agents.rs`: the daemons sharing the database (staff only).
//! - `credentials.rs`: shared BMC logins (staff only).
//! - `locations.rs`: locations and labels.
//! - `networks.rs`: networks and their DHCP pools.
//! - `deployments.rs`: start, cancel, repeat, list and read deployments
//!   and their logs.
//! - `events.rs`: the outbox backlog.
//! - `import.rs`: servers from the older system's `;`-separated CSV, all
//!   or nothing, every bad line named.
//! - `power.rs`: power actions and boot devices on a server's BMC, and
//!   what a reader may see of them instead.
//! - `profiles.rs`: upload (validated, refused for what no driver can
//!   do), list, read and delete profiles by id or `name==version`.
//! - `secrets.rs`: secrets attached to servers by name (the older
//!   system's credentials; staff only).
//! - `servers.rs`: servers and their interfaces.
//! - `sessions.rs`: signing in to the web console (rate-limited per user
//!   and per source), its sessions, signing out, a user's theme.
//! - `timeline.rs`: the boot timeline of a server, a MAC or a deployment,
//!   unknown MACs, DHCP leases.
//! - `users.rs`: users, API tokens (issued here for the API, the CLI and
//!   start-up) and SSH keys.
//!
//! Authentication (a token to a `Principal`) is the adapter's; whether the
//! actor may do the operation is decided here.

pub mod agents;
pub mod credentials;
pub mod deployments;
pub mod error;
pub mod events;
pub mod import;
pub mod input;
pub mod locations;
pub mod networks;
pub mod power;
pub mod profiles;
pub mod secrets;
pub mod servers;
pub mod sessions;
pub mod timeline;
pub mod users;

use std::sync::Arc;

use bootloader_core::model::TokenScope;
use bootloader_store::engine::EngineStore;
use bootloader_store::{
    AgentStore, BootStore, InventoryStore, LeaseStore, OutboxStore, Principal, ProfileStore,
    SessionStore, Store, TimelineStore, UserStore,
};

pub use error::{Error, Validator};

use crate::power::PowerService;
use crate::workflow::Engine;

/// Who carries out an operation.
#[derive(Debug, Clone)]
pub enum Actor {
    /// A user, through one of their tokens.
    User(Principal),
    /// A command from the broker's command queue: the broker's credentials
    /// are its authority (`docs/events.md`); no user or token row stands
    /// behind it.
    Broker,
    /// The host's administrator: the CLI, run with the daemon's config and
    /// database, and start-up (the first user).
    Host,
}

impl Actor {
    /// A name for logs and errors.
    pub fn name(&self) -> &str {
        match self {
            Self::User(p) => p.user.as_str(),
            Self::Broker => "broker",
            Self::Host => "host",
        }
    }

    /// Whether the actor may change things: staff with a write-scoped
    /// token, or the broker.
    pub fn may_write(&self) -> bool {
        self.require_write().is_ok()
    }

    /// Refuses a user who is not staff what only staff may `what` (for
    /// example "see credentials").
    pub fn require_staff(&self, what: &str) -> Result<(), Error> {
        match self {
            Self::User(p) => require_staff(p, what),
            Self::Broker | Self::Host => Ok(()),
        }
    }

    /// Refuses an actor that may not change things, saying why.
    pub fn require_write(&self) -> Result<(), Error> {
        match self {
            Self::User(p) => require_write(p),
            Self::Broker | Self::Host => Ok(()),
        }
    }
}

/// The name (a server's FQDN) of the `kind` object numbered `id`: how
/// the older API's numeric URLs reach objects addressed by name.
pub async fn key_of(ops: &Ops, kind: bootloader_store::Keyed, id: i64) -> Result<String, Error> {
    Ok(ops.inventory.key_of(kind, id).await?)
}

/// Refuses a user who is not staff what only staff may `what`.
pub fn require_staff(p: &Principal, what: &str) -> Result<(), Error> {
    if p.is_staff {
        Ok(())
    } else {
        Err(Error::Forbidden(format!(
            "user {} is not staff: only staff {what}",
            p.user
        )))
    }
}

/// Refuses a user who may not change things: not staff, or a read-only
/// token.
pub fn require_write(p: &Principal) -> Result<(), Error> {
    require_staff(p, "may change things")?;
    if p.scope != TokenScope::Write {
        return Err(Error::Forbidden(
            "this token is read-only (scope read)".to_string(),
        ));
    }
    Ok(())
}

/// What the operations work with. Each holds the store areas it reads.
#[derive(Clone)]
pub struct Ops {
    pub inventory: Arc<dyn InventoryStore>,
    pub users: Arc<dyn UserStore>,
    /// Console sessions and users' console choices.
    pub sessions: Arc<dyn SessionStore>,
    pub profiles: Arc<dyn ProfileStore>,
    /// Deployments as the engine keeps them: lists and logs.
    pub deployments: Arc<dyn EngineStore>,
    /// A deployment by id, unknown MACs.
    pub boot: Arc<dyn BootStore>,
    pub timeline: Arc<dyn TimelineStore>,
    pub leases: Arc<dyn LeaseStore>,
    pub outbox: Arc<dyn OutboxStore>,
    /// The daemons sharing the database.
    pub agents: Arc<dyn AgentStore>,
    pub engine: Arc<Engine>,
    pub power: Arc<PowerService>,
}

impl Ops {
    /// Each store area from the one store the daemon opened.
    pub fn new(store: &Arc<dyn Store>, engine: Arc<Engine>, power: Arc<PowerService>) -> Self {
        Self {
            inventory: store.clone(),
            users: store.clone(),
            sessions: store.clone(),
            profiles: store.clone(),
            deployments: store.clone(),
            boot: store.clone(),
            timeline: store.clone(),
            leases: store.clone(),
            outbox: store.clone(),
            agents: store.clone(),
            engine,
            power,
        }
    }
}

/// How often an update is merged again after a concurrent change.
pub const UPDATE_ATTEMPTS: u32 = 3;

/// Runs one update attempt (read the object, merge the input, write with
/// the read's `updated_at`) and runs it again, up to [`UPDATE_ATTEMPTS`],
/// when a concurrent change makes the store refuse the write as stale.
pub async fn update_fresh<T, F, Fut>(mut attempt: F) -> Result<T, Error>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<Result<T, bootloader_store::StoreError>, Error>>,
{
    for _ in 1..UPDATE_ATTEMPTS {
        match attempt().await? {
            Err(bootloader_store::StoreError::Stale { .. }) => continue,
            result => return Ok(result?),
        }
    }
    Ok(attempt().await??)
}
