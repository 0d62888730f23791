//! Secrets attached to a server by name: the older system's credentials
//! (`ipmi_username`, `ipmi_password`, or anything a script kept there).
//! Staff only, as they were; they are returned opened to staff.

use bootloader_core::model::{Fqdn, Secret};
use bootloader_store::ServerSecret;

use super::{Actor, Error, Ops};

pub async fn list(
    ops: &Ops,
    actor: &Actor,
    server_id: Option<i64>,
    name: Option<&str>,
) -> Result<Vec<ServerSecret>, Error> {
    actor.require_staff("see credentials")?;
    Ok(ops.inventory.server_secrets(server_id, name).await?)
}

pub async fn get(ops: &Ops, actor: &Actor, id: i64) -> Result<ServerSecret, Error> {
    actor.require_staff("see credentials")?;
    Ok(ops.inventory.server_secret(id).await?)
}

pub async fn add(
    ops: &Ops,
    actor: &Actor,
    server: &Fqdn,
    name: &str,
    data: &Secret,
) -> Result<ServerSecret, Error> {
    actor.require_write()?;
    Ok(ops.inventory.add_server_secret(server, name, data).await?)
}

pub async fn delete(ops: &Ops, actor: &Actor, id: i64) -> Result<(), Error> {
    actor.require_write()?;
    Ok(ops.inventory.delete_server_secret(id).await?)
}
