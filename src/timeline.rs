//! The boot timeline: every DHCP, TFTP and HTTP event of a machine, kept
//! in the store so that an operator can see why a machine did not boot.
//!
//! Recording never waits on the database: events go through a bounded
//! queue to one writer task that stores them in batches. When the queue is
//! full (the store is down or far behind) events are dropped and counted,
//! never the packets that caused them. The timeline also remembers which
//! MAC holds which address, so that TFTP and HTTP requests, which carry
//! only an address, are filed under the right machine.

use std::collections::HashMap;
use std::future::Future;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use time::OffsetDateTime;
use tokio::sync::mpsc;

use crate::model::MacAddr;
use crate::store::Store;
use crate::store::boot::{BootEvent, Outcome, Phase};

const QUEUE: usize = 8192;
const BATCH: usize = 512;
/// How many address-to-MAC pairs are remembered.
const NEIGHBOURS: usize = 65536;

#[derive(Clone)]
pub struct Timeline {
    inner: Arc<Inner>,
}

struct Inner {
    tx: mpsc::Sender<BootEvent>,
    dropped: AtomicU64,
    neighbours: Mutex<HashMap<Ipv4Addr, MacAddr>>,
}

impl Timeline {
    /// The recorder and the writer task to spawn. The writer stores until
    /// `shutdown` resolves, then flushes what is queued and returns.
    pub fn new(
        store: Arc<dyn Store>,
        retention: Duration,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> (Self, impl Future<Output = ()> + Send + 'static) {
        let (tx, rx) = mpsc::channel(QUEUE);
        let timeline = Self {
            inner: Arc::new(Inner {
                tx,
                dropped: AtomicU64::new(0),
                neighbours: Mutex::new(HashMap::new()),
            }),
        };
        (timeline, write(store, rx, retention, shutdown))
    }

    /// Queues one event.
    pub fn record(
        &self,
        phase: Phase,
        mac: Option<MacAddr>,
        peer: SocketAddr,
        request: impl Into<String>,
        outcome: Outcome,
        detail: impl Into<String>,
    ) {
        let request = request.into();
        crate::telemetry::boot_event(phase, &request, outcome);
        let event = BootEvent {
            at: OffsetDateTime::now_utc(),
            mac,
            peer: peer.to_string(),
            phase,
            request,
            outcome,
            detail: detail.into(),
        };
        if self.inner.tx.try_send(event).is_err() {
            crate::telemetry::timeline_dropped();
            let n = self.inner.dropped.fetch_add(1, Ordering::Relaxed) + 1;
            if n.is_power_of_two() {
                tracing::warn!(dropped = n, "boot timeline queue full: events dropped");
            }
        }
    }

    /// Events dropped because the queue was full.
    pub fn dropped(&self) -> u64 {
        self.inner.dropped.load(Ordering::Relaxed)
    }

    /// Remembers that `mac` holds `ip` (from DHCP).
    pub fn learn(&self, ip: Ipv4Addr, mac: MacAddr) {
        if let Ok(mut n) = self.inner.neighbours.lock() {
            if n.len() >= NEIGHBOURS && !n.contains_key(&ip) {
                n.clear();
            }
            n.insert(ip, mac);
        }
    }

    /// The MAC behind an address: what DHCP saw, else the kernel's ARP
    /// table (ProxyDHCP never sees the address a client got).
    pub fn mac_of(&self, ip: IpAddr) -> Option<MacAddr> {
        let IpAddr::V4(ip) = ip else { return None };
        let known = self.inner.neighbours.lock().ok()?.get(&ip).copied();
        known.or_else(|| arp_lookup(ip))
    }
}

/// Reads `/proc/net/arp` (of this network namespace) for `ip`.
fn arp_lookup(ip: Ipv4Addr) -> Option<MacAddr> {
    let table = std::fs::read_to_string("/proc/net/arp").ok()?;
    parse_arp(&table, ip)
}

fn parse_arp(table: &str, ip: Ipv4Addr) -> Option<MacAddr> {
    let wanted = ip.to_string();
    table.lines().skip(1).find_map(|line| {
        let cols: Vec<&str> = line.split_whitespace().collect();
        // IP address, HW type, Flags, HW address, Mask, Device
        if cols.len() >= 4 && cols[0] == wanted && cols[2] != "0x0" {
            cols[3]
                .parse()
                .ok()
                .filter(|m: &MacAddr| m.octets() != [0; 6])
        } else {
            None
        }
    })
}

async fn write(
    store: Arc<dyn Store>,
    mut rx: mpsc::Receiver<BootEvent>,
    retention: Duration,
    shutdown: impl Future<Output = ()> + Send + 'static,
) {
    tokio::pin!(shutdown);
    let mut prune = tokio::time::interval(Duration::from_secs(3600));
    let mut batch = Vec::with_capacity(BATCH);
    loop {
        tokio::select! {
            n = rx.recv_many(&mut batch, BATCH) => {
                if n == 0 {
                    return;
                }
                store_batch(&*store, &mut batch).await;
            }
            _ = prune.tick() => {
                let before = OffsetDateTime::now_utc() - retention;
                match store.prune_boot_events(before).await {
                    Ok(0) => {}
                    Ok(n) => tracing::info!(deleted = n, "pruned old boot timeline events"),
                    Err(e) => tracing::warn!(error = %e, "cannot prune the boot timeline"),
                }
            }
            () = &mut shutdown => {
                while let Ok(e) = rx.try_recv() {
                    batch.push(e);
                    if batch.len() == BATCH {
                        store_batch(&*store, &mut batch).await;
                    }
                }
                store_batch(&*store, &mut batch).await;
                return;
            }
        }
    }
}

async fn store_batch(store: &dyn Store, batch: &mut Vec<BootEvent>) {
    if batch.is_empty() {
        return;
    }
    // One retry: a busy database usually clears; a down one loses this
    // batch of timeline entries (logged), never a lease.
    for attempt in 0..2 {
        match store.record_boot_events(batch).await {
            Ok(()) => break,
            Err(e) if attempt == 0 => {
                tracing::debug!(error = %e, "boot timeline write failed, retrying");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Err(e) => {
                tracing::warn!(error = %e, lost = batch.len(), "cannot store boot timeline events");
            }
        }
    }
    batch.clear();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_complete_arp_entries_only() {
        let table = "IP address       HW type     Flags       HW address            Mask     Device\n\
                     10.0.0.7         0x1         0x2         52:54:00:aa:bb:cc     *        br0\n\
                     10.0.0.8         0x1         0x0         00:00:00:00:00:00     *        br0\n";
        assert_eq!(
            parse_arp(table, Ipv4Addr::new(10, 0, 0, 7)).map(|m| m.to_string()),
            Some("52:54:00:aa:bb:cc".to_string())
        );
        assert_eq!(parse_arp(table, Ipv4Addr::new(10, 0, 0, 8)), None);
        assert_eq!(parse_arp(table, Ipv4Addr::new(10, 0, 0, 9)), None);
    }
}
