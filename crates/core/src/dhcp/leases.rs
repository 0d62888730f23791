//! One network's leases as this daemon knows them, and the rules of which
//! address a client may be given. `LeaseBook::choose` is the only place an
//! address is picked: it never asks the database, so a DISCOVER costs no
//! read and concurrent DISCOVERs never pick the same address. The book is
//! filled from the store's rows at start and told of every change this
//! daemon commits; the store's conditional claim stays the arbiter for
//! what the book cannot know (another daemon on a shared database).

use std::collections::HashMap;
use std::net::Ipv4Addr;

use ipnet::Ipv4Net;

use crate::model::{LeaseState, MacAddr};
use crate::published::boot::Lease;
use crate::published::inventory::Pool;

/// Which addresses of a network may be handed out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Range {
    pub cidr: Ipv4Net,
    pub gateway: Option<Ipv4Addr>,
    /// Our own address on the link.
    pub server_ip: Ipv4Addr,
    pub pool: Option<Pool>,
}

impl Range {
    /// Whether `ip` may be handed out from the pool: inside it, not the
    /// network or broadcast address, not the gateway, not ours.
    pub fn offers(&self, ip: Ipv4Addr) -> bool {
        self.pool.is_some_and(|p| in_pool(&p, ip))
            && usable(&self.cidr, self.gateway, self.server_ip, ip)
    }
}

/// Whether `ip` may be handed out in `net` at all: inside the network, not
/// its network or broadcast address, not the gateway, not ours.
pub fn usable(net: &Ipv4Net, gateway: Option<Ipv4Addr>, server_ip: Ipv4Addr, ip: Ipv4Addr) -> bool {
    net.contains(&ip)
        && (net.prefix_len() >= 31 || (ip != net.network() && ip != net.broadcast()))
        && Some(ip) != gateway
        && ip != server_ip
}

pub fn in_pool(pool: &Pool, ip: Ipv4Addr) -> bool {
    (pool.start..=pool.end).contains(&ip)
}

/// The pool address after `cursor`, wrapping at the end; the pool's first
/// address when there is no cursor or it lies outside the pool (the pool
/// was changed).
pub fn advance(pool: &Pool, cursor: Option<Ipv4Addr>) -> Ipv4Addr {
    match cursor {
        Some(c) if in_pool(pool, c) && c != pool.end => Ipv4Addr::from(u32::from(c) + 1),
        _ => pool.start,
    }
}

pub fn pool_len(pool: &Pool) -> u64 {
    u64::from(u32::from(pool.end).saturating_sub(u32::from(pool.start))) + 1
}

/// A pool is cut into slices when several daemons share a database: each
/// daemon offers free addresses only from slices it holds, so two daemons
/// never offer one address to two clients. The slice length grows with the
/// pool (a sixteenth of it) between 16 and 1,024 addresses.
pub fn slice_len(pool: &Pool) -> u32 {
    (pool_len(pool) / 16).clamp(16, 1024) as u32
}

/// How many slices `pool` has; the last may be short.
pub fn slice_count(pool: &Pool) -> u32 {
    pool_len(pool).div_ceil(u64::from(slice_len(pool))) as u32
}

/// Slice `k` of `pool`, if it has one.
pub fn slice(pool: &Pool, k: u32) -> Option<Pool> {
    if k >= slice_count(pool) {
        return None;
    }
    let start = u32::from(pool.start) + k * slice_len(pool);
    let end = start
        .saturating_add(slice_len(pool) - 1)
        .min(u32::from(pool.end));
    Some(Pool {
        start: Ipv4Addr::from(start),
        end: Ipv4Addr::from(end),
    })
}

/// What the book holds of one address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Entry {
    pub mac: MacAddr,
    pub state: LeaseState,
    pub expires_at: i64,
}

impl Entry {
    /// Whether the address is someone's at `now`.
    pub fn is_held(&self, now: i64) -> bool {
        self.expires_at > now && self.state != LeaseState::Released
    }

    /// Whether `mac` may take the address at `now`: it is free, or it is
    /// already this client's and not declined. The store's claim applies
    /// the same condition.
    pub fn open_to(&self, mac: MacAddr, now: i64) -> bool {
        !self.is_held(now) || (self.mac == mac && self.state != LeaseState::Declined)
    }
}

/// The address chosen for a DISCOVER.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Choice {
    /// The client holds this address (bound, not expired): offer it as it
    /// stands, without shortening its lease to an offer hold.
    Keep(Ipv4Addr),
    /// Hold this address for the client (an offer).
    Hold(Ipv4Addr),
    /// No address: the pool is exhausted or the network has none.
    Nothing,
}

impl Choice {
    pub fn address(self) -> Option<Ipv4Addr> {
        match self {
            Self::Keep(ip) | Self::Hold(ip) => Some(ip),
            Self::Nothing => None,
        }
    }
}

/// One network's leases.
#[derive(Debug, Default, Clone)]
pub struct LeaseBook {
    by_ip: HashMap<Ipv4Addr, Entry>,
    /// Each client's newest address.
    by_mac: HashMap<MacAddr, Ipv4Addr>,
    cursor: Option<Ipv4Addr>,
}

impl LeaseBook {
    /// The book of a network's stored rows, in any order.
    pub fn from_rows(mut rows: Vec<Lease>) -> Self {
        rows.sort_by_key(|l| (l.updated_at, l.expires_at));
        let mut book = Self::default();
        for l in rows {
            book.by_ip.insert(
                l.ip,
                Entry {
                    mac: l.mac,
                    state: l.state,
                    expires_at: l.expires_at,
                },
            );
            book.by_mac.insert(l.mac, l.ip);
        }
        book
    }

    /// Takes `other`'s leases (read again from the store), keeping this
    /// book's place in the pool.
    pub fn replace(&mut self, other: LeaseBook) {
        let cursor = self.cursor;
        *self = other;
        self.cursor = cursor;
    }

    pub fn len(&self) -> usize {
        self.by_ip.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_ip.is_empty()
    }

    pub fn at(&self, ip: Ipv4Addr) -> Option<Entry> {
        self.by_ip.get(&ip).copied()
    }

    /// The client's newest address and what is held there.
    pub fn of(&self, mac: MacAddr) -> Option<(Ipv4Addr, Entry)> {
        let ip = *self.by_mac.get(&mac)?;
        Some((ip, *self.by_ip.get(&ip)?))
    }

    /// Writes what is now true of `ip` (a change this daemon is committing
    /// or has read back from the store). Binding lets the client's previous
    /// address go, as the store's claim does.
    pub fn set(&mut self, ip: Ipv4Addr, entry: Entry) {
        if let Some(before) = self.by_ip.get(&ip)
            && before.mac != entry.mac
            && self.by_mac.get(&before.mac) == Some(&ip)
        {
            self.by_mac.remove(&before.mac);
        }
        if let Some(previous) = self.by_mac.insert(entry.mac, ip)
            && previous != ip
            && entry.state == LeaseState::Bound
            && let Some(old) = self.by_ip.get_mut(&previous)
            && old.mac == entry.mac
            && matches!(old.state, LeaseState::Offered | LeaseState::Bound)
        {
            old.state = LeaseState::Released;
        }
        self.by_ip.insert(ip, entry);
    }

    /// Puts back what the book held at `ip` before a change that failed,
    /// if nothing else changed the address meanwhile.
    pub fn undo(&mut self, ip: Ipv4Addr, attempted: Entry, before: Option<Entry>) {
        if self.by_ip.get(&ip) != Some(&attempted) {
            return;
        }
        match before {
            Some(e) => {
                self.by_ip.insert(ip, e);
                if e.mac != attempted.mac && self.by_mac.get(&attempted.mac) == Some(&ip) {
                    self.by_mac.remove(&attempted.mac);
                }
            }
            None => {
                self.by_ip.remove(&ip);
                if self.by_mac.get(&attempted.mac) == Some(&ip) {
                    self.by_mac.remove(&attempted.mac);
                }
            }
        }
    }

    /// Forgets `ip` (the store has no row for it).
    pub fn forget(&mut self, ip: Ipv4Addr) {
        if let Some(e) = self.by_ip.remove(&ip)
            && self.by_mac.get(&e.mac) == Some(&ip)
        {
            self.by_mac.remove(&e.mac);
        }
    }

    /// The address to offer `mac`: its reserved one; the one it holds; its
    /// previous one or the one it asks for, if free; else the next free one
    /// after the cursor. `refused` lists addresses the store refused this
    /// client a moment ago (another daemon holds them), to be passed over.
    pub fn choose(
        &mut self,
        range: &Range,
        mac: MacAddr,
        reserved: Option<Ipv4Addr>,
        requested: Option<Ipv4Addr>,
        refused: &[Ipv4Addr],
        now: i64,
    ) -> Choice {
        if let Some(choice) = self.preferred(range, mac, reserved, requested, refused, now) {
            return choice;
        }
        let Some(pool) = range.pool else {
            return Choice::Nothing;
        };
        self.next_free(range, &pool, mac, refused, now)
            .map_or(Choice::Nothing, Choice::Hold)
    }

    /// The address `choose` prefers for `mac` before looking for a free
    /// one: its reserved one, the one it holds, its previous one or the one
    /// it asks for. `Some(Nothing)` when the network has no pool; `None`
    /// when a free address is to be found.
    pub fn preferred(
        &self,
        range: &Range,
        mac: MacAddr,
        reserved: Option<Ipv4Addr>,
        requested: Option<Ipv4Addr>,
        refused: &[Ipv4Addr],
        now: i64,
    ) -> Option<Choice> {
        let current = self.of(mac);
        let held = current
            .filter(|(_, e)| e.mac == mac && e.state == LeaseState::Bound && e.is_held(now))
            .map(|(ip, _)| ip);
        if let Some(ip) = reserved {
            // Reserved addresses lie outside the pool, so only this client
            // can hold them.
            return Some(if held == Some(ip) {
                Choice::Keep(ip)
            } else {
                Choice::Hold(ip)
            });
        }
        if range.pool.is_none() {
            return Some(Choice::Nothing);
        }
        if let Some(ip) = held.filter(|ip| self.fits(range, mac, refused, now, *ip)) {
            return Some(Choice::Keep(ip));
        }
        let previous = current
            .filter(|(_, e)| e.state != LeaseState::Declined)
            .map(|(ip, _)| ip);
        previous
            .into_iter()
            .chain(requested)
            .find(|ip| self.fits(range, mac, refused, now, *ip))
            .map(Choice::Hold)
    }

    /// The next free address of `within` (the pool, or a part of it) after
    /// the cursor, which moves on to it.
    pub fn next_free(
        &mut self,
        range: &Range,
        within: &Pool,
        mac: MacAddr,
        refused: &[Ipv4Addr],
        now: i64,
    ) -> Option<Ipv4Addr> {
        for _ in 0..pool_len(within) {
            let ip = advance(within, self.cursor);
            self.cursor = Some(ip);
            if self.fits(range, mac, refused, now, ip) {
                return Some(ip);
            }
        }
        None
    }

    /// Whether `ip` may be offered to `mac`: in the pool, not refused, and
    /// free or already the client's.
    fn fits(
        &self,
        range: &Range,
        mac: MacAddr,
        refused: &[Ipv4Addr],
        now: i64,
        ip: Ipv4Addr,
    ) -> bool {
        range.offers(ip)
            && !refused.contains(&ip)
            && self.at(ip).is_none_or(|e| e.open_to(mac, now))
    }

    /// Held addresses at `now`.
    pub fn held(&self, now: i64) -> usize {
        self.by_ip.values().filter(|e| e.is_held(now)).count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(o: u8) -> Ipv4Addr {
        Ipv4Addr::new(10, 0, 0, o)
    }

    fn mac(n: u8) -> MacAddr {
        MacAddr::new([0x52, 0x54, 0, 0, 0, n])
    }

    fn range(start: u8, end: u8) -> Range {
        Range {
            cidr: "10.0.0.0/24".parse().unwrap(),
            gateway: Some(ip(1)),
            server_ip: ip(2),
            pool: Some(Pool {
                start: ip(start),
                end: ip(end),
            }),
        }
    }

    fn entry(m: u8, state: LeaseState, expires_at: i64) -> Entry {
        Entry {
            mac: mac(m),
            state,
            expires_at,
        }
    }

    fn row(o: u8, m: u8, state: LeaseState, expires_at: i64, updated_at: i64) -> Lease {
        Lease {
            network_id: 1,
            ip: ip(o),
            mac: mac(m),
            state,
            expires_at,
            hostname: String::new(),
            updated_at,
        }
    }

    #[test]
    fn the_cursor_advances_and_wraps() {
        let p = Pool {
            start: ip(10),
            end: ip(13),
        };
        assert_eq!(advance(&p, None), ip(10));
        assert_eq!(advance(&p, Some(ip(11))), ip(12));
        assert_eq!(advance(&p, Some(ip(13))), ip(10));
        // A cursor outside the pool (the pool was changed) starts over.
        assert_eq!(advance(&p, Some(ip(200))), ip(10));
        assert_eq!(pool_len(&p), 4);
        let one = Pool {
            start: ip(10),
            end: ip(10),
        };
        assert_eq!(advance(&one, Some(ip(10))), ip(10));
        assert_eq!(pool_len(&one), 1);
    }

    #[test]
    fn usable_excludes_network_broadcast_gateway_and_us() {
        let net: Ipv4Net = "10.0.0.0/24".parse().unwrap();
        let gw = Some(ip(1));
        for (o, ok) in [(0, false), (255, false), (1, false), (5, false), (7, true)] {
            assert_eq!(usable(&net, gw, ip(5), ip(o)), ok, "{o}");
        }
        assert!(!usable(&net, gw, ip(5), Ipv4Addr::new(10, 0, 1, 7)));
    }

    #[test]
    fn concurrent_discovers_get_different_addresses() {
        let r = range(10, 12);
        let mut book = LeaseBook::default();
        let mut given = Vec::new();
        for m in 1..=3 {
            let Choice::Hold(a) = book.choose(&r, mac(m), None, None, &[], 100) else {
                panic!("no address for {m}");
            };
            book.set(a, entry(m, LeaseState::Offered, 130));
            given.push(a);
        }
        assert_eq!(given, [ip(10), ip(11), ip(12)]);
        // The pool is full until the holds lapse.
        assert_eq!(
            book.choose(&r, mac(4), None, None, &[], 100),
            Choice::Nothing
        );
        assert_eq!(
            book.choose(&r, mac(4), None, None, &[], 130),
            Choice::Hold(ip(10))
        );
    }

    #[test]
    fn a_client_keeps_its_bound_address_and_gets_its_previous_one_back() {
        let r = range(10, 20);
        let mut book = LeaseBook::from_rows(vec![
            row(15, 1, LeaseState::Bound, 1000, 10),
            row(16, 2, LeaseState::Released, 50, 20),
            row(17, 3, LeaseState::Declined, 1000, 30),
        ]);
        assert_eq!(
            book.choose(&r, mac(1), None, None, &[], 100),
            Choice::Keep(ip(15))
        );
        // Its previous address, though released, before the one it asks for.
        assert_eq!(
            book.choose(&r, mac(2), None, Some(ip(18)), &[], 100),
            Choice::Hold(ip(16))
        );
        // Not a declined one: the next free address instead, never a held one.
        assert_eq!(
            book.choose(&r, mac(3), None, Some(ip(15)), &[], 100),
            Choice::Hold(ip(10))
        );
        // A reservation wins, kept as it stands when bound there.
        assert_eq!(
            book.choose(&r, mac(4), Some(ip(200)), None, &[], 100),
            Choice::Hold(ip(200))
        );
        book.set(ip(200), entry(4, LeaseState::Bound, 1000));
        assert_eq!(
            book.choose(&r, mac(4), Some(ip(200)), None, &[], 100),
            Choice::Keep(ip(200))
        );
        // Addresses the store refused are passed over.
        assert_eq!(
            book.choose(&r, mac(5), None, Some(ip(19)), &[ip(19), ip(11)], 100),
            Choice::Hold(ip(12))
        );
    }

    #[test]
    fn binding_lets_the_previous_address_go_and_a_failed_change_is_undone() {
        let mut book = LeaseBook::default();
        book.set(ip(10), entry(1, LeaseState::Offered, 130));
        book.set(ip(11), entry(1, LeaseState::Bound, 1000));
        assert_eq!(book.at(ip(10)).unwrap().state, LeaseState::Released);
        assert_eq!(book.of(mac(1)).unwrap().0, ip(11));
        assert_eq!(book.held(100), 1);
        // Another client takes an expired address over.
        book.set(ip(10), entry(2, LeaseState::Offered, 130));
        let attempted = entry(3, LeaseState::Offered, 130);
        let before = book.at(ip(12));
        book.set(ip(12), attempted);
        book.undo(ip(12), attempted, before);
        assert_eq!(book.at(ip(12)), None);
        assert_eq!(book.of(mac(3)), None);
        // An undo after someone else changed the address leaves it alone.
        let attempted = entry(4, LeaseState::Offered, 130);
        let before = book.at(ip(10));
        book.set(ip(10), attempted);
        book.set(ip(10), entry(5, LeaseState::Offered, 140));
        book.undo(ip(10), attempted, before);
        assert_eq!(book.at(ip(10)).unwrap().mac, mac(5));
        book.forget(ip(10));
        assert_eq!(book.of(mac(5)), None);
    }

    #[test]
    fn slices_cover_the_pool_once() {
        let small = Pool {
            start: ip(10),
            end: ip(59),
        };
        assert_eq!((slice_len(&small), slice_count(&small)), (16, 4));
        assert_eq!(slice(&small, 0).unwrap().end, ip(25));
        assert_eq!(
            slice(&small, 3).unwrap(),
            Pool {
                start: ip(58),
                end: ip(59)
            }
        );
        assert_eq!(slice(&small, 4), None);
        let large = Pool {
            start: Ipv4Addr::new(10, 1, 0, 0),
            end: Ipv4Addr::new(10, 1, 255, 254),
        };
        assert_eq!((slice_len(&large), slice_count(&large)), (1024, 64));
        let last = slice(&large, 63).unwrap();
        assert_eq!(
            (last.start, last.end),
            (Ipv4Addr::new(10, 1, 252, 0), large.end)
        );
        let mid = Pool {
            start: ip(0),
            end: ip(255),
        };
        let mut covered = 0;
        for k in 0..slice_count(&mid) {
            covered += pool_len(&slice(&mid, k).unwrap());
        }
        assert_eq!(covered, 256);
    }

    #[test]
    fn a_free_address_is_found_within_a_slice() {
        let r = range(10, 40);
        let mut book = LeaseBook::default();
        book.set(ip(20), entry(9, LeaseState::Bound, 1000));
        let part = Pool {
            start: ip(20),
            end: ip(22),
        };
        assert_eq!(book.next_free(&r, &part, mac(1), &[], 100), Some(ip(21)));
        book.set(ip(21), entry(1, LeaseState::Offered, 130));
        assert_eq!(book.next_free(&r, &part, mac(2), &[ip(22)], 100), None);
        // Its held address is preferred wherever it lies; with none, the
        // caller looks for a free one.
        assert_eq!(
            book.preferred(&r, mac(9), None, None, &[], 100),
            Some(Choice::Keep(ip(20)))
        );
        assert_eq!(book.preferred(&r, mac(3), None, None, &[], 100), None);
    }

    #[test]
    fn rows_read_back_give_each_client_its_newest_address() {
        let book = LeaseBook::from_rows(vec![
            row(11, 1, LeaseState::Bound, 1000, 20),
            row(10, 1, LeaseState::Released, 15, 15),
            row(12, 3, LeaseState::Offered, 1000, 30),
        ]);
        assert_eq!(book.of(mac(1)).unwrap().0, ip(11));
        assert_eq!(book.of(mac(3)).unwrap().0, ip(12));
        assert_eq!(book.of(mac(2)), None);
        assert_eq!(book.len(), 3);
    }
}
