//! Locations and labels: named groupings of servers.

use serde::Deserialize;
use utoipa::ToSchema;

use bootloader_core::model::Name;
use bootloader_store::{Label, Listing, Location, LocationPatch, NewLocation, Page};

use super::input::check_text;
use super::{Actor, Error, Ops, Validator};

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LocationInput {
    /// Unique name, e.g. `dc1`.
    pub name: Option<String>,
    pub description: Option<String>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LabelInput {
    pub name: Option<String>,
    pub description: Option<String>,
}

/// The name (required when `required`) and description of either input,
/// every bad field reported at once.
fn name_and_description(
    name: Option<&str>,
    description: Option<&str>,
    required: bool,
) -> Result<Option<Name>, Error> {
    let mut v = Validator::default();
    let name = match name {
        Some(n) => v.parse("name", n.parse::<Name>()),
        None if required => {
            v.error("name", "is required");
            None
        }
        None => None,
    };
    if let Some(d) = description {
        check_text(&mut v, "description", d, 1000);
    }
    v.finish()?;
    Ok(name)
}

pub async fn list_locations(ops: &Ops, _: &Actor, page: Page) -> Result<Listing<Location>, Error> {
    Ok(ops.inventory.list_locations(page).await?)
}

pub async fn location(ops: &Ops, _: &Actor, name: &Name) -> Result<Location, Error> {
    Ok(ops.inventory.location(name).await?)
}

pub async fn create_location(
    ops: &Ops,
    actor: &Actor,
    input: LocationInput,
) -> Result<Location, Error> {
    actor.require_write()?;
    let name = name_and_description(input.name.as_deref(), input.description.as_deref(), true)?
        .ok_or_else(|| Error::invalid_field("name", "is required"))?;
    Ok(ops
        .inventory
        .create_location(NewLocation {
            name,
            description: input.description.unwrap_or_default(),
        })
        .await?)
}

/// Renames a location or changes its description; what is not given stays.
pub async fn update_location(
    ops: &Ops,
    actor: &Actor,
    name: &Name,
    input: LocationInput,
) -> Result<Location, Error> {
    actor.require_write()?;
    let new_name =
        name_and_description(input.name.as_deref(), input.description.as_deref(), false)?;
    let patch = LocationPatch {
        name: new_name,
        description: input.description,
    };
    Ok(ops.inventory.update_location(name, patch).await?)
}

/// Deletes a location that no server or network refers to.
pub async fn delete_location(ops: &Ops, actor: &Actor, name: &Name) -> Result<(), Error> {
    actor.require_write()?;
    Ok(ops.inventory.delete_location(name).await?)
}

pub async fn list_labels(ops: &Ops, _: &Actor, page: Page) -> Result<Listing<Label>, Error> {
    Ok(ops.inventory.list_labels(page).await?)
}

pub async fn label(ops: &Ops, _: &Actor, name: &Name) -> Result<Label, Error> {
    Ok(ops.inventory.label(name).await?)
}

pub async fn create_label(ops: &Ops, actor: &Actor, input: LabelInput) -> Result<Label, Error> {
    actor.require_write()?;
    let name = name_and_description(input.name.as_deref(), input.description.as_deref(), true)?
        .ok_or_else(|| Error::invalid_field("name", "is required"))?;
    Ok(ops
        .inventory
        .create_label(&name, input.description.as_deref().unwrap_or(""))
        .await?)
}

/// Renames a label or changes its description; what is not given stays.
pub async fn update_label(
    ops: &Ops,
    actor: &Actor,
    name: &Name,
    input: LabelInput,
) -> Result<Label, Error> {
    actor.require_write()?;
    let new_name =
        name_and_description(input.name.as_deref(), input.description.as_deref(), false)?;
    let current = ops.inventory.label(name).await?;
    Ok(ops
        .inventory
        .update_label(
            name,
            new_name.as_ref().unwrap_or(name),
            input.description.as_deref().unwrap_or(&current.description),
        )
        .await?)
}

/// Deletes a label that no server carries.
pub async fn delete_label(ops: &Ops, actor: &Actor, name: &Name) -> Result<(), Error> {
    actor.require_write()?;
    Ok(ops.inventory.delete_label(name).await?)
}
