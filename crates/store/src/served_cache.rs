//! The bytes of files rendered for deployments, shared: a file is read
//! from the database once per version and every request (HTTP or TFTP)
//! gets the same buffer. Twenty machines fetching one 20 MB preseed hold
//! 20 MB, not 400. Bounded by total size; a version that changed (the row
//! was rewritten) is read again.

use std::collections::HashMap;
use std::sync::Mutex;

use bytes::Bytes;
use time::OffsetDateTime;

/// Bytes kept at most.
const CAPACITY: usize = 256 * 1024 * 1024;

#[derive(Default)]
pub struct ServedCache {
    entries: Mutex<Entries>,
    /// One read of a missing file at a time: concurrent requests for it
    /// wait and share that read. Striped by row, so that a storm's
    /// thousands of different files (each machine's script) are read side
    /// by side rather than one after another.
    loading: [tokio::sync::Mutex<()>; STRIPES],
}

/// Files that may be read from the database at once.
const STRIPES: usize = 32;

#[derive(Default)]
struct Entries {
    by_id: HashMap<i64, (OffsetDateTime, Bytes)>,
    bytes: usize,
}

impl ServedCache {
    /// The lock under which row `id` is read.
    pub(super) fn loading(&self, id: i64) -> &tokio::sync::Mutex<()> {
        &self.loading[id.rem_euclid(STRIPES as i64) as usize]
    }

    /// The bytes of row `id` as written at `version`, if held.
    pub fn get(&self, id: i64, version: OffsetDateTime) -> Option<Bytes> {
        let entries = self.entries.lock().ok()?;
        entries
            .by_id
            .get(&id)
            .filter(|(v, _)| *v == version)
            .map(|(_, b)| b.clone())
    }

    /// Keeps `bytes` for row `id` at `version`, making room by dropping
    /// others (files larger than a quarter of the capacity are not kept).
    pub fn put(&self, id: i64, version: OffsetDateTime, bytes: Bytes) {
        if bytes.len() > CAPACITY / 4 {
            return;
        }
        let Ok(mut entries) = self.entries.lock() else {
            return;
        };
        if let Some((_, old)) = entries.by_id.remove(&id) {
            entries.bytes -= old.len();
        }
        while entries.bytes + bytes.len() > CAPACITY {
            let Some(victim) = entries.by_id.keys().next().copied() else {
                break;
            };
            if let Some((_, old)) = entries.by_id.remove(&victim) {
                entries.bytes -= old.len();
            }
        }
        entries.bytes += bytes.len();
        entries.by_id.insert(id, (version, bytes));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_file_being_read_does_not_hold_back_another() {
        let cache = ServedCache::default();
        let reading = cache.loading(7).try_lock().expect("free");
        assert!(cache.loading(7).try_lock().is_err(), "the same file waits");
        assert!(cache.loading(8).try_lock().is_ok(), "another file does not");
        drop(reading);
    }

    #[test]
    fn a_version_is_shared_and_a_new_one_replaces_it() {
        let cache = ServedCache::default();
        let v1 = OffsetDateTime::from_unix_timestamp(1).unwrap();
        let v2 = OffsetDateTime::from_unix_timestamp(2).unwrap();
        cache.put(7, v1, Bytes::from_static(b"one"));
        let a = cache.get(7, v1).unwrap();
        let b = cache.get(7, v1).unwrap();
        assert_eq!(a.as_ptr(), b.as_ptr(), "one buffer for every reader");
        assert!(cache.get(7, v2).is_none(), "a rewritten row is read again");
        cache.put(7, v2, Bytes::from_static(b"two"));
        assert_eq!(cache.get(7, v2).unwrap(), "two");
        assert_eq!(cache.entries.lock().unwrap().bytes, 3);
    }
}
