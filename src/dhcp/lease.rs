//! Address allocation for the authoritative server. The rules of which
//! address may be given are pure (`usable`, `advance`); `Leases` asks
//! the store, whose conditional claim is the only arbiter: two DISCOVERs,
//! or two daemons on one database, never get the same address.

use std::collections::HashMap;
use std::net::Ipv4Addr;
use std::sync::{Arc, Mutex};

use ipnet::Ipv4Net;

use bootloader_core::model::LeaseState;
use bootloader_core::model::MacAddr;
use bootloader_store::boot::LeaseClaim;
use bootloader_store::{LeaseStore, Network, Pool, StoreError};

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
    store: Arc<dyn LeaseStore>,
    times: LeaseTimes,
    cursors: Mutex<HashMap<i64, Ipv4Addr>>,
}

impl Leases {
    pub fn new(store: Arc<dyn LeaseStore>, times: LeaseTimes) -> Self {
        Self {
            store,
            times,
            cursors: Mutex::new(HashMap::new()),
        }
    }

    pub fn times(&self) -> LeaseTimes {
        self.times
    }

    fn next_candidate(&self, network_id: i64, pool: &Pool) -> Ipv4Addr {
        let mut cursors = self.cursors.lock().unwrap_or_else(|e| e.into_inner());
        let ip = advance(pool, cursors.get(&network_id).copied());
        cursors.insert(network_id, ip);
        ip
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
        let current = self.store.lease_of(net.id, mac).await?;
        // A client that holds its address (bound, not expired) is offered
        // it as it stands: rewriting its lease to `offered` with the short
        // hold would let it lapse long before its time when no REQUEST
        // follows (firmware that only looks, a client that crashed).
        let held = current
            .as_ref()
            .filter(|l| l.state == LeaseState::Bound && l.is_held(now))
            .map(|l| l.ip);
        if let Some(ip) = reserved {
            if held == Some(ip) {
                return Ok(Some(ip));
            }
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
        if let Some(ip) = held.filter(|ip| ok(*ip)) {
            return Ok(Some(ip));
        }
        // The client's previous address, then the one it asks for.
        let previous = current
            .filter(|l| l.state != LeaseState::Declined)
            .map(|l| l.ip);
        for ip in previous.into_iter().chain(requested).filter(|ip| ok(*ip)) {
            if self.claim(net, ip, mac, LeaseState::Offered, now).await? {
                return Ok(Some(ip));
            }
        }
        // Each attempt takes its own next candidate from the shared cursor,
        // so that concurrent DISCOVERs (a boot storm) try different
        // addresses instead of all racing for the same one, each losing
        // a write transaction per address the others took.
        for _ in 0..pool_len(&pool) {
            let ip = self.next_candidate(net.id, &pool);
            if !ok(ip) {
                continue;
            }
            let free = match self.store.lease_at(net.id, ip).await? {
                None => true,
                Some(l) => !l.is_held(now),
            };
            if free && self.claim(net, ip, mac, LeaseState::Offered, now).await? {
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
    ) -> Result<Option<bootloader_store::boot::Lease>, StoreError> {
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
    fn the_cursor_advances_and_wraps() {
        let p = pool([10, 0, 0, 10], [10, 0, 0, 13]);
        let ip = |o| Ipv4Addr::new(10, 0, 0, o);
        assert_eq!(advance(&p, None), ip(10));
        assert_eq!(advance(&p, Some(ip(11))), ip(12));
        assert_eq!(advance(&p, Some(ip(13))), ip(10));
        // A cursor outside the pool (the pool was changed) starts over.
        assert_eq!(advance(&p, Some(ip(200))), ip(10));
        assert_eq!(pool_len(&p), 4);
        let one = pool([10, 0, 0, 10], [10, 0, 0, 10]);
        assert_eq!(advance(&one, Some(ip(10))), ip(10));
        assert_eq!(pool_len(&one), 1);
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
