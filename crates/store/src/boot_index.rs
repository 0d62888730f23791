//! The boot path's answers from memory: what the store knows of a MAC
//! (`BootStore::boot_target`) and which active deployment serves a path
//! (`BootStore::served_file`), each kept with the write sequence at which
//! it was read. Every write that can change them marks what it changed,
//! after its commit: one server (a deployment of it started), one
//! deployment (it ended, or changed a pxelinux config: its server's target
//! and the files it serves), one path served, or everything (an inventory
//! change).
//! An entry read before a later mark that concerns it is read again, so a
//! read that raced a write is never kept past it; an entry no mark
//! concerns is kept. Once every interface has been read in one go
//! (`read_every_target`) and nothing in the inventory changed since, a MAC
//! the index does not hold is no interface's: it is answered "unknown"
//! without a read (a flood of made-up MACs reads nothing and keeps
//! nothing).
//!
//! The index is off (every look-up reads the database) until the daemon
//! turns it on, and it must hear of every writer's change:
//! - On SQLite the writers are this process and the command line
//!   (`import-legacy`) writing the same file. A process whose index is off
//!   leaves word of each change beside the file (`Stamp`); the daemon
//!   looks at it once a second (`check_stamp`) and reads everything again
//!   when it changed.
//! - On PostgreSQL other daemons write too: their changes come as
//!   notifications (migration 0016's triggers, made finer by 0017:
//!   `notice`), and the index is on only while this daemon listens for
//!   them; before that and while the listening connection is lost, every
//!   look-up reads the database.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};

use time::OffsetDateTime;

use crate::boot::BootTarget;
use bootloader_core::model::{MacAddr, Via};

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
}

#[derive(Default)]
struct Inner {
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
    /// The sequence before every interface was read in one go, if no
    /// entry was dropped since (`targets` then holds every MAC that was
    /// an interface's).
    every_target: Option<u64>,
}

impl Inner {
    fn fresh<T>(&self, c: &Cached<T>, server: Option<i64>, files: bool) -> bool {
        c.seen >= self.all
            && (!files || c.seen >= self.files)
            && server.is_none_or(|s| self.servers.get(&s).is_none_or(|m| c.seen >= *m))
    }

    /// Whether a MAC the index does not hold is known to be no
    /// interface's: every interface was read and the inventory has not
    /// changed since.
    fn holds_every_target(&self) -> bool {
        self.every_target.is_some_and(|seen| seen >= self.all)
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
            self.every_target = None;
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
    /// SQLite's word of other processes' writes, and what it said when
    /// last looked at.
    stamp: Option<(Stamp, Mutex<Option<Vec<u8>>>)>,
}

impl BootIndex {
    /// An index that is off (every look-up misses, nothing is kept) until
    /// `set_enabled`.
    pub fn off() -> Self {
        Self {
            enabled: AtomicBool::new(false),
            seq: AtomicU64::new(1),
            marked: AtomicUsize::new(0),
            inner: Mutex::new(Inner::default()),
            misses: Default::default(),
            stamp: None,
        }
    }

    /// An index that, while off, leaves word of every change at `stamp`,
    /// and, while on, reads everything again when another process left
    /// word there (`check_stamp`).
    pub fn with_stamp(stamp: Stamp) -> Self {
        Self {
            stamp: Some((stamp, Mutex::new(None))),
            ..Self::off()
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

    /// Turns the index on (everything read before is read again; whoever
    /// turns it on reads it ahead, `warm_index`, so that is no mark) or
    /// off.
    pub fn set_enabled(&self, on: bool) {
        if on {
            if let Some((stamp, last)) = &self.stamp {
                *last.lock().unwrap_or_else(|e| e.into_inner()) = stamp.read();
            }
            self.enabled.store(true, Ordering::Release);
            self.changed_all();
            self.marked.store(0, Ordering::Relaxed);
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
        let Some(c) = inner.targets.get(&mac) else {
            return inner.holds_every_target().then_some(None);
        };
        let server = c.value.as_ref().map(|t| t.server_id);
        inner.fresh(c, server, false).then(|| c.value.clone())
    }

    pub fn keep_target(&self, mac: MacAddr, value: Option<BootTarget>, seen: u64) {
        if !self.on() {
            return;
        }
        let mut inner = self.inner();
        if value.is_none() && inner.holds_every_target() && !inner.targets.contains_key(&mac) {
            // Answered without it.
            return;
        }
        inner.make_room(self.begin());
        inner.targets.insert(mac, Cached { value, seen });
    }

    /// Every interface's target was just read and kept, the read begun at
    /// `seen`: a MAC the index does not hold is unknown, until the
    /// inventory changes.
    pub fn read_every_target(&self, seen: u64) {
        if !self.on() {
            return;
        }
        let mut inner = self.inner();
        if seen >= inner.all {
            inner.every_target = Some(seen);
        }
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
        inner
            .served
            .entry(via)
            .or_default()
            .insert(path.to_string(), Cached { value, seen });
    }

    /// A server's target changed: a deployment of it started (it serves
    /// nothing yet: each file it serves is marked as it comes).
    pub fn changed_server(&self, server_id: i64) {
        if !self.on() {
            self.leave_word();
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
            self.leave_word();
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
            self.leave_word();
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
        self.marked.fetch_add(1, Ordering::Relaxed);
    }

    /// Files served were added or removed, which ones unknown.
    pub fn changed_files(&self) {
        if !self.on() {
            self.leave_word();
            return;
        }
        let seq = self.next();
        self.inner().files = seq;
    }

    /// The inventory changed (servers, interfaces, networks, locations, an
    /// import): everything is read again.
    pub fn changed_all(&self) {
        if !self.on() {
            self.leave_word();
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

    /// How many targets and paths were marked since the last call.
    pub fn take_marked(&self) -> usize {
        self.marked.swap(0, Ordering::Relaxed)
    }

    /// A change made while off: word of it for the process that serves.
    fn leave_word(&self) {
        if let Some((stamp, _)) = &self.stamp {
            stamp.leave();
        }
    }

    /// Reads everything again if another process left word of a change
    /// since the index turned on or was last looked at. Returns whether.
    pub fn check_stamp(&self) -> bool {
        let Some((stamp, last)) = &self.stamp else {
            return false;
        };
        if !self.on() {
            return false;
        }
        let now = stamp.read();
        let mut last = last.lock().unwrap_or_else(|e| e.into_inner());
        if *last == now {
            return false;
        }
        *last = now;
        drop(last);
        self.changed_all();
        true
    }
}

/// A file beside SQLite's, rewritten by a process that changed what the
/// boot path answers while not serving (the command line), so that the
/// daemon serving the same file reads its index again.
pub struct Stamp {
    path: PathBuf,
}

impl Stamp {
    /// `<database>-changed`, beside the database file.
    pub fn beside(database: &Path) -> Self {
        let mut name = database.file_name().unwrap_or_default().to_os_string();
        name.push("-changed");
        Self {
            path: database.with_file_name(name),
        }
    }

    fn leave(&self) {
        let now = time::OffsetDateTime::now_utc().unix_timestamp_nanos();
        let word = format!("{} {now}\n", std::process::id());
        // A new file renamed over the old one: a process that may write the
        // directory replaces it whoever wrote the last word (root through
        // sudo, or the daemon's user), and a reader never sees half a word.
        let mut fresh = self.path.clone().into_os_string();
        fresh.push(format!(".{}", std::process::id()));
        let fresh = PathBuf::from(fresh);
        let written =
            std::fs::write(&fresh, word).and_then(|()| std::fs::rename(&fresh, &self.path));
        if let Err(e) = written {
            let _ = std::fs::remove_file(&fresh);
            tracing::warn!(
                path = %self.path.display(),
                error = %e,
                "cannot leave word of this change for a daemon serving the same database; restart it to see the change at once"
            );
        }
    }

    /// What the word says now: its file's inode, length and time, and its
    /// text where this process may read it (an operator's `sudo
    /// bootloader import-legacy` leaves a file only root reads; the
    /// daemon, owning the directory, still sees it change).
    fn read(&self) -> Option<Vec<u8>> {
        use std::os::unix::fs::MetadataExt;
        let meta = std::fs::metadata(&self.path).ok()?;
        let mut word = format!(
            "{} {} {}.{}\n",
            meta.ino(),
            meta.len(),
            meta.mtime(),
            meta.mtime_nsec()
        )
        .into_bytes();
        if let Ok(text) = std::fs::read(&self.path) {
            word.extend(text);
        }
        Some(word)
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

    fn on() -> BootIndex {
        let index = BootIndex::off();
        index.set_enabled(true);
        index
    }

    #[test]
    fn an_entry_lives_until_a_change_that_concerns_it() {
        let index = on();
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
        let index = on();
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
        let index = on();
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
        let index = on();
        index.changed_server(1);
        index.changed_deployment(2, 20);
        index.changed_file(Via::Http, "ipxe/x");
        assert_eq!(index.take_marked(), 3);
        assert_eq!(index.take_marked(), 0);
        index.changed_all();
        assert!(index.take_marked() >= REWARM);
        // Off, nothing is marked.
        let off = BootIndex::off();
        off.changed_server(1);
        assert_eq!(off.take_marked(), 0);
    }

    #[test]
    fn a_disabled_index_keeps_nothing() {
        let index = BootIndex::off();
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
        let index = on();
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
        let index = on();
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

    #[test]
    fn once_every_target_was_read_an_absent_mac_is_unknown() {
        let index = on();
        assert_eq!(index.target(mac(9)), None, "not read yet");
        let seen = index.begin();
        index.keep_target(mac(1), Some(target(7)), seen);
        index.read_every_target(seen);
        assert_eq!(index.target(mac(9)), Some(None));
        // Nothing kept for it: a flood of made-up MACs keeps nothing.
        index.keep_target(mac(9), None, index.begin());
        assert_eq!(index.inner().targets.len(), 1);
        // A deployment marks its server's target only.
        index.changed_server(7);
        assert_eq!(index.target(mac(1)), None);
        assert_eq!(index.target(mac(9)), Some(None));
        // The inventory changed: a MAC may be an interface's now.
        index.changed_all();
        assert_eq!(index.target(mac(9)), None);
        // A read of every target that raced an inventory change does not
        // make the index whole.
        let seen = index.begin();
        index.changed_all();
        index.keep_target(mac(1), Some(target(7)), seen);
        index.read_every_target(seen);
        assert_eq!(index.target(mac(9)), None);
    }

    #[test]
    fn word_left_while_off_is_read_by_the_index_that_is_on() {
        let dir = std::env::temp_dir().join(format!("bl-stamp-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let db = dir.join("bootloader.db");
        let serving = BootIndex::with_stamp(Stamp::beside(&db));
        serving.set_enabled(true);
        serving.keep_target(mac(1), Some(target(7)), serving.begin());
        assert!(!serving.check_stamp(), "no word yet");
        // The command line's store: off, its change leaves word.
        let command_line = BootIndex::with_stamp(Stamp::beside(&db));
        command_line.changed_all();
        assert!(dir.join("bootloader.db-changed").exists());
        assert!(serving.check_stamp());
        assert_eq!(serving.target(mac(1)), None, "read again");
        assert!(!serving.check_stamp(), "the same word is read once");
        command_line.changed_server(7);
        assert!(serving.check_stamp(), "every change is word");
        // The serving index's own changes leave none.
        serving.changed_all();
        assert!(!serving.check_stamp());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
