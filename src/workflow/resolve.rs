//! The DNS fallback of a template's facts: a server's name resolved to an
//! IPv4 address when an interface has no reservation. Each of a
//! deployment's actions asks for the same name, and a mass start asks for
//! thousands at once, so answers are kept a while. A lookup is the
//! system's resolver (getaddrinfo) on tokio's blocking pool, which also
//! reads the files the daemon serves: at most `LOOKUPS` run at once, each
//! holding its turn until getaddrinfo returns, so a DNS server that does
//! not answer ties up a few threads, never the pool.

use std::collections::HashMap;
use std::net::{Ipv4Addr, ToSocketAddrs};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::Semaphore;

/// How long a caller waits for an answer (its turn included).
const RESOLVE_TIMEOUT: Duration = Duration::from_secs(3);
/// Lookups under way at once.
const LOOKUPS: usize = 8;
/// How long an address is believed.
const ANSWER_KEPT: Duration = Duration::from_secs(60);
/// How long "no address" is believed (no such name, or the resolver did
/// not answer in time).
const NO_ANSWER_KEPT: Duration = Duration::from_secs(30);
/// Names kept; past this, the expired ones go, then all if need be.
const KEPT: usize = 16_384;

pub struct Resolver {
    kept: Mutex<HashMap<String, (Instant, Option<Ipv4Addr>)>>,
    turns: Arc<Semaphore>,
}

impl Default for Resolver {
    fn default() -> Self {
        Self {
            kept: Mutex::new(HashMap::new()),
            turns: Arc::new(Semaphore::new(LOOKUPS)),
        }
    }
}

impl Resolver {
    /// The first IPv4 address the system's resolver gives for `name`, if
    /// it answers in time; `None` too when every lookup turn was taken
    /// for the whole wait (not kept: the name was not asked).
    pub async fn v4(&self, name: &str) -> Option<Ipv4Addr> {
        let now = Instant::now();
        if let Some(known) = kept(
            &self.kept.lock().unwrap_or_else(|e| e.into_inner()),
            name,
            now,
        ) {
            return known;
        }
        let deadline = tokio::time::Instant::now() + RESOLVE_TIMEOUT;
        let turn = tokio::time::timeout_at(deadline, self.turns.clone().acquire_owned())
            .await
            .ok()?
            .ok()?;
        let host = name.to_string();
        let lookup = tokio::task::spawn_blocking(move || {
            let answer = (host.as_str(), 0)
                .to_socket_addrs()
                .ok()
                .and_then(|mut addrs| {
                    addrs.find_map(|a| match a.ip() {
                        std::net::IpAddr::V4(v4) => Some(v4),
                        std::net::IpAddr::V6(_) => None,
                    })
                });
            // The turn ends when getaddrinfo returns, not when the caller
            // stops waiting.
            drop(turn);
            answer
        });
        let answer = tokio::time::timeout_at(deadline, lookup)
            .await
            .ok()
            .and_then(Result::ok)
            .flatten();
        let mut map = self.kept.lock().unwrap_or_else(|e| e.into_inner());
        if map.len() >= KEPT {
            let now = Instant::now();
            map.retain(|_, (until, _)| *until > now);
            if map.len() >= KEPT {
                map.clear();
            }
        }
        let keep = if answer.is_some() {
            ANSWER_KEPT
        } else {
            NO_ANSWER_KEPT
        };
        map.insert(name.to_string(), (Instant::now() + keep, answer));
        answer
    }
}

/// What `kept` says of `name` at `now`: `Some(answer)` while it is
/// believed, `None` when it must be asked.
fn kept(
    kept: &HashMap<String, (Instant, Option<Ipv4Addr>)>,
    name: &str,
    now: Instant,
) -> Option<Option<Ipv4Addr>> {
    match kept.get(name) {
        Some((until, answer)) if *until > now => Some(*answer),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn answers_are_kept_and_names_that_do_not_resolve_too() {
        let r = Resolver::default();
        assert_eq!(r.v4("localhost").await, Some(Ipv4Addr::LOCALHOST));
        // RFC 6761: `.invalid` never resolves.
        assert_eq!(r.v4("nothing.invalid").await, None);
        {
            let kept = r.kept.lock().unwrap();
            let now = Instant::now();
            assert_eq!(
                super::kept(&kept, "localhost", now),
                Some(Some(Ipv4Addr::LOCALHOST))
            );
            assert_eq!(super::kept(&kept, "nothing.invalid", now), Some(None));
            assert_eq!(super::kept(&kept, "localhost", now + ANSWER_KEPT), None);
            assert_eq!(
                super::kept(&kept, "nothing.invalid", now + NO_ANSWER_KEPT),
                None
            );
        }
        // Every turn is handed back once its lookup returns (a resolver
        // that did not answer in time may still hold one a while).
        let deadline = Instant::now() + Duration::from_secs(30);
        while r.turns.available_permits() < LOOKUPS {
            assert!(Instant::now() < deadline, "a lookup kept its turn");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}
