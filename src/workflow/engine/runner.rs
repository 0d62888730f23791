//! The handle of one deployment's task: what the engine and the callback
//! handler tell it (a callback arrived, a cancel, the end), what it
//! stands on for judging callbacks from memory, and its wait for a
//! callback.

use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use tokio::sync::{Notify, watch};
use tokio::time::Instant;
use tracing::warn;

use super::drive::StoreTurns;
use crate::workflow::executor::Executor;
use bootloader_core::model::TokenHash;
use bootloader_core::profile::{Profile, StepName};
use bootloader_core::workflow::machine::{Cursor, Position};

/// What a deployment's task is told, the latest last.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Order {
    Go,
    /// An operator cancelled the deployment (committed already): the task
    /// reads it again and runs its `cleanup`.
    Cancel,
    /// The daemon stops, or another daemon took the deployment over (this
    /// one missed renewing its hold): the task ends where it is, without
    /// committing anything more.
    End,
}

/// The handle of one deployment's task.
pub struct Runner {
    /// Wakes the task: a callback arrived.
    wake: Notify,
    /// One channel for every order, so that a waiting task watches one.
    pub(super) orders: watch::Sender<Order>,
    /// The step under way and when this task first saw it (for the step
    /// duration metric).
    step: Mutex<Option<(StepName, Instant)>>,
    /// The hash of the deployment's callback token, once the task read it.
    pub token: OnceLock<TokenHash>,
    /// What the callback handler may judge from memory while the
    /// deployment is active: its profile and the step under way, as the
    /// task will have committed them.
    expecting: Mutex<Option<(Arc<Profile>, Option<StepName>)>>,
    arrivals: Mutex<Arrivals>,
}

/// The callbacks a task knows of without reading the store.
#[derive(Default)]
struct Arrivals {
    /// Each name with the deployment log's line for it.
    known: Vec<(String, String)>,
    /// Whether `known` holds every callback stored: the store was read at
    /// `generation`, and every callback stored since came through
    /// `Runner::arrived`.
    complete: bool,
    /// Counts the wakes that did not say which callback arrived (another
    /// daemon's, a replay, the poll's timer): a read of the store that
    /// began before one does not make `known` complete.
    generation: u64,
}

impl Runner {
    /// The handle of a deployment that may have callbacks stored already
    /// (one resumed or taken over): its task reads them before it waits.
    pub fn new() -> Self {
        Self {
            wake: Notify::new(),
            orders: watch::channel(Order::Go).0,
            step: Mutex::new(None),
            token: OnceLock::new(),
            expecting: Mutex::new(None),
            arrivals: Mutex::new(Arrivals::default()),
        }
    }

    /// The handle of a deployment this daemon has just created: no
    /// callback can be stored for it yet (its token is known only here
    /// until the creator's answer or a file served by its task), so its
    /// task knows every callback without reading the store until a nudge
    /// or the poll says otherwise.
    pub fn created() -> Self {
        let runner = Self::new();
        lock(&runner.arrivals).complete = true;
        runner
    }

    /// An operator cancelled the deployment; an `End` given before stays.
    pub fn cancel(&self) {
        self.orders.send_if_modified(|o| {
            let go = *o == Order::Go;
            if go {
                *o = Order::Cancel;
            }
            go
        });
    }

    /// The task ends where it is.
    pub fn end(&self) {
        self.orders.send_replace(Order::End);
    }

    /// Ends when the task is told to end.
    pub async fn ended(&self) {
        let mut orders = self.orders.subscribe();
        // The sender lives as long as `self`.
        let _ = orders.wait_for(|o| *o == Order::End).await;
    }

    /// Records the step metric when the cursor has moved to another step.
    pub(super) fn entered(&self, cursor: Cursor) {
        let mut seen = self.step.lock().unwrap_or_else(|e| e.into_inner());
        match *seen {
            Some((step, _)) if step == cursor.step => {}
            previous => {
                if let Some((step, since)) = previous {
                    crate::telemetry::step(step.as_str(), since.elapsed());
                }
                *seen = Some((cursor.step, Instant::now()));
            }
        }
    }

    /// Callback `name`, which this daemon has just stored (`said` is its
    /// log line), wakes the task without it reading the store.
    pub fn arrived(&self, name: &str, said: String) {
        let mut arrivals = lock(&self.arrivals);
        if !arrivals.known.iter().any(|(n, _)| n == name) {
            arrivals.known.push((name.to_string(), said));
        }
        drop(arrivals);
        self.wake.notify_one();
    }

    /// Some callback may have been stored: the task reads the store.
    pub fn nudge(&self) {
        self.forget();
        self.wake.notify_one();
    }

    fn forget(&self) {
        let mut arrivals = lock(&self.arrivals);
        arrivals.complete = false;
        arrivals.generation += 1;
    }

    /// Whether the deployment's profile may still expect callback `name`
    /// (`None`: the task does not know, the store must say).
    pub fn expects(&self, name: &str) -> Option<bool> {
        let expecting = lock(&self.expecting);
        let (profile, step) = expecting.as_ref()?;
        Some(profile.callbacks_from(*step).contains(&name))
    }

    /// What the task stands on now, for `expects`.
    pub(super) fn stands(&self, profile: &Arc<Profile>, at: Position) {
        *lock(&self.expecting) =
            (!at.state.is_final()).then(|| (profile.clone(), at.cursor.map(|c| c.step)));
    }

    /// The log's line of callback `name`, if it is known to have arrived.
    pub(super) fn said(&self, name: &str) -> Option<String> {
        let arrivals = lock(&self.arrivals);
        let (_, said) = arrivals.known.iter().find(|(n, _)| n == name)?;
        Some(said.clone())
    }

    /// Waits for callback `name` until `until` (`None`: it did not come),
    /// reading the store only when the task cannot know otherwise.
    pub(super) async fn callback(
        &self,
        executor: &dyn Executor,
        turns: &StoreTurns,
        id: i64,
        name: &str,
        poll: Duration,
        until: Instant,
    ) -> Option<String> {
        loop {
            let read_at = {
                let arrivals = lock(&self.arrivals);
                if let Some((_, said)) = arrivals.known.iter().find(|(n, _)| n == name) {
                    return Some(said.clone());
                }
                (!arrivals.complete).then_some(arrivals.generation)
            };
            if let Some(generation) = read_at {
                let turn = turns.take().await;
                let read = executor.callbacks(id).await;
                drop(turn);
                match read {
                    Ok(stored) => {
                        let mut arrivals = lock(&self.arrivals);
                        for (n, said) in stored {
                            if !arrivals.known.iter().any(|(k, _)| *k == n) {
                                arrivals.known.push((n, said));
                            }
                        }
                        arrivals.complete = arrivals.generation == generation;
                        if arrivals.known.iter().any(|(n, _)| n == name) {
                            continue;
                        }
                    }
                    Err(e) => warn!(error = %e, "cannot read callbacks; retrying"),
                }
            }
            let now = Instant::now();
            if now >= until {
                return None;
            }
            // Woken when a callback arrives; the timer (one for the poll
            // and the deadline) also reads the store again, for a callback
            // nobody told of.
            tokio::select! {
                () = self.wake.notified() => {}
                () = tokio::time::sleep_until((now + poll).min(until)) => self.forget(),
            }
        }
    }
}

pub(super) fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}
