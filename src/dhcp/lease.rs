//! Address allocation for the authoritative server. The rules of which
//! address may be given are pure (`usable`, `Candidates`); `Leases` asks
//! the store, whose conditional claim is the only arbiter: two DISCOVERs,
//! or two daemons on one database, never get the same address.

use std::collections::HashMap;
use std::net::Ipv4Addr;
use std::sync::{Arc, Mutex};

use ipnet::Ipv4Net;

use crate::model::MacAddr;
use crate::store::boot::{LeaseClaim, LeaseState};
use crate::store::{Network, Pool, Store, StoreError};

/// Timers of the authoritative server, in seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LeaseTimes {
    pub lease: u32,
    /// How long an offered address is held for its client.
    pub offer_hold: u32,
    /// How long a declined address stays out of the pool.
    pub decline_hold: u32,
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

/// The pool's addresses, starting after `cursor` and wrapping once.
pub struct Candidates {
    start: u32,
    len: u64,
    first: u64,
    taken: u64,
}

impl Candidates {
    pub fn new(pool: &Pool, cursor: Option<Ipv4Addr>) -> Self {
        let start = u32::from(pool.start);
        let end = u32::from(pool.end);
        let len = u64::from(end.saturating_sub(start)) + 1;
        let first = match cursor {
            Some(c) if in_pool(pool, c) => (u64::from(u32::from(c) - start) + 1) % len,
            _ => 0,
        };
        Self {
            start,
            len,
            first,
            taken: 0,
        }
    }
}

impl Iterator for Candidates {
    type Item = Ipv4Addr;
    fn next(&mut self) -> Option<Ipv4Addr> {
        if self.taken >= self.len {
            return None;
        }
        let offset = (self.first + self.taken) % self.len;
        self.taken += 1;
        Some(Ipv4Addr::from(self.start + offset as u32))
    }
}

/// How the server answers a DHCPREQUEST.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RequestAnswer {
    Ack(Ipv4Addr),
    Nak(String),
    Silent(String),
}

/// The authoritative server's view of leases: the store, plus a cursor per
/// network so that allocation walks the pool instead of rescanning it.
pub struct Leases {
    store: Arc<dyn Store>,
    times: LeaseTimes,
    cursors: Mutex<HashMap<i64, Ipv4Addr>>,
}

impl Leases {
    pub fn new(store: Arc<dyn Store>, times: LeaseTimes) -> Self {
        Self {
            store,
            times,
            cursors: Mutex::new(HashMap::new()),
        }
    }

    pub fn times(&self) -> LeaseTimes {
        self.times
    }

    async fn claim(
        &self,
        net: &Network,
        ip: Ipv4Addr,
        mac: MacAddr,
        state: LeaseState,
        now: i64,
    ) -> Result<bool, StoreError> {
        let secs = match state {
            LeaseState::Bound => self.times.lease,
            _ => self.times.offer_hold,
        };
        self.store
            .claim_lease(&LeaseClaim {
                network_id: net.id,
                ip,
                mac,
                state,
                expires_at: now + i64::from(secs),
                hostname: String::new(),
                now,
            })
            .await
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
    ) -> Result<Option<Ipv4Addr>, StoreError> {
        if let Some(ip) = reserved {
            // Reserved addresses lie outside the pool, so only this client
            // can hold them; the row records the lease.
            return Ok(self
                .claim(net, ip, mac, LeaseState::Offered, now)
                .await?
                .then_some(ip));
        }
        let Some(pool) = net.pool else {
            return Ok(None);
        };
        let ok = |ip: Ipv4Addr| in_pool(&pool, ip) && usable(&net.cidr, net.gateway, server_ip, ip);
        // The client's previous address, then the one it asks for.
        let previous = self
            .store
            .lease_of(net.id, mac)
            .await?
            .filter(|l| l.state != LeaseState::Declined)
            .map(|l| l.ip);
        for ip in previous.into_iter().chain(requested).filter(|ip| ok(*ip)) {
            if self.claim(net, ip, mac, LeaseState::Offered, now).await? {
                return Ok(Some(ip));
            }
        }
        let cursor = self
            .cursors
            .lock()
            .ok()
            .and_then(|c| c.get(&net.id).copied());
        for ip in Candidates::new(&pool, cursor).filter(|ip| ok(*ip)) {
            let free = match self.store.lease_at(net.id, ip).await? {
                None => true,
                Some(l) => !l.is_held(now),
            };
            if free && self.claim(net, ip, mac, LeaseState::Offered, now).await? {
                if let Ok(mut c) = self.cursors.lock() {
                    c.insert(net.id, ip);
                }
                return Ok(Some(ip));
            }
        }
        Ok(None)
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
    ) -> Result<RequestAnswer, StoreError> {
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
                let in_range = net.pool.is_some_and(|p| in_pool(&p, ip))
                    && usable(&net.cidr, net.gateway, server_ip, ip);
                if !in_range {
                    return Ok(RequestAnswer::Nak(format!("{ip} is not in the pool")));
                }
            }
        }
        if self.claim(net, ip, mac, LeaseState::Bound, now).await? {
            Ok(RequestAnswer::Ack(ip))
        } else {
            Ok(RequestAnswer::Nak(format!(
                "{ip} is held by another client"
            )))
        }
    }

    /// The client's newest lease row in the network.
    pub async fn store_lease_of(
        &self,
        net: &Network,
        mac: MacAddr,
    ) -> Result<Option<crate::store::boot::Lease>, StoreError> {
        self.store.lease_of(net.id, mac).await
    }

    pub async fn release(
        &self,
        net: &Network,
        ip: Ipv4Addr,
        mac: MacAddr,
        now: i64,
    ) -> Result<bool, StoreError> {
        self.store.release_lease(net.id, ip, mac, now).await
    }

    pub async fn decline(
        &self,
        net: &Network,
        ip: Ipv4Addr,
        mac: MacAddr,
        now: i64,
    ) -> Result<bool, StoreError> {
        let until = now + i64::from(self.times.decline_hold);
        self.store.decline_lease(net.id, ip, mac, until, now).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pool(a: [u8; 4], b: [u8; 4]) -> Pool {
        Pool {
            start: a.into(),
            end: b.into(),
        }
    }

    #[test]
    fn candidates_walk_from_the_cursor_and_wrap_once() {
        let p = pool([10, 0, 0, 10], [10, 0, 0, 13]);
        let all: Vec<_> = Candidates::new(&p, None).collect();
        assert_eq!(all.len(), 4);
        assert_eq!(all[0], Ipv4Addr::new(10, 0, 0, 10));
        let from: Vec<_> = Candidates::new(&p, Some(Ipv4Addr::new(10, 0, 0, 11))).collect();
        assert_eq!(
            from,
            [12, 13, 10, 11]
                .map(|o| Ipv4Addr::new(10, 0, 0, o))
                .to_vec()
        );
        // A cursor outside the pool (the pool was changed) starts over.
        let outside: Vec<_> = Candidates::new(&p, Some(Ipv4Addr::new(10, 0, 0, 200))).collect();
        assert_eq!(outside, all);
        let one = pool([10, 0, 0, 10], [10, 0, 0, 10]);
        assert_eq!(
            Candidates::new(&one, Some(Ipv4Addr::new(10, 0, 0, 10))).count(),
            1
        );
    }

    #[test]
    fn usable_excludes_network_broadcast_gateway_and_us() {
        let net: Ipv4Net = "10.0.0.0/24".parse().unwrap();
        let gw = Some(Ipv4Addr::new(10, 0, 0, 1));
        let us = Ipv4Addr::new(10, 0, 0, 5);
        for (ip, ok) in [
            ([10, 0, 0, 0], false),
            ([10, 0, 0, 255], false),
            ([10, 0, 0, 1], false),
            ([10, 0, 0, 5], false),
            ([10, 0, 1, 7], false),
            ([10, 0, 0, 7], true),
        ] {
            assert_eq!(usable(&net, gw, us, Ipv4Addr::from(ip)), ok, "{ip:?}");
        }
    }
}
