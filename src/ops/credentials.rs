//! Credentials: named BMC logins shared by many servers. The password is
//! write-only; only staff read the rest.

use serde::Deserialize;
use utoipa::ToSchema;

use bootloader_core::model::{Name, Secret};
use bootloader_store::{Credential, CredentialSpec, Listing, Page};

use super::input::check_text;
use super::{Actor, Error, Ops, Validator, update_fresh};

#[derive(Debug, Default, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CredentialInput {
    pub name: Option<String>,
    pub username: Option<String>,
    /// Write-only; stored encrypted and never returned.
    pub password: Option<Secret>,
    pub description: Option<String>,
}

pub fn credential_spec(
    input: CredentialInput,
    current: Option<&Credential>,
) -> Result<CredentialSpec, Error> {
    let mut v = Validator::default();
    let name = match (input.name, current) {
        (Some(n), _) => v.parse("name", n.parse::<Name>()),
        (None, Some(c)) => Some(c.name.clone()),
        (None, None) => {
            v.error("name", "is required");
            None
        }
    };
    let username = match (input.username, current) {
        (Some(u), _) => Some(u),
        (None, Some(c)) => Some(c.username.clone()),
        (None, None) => None,
    };
    match &username {
        Some(u) if u.is_empty() || u.len() > 64 || u.chars().any(char::is_control) => {
            v.error("username", "1 to 64 printable characters")
        }
        None => v.error("username", "is required"),
        _ => {}
    }
    match (&input.password, current) {
        (Some(p), _) if p.is_empty() || p.len() > 64 || p.chars().any(char::is_control) => {
            v.error("password", "1 to 64 printable characters")
        }
        (None, None) => v.error("password", "is required"),
        _ => {}
    }
    if let Some(d) = &input.description {
        check_text(&mut v, "description", d, 1000);
    }
    v.finish()?;
    match (name, username) {
        (Some(name), Some(username)) => Ok(CredentialSpec {
            name,
            username,
            description: input
                .description
                .or_else(|| current.map(|c| c.description.clone()))
                .unwrap_or_default(),
            password: input.password,
        }),
        _ => Err(Error::invalid_field("name", "is required")),
    }
}

pub async fn list(ops: &Ops, actor: &Actor, page: Page) -> Result<Listing<Credential>, Error> {
    actor.require_staff("see credentials")?;
    Ok(ops.inventory.list_credentials(page).await?)
}

pub async fn get(ops: &Ops, actor: &Actor, name: &Name) -> Result<Credential, Error> {
    actor.require_staff("see credentials")?;
    Ok(ops.inventory.credential(name).await?)
}

pub async fn create(ops: &Ops, actor: &Actor, input: CredentialInput) -> Result<Credential, Error> {
    actor.require_write()?;
    let spec = credential_spec(input, None)?;
    Ok(ops.inventory.create_credential(spec).await?)
}

/// Merges `input` into the credential as it is now (a password not given
/// stays) and writes it, again if a concurrent change got there first.
pub async fn update(
    ops: &Ops,
    actor: &Actor,
    name: &Name,
    input: CredentialInput,
) -> Result<Credential, Error> {
    actor.require_write()?;
    update_fresh(|| async {
        let current = ops.inventory.credential(name).await?;
        let spec = credential_spec(input.clone(), Some(&current))?;
        Ok(ops
            .inventory
            .update_credential(name, spec, current.updated_at)
            .await)
    })
    .await
}

/// Deletes a credential no server uses.
pub async fn delete(ops: &Ops, actor: &Actor, name: &Name) -> Result<(), Error> {
    actor.require_write()?;
    Ok(ops.inventory.delete_credential(name).await?)
}
