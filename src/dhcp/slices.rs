//! The slices of each pool this daemon holds when several daemons share
//! one database. A slice (`bootloader_core::dhcp::leases::slice`) is a
//! named hold in the daemons' duty table, `lease-slice/<network>/<first
//! address>`, taken and renewed as the outbox relay's is. The daemon
//! offers free addresses from the slices it holds only, and keeps those
//! offers in its book without writing them, as it does alone on its
//! database; the REQUEST's binding is still a conditional claim committed
//! before the ACK, and stays the arbiter. So a slice lost or misjudged costs
//! a client a NAK at worst, never an address handed out twice.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use bootloader_core::dhcp::leases::{in_pool, slice, slice_count, slice_len};
use bootloader_core::published::inventory::Pool;
use bootloader_store::boot::Lease;
use bootloader_store::{LeaseStore, LockStore};

/// How long a slice is held (seconds), at least; renewed once half of it
/// is left, when an offer needs it.
const HOLD: i64 = 600;
/// Slices asked for in one offer, at most, before it gives up on slices
/// and writes its offer as a claim.
const TRIES: u32 = 4;
/// How long a slice another daemon holds is not asked for again (seconds).
const TAKEN_FOR: i64 = 60;

/// What this daemon holds of one network's pool.
#[derive(Default)]
struct Held {
    pool: Option<Pool>,
    /// Slice index -> held until (unix seconds).
    until: BTreeMap<u32, i64>,
    /// Slices another daemon held when asked -> not asked again before.
    taken: HashMap<u32, i64>,
    /// A slice taken ahead (index, held until), offered from once the
    /// others are full: no request then waits for the store to take one.
    spare: Option<(u32, i64)>,
    /// The order slices were first offered from (a renewal keeps it).
    order: HashMap<u32, u64>,
    next: u64,
}

pub struct Slices {
    locks: Arc<dyn LockStore>,
    /// Takes go through the lease writer's connection (`take_slice`).
    leases: Arc<dyn LeaseStore>,
    /// One request at a time renews.
    renewing: AtomicBool,
    instance: String,
    /// A slice is offered from only while it is held for this much longer
    /// (the offer hold and a margin), so that no other daemon can take
    /// it while an offer made from it stands.
    needed: i64,
    hold: i64,
    networks: Mutex<HashMap<i64, Held>>,
}

impl Slices {
    pub fn new(
        locks: Arc<dyn LockStore>,
        leases: Arc<dyn LeaseStore>,
        instance: String,
        offer_hold: u32,
    ) -> Self {
        let needed = i64::from(offer_hold) + 10;
        Self {
            locks,
            leases,
            renewing: AtomicBool::new(false),
            instance,
            needed,
            hold: HOLD.max(4 * needed),
            networks: Mutex::new(HashMap::new()),
        }
    }

    fn networks(&self) -> std::sync::MutexGuard<'_, HashMap<i64, Held>> {
        self.networks.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn name(network: i64, part: &Pool) -> String {
        format!("lease-slice/{network}/{}", part.start)
    }

    /// The slices of `pool` held for long enough to offer from, the one
    /// taken last at the end, renewing first those with half their hold or
    /// less left (one request at a time; the others go on meanwhile).
    pub async fn held(&self, network: i64, pool: &Pool, now: i64) -> Vec<Pool> {
        let due: Vec<u32> = {
            let mut networks = self.networks();
            cut(&mut networks, network, pool)
                .until
                .iter()
                .filter(|(_, until)| **until - now < self.hold / 2)
                .map(|(k, _)| *k)
                .collect()
        };
        let renewing = !due.is_empty()
            && self
                .renewing
                .compare_exchange(false, true, Ordering::AcqRel, Ordering::Acquire)
                .is_ok();
        for k in due.into_iter().filter(|_| renewing) {
            let Some(part) = slice(pool, k) else { continue };
            let kept = self
                .locks
                .hold_lock(
                    &Self::name(network, &part),
                    &self.instance,
                    now,
                    now + self.hold,
                )
                .await;
            let mut networks = self.networks();
            let held = cut(&mut networks, network, pool);
            match kept {
                Ok(true) => {
                    held.until.insert(k, now + self.hold);
                }
                Ok(false) => {
                    tracing::warn!(network, slice = %part.start, "a pool slice this daemon held is another daemon's now");
                    held.until.remove(&k);
                }
                // Kept while it lasts; renewed at the next offer.
                Err(e) => tracing::warn!(network, error = %e, "cannot renew a pool slice"),
            }
        }
        if renewing {
            self.renewing.store(false, Ordering::Release);
        }
        let networks = self.networks();
        let Some(held) = networks.get(&network) else {
            return Vec::new();
        };
        let mut usable: Vec<(u64, u32)> = held
            .until
            .iter()
            .filter(|(_, until)| **until - now > self.needed)
            .map(|(k, _)| (held.order.get(k).copied().unwrap_or(0), *k))
            .collect();
        // The slice first offered from last comes last.
        usable.sort_unstable();
        usable
            .into_iter()
            .filter_map(|(_, k)| slice(pool, k))
            .collect()
    }

    /// Takes one more slice of `pool`, starting at a place of its own so
    /// that daemons starting together ask for different ones; it is
    /// offered from once `adopt`ed. `None` when none could be taken (other
    /// daemons hold them, or the store did not answer).
    pub async fn take(
        &self,
        network: i64,
        pool: &Pool,
        now: i64,
    ) -> Option<(u32, Pool, Vec<Lease>)> {
        let count = slice_count(pool);
        if count == 0 {
            return None;
        }
        let first = self
            .instance
            .bytes()
            .fold(0u32, |h, b| h.wrapping_mul(31).wrapping_add(u32::from(b)))
            % count;
        let candidates: Vec<u32> = {
            let mut networks = self.networks();
            let held = cut(&mut networks, network, pool);
            (0..count)
                .map(|i| (first + i) % count)
                .filter(|k| {
                    !held.until.contains_key(k)
                        && held.spare.is_none_or(|(s, _)| s != *k)
                        && held.taken.get(k).is_none_or(|t| *t <= now)
                })
                .take(TRIES as usize)
                .collect()
        };
        for k in candidates {
            let part = slice(pool, k)?;
            match self
                .leases
                .take_slice(
                    &Self::name(network, &part),
                    &self.instance,
                    (now, now + self.hold),
                    network,
                )
                .await
            {
                Ok(Some(rows)) => {
                    cut(&mut self.networks(), network, pool).taken.remove(&k);
                    tracing::debug!(network, slice = %part.start, "pool slice taken");
                    return Some((k, part, rows));
                }
                Ok(None) => {
                    cut(&mut self.networks(), network, pool)
                        .taken
                        .insert(k, now + TAKEN_FOR);
                }
                Err(e) => {
                    tracing::warn!(network, error = %e, "cannot take a pool slice");
                    return None;
                }
            }
        }
        None
    }

    /// Whether `ip` lies in a slice of `pool` this daemon holds at `now`.
    pub fn owns(
        &self,
        network: i64,
        pool: Option<&Pool>,
        ip: std::net::Ipv4Addr,
        now: i64,
    ) -> bool {
        let Some(pool) = pool else { return false };
        let networks = self.networks();
        let Some(held) = networks.get(&network).filter(|h| h.pool == Some(*pool)) else {
            return false;
        };
        let offset = u32::from(ip).wrapping_sub(u32::from(pool.start));
        let k = offset / slice_len(pool);
        in_pool(pool, ip) && held.until.get(&k).is_some_and(|until| *until > now)
    }

    /// Keeps slice `k`, taken at `now`, as the spare.
    pub fn keep_spare(&self, network: i64, pool: &Pool, k: u32, now: i64) {
        cut(&mut self.networks(), network, pool).spare = Some((k, now + self.hold));
    }

    /// Whether a spare is held for `network`.
    pub fn has_spare(&self, network: i64, pool: &Pool) -> bool {
        cut(&mut self.networks(), network, pool).spare.is_some()
    }

    /// Offers from the spare from now on, if there is one held for long
    /// enough; it is the newest slice then.
    pub fn adopt_spare(&self, network: i64, pool: &Pool, now: i64) -> Option<Pool> {
        let mut networks = self.networks();
        let held = cut(&mut networks, network, pool);
        let (k, until) = held.spare.take()?;
        if until - now <= self.needed {
            return None;
        }
        // As held in the store: renewed by `held` once half spent.
        held.until.insert(k, until);
        held.next += 1;
        held.order.insert(k, held.next);
        slice(pool, k)
    }

    /// Offers from slice `k`, taken at `now`, from now on.
    pub fn adopt(&self, network: i64, pool: &Pool, k: u32, now: i64) {
        let mut networks = self.networks();
        let held = cut(&mut networks, network, pool);
        held.until.insert(k, now + self.hold);
        held.next += 1;
        held.order.insert(k, held.next);
    }
}

/// What is held of `network`'s pool; a pool that changed is cut anew (its
/// old slices lapse by themselves).
fn cut<'a>(networks: &'a mut HashMap<i64, Held>, network: i64, pool: &Pool) -> &'a mut Held {
    let held = networks.entry(network).or_default();
    if held.pool != Some(*pool) {
        *held = Held {
            pool: Some(*pool),
            ..Held::default()
        };
    }
    held
}
