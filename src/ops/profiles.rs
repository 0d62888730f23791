//! Profiles as operations see them.

use bootloader_store::{ProfileStore, StoredProfile};

use super::Error;

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
