//! The lease journal: alone on SQLite, a lease change is durable once it is
//! appended to a file, and the reply goes out then; the changes reach the
//! database in larger groups a moment later.
//!
//! Kea's memfile does the same (a line appended to a CSV file, no fsync,
//! before the reply); so is a commit to SQLite's WAL with
//! `synchronous=NORMAL`: the write is in the kernel's hands before the
//! client hears of its lease, it survives the daemon's crash, and a power
//! cut may lose the last moments of either. What the journal saves is the
//! database commit on the reply's path: one `write(2)` of a group's lines
//! instead of a transaction (~0.15-0.4 ms of SQLite's work, two thread
//! hand-offs, and a wait behind any other write holding the one writer).
//!
//! The journal is a directory of segments (`<n>.log`, one JSON line per
//! change). The lease writer appends each group to the current segment;
//! the flusher takes what was appended, starts a new segment, commits the
//! changes through `apply_lease_changes` (the same transaction, the same
//! outbox events) and then deletes the old segment. A change the database
//! did not take stays queued, its segment kept, and is tried again first.
//! At start, before anything reads a lease, segments left by a daemon that
//! died are applied in order and deleted (`Journal::open`). A torn last
//! line (a crash in the middle of a write: its reply was never sent) is
//! skipped and logged.
//!
//! Only a daemon alone on its database keeps a journal: where daemons
//! share PostgreSQL, the store's conditional claim judges each change
//! before its reply, and the journal could not.

use std::collections::VecDeque;
use std::io::Write;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use serde::{Deserialize, Serialize};

use bootloader_core::model::{LeaseState, MacAddr};
use bootloader_store::boot::{Lease, LeaseChange, LeaseClaim};
use bootloader_store::{LeaseStore, Listing, Page, Result as StoreResult, StoreError};

/// How long the flusher lets changes gather after the first one, so that
/// at a trickle of requests it still commits several at once. Nothing
/// waits for it (the journal is the changes' durable copy, and a read
/// commits what was appended first), yet 100 ms, which cut a light
/// storm's lease transactions by two thirds, cost the 10,000-machine
/// storm a quarter more CPU per machine in two runs (BENCHMARKS.md,
/// 2026-12-07, cause not found): kept at 10 ms.
const GATHER: Duration = Duration::from_millis(10);
/// Changes committed in one transaction, at most. A group's size is a
/// power of two up to this (`group_len`): each size is its own statement
/// text, and a few sizes keep every text in the connection's cache of
/// prepared statements (measured: with any size, preparing the statements
/// anew took more of the flush than running them).
const FLUSH_GROUP: usize = 64;
/// How long the flusher waits before trying a change the database did
/// not take again.
const RETRY: Duration = Duration::from_secs(1);

/// One change as a line of the journal.
#[derive(Debug, Serialize, Deserialize, PartialEq)]
#[serde(tag = "op", rename_all = "lowercase")]
enum Line {
    Claim {
        network: i64,
        ip: Ipv4Addr,
        mac: MacAddr,
        state: String,
        expires_at: i64,
        #[serde(default, skip_serializing_if = "String::is_empty")]
        hostname: String,
        now: i64,
    },
    Release {
        network: i64,
        ip: Ipv4Addr,
        mac: MacAddr,
        now: i64,
    },
    Decline {
        network: i64,
        ip: Ipv4Addr,
        mac: MacAddr,
        until: i64,
        now: i64,
    },
}

impl Line {
    fn of(change: &LeaseChange) -> Self {
        match change {
            LeaseChange::Claim(c) => Line::Claim {
                network: c.network_id,
                ip: c.ip,
                mac: c.mac,
                state: c.state.as_str().to_string(),
                expires_at: c.expires_at,
                hostname: c.hostname.clone(),
                now: c.now,
            },
            LeaseChange::Release {
                network_id,
                ip,
                mac,
                now,
            } => Line::Release {
                network: *network_id,
                ip: *ip,
                mac: *mac,
                now: *now,
            },
            LeaseChange::Decline {
                network_id,
                ip,
                mac,
                until,
                now,
            } => Line::Decline {
                network: *network_id,
                ip: *ip,
                mac: *mac,
                until: *until,
                now: *now,
            },
        }
    }

    fn change(self) -> Result<LeaseChange, String> {
        Ok(match self {
            Line::Claim {
                network,
                ip,
                mac,
                state,
                expires_at,
                hostname,
                now,
            } => LeaseChange::Claim(LeaseClaim {
                network_id: network,
                ip,
                mac,
                state: state.parse::<LeaseState>()?,
                expires_at,
                hostname,
                now,
            }),
            Line::Release {
                network,
                ip,
                mac,
                now,
            } => LeaseChange::Release {
                network_id: network,
                ip,
                mac,
                now,
            },
            Line::Decline {
                network,
                ip,
                mac,
                until,
                now,
            } => LeaseChange::Decline {
                network_id: network,
                ip,
                mac,
                until,
                now,
            },
        })
    }
}

/// The lines of `changes`, each ending in a newline.
fn encode(changes: &[LeaseChange]) -> Vec<u8> {
    let mut out = Vec::with_capacity(changes.len() * 128);
    for c in changes {
        // A struct of numbers, addresses and strings: it always serializes.
        if serde_json::to_writer(&mut out, &Line::of(c)).is_ok() {
            out.push(b'\n');
        }
    }
    out
}

/// A segment's changes, and what could not be read: (line number, why).
/// A last line without its newline is a write a crash cut short.
fn decode(text: &[u8]) -> (Vec<LeaseChange>, Vec<(usize, String)>) {
    let mut changes = Vec::new();
    let mut bad = Vec::new();
    for (n, line) in text.split(|b| *b == b'\n').enumerate() {
        if line.is_empty() {
            continue;
        }
        let parsed = serde_json::from_slice::<Line>(line)
            .map_err(|e| e.to_string())
            .and_then(Line::change);
        match parsed {
            Ok(c) => changes.push(c),
            Err(e) => bad.push((n + 1, e)),
        }
    }
    (changes, bad)
}

/// `changes` cut into groups for `apply_lease_changes`, in order: at most
/// `FLUSH_GROUP` each, a power of two, and a new group where a client turns to another
/// address than the one it has in the group. A group is applied in
/// address order (its rows are locked so), and a bind releases its
/// client's other addresses: a client's move within one group would be
/// applied out of order, or release the address it moved to.
fn groups(mut changes: &[LeaseChange]) -> Vec<&[LeaseChange]> {
    let mut groups = Vec::new();
    while !changes.is_empty() {
        let n = group_len(changes);
        groups.push(&changes[..n]);
        changes = &changes[n..];
    }
    groups
}

/// The length of the first of `groups`: a power of two.
fn group_len(changes: &[LeaseChange]) -> usize {
    let n = cut(changes);
    1 << (usize::BITS - 1 - n.leading_zeros())
}

/// Where the first group must end, at the latest.
fn cut(changes: &[LeaseChange]) -> usize {
    let mut clients: std::collections::HashMap<(i64, MacAddr), Ipv4Addr> =
        std::collections::HashMap::new();
    for (i, c) in changes.iter().enumerate().take(FLUSH_GROUP) {
        let (network, ip, mac) = match c {
            LeaseChange::Claim(c) => (c.network_id, c.ip, c.mac),
            LeaseChange::Release {
                network_id,
                ip,
                mac,
                ..
            }
            | LeaseChange::Decline {
                network_id,
                ip,
                mac,
                ..
            } => (*network_id, *ip, *mac),
        };
        if clients
            .insert((network, mac), ip)
            .is_some_and(|at| at != ip)
        {
            return i;
        }
    }
    changes.len().min(FLUSH_GROUP)
}

/// Commits `group` in one transaction. If the database refuses it for
/// good (a change of a network deleted meanwhile breaks its foreign key),
/// each change is committed alone and those it refuses are logged and left
/// out, so that one cannot hold back every change after it. Fails only
/// while the database is unavailable: the group is then kept.
async fn apply(store: &dyn LeaseStore, group: &[LeaseChange]) -> StoreResult<()> {
    let held = match store.apply_lease_changes(group).await {
        Ok(held) => held,
        Err(e @ StoreError::Unavailable(_)) => return Err(e),
        Err(e) => {
            tracing::warn!(error = %e, changes = group.len(), "the database refused a group of lease changes; each is tried alone");
            let mut held = Vec::with_capacity(group.len());
            for change in group {
                match store
                    .apply_lease_changes(std::slice::from_ref(change))
                    .await
                {
                    Ok(h) => held.extend(h),
                    Err(e @ StoreError::Unavailable(_)) => return Err(e),
                    Err(e) => {
                        tracing::warn!(error = %e, change = ?change, "a lease change the database refuses is left out");
                        held.push(true);
                    }
                }
            }
            held
        }
    };
    let refused = held.iter().filter(|h| !**h).count();
    if refused > 0 {
        // Alone, the book judged each change as the store does: a refusal
        // means a write to the leases from elsewhere (an operator's SQL).
        tracing::warn!(
            refused,
            "the database refused lease changes the DHCP server had already answered"
        );
    }
    Ok(())
}

/// The segments in `dir`, oldest first.
fn segments(dir: &Path) -> anyhow::Result<Vec<(u64, PathBuf)>> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir).with_context(|| format!("cannot read {}", dir.display()))? {
        let path = entry?.path();
        let n = path
            .file_name()
            .and_then(|n| n.to_str())
            .and_then(|n| n.strip_suffix(".log"))
            .and_then(|n| n.parse::<u64>().ok());
        if let Some(n) = n {
            found.push((n, path));
        }
    }
    found.sort();
    Ok(found)
}

fn segment_path(dir: &Path, n: u64) -> PathBuf {
    dir.join(format!("{n:012}.log"))
}

/// What the writer appends to and the flusher takes from.
struct Open {
    file: std::fs::File,
    segment: u64,
    /// Appended to the current segment, not yet taken by the flusher.
    appended: Vec<LeaseChange>,
}

/// Changes taken from a segment, waiting for the database.
struct Taken {
    segment: u64,
    changes: Vec<LeaseChange>,
    /// How many of them are in the database.
    done: usize,
}

/// The journal of a daemon alone on its database.
pub struct Journal {
    dir: PathBuf,
    store: Arc<dyn LeaseStore>,
    open: Mutex<Open>,
    /// Taken from closed segments, oldest first: the flusher's alone.
    waiting: tokio::sync::Mutex<VecDeque<Taken>>,
    wake: tokio::sync::Notify,
}

impl Journal {
    /// Applies what a previous run left in `dir` to the store, deletes it,
    /// and opens a new segment. Fails only if the directory cannot be used
    /// or the store does not take the changes (the segments are then kept
    /// for the next start).
    pub async fn open(dir: &Path, store: Arc<dyn LeaseStore>) -> anyhow::Result<Arc<Self>> {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
        let left = segments(dir)?;
        let mut next = 1;
        let mut applied = 0;
        for (n, path) in &left {
            next = n + 1;
            let text =
                std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
            let (changes, bad) = decode(&text);
            for (line, why) in bad {
                tracing::warn!(file = %path.display(), line, error = %why, "a lease journal line cannot be read; left out (a write cut short by a crash)");
            }
            for group in groups(&changes) {
                apply(&*store, group).await.with_context(|| {
                    format!("cannot apply the lease journal {}", path.display())
                })?;
            }
            applied += changes.len();
            std::fs::remove_file(path)
                .with_context(|| format!("cannot remove {}", path.display()))?;
        }
        if applied > 0 {
            tracing::info!(
                changes = applied,
                segments = left.len(),
                "lease changes of the last run applied from the journal"
            );
        }
        let file = create(&segment_path(dir, next))?;
        Ok(Arc::new(Self {
            dir: dir.to_path_buf(),
            store,
            open: Mutex::new(Open {
                file,
                segment: next,
                appended: Vec::new(),
            }),
            waiting: tokio::sync::Mutex::new(VecDeque::new()),
            wake: tokio::sync::Notify::new(),
        }))
    }

    /// Appends `changes` in one write: once this returns, they survive
    /// the daemon's crash.
    pub fn append(&self, changes: &[LeaseChange]) -> std::io::Result<()> {
        let bytes = encode(changes);
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        open.file.write_all(&bytes)?;
        open.appended.extend_from_slice(changes);
        drop(open);
        self.wake.notify_one();
        Ok(())
    }

    /// Commits what was appended to the store, in groups, until `stop`
    /// resolves; then commits what is left.
    pub async fn flusher(self: Arc<Self>, stop: impl std::future::Future<Output = ()>) {
        let mut stop = std::pin::pin!(stop);
        let mut stopped = false;
        while !stopped {
            tokio::select! {
                _ = self.wake.notified() => tokio::time::sleep(GATHER).await,
                _ = &mut stop => stopped = true,
            }
            while !stopped && !self.flush().await {
                tokio::select! {
                    _ = tokio::time::sleep(RETRY) => {}
                    _ = &mut stop => stopped = true,
                }
            }
        }
        if !self.flush().await {
            tracing::warn!(dir = %self.dir.display(), "lease changes left in the journal; the next start applies them");
        }
    }

    /// Takes what was appended (a new segment begins) and commits every
    /// taken change in order, deleting each segment once its changes are
    /// in. False if the store did not take a group (it is kept, in order).
    pub async fn flush(&self) -> bool {
        let mut waiting = self.waiting.lock().await;
        if let Some(taken) = self.rotate() {
            waiting.push_back(taken);
        }
        while let Some(taken) = waiting.front_mut() {
            while taken.done < taken.changes.len() {
                let rest = &taken.changes[taken.done..];
                let n = group_len(rest);
                let started = Instant::now();
                let result = apply(&*self.store, &rest[..n]).await;
                crate::telemetry::store_op("lease_group", started.elapsed());
                crate::telemetry::lease_group(n);
                match result {
                    Ok(()) => taken.done += n,
                    Err(e) => {
                        tracing::warn!(error = %e, changes = n, "cannot store lease changes yet; they stay in the journal");
                        return false;
                    }
                }
            }
            let path = segment_path(&self.dir, taken.segment);
            if let Err(e) = std::fs::remove_file(&path) {
                tracing::warn!(file = %path.display(), error = %e, "cannot remove a lease journal segment applied to the database");
            }
            waiting.pop_front();
        }
        true
    }

    /// Closes the current segment if anything was appended to it, opening
    /// the next; its changes. A segment that cannot be created leaves the
    /// current one open (appends go on there) and takes nothing.
    fn rotate(&self) -> Option<Taken> {
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        if open.appended.is_empty() {
            return None;
        }
        let next = open.segment + 1;
        let file = match create(&segment_path(&self.dir, next)) {
            Ok(f) => f,
            Err(e) => {
                tracing::warn!(error = %e, "cannot start a new lease journal segment");
                return None;
            }
        };
        let segment = std::mem::replace(&mut open.segment, next);
        open.file = file;
        Some(Taken {
            segment,
            changes: std::mem::take(&mut open.appended),
            done: 0,
        })
    }
}

/// The leases as the API and the console read them: what was appended is
/// committed first, so that a lease a client was just given is listed.
#[async_trait::async_trait]
impl LeaseStore for Journal {
    async fn lease_of(&self, network_id: i64, mac: MacAddr) -> StoreResult<Option<Lease>> {
        self.flush().await;
        self.store.lease_of(network_id, mac).await
    }

    async fn lease_at(&self, network_id: i64, ip: Ipv4Addr) -> StoreResult<Option<Lease>> {
        self.flush().await;
        self.store.lease_at(network_id, ip).await
    }

    async fn network_leases(&self, network_id: i64) -> StoreResult<Vec<Lease>> {
        self.flush().await;
        self.store.network_leases(network_id).await
    }

    async fn apply_lease_changes(&self, changes: &[LeaseChange]) -> StoreResult<Vec<bool>> {
        self.flush().await;
        self.store.apply_lease_changes(changes).await
    }

    async fn take_slice(
        &self,
        name: &str,
        holder: &str,
        period: (i64, i64),
        network_id: i64,
    ) -> StoreResult<Option<Vec<Lease>>> {
        self.flush().await;
        self.store
            .take_slice(name, holder, period, network_id)
            .await
    }

    async fn list_leases(
        &self,
        network_id: Option<i64>,
        page: Page,
    ) -> StoreResult<Listing<Lease>> {
        self.flush().await;
        self.store.list_leases(network_id, page).await
    }

    async fn held_leases(&self, now: i64) -> StoreResult<Vec<(i64, u64)>> {
        self.flush().await;
        self.store.held_leases(now).await
    }
}

fn create(path: &Path) -> anyhow::Result<std::fs::File> {
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .with_context(|| format!("cannot open the lease journal {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mac(last: u8) -> MacAddr {
        format!("52:54:00:00:00:{last:02x}").parse().unwrap()
    }

    fn changes() -> Vec<LeaseChange> {
        let ip = Ipv4Addr::new(10, 0, 0, 5);
        vec![
            LeaseChange::Claim(LeaseClaim {
                network_id: 3,
                ip,
                mac: mac(1),
                state: LeaseState::Bound,
                expires_at: 1_800_000_600,
                hostname: "node \"7\"\nx".into(),
                now: 1_800_000_000,
            }),
            LeaseChange::Release {
                network_id: 3,
                ip,
                mac: mac(1),
                now: 1_800_000_001,
            },
            LeaseChange::Decline {
                network_id: 3,
                ip,
                mac: mac(2),
                until: 1_800_000_700,
                now: 1_800_000_002,
            },
        ]
    }

    fn lines(changes: &[LeaseChange]) -> Vec<Line> {
        changes.iter().map(Line::of).collect()
    }

    #[test]
    fn changes_read_back_as_written() {
        let written = changes();
        let text = encode(&written);
        assert_eq!(text.iter().filter(|b| **b == b'\n').count(), 3);
        let (read, bad) = decode(&text);
        assert!(bad.is_empty(), "{bad:?}");
        assert_eq!(lines(&read), lines(&written));
    }

    #[test]
    fn groups_end_where_a_client_moves_and_are_powers_of_two() {
        let bind = |o: u8, m: u8| {
            LeaseChange::Claim(LeaseClaim {
                network_id: 1,
                ip: Ipv4Addr::new(10, 0, 0, o),
                mac: mac(m),
                state: LeaseState::Bound,
                expires_at: 2,
                hostname: String::new(),
                now: 1,
            })
        };
        let changes = [bind(9, 1), bind(9, 1), bind(5, 2), bind(8, 1), bind(9, 2)];
        let sizes: Vec<usize> = groups(&changes).iter().map(|g| g.len()).collect();
        assert_eq!(sizes, [2, 2, 1]);
        let many: Vec<LeaseChange> = (0..FLUSH_GROUP + 7).map(|_| bind(7, 3)).collect();
        let sizes: Vec<usize> = groups(&many).iter().map(|g| g.len()).collect();
        assert_eq!(sizes, [FLUSH_GROUP, 4, 2, 1]);
        assert!(groups(&[]).is_empty());
    }

    #[test]
    fn a_torn_last_line_is_left_out() {
        let mut text = encode(&changes());
        text.truncate(text.len() - 20);
        let (read, bad) = decode(&text);
        assert_eq!(lines(&read), lines(&changes()[..2]));
        assert_eq!(bad.len(), 1);
        assert_eq!(bad[0].0, 3);
    }

    #[test]
    fn a_line_of_another_kind_is_named() {
        let mut text = b"{\"op\":\"claim\",\"network\":1}\n".to_vec();
        text.extend(encode(&changes()[1..2]));
        text.extend(b"{\"op\":\"claim\",\"network\":1,\"ip\":\"10.0.0.1\",\"mac\":\"52:54:00:00:00:01\",\"state\":\"lost\",\"expires_at\":1,\"now\":1}\n");
        let (read, bad) = decode(&text);
        assert_eq!(read.len(), 1);
        assert_eq!(
            bad.iter().map(|(n, _)| *n).collect::<Vec<_>>(),
            [1, 3],
            "{bad:?}"
        );
    }
}
