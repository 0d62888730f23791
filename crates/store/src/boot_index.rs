//! The boot path's answers from memory: what the store knows of a MAC
//! (`BootStore::boot_target`) and which active deployment serves a path
//! (`BootStore::served_file`), each kept with the write sequence at which
//! it was read. Every write that can change them marks what it changed,
//! after its commit: one server (a deployment of it started), one
//! deployment (it ended, or changed a pxelinux config: its server's target
//! and the files it serves), one path served, or everything (an inventory
//! change).
//! An entry read before a later mark that concerns it is read again, so a
//! read that raced a write is never kept past it. On SQLite, entries are
//! also read again after `AGE`, for writers this process does not see (the
//! command line writing the same SQLite file).
//!
//! On PostgreSQL other daemons write too: their changes come as
//! notifications (migration 0016's triggers, made finer by 0017: `notice`), and the index is
//! on only while this daemon listens for them; before that and while the
//! listening connection is lost, every look-up reads the database. Every
//! writer's change is notified there (the command line's too), so an entry
//! is kept until a change concerns it, not `AGE`: under a boot storm a
//! machine's rounds of DHCP lie seconds apart, and each read again is a
//! query queued behind the storm's writes.

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use time::OffsetDateTime;

use crate::boot::BootTarget;
use bootloader_core::model::{MacAddr, Via};

/// How long an entry is trusted without a write marking it.
const AGE: Duration = Duration::from_secs(5);
/// Targets marked (deployments started or ended, the inventory changed)
/// past which the whole index is read again in one query (`keep_warm`),
/// rather than each machine's next request reading its own.
pub const REWARM: usize = 64;
/// Entries kept at most (unknown MACs included): past this the index
/// starts over rather than grow with a flood of made-up MACs.
const ENTRIES: usize = 200_000;

/// The row behind a served file, as `served_file` reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServedRow {
    pub id: i64,
    pub deployment_id: i64,
    pub version: OffsetDateTime,
    pub file: Option<String>,
}

struct Cached<T> {
    value: T,
    /// The write sequence before it was read.
    seen: u64,
    at: Instant,
}

#[derive(Default)]
struct Inner {
    /// How long an entry is trusted without a mark: `AGE`, or as long as
    /// no mark concerns it (`None`, notified of every writer's change).
    age: Option<Duration>,
    targets: HashMap<MacAddr, Cached<Option<BootTarget>>>,
    /// By listener, then path (looked up by `&str`, no copy of the path).
    served: HashMap<Via, HashMap<String, Cached<Option<ServedRow>>>>,
    /// The sequence of each server's latest change.
    servers: HashMap<i64, u64>,
    /// The latest change of everything, and of every file served.
    all: u64,
    files: u64,
    /// The sequence of each served path's latest change, by listener.
    paths: HashMap<Via, HashMap<String, u64>>,
    /// The sequence of each deployment's latest start or end: the files
    /// it serves stop (or start) being served with it.
    deployments: HashMap<i64, u64>,
}

impl Inner {
    fn fresh<T>(&self, c: &Cached<T>, server: Option<i64>, files: bool) -> bool {
        c.seen >= self.all
            && (!files || c.seen >= self.files)
            && server.is_none_or(|s| self.servers.get(&s).is_none_or(|m| c.seen >= *m))
            && self.age.is_none_or(|age| c.at.elapsed() < age)
    }

    /// Whether a served-file entry still holds: nothing changed its path,
    /// every file, or (for a file served) its deployment since it was read.
    fn served_fresh(&self, via: Via, path: &str, c: &Cached<Option<ServedRow>>) -> bool {
        self.fresh(c, None, true)
            && self
                .paths
                .get(&via)
                .and_then(|p| p.get(path))
                .is_none_or(|m| c.seen >= *m)
            && c.value.as_ref().is_none_or(|row| {
                self.deployments
                    .get(&row.deployment_id)
                    .is_none_or(|m| c.seen >= *m)
            })
    }

    fn make_room(&mut self, seq: u64) {
        let served: usize = self.served.values().map(HashMap::len).sum();
        let marks: usize =
            self.paths.values().map(HashMap::len).sum::<usize>() + self.deployments.len();
        if self.targets.len() + served >= ENTRIES
            || self.servers.len() >= ENTRIES
            || marks >= ENTRIES
        {
            self.targets.clear();
            self.served.clear();
            self.servers.clear();
            self.paths.clear();
            self.deployments.clear();
            self.all = seq;
        }
    }
}

/// See the module's text.
pub struct BootIndex {
    enabled: AtomicBool,
    seq: AtomicU64,
    /// Machines' targets marked to be read again since `take_marked`
    /// (counted roughly: an inventory change counts as many).
    marked: AtomicUsize,
    inner: Mutex<Inner>,
    /// Look-ups that missed, read from the database together.
    pub(crate) misses: crate::grouped::Grouped<MacAddr, Option<BootTarget>>,
}

impl BootIndex {
    /// `enabled` false: every look-up misses and nothing is kept. Entries
    /// are read again after `AGE`.
    pub fn new(enabled: bool) -> Self {
        Self {
            enabled: AtomicBool::new(enabled),
            seq: AtomicU64::new(1),
            marked: AtomicUsize::new(0),
            inner: Mutex::new(Inner {
                age: Some(AGE),
                ..Inner::default()
            }),
            misses: Default::default(),
        }
    }

    /// An index told of every writer's change (PostgreSQL's notifications),
    /// off until it listens: entries are kept until a change concerns
    /// them.
    pub fn notified() -> Self {
        Self {
            enabled: AtomicBool::new(false),
            seq: AtomicU64::new(1),
            marked: AtomicUsize::new(0),
            inner: Mutex::new(Inner::default()),
            misses: Default::default(),
        }
    }

    fn inner(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn on(&self) -> bool {
        self.enabled.load(Ordering::Acquire)
    }

    pub fn is_on(&self) -> bool {
        self.on()
    }

    /// Turns the index on (everything read before is read again) or off.
    pub fn set_enabled(&self, on: bool) {
        if on {
            self.enabled.store(true, Ordering::Release);
            self.changed_all();
        } else {
            self.changed_all();
            self.enabled.store(false, Ordering::Release);
        }
    }

    /// A change another daemon made, as the database's notification says
    /// it: `server <id> <deployment>` (that deployment started or ended),
    /// `file <via> <path>`, and the coarser `server <id>` and `files` of
    /// migration 0016; anything else: everything.
    pub fn notice(&self, payload: &str) {
        match payload.split_once(' ') {
            Some(("server", ids)) => match ids.split_once(' ') {
                Some((server, deployment)) => match (server.parse(), deployment.parse()) {
                    (Ok(server), Ok(deployment)) => self.changed_deployment(server, deployment),
                    _ => self.changed_all(),
                },
                None => match ids.parse() {
                    Ok(id) => {
                        self.changed_server(id);
                        self.changed_files();
                    }
                    Err(_) => self.changed_all(),
                },
            },
            Some(("file", rest)) => match rest.split_once(' ') {
                Some(("http", path)) => self.changed_file(Via::Http, path),
                Some(("tftp", path)) => self.changed_file(Via::Tftp, path),
                _ => self.changed_files(),
            },
            _ if payload == "files" => self.changed_files(),
            _ => self.changed_all(),
        }
    }

    /// The sequence to keep a value read from now on with.
    pub fn begin(&self) -> u64 {
        self.seq.load(Ordering::Acquire)
    }

    fn next(&self) -> u64 {
        self.seq.fetch_add(1, Ordering::AcqRel) + 1
    }

    pub fn target(&self, mac: MacAddr) -> Option<Option<BootTarget>> {
        if !self.on() {
            return None;
        }
        let inner = self.inner();
        let c = inner.targets.get(&mac)?;
        let server = c.value.as_ref().map(|t| t.server_id);
        inner.fresh(c, server, false).then(|| c.value.clone())
    }

    pub fn keep_target(&self, mac: MacAddr, value: Option<BootTarget>, seen: u64) {
        if !self.on() {
            return;
        }
        let mut inner = self.inner();
        inner.make_room(self.begin());
        inner.targets.insert(
            mac,
            Cached {
                value,
                seen,
                at: Instant::now(),
            },
        );
    }

    pub fn served(&self, via: Via, path: &str) -> Option<Option<ServedRow>> {
        if !self.on() {
            return None;
        }
        let inner = self.inner();
        let c = inner.served.get(&via)?.get(path)?;
        inner.served_fresh(via, path, c).then(|| c.value.clone())
    }

    pub fn keep_served(&self, via: Via, path: &str, value: Option<ServedRow>, seen: u64) {
        if !self.on() {
            return;
        }
        let mut inner = self.inner();
        inner.make_room(self.begin());
        inner.served.entry(via).or_default().insert(
            path.to_string(),
            Cached {
                value,
                seen,
                at: Instant::now(),
            },
        );
    }

    /// A server's target changed: a deployment of it started (it serves
    /// nothing yet: each file it serves is marked as it comes).
    pub fn changed_server(&self, server_id: i64) {
        if !self.on() {
            return;
        }
        let seq = self.next();
        self.inner().servers.insert(server_id, seq);
        self.marked.fetch_add(1, Ordering::Relaxed);
    }

    /// Deployment `deployment_id` of server `server_id` started, ended or
    /// changed a pxelinux config it serves: the server's target, and the
    /// files the deployment serves, are read again.
    pub fn changed_deployment(&self, server_id: i64, deployment_id: i64) {
        if !self.on() {
            return;
        }
        let seq = self.next();
        let mut inner = self.inner();
        inner.make_room(seq);
        inner.servers.insert(server_id, seq);
        inner.deployments.insert(deployment_id, seq);
        self.marked.fetch_add(1, Ordering::Relaxed);
    }

    /// The file served at `path` was added, replaced or removed.
    pub fn changed_file(&self, via: Via, path: &str) {
        if !self.on() {
            return;
        }
        let seq = self.next();
        let mut inner = self.inner();
        inner.make_room(seq);
        inner
            .paths
            .entry(via)
            .or_default()
            .insert(path.to_string(), seq);
    }

    /// Files served were added or removed, which ones unknown.
    pub fn changed_files(&self) {
        if !self.on() {
            return;
        }
        let seq = self.next();
        self.inner().files = seq;
    }

    /// The inventory changed (servers, interfaces, networks, locations, an
    /// import): everything is read again.
    pub fn changed_all(&self) {
        if !self.on() {
            return;
        }
        let seq = self.next();
        let mut inner = self.inner();
        inner.all = seq;
        inner.targets.clear();
        inner.served.clear();
        inner.servers.clear();
        self.marked.fetch_add(REWARM, Ordering::Relaxed);
    }

    /// How many targets were marked since the last call.
    pub fn take_marked(&self) -> usize {
        self.marked.swap(0, Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(server_id: i64) -> BootTarget {
        BootTarget {
            server_id,
            fqdn: "n1.example.com".parse().unwrap(),
            interface: "eth0".into(),
            mac: mac(1),
            reservation: None,
            deployment: None,
            pxelinux: false,
        }
    }

    fn mac(n: u8) -> MacAddr {
        MacAddr::new([0x52, 0x54, 0, 0, 0, n])
    }

    #[test]
    fn an_entry_lives_until_a_change_that_concerns_it() {
        let index = BootIndex::new(true);
        let seen = index.begin();
        index.keep_target(mac(1), Some(target(7)), seen);
        index.keep_target(mac(2), None, seen);
        assert_eq!(index.target(mac(1)), Some(Some(target(7))));
        assert_eq!(index.target(mac(2)), Some(None));
        // Another server's change leaves both.
        index.changed_server(8);
        assert!(index.target(mac(1)).is_some() && index.target(mac(2)).is_some());
        index.changed_server(7);
        assert_eq!(index.target(mac(1)), None);
        assert_eq!(index.target(mac(2)), Some(None));
        // An inventory change: an unknown MAC may be known now.
        index.changed_all();
        assert_eq!(index.target(mac(2)), None);
    }

    #[test]
    fn a_read_that_raced_a_write_is_not_kept_past_it() {
        let index = BootIndex::new(true);
        // A reader starts, a write to its server commits and marks, then
        // the reader keeps what it read before the commit.
        let seen = index.begin();
        index.changed_server(7);
        index.keep_target(mac(1), Some(target(7)), seen);
        assert_eq!(index.target(mac(1)), None);
        // Read after the mark, it is kept.
        let seen = index.begin();
        index.keep_target(mac(1), Some(target(7)), seen);
        assert!(index.target(mac(1)).is_some());
    }

    #[test]
    fn served_files_follow_every_change_of_files() {
        let index = BootIndex::new(true);
        let row = ServedRow {
            id: 1,
            deployment_id: 3,
            version: OffsetDateTime::UNIX_EPOCH,
            file: None,
        };
        let seen = index.begin();
        index.keep_served(Via::Http, "ipxe/a", Some(row.clone()), seen);
        index.keep_served(Via::Tftp, "undionly.kpxe", None, seen);
        assert_eq!(index.served(Via::Http, "ipxe/a"), Some(Some(row)));
        assert_eq!(index.served(Via::Http, "undionly.kpxe"), None);
        index.changed_files();
        assert_eq!(index.served(Via::Http, "ipxe/a"), None);
        assert_eq!(index.served(Via::Tftp, "undionly.kpxe"), None);
    }

    #[test]
    fn marks_are_counted_for_reading_everything_again() {
        let index = BootIndex::new(true);
        index.changed_server(1);
        index.changed_deployment(2, 20);
        index.changed_file(Via::Http, "ipxe/x");
        assert_eq!(index.take_marked(), 2);
        assert_eq!(index.take_marked(), 0);
        index.changed_all();
        assert!(index.take_marked() >= REWARM);
        // Off, nothing is marked.
        let off = BootIndex::notified();
        off.changed_server(1);
        assert_eq!(off.take_marked(), 0);
    }

    #[test]
    fn a_disabled_index_keeps_nothing() {
        let index = BootIndex::new(false);
        index.keep_target(mac(1), Some(target(7)), index.begin());
        assert_eq!(index.target(mac(1)), None);
        // Turned on, it keeps; a read begun before is not kept.
        let early = index.begin();
        index.set_enabled(true);
        index.keep_target(mac(1), Some(target(7)), early);
        assert_eq!(index.target(mac(1)), None);
        index.keep_target(mac(1), Some(target(7)), index.begin());
        assert!(index.target(mac(1)).is_some());
        index.set_enabled(false);
        assert_eq!(index.target(mac(1)), None);
    }

    #[test]
    fn notices_name_what_changed() {
        let index = BootIndex::new(true);
        let keep =
            |m: u8, server: i64| index.keep_target(mac(m), Some(target(server)), index.begin());
        keep(1, 7);
        keep(2, 8);
        index.notice("server 7");
        assert_eq!(index.target(mac(1)), None);
        assert!(index.target(mac(2)).is_some());
        index.notice("files");
        assert!(index.target(mac(2)).is_some());
        index.notice("server x");
        assert_eq!(index.target(mac(2)), None);
    }

    fn served_row(deployment_id: i64) -> ServedRow {
        ServedRow {
            id: deployment_id * 10,
            deployment_id,
            version: OffsetDateTime::UNIX_EPOCH,
            file: None,
        }
    }

    #[test]
    fn a_file_or_a_deployment_marks_only_its_own_entries() {
        let index = BootIndex::new(true);
        let keep_all = || {
            let seen = index.begin();
            index.keep_served(Via::Http, "ipxe/a", Some(served_row(3)), seen);
            index.keep_served(Via::Http, "ipxe/b", Some(served_row(4)), seen);
            index.keep_served(Via::Tftp, "ipxe/a", None, seen);
        };
        let cached = |via, path| index.served(via, path).is_some();
        keep_all();
        // One path served anew: that path (of that listener) only.
        index.changed_file(Via::Http, "ipxe/a");
        assert!(!cached(Via::Http, "ipxe/a"));
        assert!(cached(Via::Http, "ipxe/b") && cached(Via::Tftp, "ipxe/a"));
        keep_all();
        // Deployment 4 ended: what it served, not the paths nobody serves.
        index.changed_deployment(9, 4);
        assert!(!cached(Via::Http, "ipxe/b"));
        assert!(cached(Via::Http, "ipxe/a") && cached(Via::Tftp, "ipxe/a"));
        keep_all();
        // A deployment starting serves nothing yet: files stay.
        index.changed_server(9);
        assert!(cached(Via::Http, "ipxe/a") && cached(Via::Http, "ipxe/b"));
        // Another daemon's notices, the new forms and the older ones.
        index.notice("file tftp ipxe/a");
        assert!(!cached(Via::Tftp, "ipxe/a") && cached(Via::Http, "ipxe/a"));
        keep_all();
        index.notice("server 9 3");
        assert!(!cached(Via::Http, "ipxe/a") && cached(Via::Http, "ipxe/b"));
        keep_all();
        index.notice("file http with a space");
        assert!(cached(Via::Http, "ipxe/a"));
        index.notice("server 9");
        assert!(!cached(Via::Http, "ipxe/a") && !cached(Via::Tftp, "ipxe/a"));
        keep_all();
        index.notice("file ftp x");
        assert!(!cached(Via::Http, "ipxe/b"));
    }
}
