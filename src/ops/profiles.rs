//! Profiles: uploaded once, validated, stored immutably; addressed by id or
//! by `name==version`.

use bootloader_core::profile::{self, ProfileErrors};
use bootloader_store::{Listing, Page, ProfileFilter, ProfileStore, StoredProfile};

use super::error::FieldErrors;
use super::{Actor, Error, Ops};

/// Finds a profile by id or by `name==version`.
pub async fn lookup(store: &dyn ProfileStore, key: &str) -> Result<StoredProfile, Error> {
    if let Some((name, version)) = key.split_once("==") {
        return Ok(store.profile_by_name_version(name, version).await?);
    }
    match key.parse::<i64>() {
        Ok(id) => Ok(store.profile(id).await?),
        Err(_) => Err(Error::NotFound(format!(
            "profile {key:?} not found (use an id or name==version)"
        ))),
    }
}

/// Validation errors as a field map keyed by YAML path.
pub fn profile_errors(errors: ProfileErrors) -> Error {
    let mut fields = FieldErrors::new();
    for e in errors.0 {
        fields.entry(e.path).or_default().push(e.message);
    }
    Error::Invalid {
        message: "the profile is not valid".into(),
        fields,
    }
}

/// Validates `text` as a new profile (refusing what no driver can do) and
/// stores it byte for byte; a name and version already stored is a
/// conflict.
pub async fn upload(ops: &Ops, actor: &Actor, text: &str) -> Result<StoredProfile, Error> {
    actor.require_write()?;
    let parsed = profile::parse_upload(text).map_err(profile_errors)?;
    Ok(ops
        .profiles
        .create_profile(
            &parsed.name,
            &parsed.version,
            text,
            parsed.action_count() as u64,
        )
        .await?)
}

pub async fn list(
    ops: &Ops,
    _: &Actor,
    filter: &ProfileFilter,
    page: Page,
) -> Result<Listing<StoredProfile>, Error> {
    Ok(ops.profiles.list_profiles(filter, page).await?)
}

pub async fn get(ops: &Ops, _: &Actor, key: &str) -> Result<StoredProfile, Error> {
    lookup(&*ops.profiles, key).await
}

pub async fn delete(ops: &Ops, actor: &Actor, key: &str) -> Result<(), Error> {
    actor.require_write()?;
    let stored = lookup(&*ops.profiles, key).await?;
    Ok(ops.profiles.delete_profile(stored.id).await?)
}
