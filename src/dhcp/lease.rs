//! Address allocation for the authoritative server. Each network's
//! `LeaseBook` (core) picks addresses from memory; every change is then
//! made durable by the lease writer, which takes the changes of all the
//! requests waiting at that moment at once, and only then is the reply
//! sent: a lease survives the daemon's crash before the client hears of
//! it. Alone on SQLite the writer appends them to the lease journal
//! (`journal.rs`), which commits them to the database a moment later;
//! where daemons share the database it commits them in one transaction.
//! The store's conditional claim stays the arbiter the book cannot be when
//! other daemons share the database: a claim it refuses is read back into
//! the book and another address is tried. Shared, this daemon offers free
//! addresses from the pool slices it holds (`slices.rs`), so that its
//! offers need no write either.

use std::collections::{HashMap, HashSet};
use std::net::Ipv4Addr;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use anyhow::{Context, anyhow};
use tokio::sync::{mpsc, oneshot};

use bootloader_core::dhcp::leases::{Choice, Entry, LeaseBook, Range, in_pool};
use bootloader_core::model::LeaseState;
use bootloader_core::model::MacAddr;
use bootloader_core::published::inventory::Pool;
use bootloader_store::boot::{LeaseChange, LeaseClaim};
use bootloader_store::{LeaseStore, Network};

use super::journal::Journal;
use super::slices::Slices;

/// Timers of the authoritative server, in seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LeaseTimes {
    pub lease: u32,
    /// How long an offered address is held for its client.
    pub offer_hold: u32,
    /// How long a declined address stays out of the pool.
    pub decline_hold: u32,
}

/// How the server answers a DHCPREQUEST.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RequestAnswer {
    Ack(Ipv4Addr),
    Nak(String),
}

/// Changes committed in one transaction, at most.
const GROUP: usize = 512;
/// Addresses another daemon turned out to hold, tried in one offer at most
/// before the offer gives up (the client asks again).
const REFUSALS: usize = 16;

/// A change waiting for the lease writer, and who waits for it.
struct Pending {
    change: LeaseChange,
    done: oneshot::Sender<Result<bool, String>>,
}

/// The authoritative server's leases: a book per network and the writer's
/// queue.
pub struct Leases {
    store: Arc<dyn LeaseStore>,
    times: LeaseTimes,
    /// Other daemons may write leases (a shared PostgreSQL database): an
    /// address the book says is the client's is confirmed in the store
    /// before it is offered again, and the book is read again before the
    /// pool is called exhausted.
    shared: bool,
    /// Shared, the pool slices this daemon offers free addresses from.
    slices: Option<Slices>,
    books: Mutex<HashMap<i64, LeaseBook>>,
    /// Offers held in the book only (network, address): alone on the
    /// database the book is the truth, and an offer is a promise for a
    /// moment, not a lease (as Kea and ISC dhcpd keep them), so it is not
    /// written; the REQUEST that binds it is, before the ACK. Shared, the
    /// offers from this daemon's own slices are kept so too. A decline
    /// of one is written first as the offer it was.
    unwritten: Mutex<HashSet<(i64, Ipv4Addr)>>,
    /// One network's rows are read once, however many requests arrive
    /// before they are.
    loading: tokio::sync::Mutex<()>,
    /// One request at a time takes a pool slice.
    taking: tokio::sync::Mutex<()>,
    queue: mpsc::Sender<Pending>,
    writer: Mutex<Option<mpsc::Receiver<Pending>>>,
    /// Alone on SQLite: changes are durable once appended here, and reach
    /// the database a moment later (`journal.rs`).
    journal: Option<Arc<Journal>>,
}

impl Leases {
    /// `slices`: other daemons share the database, and these are the pool
    /// slices this one holds. `journal`: this daemon is alone on its
    /// database, and commits its changes through the journal.
    pub fn new(
        store: Arc<dyn LeaseStore>,
        times: LeaseTimes,
        slices: Option<Slices>,
        journal: Option<Arc<Journal>>,
    ) -> Self {
        let (queue, writer) = mpsc::channel(4 * GROUP);
        Self {
            store,
            times,
            shared: slices.is_some(),
            slices,
            books: Mutex::new(HashMap::new()),
            unwritten: Mutex::new(HashSet::new()),
            loading: tokio::sync::Mutex::new(()),
            taking: tokio::sync::Mutex::new(()),
            queue,
            writer: Mutex::new(Some(writer)),
            journal,
        }
    }

    pub fn times(&self) -> LeaseTimes {
        self.times
    }

    /// The lease writer, to be run once while the server serves: it takes
    /// every change waiting, commits them in one transaction and tells each
    /// request whether its change held. `None` once taken.
    pub fn writer(&self) -> Option<impl std::future::Future<Output = ()> + Send + 'static> {
        let mut rx = self
            .writer
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()?;
        let store = self.store.clone();
        let journal = self.journal.clone();
        Some(async move {
            let mut group: Vec<Pending> = Vec::with_capacity(GROUP);
            while rx.recv_many(&mut group, GROUP).await > 0 {
                let changes: Vec<LeaseChange> = group.iter().map(|p| p.change.clone()).collect();
                let result = match &journal {
                    // The book judged each change as the store would: each
                    // holds once it is in the journal.
                    Some(journal) => {
                        let started = Instant::now();
                        let appended = journal.append(&changes);
                        crate::telemetry::store_op("lease_journal", started.elapsed());
                        appended
                            .map(|()| vec![true; changes.len()])
                            .map_err(|e| anyhow!("cannot append to the lease journal: {e}"))
                    }
                    None => {
                        let started = Instant::now();
                        let mut result = store.apply_lease_changes(&changes).await;
                        if result.is_err() {
                            // Once more: two daemons' groups can still meet
                            // in a deadlock the database breaks by failing
                            // one.
                            result = store.apply_lease_changes(&changes).await;
                        }
                        crate::telemetry::store_op("lease_group", started.elapsed());
                        crate::telemetry::lease_group(changes.len());
                        result.map_err(anyhow::Error::from)
                    }
                };
                match result {
                    Ok(held) => {
                        for (p, h) in group.drain(..).zip(held) {
                            let _ = p.done.send(Ok(h));
                        }
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, changes = changes.len(), "cannot store leases; their requests go unanswered");
                        let why = e.to_string();
                        for p in group.drain(..) {
                            let _ = p.done.send(Err(why.clone()));
                        }
                    }
                }
            }
        })
    }

    /// Commits one change through the writer.
    async fn commit(&self, change: LeaseChange) -> anyhow::Result<bool> {
        let (done, held) = oneshot::channel();
        self.queue
            .send(Pending { change, done })
            .await
            .map_err(|_| anyhow!("the lease writer has stopped"))?;
        held.await
            .map_err(|_| anyhow!("the lease writer has stopped"))?
            .map_err(|e| anyhow!("cannot store the lease: {e}"))
    }

    fn with_book<T>(&self, network: i64, f: impl FnOnce(&mut LeaseBook) -> T) -> T {
        let mut books = self.books.lock().unwrap_or_else(|e| e.into_inner());
        f(books.entry(network).or_default())
    }

    fn unwritten(&self) -> std::sync::MutexGuard<'_, HashSet<(i64, Ipv4Addr)>> {
        self.unwritten.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Reads the network's rows into its book, the first time it is used.
    async fn load(&self, network: i64) -> anyhow::Result<()> {
        let known = |s: &Self| {
            s.books
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .contains_key(&network)
        };
        if known(self) {
            return Ok(());
        }
        let _one = self.loading.lock().await;
        if !known(self) {
            self.reload(network).await?;
        }
        Ok(())
    }

    /// Replaces the network's book by what the store holds.
    async fn reload(&self, network: i64) -> anyhow::Result<()> {
        let rows = self
            .store
            .network_leases(network)
            .await
            .context("cannot read the network's leases")?;
        let count = rows.len();
        let now = time::OffsetDateTime::now_utc().unix_timestamp();
        let mut book = LeaseBook::from_rows(rows);
        let mut books = self.books.lock().unwrap_or_else(|e| e.into_inner());
        let old = books.entry(network).or_default();
        // Offers never written stand, unless the store now says another
        // client holds the address.
        self.unwritten().retain(|(n, ip)| {
            if *n != network {
                return true;
            }
            match old.at(*ip) {
                Some(offer) if book.at(*ip).is_none_or(|e| e.open_to(offer.mac, now)) => {
                    book.set(*ip, offer);
                    true
                }
                _ => false,
            }
        });
        old.replace(book);
        tracing::debug!(network, leases = count, "leases read from the store");
        Ok(())
    }

    /// Writes `entry` at `ip` in the book and commits it as a claim. A
    /// claim the store refuses (another daemon holds the address) leaves
    /// what the store holds in the book; a failed commit puts back what
    /// was there.
    async fn claim(
        &self,
        network: i64,
        ip: Ipv4Addr,
        entry: Entry,
        now: i64,
    ) -> anyhow::Result<bool> {
        // Written in the book at once, unless the book says another client
        // holds the address: then only once the store has agreed, so that
        // a refused claim never hides that client's lease meanwhile.
        let (before, early) = self.with_book(network, |b| {
            let before = b.at(ip);
            let early = before.is_none_or(|e| e.open_to(entry.mac, now));
            if early {
                b.set(ip, entry);
            }
            (before, early)
        });
        let change = LeaseChange::Claim(LeaseClaim {
            network_id: network,
            ip,
            mac: entry.mac,
            state: entry.state,
            expires_at: entry.expires_at,
            hostname: String::new(),
            now,
        });
        if !early && self.journal.is_some() {
            // Alone, the book is the store's judgement: the address is
            // another client's, and nothing is written.
            return Ok(false);
        }
        let judged = self.commit(change).await;
        if judged.is_ok() {
            self.unwritten().remove(&(network, ip));
        }
        match judged {
            Ok(true) => {
                if !early {
                    self.with_book(network, |b| b.set(ip, entry));
                }
                Ok(true)
            }
            Ok(false) => {
                let row = self.store.lease_at(network, ip).await;
                self.with_book(network, |b| {
                    if early {
                        b.undo(ip, entry, before);
                    }
                    match row {
                        Ok(Some(l)) => b.set(ip, entry_of(&l)),
                        Ok(None) => b.forget(ip),
                        Err(_) => {}
                    }
                });
                Ok(false)
            }
            Err(e) => {
                if early {
                    self.with_book(network, |b| b.undo(ip, entry, before));
                }
                Err(e)
            }
        }
    }

    /// Picks and holds an address for a DISCOVER. `reserved` is the MAC's
    /// fixed address in this network. `None` when the pool is exhausted or
    /// the network has no pool.
    pub async fn offer(
        &self,
        net: &Network,
        server_ip: Ipv4Addr,
        mac: MacAddr,
        reserved: Option<Ipv4Addr>,
        requested: Option<Ipv4Addr>,
        now: i64,
    ) -> anyhow::Result<Option<Ipv4Addr>> {
        self.load(net.id).await?;
        let range = Range {
            cidr: net.cidr,
            gateway: net.gateway,
            server_ip,
            pool: net.pool,
        };
        let mut refused = Vec::new();
        let mut reread = false;
        // Shared: the slices to offer free addresses from, unwritten; once
        // they are full and no other can be taken, the whole pool, each
        // offer a claim written in the store.
        let mut own = match (&self.slices, net.pool) {
            (Some(slices), Some(pool)) => Some(slices.held(net.id, &pool, now).await),
            _ => None,
        };
        let mut takes = 0;
        while refused.len() < REFUSALS {
            let hold = Entry {
                mac,
                state: LeaseState::Offered,
                expires_at: now + i64::from(self.times.offer_hold),
            };
            let choice = self.with_book(net.id, |b| {
                let choice = match &own {
                    Some(own) => b
                        .preferred(&range, mac, reserved, requested, &refused, now)
                        .unwrap_or_else(|| {
                            // The newest slice first: the older ones
                            // filled before it was taken.
                            own.iter()
                                .rev()
                                .find_map(|part| b.next_free(&range, part, mac, &refused, now))
                                .map_or(Choice::Nothing, Choice::Hold)
                        }),
                    None => b.choose(&range, mac, reserved, requested, &refused, now),
                };
                let held = b.at(choice.address().unwrap_or(Ipv4Addr::UNSPECIFIED));
                // Answered from the book, with no write: alone, any offer;
                // shared, one of an address in this daemon's own slices.
                let unwritten = match (choice, &own) {
                    (Choice::Nothing, _) => false,
                    (_, None) => !self.shared,
                    (Choice::Hold(ip) | Choice::Keep(ip), Some(own)) => {
                        reserved.is_none() && own.iter().any(|part| in_pool(part, ip))
                    }
                };
                if let (Choice::Hold(ip), true) = (choice, unwritten) {
                    // Picked and held under one lock: no other request
                    // can pick it meanwhile.
                    b.set(ip, hold);
                }
                (choice, held, unwritten)
            });
            let (ip, entry) = match choice {
                (Choice::Nothing, ..) if own.is_some() => {
                    // This daemon's slices are full: another, else the
                    // whole pool.
                    own = match (net.pool, own.take()) {
                        (Some(pool), Some(seen)) if takes < 4 => {
                            takes += 1;
                            self.more_slices(net.id, &pool, seen, now).await
                        }
                        _ => None,
                    };
                    continue;
                }
                (Choice::Nothing, ..) => {
                    if self.shared && !reread {
                        // Other daemons may have let addresses go.
                        reread = true;
                        self.reload(net.id).await?;
                        continue;
                    }
                    return Ok(None);
                }
                // A client that holds its address (bound, not expired) is
                // offered it as it stands: rewriting its lease to `offered`
                // with the short hold would let it lapse long before its
                // time when no REQUEST follows. Alone on the database, or
                // in this daemon's own slices, the book is the truth;
                // elsewhere, the store confirms it.
                (Choice::Keep(ip), _, true) => return Ok(Some(ip)),
                (Choice::Keep(ip), held, _) => (
                    ip,
                    Entry {
                        mac,
                        state: LeaseState::Bound,
                        expires_at: held.map_or(now, |e| e.expires_at),
                    },
                ),
                (Choice::Hold(ip), _, true) => {
                    self.unwritten().insert((net.id, ip));
                    if let (Some(own), Some(pool)) = (&own, net.pool) {
                        self.take_ahead(net.id, &pool, own, ip, now).await;
                    }
                    return Ok(Some(ip));
                }
                (Choice::Hold(ip), _, false) => (ip, hold),
            };
            if self.claim(net.id, ip, entry, now).await? {
                return Ok(Some(ip));
            }
            if reserved == Some(ip) {
                // Another client's row holds the reservation: wait for it.
                return Ok(None);
            }
            refused.push(ip);
        }
        Ok(None)
    }

    /// The slices to offer from once those in `seen` are full: the ones
    /// another request took meanwhile, else one more taken now (one request
    /// at a time takes, and reads what the store holds there before any
    /// offer is made from it). `None` when none can be had.
    async fn more_slices(
        &self,
        network: i64,
        pool: &Pool,
        seen: Vec<Pool>,
        now: i64,
    ) -> Option<Vec<Pool>> {
        let slices = self.slices.as_ref()?;
        let _one = self.taking.lock().await;
        let mut fresh = slices.held(network, pool, now).await;
        if fresh.iter().any(|part| !seen.contains(part)) {
            return Some(fresh);
        }
        if let Some(part) = slices.adopt_spare(network, pool, now) {
            fresh.retain(|p| *p != part);
            fresh.push(part);
            return Some(fresh);
        }
        let (k, part, rows) = slices.take(network, pool, now).await?;
        self.catch_up(network, &part, rows);
        slices.adopt(network, pool, k, now);
        fresh.push(part);
        Some(fresh)
    }

    /// Takes a spare slice while the newest one still has half its
    /// addresses, unless one is held or another request is taking: the
    /// request that offered `ip` waits for it, the others do not.
    async fn take_ahead(&self, network: i64, pool: &Pool, own: &[Pool], ip: Ipv4Addr, now: i64) {
        let Some(slices) = &self.slices else { return };
        let Some(newest) = own.last() else { return };
        let half = u32::from(newest.start) + (u32::from(newest.end) - u32::from(newest.start)) / 2;
        if !in_pool(newest, ip) || u32::from(ip) < half || slices.has_spare(network, pool) {
            return;
        }
        let Ok(_one) = self.taking.try_lock() else {
            return;
        };
        if slices.has_spare(network, pool) {
            return;
        }
        if let Some((k, part, rows)) = slices.take(network, pool, now).await {
            self.catch_up(network, &part, rows);
            slices.keep_spare(network, pool, k, now);
        }
    }

    /// Writes what the store holds in a slice just taken (`rows`, read in
    /// the take's turn: other daemons may have bound addresses there since
    /// this one read the network) into the book, this daemon's unwritten
    /// offers aside.
    fn catch_up(&self, network: i64, part: &Pool, rows: Vec<bootloader_store::boot::Lease>) {
        let unwritten = self.unwritten().clone();
        let mut rows: Vec<_> = rows.into_iter().filter(|l| in_pool(part, l.ip)).collect();
        // Oldest first, so that each client's newest address is the one kept.
        rows.sort_by_key(|l| (l.updated_at, l.expires_at));
        self.with_book(network, |b| {
            for l in &rows {
                if !unwritten.contains(&(network, l.ip)) {
                    b.set(l.ip, entry_of(l));
                }
            }
        });
    }

    /// Answers a REQUEST for `ip` (the requested address, or ciaddr when
    /// renewing) as RFC 2131 4.3.2 asks.
    pub async fn request(
        &self,
        net: &Network,
        server_ip: Ipv4Addr,
        mac: MacAddr,
        reserved: Option<Ipv4Addr>,
        ip: Ipv4Addr,
        now: i64,
    ) -> anyhow::Result<RequestAnswer> {
        if !net.cidr.contains(&ip) {
            return Ok(RequestAnswer::Nak(format!(
                "{ip} is not on network {}",
                net.cidr
            )));
        }
        match reserved {
            Some(r) if r != ip => {
                return Ok(RequestAnswer::Nak(format!("this client's address is {r}")));
            }
            Some(_) => {}
            None => {
                let range = Range {
                    cidr: net.cidr,
                    gateway: net.gateway,
                    server_ip,
                    pool: net.pool,
                };
                if !range.offers(ip) {
                    return Ok(RequestAnswer::Nak(format!("{ip} is not in the pool")));
                }
            }
        }
        self.load(net.id).await?;
        let taken = self.with_book(net.id, |b| b.at(ip).is_some_and(|e| !e.open_to(mac, now)));
        // Alone, or in this daemon's own slices, the book knows who holds
        // the address (an offer there may be unwritten). Elsewhere on a
        // shared database the book may not know it was let go: the store
        // says.
        let known = !self.shared
            || self.unwritten().contains(&(net.id, ip))
            || self
                .slices
                .as_ref()
                .is_some_and(|s| s.owns(net.id, net.pool.as_ref(), ip, now));
        let entry = Entry {
            mac,
            state: LeaseState::Bound,
            expires_at: now + i64::from(self.times.lease),
        };
        if !(taken && known) && self.claim(net.id, ip, entry, now).await? {
            Ok(RequestAnswer::Ack(ip))
        } else {
            Ok(RequestAnswer::Nak(format!(
                "{ip} is held by another client"
            )))
        }
    }

    /// The address offered to the client and not yet bound, if any.
    pub async fn offered_to(
        &self,
        net: &Network,
        mac: MacAddr,
    ) -> anyhow::Result<Option<Ipv4Addr>> {
        self.load(net.id).await?;
        Ok(self.with_book(net.id, |b| {
            b.of(mac)
                .filter(|(_, e)| e.state == LeaseState::Offered)
                .map(|(ip, _)| ip)
        }))
    }

    /// Frees the client's address (DHCPRELEASE, or an offer it passed
    /// over). Returns whether it held it.
    pub async fn release(
        &self,
        net: &Network,
        ip: Ipv4Addr,
        mac: MacAddr,
        now: i64,
    ) -> anyhow::Result<bool> {
        let change = LeaseChange::Release {
            network_id: net.id,
            ip,
            mac,
            now,
        };
        self.let_go(net, ip, mac, (LeaseState::Released, now), change, now)
            .await
    }

    /// Keeps a declined address out of the pool for the decline hold.
    pub async fn decline(
        &self,
        net: &Network,
        ip: Ipv4Addr,
        mac: MacAddr,
        now: i64,
    ) -> anyhow::Result<bool> {
        let until = now + i64::from(self.times.decline_hold);
        let change = LeaseChange::Decline {
            network_id: net.id,
            ip,
            mac,
            until,
            now,
        };
        self.let_go(net, ip, mac, (LeaseState::Declined, until), change, now)
            .await
    }

    async fn let_go(
        &self,
        net: &Network,
        ip: Ipv4Addr,
        mac: MacAddr,
        (state, expires_at): (LeaseState, i64),
        change: LeaseChange,
        now: i64,
    ) -> anyhow::Result<bool> {
        self.load(net.id).await?;
        let entry = Entry {
            mac,
            state,
            expires_at,
        };
        let before = self.with_book(net.id, |b| {
            let before = b.at(ip);
            let holds = before.is_some_and(|e| {
                e.mac == mac && matches!(e.state, LeaseState::Offered | LeaseState::Bound)
            });
            if holds {
                b.set(ip, entry);
            }
            (holds, before)
        });
        if !before.0 && !self.shared {
            return Ok(false);
        }
        if before.0 && self.unwritten().contains(&(net.id, ip)) {
            if state == LeaseState::Released {
                // An offer passed over that was never written: nothing to
                // write either.
                self.unwritten().remove(&(net.id, ip));
                return Ok(true);
            }
            // A decline is kept: the offer is written first, then let go.
            let offered = before.1.unwrap_or(entry);
            let claim = LeaseChange::Claim(LeaseClaim {
                network_id: net.id,
                ip,
                mac,
                state: LeaseState::Offered,
                expires_at: offered.expires_at,
                hostname: String::new(),
                now,
            });
            match self.commit(claim).await {
                Ok(true) => {
                    self.unwritten().remove(&(net.id, ip));
                }
                other => {
                    self.with_book(net.id, |b| b.undo(ip, entry, before.1));
                    return other;
                }
            }
        }
        let held = self.commit(change).await;
        if !matches!(held, Ok(true)) {
            self.with_book(net.id, |b| b.undo(ip, entry, before.1));
        }
        held
    }
}

fn entry_of(l: &bootloader_store::boot::Lease) -> Entry {
    Entry {
        mac: l.mac,
        state: l.state,
        expires_at: l.expires_at,
    }
}
