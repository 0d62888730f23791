//! Signing in to the web console: a user name and password become a
//! session whose secret only the browser holds. Failed attempts are
//! counted per user name and per source address, and past a limit the
//! next ones are refused before any password is checked, so that guessing
//! costs the guesser time and the daemon nothing.

use std::collections::{HashMap, VecDeque};
use std::hash::Hash;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use time::OffsetDateTime;

use bootloader_core::model::{Name, SessionSecret, Theme, TokenScope};
use bootloader_store::{ConsoleSession, NewSession, Principal, SignedInBy, User};

use super::{Actor, Error, Ops};

/// How many failed sign-ins are allowed, and over what time.
#[derive(Debug, Clone, Copy)]
pub struct SignInLimits {
    /// Failures per user name within `window` (whatever the source).
    pub per_user: usize,
    /// Failures per source address within `window` (whatever the name).
    pub per_source: usize,
    pub window: Duration,
}

impl Default for SignInLimits {
    fn default() -> Self {
        Self {
            per_user: 5,
            per_source: 20,
            window: Duration::from_secs(15 * 60),
        }
    }
}

/// Names and sources tracked at most; beyond, the stalest is forgotten.
const TRACKED: usize = 10_000;

/// Recent failures of one kind of key (user names or sources).
struct Failures<K> {
    by_key: HashMap<K, VecDeque<Instant>>,
}

impl<K: Hash + Eq + Clone> Failures<K> {
    fn new() -> Self {
        Self {
            by_key: HashMap::new(),
        }
    }

    /// Seconds until `key` may try again, if it has `limit` failures
    /// within `window` of `now`.
    fn wait(&mut self, key: &K, limit: usize, window: Duration, now: Instant) -> Option<u64> {
        let times = self.by_key.get_mut(key)?;
        while times
            .front()
            .is_some_and(|t| now.duration_since(*t) >= window)
        {
            times.pop_front();
        }
        if times.is_empty() {
            self.by_key.remove(key);
            return None;
        }
        if times.len() < limit {
            return None;
        }
        // The oldest counted failure leaves the window first.
        let oldest = times[times.len() - limit];
        let left = window.saturating_sub(now.duration_since(oldest));
        Some(left.as_secs().max(1))
    }

    fn record(&mut self, key: K, limit: usize, window: Duration, now: Instant) {
        if !self.by_key.contains_key(&key) && self.by_key.len() >= TRACKED {
            self.by_key
                .retain(|_, t| t.back().is_some_and(|t| now.duration_since(*t) < window));
            if self.by_key.len() >= TRACKED
                && let Some(stalest) = self
                    .by_key
                    .iter()
                    .min_by_key(|(_, t)| t.back().copied())
                    .map(|(k, _)| k.clone())
            {
                self.by_key.remove(&stalest);
            }
        }
        let times = self.by_key.entry(key).or_default();
        times.push_back(now);
        // Only the last `limit` matter.
        while times.len() > limit {
            times.pop_front();
        }
    }

    fn forget(&mut self, key: &K) {
        self.by_key.remove(key);
    }
}

/// Failed sign-ins per user name and per source, in this daemon's memory.
pub struct SignInLimiter {
    limits: SignInLimits,
    state: Mutex<(Failures<String>, Failures<IpAddr>)>,
}

impl SignInLimiter {
    pub fn new(limits: SignInLimits) -> Self {
        Self {
            limits,
            state: Mutex::new((Failures::new(), Failures::new())),
        }
    }

    /// Refuses an attempt at `user` from `source` while either has used up
    /// its failures, saying for how long.
    pub fn check(&self, user: &str, source: IpAddr, now: Instant) -> Result<(), Error> {
        let l = self.limits;
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let user_wait = state.0.wait(&user_key(user), l.per_user, l.window, now);
        let source_wait = state.1.wait(&source, l.per_source, l.window, now);
        let (what, seconds) = match (user_wait, source_wait) {
            (None, None) => return Ok(()),
            (Some(u), None) => ("for this user", u),
            (None, Some(s)) => ("from this address", s),
            (Some(u), Some(s)) => ("for this user and from this address", u.max(s)),
        };
        Err(Error::TooManyRequests {
            message: format!(
                "too many failed sign-ins {what}: try again in {}",
                humane(seconds)
            ),
            retry_after: seconds,
        })
    }

    pub fn failed(&self, user: &str, source: IpAddr, now: Instant) {
        let l = self.limits;
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        state.0.record(user_key(user), l.per_user, l.window, now);
        state.1.record(source, l.per_source, l.window, now);
    }

    /// A user who signed in starts afresh (their source's count stays:
    /// one right guess among many does not clear a guesser).
    pub fn succeeded(&self, user: &str) {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        state.0.forget(&user_key(user));
    }
}

fn user_key(user: &str) -> String {
    user.trim().to_ascii_lowercase()
}

fn humane(seconds: u64) -> String {
    match seconds {
        0..=90 => format!("{seconds} s"),
        _ => format!("{} min", seconds.div_ceil(60)),
    }
}

/// A new session: the secret for the browser's cookie, and who it is.
pub struct SignedIn {
    pub secret: SessionSecret,
    pub user: User,
}

/// The user, if `password` is `name`'s: refused before any check while
/// the name or the source has used up its failures, and counted.
async fn counted_check(
    ops: &Ops,
    limiter: &SignInLimiter,
    name: &str,
    password: &str,
    source: IpAddr,
    what: &str,
) -> Result<Option<User>, Error> {
    limiter.check(name, source, Instant::now())?;
    let user = match name.trim().parse::<Name>() {
        Ok(parsed) => super::users::check_password(&*ops.users, &parsed, password).await?,
        Err(_) => None,
    };
    match &user {
        Some(_) => limiter.succeeded(name),
        None => {
            limiter.failed(name, source, Instant::now());
            tracing::info!(user = %name.trim(), %source, "{what} refused");
        }
    }
    Ok(user)
}

/// Signs `name` in with `password` from `source`, for `lifetime`. A wrong
/// name and a wrong password are refused alike.
pub async fn sign_in(
    ops: &Ops,
    limiter: &SignInLimiter,
    name: &str,
    password: &str,
    source: IpAddr,
    lifetime: Duration,
) -> Result<SignedIn, Error> {
    let Some(user) = counted_check(ops, limiter, name, password, source, "console sign-in").await?
    else {
        return Err(Error::invalid_field(
            "password",
            "the user name or the password is wrong",
        ));
    };
    let secret = SessionSecret::generate()
        .map_err(|e| Error::Internal(format!("no randomness for a session: {e}")))?;
    let now = OffsetDateTime::now_utc();
    ops.sessions
        .create_session(NewSession {
            user: user.name.clone(),
            hash: secret.hash(),
            source: source.to_string(),
            expires_at: now + lifetime,
        })
        .await?;
    tracing::info!(user = %user.name, %source, "signed in to the console");
    Ok(SignedIn { secret, user })
}

/// Who `name` is, if `password` is theirs: HTTP Basic on the older API,
/// checked on every request, counted by the same limiter as the
/// console's sign-in. `None` for a wrong name or password.
pub async fn basic(
    ops: &Ops,
    limiter: &SignInLimiter,
    name: &str,
    password: &str,
    source: IpAddr,
) -> Result<Option<Principal>, Error> {
    let Some(user) =
        counted_check(ops, limiter, name, password, source, "basic authentication").await?
    else {
        return Ok(None);
    };
    Ok(Some(Principal {
        user_id: user.id,
        user: user.name,
        is_staff: user.is_staff,
        by: SignedInBy::Password,
        scope: if user.is_staff {
            TokenScope::Write
        } else {
            TokenScope::Read
        },
    }))
}

/// The open session whose secret the browser presented, if any.
pub async fn session(
    ops: &Ops,
    secret: &SessionSecret,
    idle: Duration,
) -> Result<Option<ConsoleSession>, Error> {
    Ok(ops
        .sessions
        .session(
            &secret.hash(),
            OffsetDateTime::now_utc(),
            idle.try_into().unwrap_or(time::Duration::MAX),
        )
        .await?)
}

/// Ends the session (signing out), and with it any others that ended by
/// time.
pub async fn sign_out(ops: &Ops, secret: &SessionSecret, idle: Duration) -> Result<(), Error> {
    ops.sessions.end_session(&secret.hash()).await?;
    let idle = idle.try_into().unwrap_or(time::Duration::MAX);
    if let Err(e) = ops
        .sessions
        .purge_sessions(OffsetDateTime::now_utc(), idle)
        .await
    {
        tracing::debug!(error = %e, "could not remove ended sessions");
    }
    Ok(())
}

/// Sets the acting user's own theme (`None`: the site's default).
pub async fn set_theme(ops: &Ops, actor: &Actor, theme: Option<Theme>) -> Result<(), Error> {
    let Actor::User(me) = actor else {
        return Err(Error::BadRequest("only a user has a theme".into()));
    };
    Ok(ops.sessions.set_theme(&me.user, theme).await?)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limiter() -> SignInLimiter {
        SignInLimiter::new(SignInLimits {
            per_user: 3,
            per_source: 5,
            window: Duration::from_secs(60),
        })
    }

    #[test]
    fn a_user_is_held_after_their_limit_until_the_oldest_failure_ages_out() {
        let l = limiter();
        let t0 = Instant::now();
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let b: IpAddr = "192.0.2.2".parse().unwrap();
        for i in 0..3 {
            l.check("admin", a, t0 + Duration::from_secs(i)).unwrap();
            l.failed("Admin", a, t0 + Duration::from_secs(i));
        }
        // From any address, in any case.
        let e = l
            .check("ADMIN", b, t0 + Duration::from_secs(10))
            .unwrap_err();
        match e {
            Error::TooManyRequests {
                message,
                retry_after,
            } => {
                assert_eq!(retry_after, 50, "the first failure leaves at 60 s");
                assert!(message.contains("for this user"), "{message}");
            }
            other => panic!("{other:?}"),
        }
        // Others are not held.
        l.check("ops", b, t0 + Duration::from_secs(10)).unwrap();
        // Once the first failure is a minute old, one more try is allowed.
        l.check("admin", b, t0 + Duration::from_secs(60)).unwrap();
    }

    #[test]
    fn a_source_is_held_after_its_limit_whatever_names_it_tries() {
        let l = limiter();
        let t0 = Instant::now();
        let a: IpAddr = "2001:db8::1".parse().unwrap();
        for i in 0..5 {
            l.failed(&format!("user{i}"), a, t0);
        }
        let e = l.check("someone", a, t0).unwrap_err();
        assert!(e.to_string().contains("from this address"), "{e}");
        l.check("someone", "2001:db8::2".parse().unwrap(), t0)
            .unwrap();
    }

    #[test]
    fn success_clears_the_user_but_not_the_source() {
        let l = limiter();
        let t0 = Instant::now();
        let a: IpAddr = "192.0.2.9".parse().unwrap();
        for _ in 0..2 {
            l.failed("admin", a, t0);
        }
        l.succeeded("admin");
        for _ in 0..2 {
            l.failed("admin", a, t0);
        }
        l.check("admin", a, t0).unwrap();
        l.failed("x", a, t0);
        assert!(l.check("y", a, t0).is_err(), "five from the source in all");
    }

    #[test]
    fn memory_is_bounded() {
        let l = limiter();
        let t0 = Instant::now();
        let a: IpAddr = "192.0.2.10".parse().unwrap();
        for i in 0..(TRACKED + 50) {
            l.failed(&format!("u{i}"), a, t0 + Duration::from_millis(i as u64));
        }
        let state = l.state.lock().unwrap();
        assert!(state.0.by_key.len() <= TRACKED);
        assert!(!state.0.by_key.contains_key("u0"), "the stalest went first");
    }
}
