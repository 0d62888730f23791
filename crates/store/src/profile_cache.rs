//! Profile versions as read, kept: a profile is stored immutably (its
//! row never changes; PostgreSQL never gives an id twice), so a version
//! read once is the same until it is deleted. Every start looked its
//! profile up by `name==version` again, one statement of the five a start
//! costs. Deleted here on `delete_profile`; deleted by another daemon on
//! a shared PostgreSQL, the version is still found here, and a start with
//! it is refused by the database (its foreign key) as the profile not
//! existing, which forgets it (`forget`).

use std::collections::HashMap;
use std::sync::Mutex;

use crate::types::StoredProfile;

/// Versions kept at most; past this the cache starts again.
const CAPACITY: usize = 256;

#[derive(Default)]
pub struct ProfileCache(Mutex<Entries>);

#[derive(Default)]
struct Entries {
    by_id: HashMap<i64, StoredProfile>,
    by_name: HashMap<(String, String), i64>,
}

impl ProfileCache {
    fn entries(&self) -> std::sync::MutexGuard<'_, Entries> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(super) fn by_id(&self, id: i64) -> Option<StoredProfile> {
        self.entries().by_id.get(&id).cloned()
    }

    pub(super) fn by_name(&self, name: &str, version: &str) -> Option<StoredProfile> {
        let entries = self.entries();
        let id = entries
            .by_name
            .get(&(name.to_string(), version.to_string()))?;
        entries.by_id.get(id).cloned()
    }

    pub(super) fn keep(&self, profile: &StoredProfile) {
        let mut entries = self.entries();
        if entries.by_id.len() >= CAPACITY {
            entries.by_id.clear();
            entries.by_name.clear();
        }
        entries
            .by_name
            .insert((profile.name.clone(), profile.version.clone()), profile.id);
        entries.by_id.insert(profile.id, profile.clone());
    }

    pub(super) fn forget(&self, id: i64) {
        let mut entries = self.entries();
        if let Some(p) = entries.by_id.remove(&id) {
            entries.by_name.remove(&(p.name, p.version));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn profile(id: i64, name: &str, version: &str) -> StoredProfile {
        StoredProfile {
            id,
            name: name.into(),
            version: version.into(),
            source: format!("{name} {version}"),
            action_count: 1,
            created_at: time::OffsetDateTime::UNIX_EPOCH,
        }
    }

    #[test]
    fn a_version_is_found_by_id_and_name_until_forgotten() {
        let cache = ProfileCache::default();
        cache.keep(&profile(7, "debian", "1"));
        assert_eq!(cache.by_id(7).map(|p| p.source), Some("debian 1".into()));
        assert_eq!(cache.by_name("debian", "1").map(|p| p.id), Some(7));
        assert!(cache.by_name("debian", "2").is_none());
        cache.forget(7);
        assert!(cache.by_id(7).is_none());
        assert!(cache.by_name("debian", "1").is_none());
        // A version uploaded again after a delete has another id.
        cache.keep(&profile(9, "debian", "1"));
        assert_eq!(cache.by_name("debian", "1").map(|p| p.id), Some(9));
        assert!(cache.by_id(7).is_none());
    }

    #[test]
    fn a_full_cache_starts_again() {
        let cache = ProfileCache::default();
        for id in 0..CAPACITY as i64 + 1 {
            cache.keep(&profile(id, "p", &id.to_string()));
        }
        assert!(cache.by_id(0).is_none());
        assert_eq!(
            cache.by_name("p", &CAPACITY.to_string()).map(|p| p.id),
            Some(CAPACITY as i64)
        );
    }
}
