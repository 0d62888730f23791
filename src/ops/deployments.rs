//! Starting, cancelling and repeating deployments. The engine
//! (`workflow/`) walks each through its profile.

use serde::Deserialize;
use utoipa::ToSchema;

use bootloader_core::model::{DeploymentState, Fqdn, NameError};
use bootloader_store::boot::DeploymentRecord;
use bootloader_store::engine::LogEntry;
use bootloader_store::{Listing, Page};

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
    // A server that does not exist is the store's field error, found in
    // the same transaction that starts the deployment.
    Ok(ops
        .engine
        .create(server, (profile.id, &profile.source), None)
        .await?)
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

/// Deletes a deployment with its log. An active one is cancelled first
/// (its cleanup step runs) and deleted once it has ended, if that takes
/// no more than a few seconds; otherwise it stays cancelled and the
/// answer says to delete it again when its cleanup is done.
pub async fn delete(ops: &Ops, actor: &Actor, id: i64) -> Result<(), Error> {
    actor.require_write()?;
    let record = ops.boot.deployment(id).await?;
    if !record.state.is_final() {
        ops.engine.cancel(id).await?;
    }
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let record = ops.boot.deployment(id).await?;
        if record.state.is_final() && record.step.is_none() {
            break;
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(Error::Conflict {
                message: format!(
                    "deployment {id} is cancelled and still runs its {} step; delete it again once that has ended",
                    record.step.as_deref().unwrap_or("cleanup")
                ),
                fields: Default::default(),
            });
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    ops.deployments.delete_deployment(id).await?;
    Ok(())
}

/// The deployment's callback token (staff only: it lets a caller act
/// as the machine), for clients of the older API that build callback
/// URLs themselves. `None` once the deployment no longer keeps it.
pub async fn token(ops: &Ops, actor: &Actor, id: i64) -> Result<Option<String>, Error> {
    actor.require_staff("see callback tokens")?;
    Ok(ops.deployments.engine_view(id).await?.token)
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
