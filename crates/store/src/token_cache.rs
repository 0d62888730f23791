//! API tokens as authenticated, kept for the minute between two records
//! of their use: every API request read its token and its user again, one
//! statement of the four a deployment's start cost on PostgreSQL.
//!
//! Only on PostgreSQL, and only while its daemon listens: a token revoked,
//! or its user changed, deactivated or deleted, through any daemon or the
//! command line, is forgotten by every daemon when the database tells
//! (migration 0021's `bootloader_auth` notices, `postgres.rs`), and at
//! once by the daemon that made the change. On SQLite the command line
//! writes the file behind the daemon's back with nothing to tell it, and a
//! look-up there costs no trip over a network: it stays off.
//!
//! A token kept is used without the database until its use is due to be
//! recorded again (`authenticate` records it at most once a minute), then
//! read and kept anew; a token that expires meanwhile is refused from here.

use std::collections::HashMap;

use time::OffsetDateTime;

use crate::kept::Kept;
use crate::types::Principal;

/// Tokens kept at most; past this the cache starts again.
const CAPACITY: usize = 1024;

/// How long a token's recorded use lasts (`authenticate` records it again
/// after this, and reads the token with it).
pub(crate) const RECORDED_FOR: time::Duration = time::Duration::minutes(1);

pub(crate) struct TokenCache(Kept<HashMap<String, Known>>);

/// A token as authenticated.
#[derive(Clone)]
pub(crate) struct Known {
    pub(crate) principal: Principal,
    pub(crate) expires_at: Option<OffsetDateTime>,
    /// When its use was last recorded in the database.
    pub(crate) used_at: OffsetDateTime,
}

/// What the cache says of a token at a time.
pub(crate) enum Found {
    Valid(Principal),
    Expired,
}

/// `set_on` and `begin` are `Kept`'s.
impl std::ops::Deref for TokenCache {
    type Target = Kept<HashMap<String, Known>>;

    fn deref(&self) -> &Self::Target {
        &self.0
    }
}

impl TokenCache {
    /// Off until `set_on`.
    pub(super) fn off() -> Self {
        Self(Kept::new(false))
    }

    /// The token whose hash is `hash` at `at`, if it is kept and its use
    /// need not be recorded again yet.
    pub(super) fn find(&self, hash: &str, at: OffsetDateTime) -> Option<Found> {
        self.0.find(|tokens| {
            let known = tokens.get(hash)?;
            if known.expires_at.is_some_and(|e| e <= at) {
                return Some(Found::Expired);
            }
            (at - known.used_at < RECORDED_FOR).then(|| Found::Valid(known.principal.clone()))
        })
    }

    /// Keeps `known`, read from the database after `begin` gave `since`,
    /// unless something was forgotten meanwhile.
    pub(super) fn keep(&self, hash: &str, known: Known, since: u64) {
        self.0.keep(since, |tokens| {
            if tokens.len() >= CAPACITY {
                tokens.clear();
            }
            tokens.insert(hash.to_string(), known);
        });
    }

    /// Forgets every token: one was revoked, or a user changed.
    pub(super) fn forget_all(&self) {
        self.0.forget(HashMap::clear);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::SignedInBy;

    fn known(token: i64, used_at: OffsetDateTime, expires_at: Option<OffsetDateTime>) -> Known {
        Known {
            principal: Principal {
                user_id: 1,
                user: "admin".parse().expect("a name"),
                is_staff: true,
                by: SignedInBy::Token(token),
                scope: bootloader_core::model::TokenScope::Write,
            },
            expires_at,
            used_at,
        }
    }

    fn token_of(found: Option<Found>) -> Option<i64> {
        match found {
            Some(Found::Valid(p)) => match p.by {
                SignedInBy::Token(id) => Some(id),
                _ => None,
            },
            _ => None,
        }
    }

    #[test]
    fn a_token_is_found_until_its_use_is_due_to_be_recorded() {
        let t0 = OffsetDateTime::UNIX_EPOCH;
        let cache = TokenCache::off();
        cache.set_on(true);
        cache.keep("h1", known(7, t0, None), cache.begin());
        for (after, expected) in [
            (0, Some(7)),
            (59, Some(7)),
            // Due to be recorded: read again.
            (60, None),
            (3600, None),
        ] {
            let at = t0 + time::Duration::seconds(after);
            assert_eq!(token_of(cache.find("h1", at)), expected, "{after} s");
        }
        assert!(cache.find("h2", t0).is_none());
    }

    #[test]
    fn an_expired_token_is_refused_from_the_cache() {
        let t0 = OffsetDateTime::UNIX_EPOCH;
        let cache = TokenCache::off();
        cache.set_on(true);
        let expires = t0 + time::Duration::seconds(30);
        cache.keep("h1", known(7, t0, Some(expires)), cache.begin());
        assert_eq!(
            token_of(cache.find("h1", t0 + time::Duration::seconds(29))),
            Some(7)
        );
        assert!(matches!(cache.find("h1", expires), Some(Found::Expired)));
    }

    #[test]
    fn a_revocation_forgets_every_token_and_a_racing_read_is_not_kept() {
        let t0 = OffsetDateTime::UNIX_EPOCH;
        let cache = TokenCache::off();
        cache.keep("h1", known(7, t0, None), cache.begin());
        assert!(cache.find("h1", t0).is_none(), "off: nothing kept");
        cache.set_on(true);
        cache.keep("h1", known(7, t0, None), cache.begin());
        cache.keep("h2", known(8, t0, None), cache.begin());
        // A read that began before a revocation finished after it.
        let since = cache.begin();
        cache.forget_all();
        cache.keep("h3", known(9, t0, None), since);
        for hash in ["h1", "h2", "h3"] {
            assert!(cache.find(hash, t0).is_none(), "{hash}");
        }
        cache.keep("h1", known(7, t0, None), cache.begin());
        cache.set_on(false);
        assert!(cache.find("h1", t0).is_none(), "off again");
    }
}
