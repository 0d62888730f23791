//! What was read from the database, kept while nothing says it changed:
//! the common part of `profile_cache.rs` and `token_cache.rs`. Kept only
//! while on (a PostgreSQL store turns it on while it listens for the
//! other daemons' notices, and off when it stops: what changed meanwhile
//! went unheard); a read keeps its result only if nothing was forgotten
//! since it began (`begin`, `keep`), so that a read racing a change does
//! not keep what the change forgot.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, MutexGuard};

pub(crate) struct Kept<T> {
    inner: Mutex<Inner<T>>,
    /// Off: nothing is kept or found (every look-up reads the database).
    on: AtomicBool,
}

struct Inner<T> {
    data: T,
    /// Counts what was forgotten, for `keep`.
    forgotten: u64,
}

impl<T: Default> Kept<T> {
    pub(crate) fn new(on: bool) -> Self {
        Self {
            inner: Mutex::new(Inner {
                data: T::default(),
                forgotten: 0,
            }),
            on: AtomicBool::new(on),
        }
    }

    fn inner(&self) -> MutexGuard<'_, Inner<T>> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// On or off; what was kept is forgotten either way (changes may have
    /// gone unheard).
    pub(crate) fn set_on(&self, on: bool) {
        let mut inner = self.inner();
        self.on.store(on, Ordering::Release);
        inner.data = T::default();
        inner.forgotten += 1;
    }

    /// Taken before reading from the database, for `keep`.
    pub(crate) fn begin(&self) -> u64 {
        self.inner().forgotten
    }

    /// What `find` finds in what is kept; nothing while off.
    pub(crate) fn find<R>(&self, find: impl FnOnce(&T) -> Option<R>) -> Option<R> {
        if !self.on.load(Ordering::Acquire) {
            return None;
        }
        find(&self.inner().data)
    }

    /// Keeps what `keep` adds, read from the database after `begin` gave
    /// `since`, unless it is off or something was forgotten meanwhile.
    pub(crate) fn keep(&self, since: u64, keep: impl FnOnce(&mut T)) {
        let mut inner = self.inner();
        if !self.on.load(Ordering::Acquire) || inner.forgotten != since {
            return;
        }
        keep(&mut inner.data);
    }

    /// Forgets what `forget` takes out (all of it with `T::default`).
    pub(crate) fn forget(&self, forget: impl FnOnce(&mut T)) {
        let mut inner = self.inner();
        inner.forgotten += 1;
        forget(&mut inner.data);
    }
}
