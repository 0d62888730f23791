//! Store operations of the network boot path: what the inventory knows of
//! a MAC, the files active deployments serve, DHCP leases and the boot
//! timeline. The SQL is in `boot_sql.rs`, expanded for both backends.

use std::net::Ipv4Addr;

use async_trait::async_trait;
use time::OffsetDateTime;

use super::{Listing, Page, Result};
use bootloader_core::model::{DeploymentState, Fqdn, LeaseState, MacAddr, TokenHash, Via};
pub use bootloader_core::published::boot::{BootEvent, Lease, UnknownMac};
pub use bootloader_core::published::deployment::{CallbackRecord, DeploymentRecord};

/// What the inventory knows of a MAC, for the boot decision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BootTarget {
    pub server_id: i64,
    pub fqdn: Fqdn,
    pub interface: String,
    pub mac: MacAddr,
    /// The interface's reserved address and its network.
    pub reservation: Option<(i64, Ipv4Addr)>,
    /// The server's active deployment, if any (its state is not here: it
    /// changes at every step, and the boot path asks only whether there
    /// is one).
    pub deployment: Option<i64>,
    /// The active deployment serves a `pxelinux.cfg/` file over TFTP (as
    /// the older system's profiles do): BIOS firmware gets pxelinux.
    pub pxelinux: bool,
}

/// A file an active deployment serves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServedFile {
    pub deployment_id: i64,
    /// The bytes, for rendered files: one shared buffer per version of
    /// the file, however many machines fetch it.
    pub content: bytes::Bytes,
    /// A file of the download cache instead, for downloaded ones.
    pub file: Option<std::path::PathBuf>,
}

/// A request to hold an address for a client.
#[derive(Debug, Clone)]
pub struct LeaseClaim {
    pub network_id: i64,
    pub ip: Ipv4Addr,
    pub mac: MacAddr,
    /// `Offered` or `Bound`.
    pub state: LeaseState,
    pub expires_at: i64,
    pub hostname: String,
    pub now: i64,
}

/// One change to a lease, as the DHCP server commits them in groups.
#[derive(Debug, Clone)]
pub enum LeaseChange {
    /// Take or extend an address (`claim_lease`).
    Claim(LeaseClaim),
    /// Free the client's address (DHCPRELEASE, or an offer the client
    /// passed over).
    Release {
        network_id: i64,
        ip: Ipv4Addr,
        mac: MacAddr,
        now: i64,
    },
    /// Keep a declined address out of the pool until `until`.
    Decline {
        network_id: i64,
        ip: Ipv4Addr,
        mac: MacAddr,
        until: i64,
        now: i64,
    },
}

impl LeaseChange {
    /// The network and address the change is about.
    pub fn address(&self) -> (i64, Ipv4Addr) {
        match self {
            Self::Claim(c) => (c.network_id, c.ip),
            Self::Release { network_id, ip, .. } | Self::Decline { network_id, ip, .. } => {
                (*network_id, *ip)
            }
        }
    }
}

/// A callback as a machine made it.
#[derive(Debug, Clone)]
pub struct CallbackCall {
    pub token: TokenHash,
    pub name: String,
    pub method: String,
    pub body: String,
}

/// What became of a callback.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CallbackReceipt {
    /// Stored for the deployment; `first` is false for a replay.
    Recorded { deployment_id: i64, first: bool },
    /// No active deployment has this token.
    UnknownToken,
    /// The deployment holds `limits.callbacks_per_deployment` callbacks
    /// already; a new name is refused (a replay still answers Recorded).
    Full { deployment_id: i64 },
}

/// What the boot path reads of the inventory and of active deployments:
/// boot targets, served files, callbacks.
#[async_trait]
pub trait BootStore: Send + Sync + 'static {
    /// The interface with this MAC, its server and active deployment.
    async fn boot_target(&self, mac: MacAddr) -> Result<Option<BootTarget>>;
    /// Reads every interface's boot target into the boot index at once,
    /// so that no known machine's first request reads the database.
    /// Returns how many (0 while the index is off).
    async fn warm_boot_index(&self) -> Result<usize>;

    /// Starts a deployment (state `new`). The engine issue drives it on.
    async fn create_deployment(
        &self,
        server: &Fqdn,
        profile_id: i64,
        token_hash: &TokenHash,
    ) -> Result<DeploymentRecord>;
    async fn deployment(&self, id: i64) -> Result<DeploymentRecord>;
    async fn set_deployment_state(&self, id: i64, state: DeploymentState) -> Result<()>;
    /// Serves `content` at `path`, replacing what the deployment served
    /// there. A path another active deployment serves is a conflict.
    async fn serve_file(
        &self,
        deployment_id: i64,
        via: Via,
        path: &str,
        content: &[u8],
    ) -> Result<()>;
    /// As `serve_file`, for a file of the download cache: the row names the
    /// file rather than holding its bytes.
    async fn serve_cached_file(
        &self,
        deployment_id: i64,
        via: Via,
        path: &str,
        file: &std::path::Path,
    ) -> Result<()>;
    async fn unserve_file(&self, deployment_id: i64, via: Via, path: &str) -> Result<bool>;
    /// The file at `path`, if an active deployment serves it.
    async fn served_file(&self, via: Via, path: &str) -> Result<Option<ServedFile>>;

    /// The active deployment whose callback token hashes to `token`.
    async fn callback_deployment(&self, token: &TokenHash) -> Result<Option<i64>>;
    /// Records each callback for the active deployment whose token hashes
    /// to its `token`, if that holds fewer than `max` callbacks, all in one
    /// transaction; a receipt per callback, in order. A replay of a name
    /// already recorded changes nothing.
    async fn record_callbacks(
        &self,
        calls: &[CallbackCall],
        max: u32,
    ) -> Result<Vec<CallbackReceipt>>;
    /// A deployment's callbacks, in the order they arrived.
    async fn callbacks(&self, deployment_id: i64) -> Result<Vec<CallbackRecord>>;
}

/// DHCP leases; `claim_lease` is the one arbiter between daemons.
#[async_trait]
pub trait LeaseStore: Send + Sync + 'static {
    /// The newest lease row of `mac` in the network, in any state.
    async fn lease_of(&self, network_id: i64, mac: MacAddr) -> Result<Option<Lease>>;
    async fn lease_at(&self, network_id: i64, ip: Ipv4Addr) -> Result<Option<Lease>>;
    /// Every lease row of a network, in any state.
    async fn network_leases(&self, network_id: i64) -> Result<Vec<Lease>>;
    /// Applies the changes in order, in one transaction, and says of each
    /// whether it held. A claim takes or extends the address for the
    /// client atomically: it holds only when the address is free at `now`
    /// or already the client's (and not declined); binding releases the
    /// client's other addresses in the network and publishes
    /// `dhcp.lease.bound` (not for a renewal). A release or decline holds
    /// when the client had the address (offered or bound).
    async fn apply_lease_changes(&self, changes: &[LeaseChange]) -> Result<Vec<bool>>;
    /// Takes (or renews) the named hold on a pool slice for `holder` until
    /// `until`, as `LockStore::hold_lock` does, and returns the network's
    /// lease rows with it; `None` if another holds it. On the lease
    /// writer's connection, not the pool: the boot path waits on it, and
    /// under a storm the pool is the engine's.
    async fn take_slice(
        &self,
        name: &str,
        holder: &str,
        (now, until): (i64, i64),
        network_id: i64,
    ) -> Result<Option<Vec<Lease>>>;
    /// One claim, as `apply_lease_changes` applies it.
    async fn claim_lease(&self, claim: &LeaseClaim) -> Result<bool> {
        let change = LeaseChange::Claim(claim.clone());
        Ok(self.apply_lease_changes(&[change]).await?.first() == Some(&true))
    }
    /// Frees the client's address (DHCPRELEASE). Returns whether it held it.
    async fn release_lease(
        &self,
        network_id: i64,
        ip: Ipv4Addr,
        mac: MacAddr,
        now: i64,
    ) -> Result<bool> {
        let change = LeaseChange::Release {
            network_id,
            ip,
            mac,
            now,
        };
        Ok(self.apply_lease_changes(&[change]).await?.first() == Some(&true))
    }
    /// Keeps a declined address out of the pool until `until`.
    async fn decline_lease(
        &self,
        network_id: i64,
        ip: Ipv4Addr,
        mac: MacAddr,
        until: i64,
        now: i64,
    ) -> Result<bool> {
        let change = LeaseChange::Decline {
            network_id,
            ip,
            mac,
            until,
            now,
        };
        Ok(self.apply_lease_changes(&[change]).await?.first() == Some(&true))
    }
    /// Leases, optionally of one network, by address.
    async fn list_leases(&self, network_id: Option<i64>, page: Page) -> Result<Listing<Lease>>;
    /// Addresses held at `now` (unix seconds: offered or bound, not
    /// expired) per network id, for networks holding any.
    async fn held_leases(&self, now: i64) -> Result<Vec<(i64, u64)>>;
}

/// The boot timeline: what each machine asked and what it was answered.
#[async_trait]
pub trait TimelineStore: Send + Sync + 'static {
    async fn record_boot_events(&self, events: &[BootEvent]) -> Result<()>;
    /// Events of these MACs (of every MAC when `macs` is empty), newest
    /// first, with ids below `before`.
    async fn boot_events(
        &self,
        macs: &[MacAddr],
        before: Option<i64>,
        limit: u32,
    ) -> Result<Vec<(i64, BootEvent)>>;
    async fn unknown_macs(&self, limit: u32) -> Result<Vec<UnknownMac>>;
    /// Deletes events older than `before`; returns how many.
    /// Deletes events older than `before`, and the oldest past the newest
    /// `keep`.
    async fn prune_boot_events(&self, before: OffsetDateTime, keep: u64) -> Result<u64>;
}
