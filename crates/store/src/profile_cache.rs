//! Profile versions as read, kept: a profile is stored immutably (its
//! row never changes; PostgreSQL never gives an id twice), so a version
//! read once is the same until it is deleted. Every start looked its
//! profile up by `name==version` again, one statement of the five a start
//! costs. Forgotten here on `delete_profile`; on a shared PostgreSQL,
//! deleted by another daemon, when the database tells (migration 0020's
//! `bootloader_profile` notices, `postgres.rs`), and the cache is off while
//! this daemon does not listen. A start with a version deleted before the
//! notice came is refused by the database (its foreign key) as the
//! profile not existing, which forgets it too.

use std::collections::HashMap;

use crate::kept::Kept;
use crate::types::StoredProfile;

/// Versions kept at most; past this the cache starts again.
const CAPACITY: usize = 256;

pub(crate) struct ProfileCache(Kept<Entries>);

impl Default for ProfileCache {
    fn default() -> Self {
        Self(Kept::new(true))
    }
}

#[derive(Default)]
pub(crate) struct Entries {
    by_id: HashMap<i64, StoredProfile>,
    by_name: HashMap<(String, String), i64>,
}

/// `set_on` (deletions may have gone unheard meanwhile: what was kept is
/// forgotten) and `begin` are `Kept`'s.
impl std::ops::Deref for ProfileCache {
    type Target = Kept<Entries>;

    fn deref(&self) -> &Self::Target {
        &self.0
    }
}

impl ProfileCache {
    /// Off until `set_on` (a PostgreSQL store, until it listens).
    pub(super) fn off() -> Self {
        Self(Kept::new(false))
    }

    pub(super) fn by_id(&self, id: i64) -> Option<StoredProfile> {
        self.0.find(|e| e.by_id.get(&id).cloned())
    }

    pub(super) fn by_name(&self, name: &str, version: &str) -> Option<StoredProfile> {
        self.0.find(|e| {
            let id = e.by_name.get(&(name.to_string(), version.to_string()))?;
            e.by_id.get(id).cloned()
        })
    }

    /// Keeps `profile`, read from the database after `begin` gave
    /// `since`, unless something was forgotten meanwhile.
    pub(super) fn keep(&self, profile: &StoredProfile, since: u64) {
        self.0.keep(since, |entries| {
            if entries.by_id.len() >= CAPACITY {
                *entries = Entries::default();
            }
            entries
                .by_name
                .insert((profile.name.clone(), profile.version.clone()), profile.id);
            entries.by_id.insert(profile.id, profile.clone());
        });
    }

    pub(super) fn forget(&self, id: i64) {
        self.0.forget(|entries| {
            if let Some(p) = entries.by_id.remove(&id) {
                entries.by_name.remove(&(p.name, p.version));
            }
        });
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
        cache.keep(&profile(7, "debian", "1"), cache.begin());
        assert_eq!(cache.by_id(7).map(|p| p.source), Some("debian 1".into()));
        assert_eq!(cache.by_name("debian", "1").map(|p| p.id), Some(7));
        assert!(cache.by_name("debian", "2").is_none());
        cache.forget(7);
        assert!(cache.by_id(7).is_none());
        assert!(cache.by_name("debian", "1").is_none());
        // A version uploaded again after a delete has another id.
        cache.keep(&profile(9, "debian", "1"), cache.begin());
        assert_eq!(cache.by_name("debian", "1").map(|p| p.id), Some(9));
        assert!(cache.by_id(7).is_none());
    }

    #[test]
    fn an_idle_cache_keeps_and_finds_nothing() {
        let cache = ProfileCache::off();
        cache.keep(&profile(7, "debian", "1"), cache.begin());
        assert!(cache.by_id(7).is_none());
        cache.set_on(true);
        assert!(cache.by_id(7).is_none());
        cache.keep(&profile(7, "debian", "1"), cache.begin());
        assert!(cache.by_name("debian", "1").is_some());
        cache.set_on(false);
        assert!(cache.by_name("debian", "1").is_none());
        cache.set_on(true);
        assert!(
            cache.by_name("debian", "1").is_none(),
            "forgotten while off"
        );
    }

    #[test]
    fn a_read_that_raced_a_forget_is_not_kept() {
        let cache = ProfileCache::default();
        // Read from the database before the delete forgot it.
        let since = cache.begin();
        cache.forget(7);
        cache.keep(&profile(7, "debian", "1"), since);
        assert!(cache.by_id(7).is_none());
        assert!(cache.by_name("debian", "1").is_none());
        cache.keep(&profile(7, "debian", "1"), cache.begin());
        assert!(cache.by_id(7).is_some());
    }

    #[test]
    fn a_full_cache_starts_again() {
        let cache = ProfileCache::default();
        for id in 0..CAPACITY as i64 + 1 {
            cache.keep(&profile(id, "p", &id.to_string()), cache.begin());
        }
        assert!(cache.by_id(0).is_none());
        assert_eq!(
            cache.by_name("p", &CAPACITY.to_string()).map(|p| p.id),
            Some(CAPACITY as i64)
        );
    }
}
