//! Starting, cancelling and repeating deployments. The engine
//! (`workflow/`) walks each through its profile.

use serde::Deserialize;
use utoipa::ToSchema;

use bootloader_core::model::{DeploymentState, Fqdn, NameError};
use bootloader_store::boot::DeploymentRecord;
use bootloader_store::engine::LogEntry;
use bootloader_store::{Listing, Page, StoreError};

use super::{Actor, Error, Ops};

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DeploymentInput {
    /// The server's FQDN.
    pub server: String,
    /// The profile's id or `name==version`.
    pub profile: String,
}

/// Starts a deployment of a server with a profile version. A server or
/// profile that does not exist is the caller's mistake (a bad field), not
/// a missing object.
pub async fn create(
    ops: &Ops,
    actor: &Actor,
    input: DeploymentInput,
) -> Result<DeploymentRecord, Error> {
    actor.require_write()?;
    let server: Fqdn = input
        .server
        .parse()
        .map_err(|e: NameError| Error::invalid_field("server", e.to_string()))?;
    let profile = match super::profiles::lookup(&*ops.profiles, &input.profile).await {
        Ok(p) => p,
        Err(Error::NotFound(m)) => return Err(Error::invalid_field("profile", m)),
        Err(e) => return Err(e),
    };
    if let Err(StoreError::NotFound { .. }) = ops.inventory.server(&server).await {
        return Err(Error::invalid_field(
            "server",
            format!("server {:?} does not exist", server.as_str()),
        ));
    }
    Ok(ops.engine.create(server, profile.id, None).await?)
}

/// Stops an active deployment: its files stop being served, no more BMC
/// commands are sent, the profile's `cleanup` step runs if it has one.
pub async fn cancel(ops: &Ops, actor: &Actor, id: i64) -> Result<DeploymentRecord, Error> {
    actor.require_write()?;
    Ok(ops.engine.cancel(id).await?)
}

/// Deploys the same server again with the same pinned profile version and
/// a new callback token.
pub async fn repeat(ops: &Ops, actor: &Actor, id: i64) -> Result<DeploymentRecord, Error> {
    actor.require_write()?;
    Ok(ops.engine.repeat(id).await?)
}

/// Deployments, newest first, of one server and in one state if asked.
pub async fn list(
    ops: &Ops,
    _: &Actor,
    server: Option<&Fqdn>,
    state: Option<DeploymentState>,
    page: Page,
) -> Result<Listing<DeploymentRecord>, Error> {
    Ok(ops
        .deployments
        .list_deployments(server, state, page)
        .await?)
}

pub async fn get(ops: &Ops, _: &Actor, id: i64) -> Result<DeploymentRecord, Error> {
    Ok(ops.boot.deployment(id).await?)
}

/// The most log entries one call returns.
pub const MAX_LOG: u32 = 1000;

/// Log entries with ids above `after`, oldest first: every action's start,
/// result and duration, state changes and errors.
pub async fn log(
    ops: &Ops,
    _: &Actor,
    id: i64,
    after: Option<i64>,
    limit: Option<u32>,
) -> Result<Vec<LogEntry>, Error> {
    let limit = limit.unwrap_or(MAX_LOG).clamp(1, MAX_LOG);
    Ok(ops.deployments.deployment_log(id, after, limit).await?)
}
