//! The boot timeline: every DHCP, TFTP and HTTP event of a machine, kept
//! in the store so that an operator can see why a machine did not boot.
//!
//! Recording never waits on the database: events go through a bounded
//! queue to one writer task that stores them in batches. When the queue is
//! full (the store is down or far behind) events are dropped and counted,
//! never the packets that caused them. The timeline also remembers which
//! MAC holds which address, so that TFTP and HTTP requests, which carry
//! only an address, are filed under the right machine.
//!
//! Whoever can reach the boot ports can make events, so what is stored is
//! bounded: the request and detail texts are cut to a few hundred bytes;
//! of one kind of event from one source (same phase, address, MAC,
//! outcome and first word of the request) the first `VERBATIM` of each
//! minute are stored as they came and the rest counted, one summary row
//! at the minute's end; and the table is pruned to `limits.timeline_max_events`
//! rows every minute besides `timeline.retention_days`.

use std::collections::HashMap;
use std::future::Future;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use time::OffsetDateTime;
use tokio::sync::mpsc;

use bootloader_core::model::MacAddr;
use bootloader_core::model::{Outcome, Phase};
use bootloader_store::TimelineStore;
use bootloader_store::boot::BootEvent;

const QUEUE: usize = 8192;
const BATCH: usize = 512;
/// How long the writer waits for more events after the first: at light
/// load each event was a transaction of its own, a tenth of a boot's
/// statements.
const LINGER: Duration = Duration::from_millis(200);
/// Only when fewer events than this came at once (a boot storm's writer,
/// waiting 200 ms with a full queue, held lease groups back).
const LINGER_BELOW: usize = 32;
/// While it lingers, the writer looks at the queue this often: it sleeps
/// on a timer rather than waiting on the queue, where each event sent
/// woke it (a light boot storm's timeline was 5 % of the daemon's
/// wake-ups).
const LINGER_STEP: Duration = Duration::from_millis(50);
/// Bytes of a request or detail text kept.
const REQUEST_TEXT: usize = 256;
const DETAIL_TEXT: usize = 512;
/// Events of one kind from one source stored as they came each minute.
const VERBATIM: u32 = 20;
/// Kinds tracked per minute; past this, sources are lumped together (a
/// flood from spoofed addresses).
const KINDS: usize = 4096;
/// How many address-to-MAC pairs are remembered.
const NEIGHBOURS: usize = 65536;
/// How long what `/proc/net/arp` said of an address is believed: reading
/// the table for every request of a machine DHCP did not tell us about
/// (ProxyDHCP, static addresses) cost a request more than the rest of it.
const ARP_AGE: Duration = Duration::from_secs(10);

#[derive(Clone)]
pub struct Timeline {
    inner: Arc<Inner>,
}

struct Inner {
    tx: mpsc::Sender<BootEvent>,
    dropped: AtomicU64,
    neighbours: Mutex<HashMap<Ipv4Addr, MacAddr>>,
    /// What the ARP table said of addresses, and when it was read.
    arp: Mutex<HashMap<Ipv4Addr, (Option<MacAddr>, std::time::Instant)>>,
    kinds: Arc<Mutex<Kinds>>,
}

/// What makes two events "of one kind" for counting.
#[derive(Clone, PartialEq, Eq, Hash)]
struct Kind {
    phase: Phase,
    /// None: many sources lumped together.
    source: Option<IpAddr>,
    mac: Option<MacAddr>,
    outcome: Outcome,
    word: String,
}

/// Counts of the current minute, per kind.
#[derive(Default)]
struct Kinds {
    minute: i64,
    seen: HashMap<Kind, Seen>,
}

struct Seen {
    count: u32,
    /// The last event past `VERBATIM`: the summary shows it.
    last: Option<BootEvent>,
}

impl Kinds {
    /// `event` back if it is stored as it came; past `VERBATIM` of its kind
    /// this minute it is only counted (and kept as the kind's last). A new
    /// minute returns the summaries of the one before.
    fn admit(&mut self, event: BootEvent, source: IpAddr) -> (Option<BootEvent>, Vec<BootEvent>) {
        let minute = event.at.unix_timestamp().div_euclid(60);
        let summaries = if minute != self.minute {
            self.minute = minute;
            self.summaries()
        } else {
            Vec::new()
        };
        let mut kind = Kind {
            phase: event.phase,
            source: Some(source),
            mac: event.mac,
            outcome: event.outcome,
            word: event
                .request
                .split_whitespace()
                .next()
                .unwrap_or("")
                .to_string(),
        };
        if !self.seen.contains_key(&kind) && self.seen.len() >= KINDS {
            kind.source = None;
            kind.mac = None;
        }
        let seen = self.seen.entry(kind).or_insert(Seen {
            count: 0,
            last: None,
        });
        seen.count += 1;
        if seen.count <= VERBATIM {
            return (Some(event), summaries);
        }
        seen.last = Some(event);
        (None, summaries)
    }

    /// One row per kind that went past `VERBATIM`, and a fresh count.
    fn summaries(&mut self) -> Vec<BootEvent> {
        self.seen
            .drain()
            .filter_map(|(kind, seen)| {
                let mut last = seen.last?;
                let more = seen.count - VERBATIM;
                if kind.source.is_none() {
                    last.peer = "(many addresses)".into();
                }
                last.detail = cut(
                    format!(
                        "{more} more like this in that minute, not stored one by one (the last: {})",
                        last.detail
                    ),
                    DETAIL_TEXT,
                );
                Some(last)
            })
            .collect()
    }
}

/// `text` cut to at most `max` bytes on a character boundary, saying how
/// long it was.
fn cut(mut text: String, max: usize) -> String {
    if text.len() <= max {
        return text;
    }
    let len = text.len();
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text.truncate(end);
    text.push_str(&format!("... ({len} bytes)"));
    text
}

impl Timeline {
    /// The recorder and the writer task to spawn. The writer stores until
    /// `shutdown` resolves, then flushes what is queued and returns.
    pub fn new(
        store: Arc<dyn TimelineStore>,
        retention: Retention,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> (Self, impl Future<Output = ()> + Send + 'static) {
        let (tx, rx) = mpsc::channel(QUEUE);
        let kinds = Arc::new(Mutex::new(Kinds::default()));
        let timeline = Self {
            inner: Arc::new(Inner {
                tx,
                dropped: AtomicU64::new(0),
                neighbours: Mutex::new(HashMap::new()),
                arp: Mutex::new(HashMap::new()),
                kinds: kinds.clone(),
            }),
        };
        (timeline, write(store, rx, kinds, retention, shutdown))
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
        let request = cut(request.into(), REQUEST_TEXT);
        crate::telemetry::boot_event(phase, &request, outcome);
        let event = BootEvent {
            at: OffsetDateTime::now_utc(),
            mac,
            peer: peer.to_string(),
            phase,
            request,
            outcome,
            detail: cut(detail.into(), DETAIL_TEXT),
        };
        let (store, summaries) = match self.inner.kinds.lock() {
            Ok(mut kinds) => kinds.admit(event, peer.ip()),
            Err(_) => (Some(event), Vec::new()),
        };
        for e in summaries.into_iter().chain(store) {
            self.queue(e);
        }
    }

    fn queue(&self, event: BootEvent) {
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
        if let Some(known) = self.inner.neighbours.lock().ok()?.get(&ip).copied() {
            return Some(known);
        }
        let now = std::time::Instant::now();
        if let Some((mac, read)) = self.inner.arp.lock().ok()?.get(&ip).copied()
            && now.duration_since(read) < ARP_AGE
        {
            return mac;
        }
        let mac = arp_lookup(ip);
        let mut arp = self.inner.arp.lock().ok()?;
        if arp.len() >= NEIGHBOURS && !arp.contains_key(&ip) {
            arp.clear();
        }
        arp.insert(ip, (mac, now));
        mac
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

/// How long, and how many, timeline rows are kept.
#[derive(Debug, Clone, Copy)]
pub struct Retention {
    pub age: Duration,
    pub max_events: u64,
}

async fn write(
    store: Arc<dyn TimelineStore>,
    mut rx: mpsc::Receiver<BootEvent>,
    kinds: Arc<Mutex<Kinds>>,
    retention: Retention,
    shutdown: impl Future<Output = ()> + Send + 'static,
) {
    tokio::pin!(shutdown);
    let mut prune = tokio::time::interval(Duration::from_secs(60));
    prune.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut batch = Vec::with_capacity(BATCH);
    loop {
        tokio::select! {
            n = rx.recv_many(&mut batch, BATCH) => {
                if n == 0 {
                    return;
                }
                // A quiet daemon waits a little for more, so that its
                // events go in groups too (a boot's dozen in one
                // transaction); a busy one writes at once.
                let until = tokio::time::Instant::now() + LINGER;
                while batch.len() + rx.len() < LINGER_BELOW {
                    let now = tokio::time::Instant::now();
                    if now >= until {
                        break;
                    }
                    tokio::time::sleep((until - now).min(LINGER_STEP)).await;
                }
                while batch.len() < BATCH {
                    match rx.try_recv() {
                        Ok(e) => batch.push(e),
                        Err(_) => break,
                    }
                }
                store_batch(&*store, &mut batch).await;
            }
            _ = prune.tick() => {
                // The counts of a minute that saw no event since.
                let minute = OffsetDateTime::now_utc().unix_timestamp().div_euclid(60);
                let mut summaries = match kinds.lock() {
                    Ok(mut k) if k.minute != minute => {
                        k.minute = minute;
                        k.summaries()
                    }
                    _ => Vec::new(),
                };
                store_batch(&*store, &mut summaries).await;
                let before = OffsetDateTime::now_utc() - retention.age;
                match store.prune_boot_events(before, retention.max_events).await {
                    Ok(0) => {}
                    Ok(n) => tracing::info!(deleted = n, "pruned the boot timeline (age and size)"),
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
                if let Ok(mut k) = kinds.lock() {
                    batch.extend(k.summaries());
                }
                store_batch(&*store, &mut batch).await;
                return;
            }
        }
    }
}

async fn store_batch(store: &dyn TimelineStore, batch: &mut Vec<BootEvent>) {
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

    fn event(at: i64, peer: &str, request: &str) -> BootEvent {
        BootEvent {
            at: OffsetDateTime::from_unix_timestamp(at).unwrap(),
            mac: None,
            peer: peer.into(),
            phase: Phase::Dhcp,
            request: request.into(),
            outcome: Outcome::Refused,
            detail: "no message type".into(),
        }
    }

    #[test]
    fn a_flood_of_one_kind_is_counted_not_stored() {
        let mut kinds = Kinds::default();
        let a: IpAddr = [10, 0, 0, 1].into();
        let b: IpAddr = [10, 0, 0, 2].into();
        let mut stored = 0;
        for i in 0..1000 {
            let (keep, summaries) = kinds.admit(event(60, "10.0.0.1:68", "malformed"), a);
            assert!(summaries.is_empty(), "{i}");
            stored += usize::from(keep.is_some());
        }
        assert_eq!(stored, VERBATIM as usize);
        // Another source, or another kind, has its own count.
        assert!(
            kinds
                .admit(event(61, "10.0.0.2:68", "malformed"), b)
                .0
                .is_some()
        );
        assert!(
            kinds
                .admit(event(61, "10.0.0.1:68", "DHCPDISCOVER x"), a)
                .0
                .is_some()
        );
        // The next minute starts afresh and reports the last one's count.
        let (keep, summaries) = kinds.admit(event(120, "10.0.0.1:68", "malformed"), a);
        assert!(keep.is_some());
        assert_eq!(summaries.len(), 1);
        assert!(
            summaries[0].detail.starts_with("980 more like this"),
            "{}",
            summaries[0].detail
        );
    }

    #[test]
    fn spoofed_sources_are_lumped_together_past_the_table() {
        let mut kinds = Kinds::default();
        let mut stored = 0;
        for i in 0..(KINDS as u32 + 10_000) {
            let ip: IpAddr = Ipv4Addr::from(0x0a00_0000 + i).into();
            stored += usize::from(kinds.admit(event(60, "x", "malformed"), ip).0.is_some());
        }
        assert_eq!(stored, KINDS + VERBATIM as usize);
        let summaries = kinds.summaries();
        assert_eq!(summaries.len(), 1);
        assert_eq!(summaries[0].peer, "(many addresses)");
    }

    #[test]
    fn long_texts_are_cut_on_a_character_boundary() {
        assert_eq!(cut("short".into(), 10), "short");
        let long = "é".repeat(300);
        let c = cut(long, 255);
        assert!(c.starts_with(&"é".repeat(127)), "{c}");
        assert!(c.ends_with("... (600 bytes)"), "{c}");
    }

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
