//! Drives one deployment: reads where it stands, asks the plan what comes
//! next, commits what the plan says to commit, and has the executor carry
//! out the action at the cursor under its deadline, with its retries,
//! until an operator's cancel or the deadline stops it; then commits the
//! outcome. Effects happen after the previous commit, so a restart resumes
//! the deployment at the action it was on, with the deadline it had.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use tokio::sync::{Notify, watch};
use tokio::time::Instant;
use tracing::{info, warn};

use crate::workflow::executor::{Executor, Failure};
use crate::workflow::templates::Subject;
use bootloader_core::model::{CallbackToken, LogLevel, TokenHash};
use bootloader_core::profile::{self, Profile, StepName};
use bootloader_core::workflow::machine::{Cursor, Position};
use bootloader_core::workflow::plan::{self, Change, Deadlines, Effect, Next, Outcome, Run};
use bootloader_store::StoreError;
use bootloader_store::engine::{EngineStore, EngineView, Transition};

/// How often a waiting `expect_callback` looks for its callback when no
/// nudge came, where another daemon may have stored it (a shared
/// PostgreSQL database).
pub const SHARED_CALLBACK_POLL: Duration = Duration::from_secs(2);
/// The same where every callback comes through this daemon (SQLite), whose
/// handler wakes the task itself, or where the database tells of every
/// callback stored (PostgreSQL's notifications, `Engine::follow_callbacks`):
/// a safety net only, so that thousands of waiting deployments do not keep
/// the store busy.
pub const OWN_CALLBACK_POLL: Duration = Duration::from_secs(60);
/// The pause between two attempts of an action.
const RETRY_PAUSE: Duration = Duration::from_secs(2);
/// The pause after the store failed, before reading the deployment again.
const STORE_PAUSE: Duration = Duration::from_secs(2);
/// Deployments of this daemon reading or committing at once.
const STORE_TURNS: usize = 32;

/// Turns at the store for the engine's own reads and commits. When
/// thousands of deployments move at once (a storm's callbacks, a restart),
/// each one's query future waiting for a pooled connection held kilobytes
/// (48 MiB of a PostgreSQL storm's peak, 16 MiB more for the callback
/// reads); a deployment waiting for its turn holds nothing but its place
/// in line (first come, first served), and the pool still has more asking
/// than it has connections.
pub struct StoreTurns(tokio::sync::Semaphore);

impl Default for StoreTurns {
    fn default() -> Self {
        Self(tokio::sync::Semaphore::new(STORE_TURNS))
    }
}

impl StoreTurns {
    /// Waits for a turn; it ends when the returned permit is dropped.
    pub async fn take(&self) -> Option<tokio::sync::SemaphorePermit<'_>> {
        // The semaphore is never closed.
        self.0.acquire().await.ok()
    }
}

/// Unix seconds now. The daemon's is the system clock; the unit tests'
/// follows tokio's paused clock.
pub type Clock = Arc<dyn Fn() -> i64 + Send + Sync>;

pub fn system_clock() -> Clock {
    Arc::new(|| time::OffsetDateTime::now_utc().unix_timestamp())
}

/// The handle of one deployment's task.
pub struct Runner {
    /// Wakes the task: a callback arrived.
    wake: Notify,
    /// An operator cancelled the deployment (committed already).
    pub cancel: watch::Sender<bool>,
    /// Another daemon took the deployment over (this one missed renewing
    /// its hold): the task ends without committing anything more.
    pub lost: watch::Sender<bool>,
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
    pub fn new() -> Self {
        Self {
            wake: Notify::new(),
            cancel: watch::channel(false).0,
            lost: watch::channel(false).0,
            step: Mutex::new(None),
            token: OnceLock::new(),
            expecting: Mutex::new(None),
            arrivals: Mutex::new(Arrivals::default()),
        }
    }

    /// Records the step metric when the cursor has moved to another step.
    fn entered(&self, cursor: Cursor) {
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
    fn stands(&self, profile: &Arc<Profile>, at: Position) {
        *lock(&self.expecting) =
            (!at.state.is_final()).then(|| (profile.clone(), at.cursor.map(|c| c.step)));
    }

    /// Waits for callback `name`, reading the store only when the task
    /// cannot know otherwise.
    async fn callback(
        &self,
        executor: &dyn Executor,
        turns: &StoreTurns,
        id: i64,
        name: &str,
        poll: Duration,
    ) -> String {
        loop {
            let read_at = {
                let arrivals = lock(&self.arrivals);
                if let Some((_, said)) = arrivals.known.iter().find(|(n, _)| n == name) {
                    return said.clone();
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
            // Woken when a callback arrives; the timer also reads the store
            // again, for a callback nobody told of.
            if tokio::time::timeout(poll, self.wake.notified())
                .await
                .is_err()
            {
                self.forget();
            }
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// What the tasks of one daemon's engine share.
pub struct Driver {
    pub ledger: Arc<dyn EngineStore>,
    pub executor: Arc<dyn Executor>,
    pub clock: Clock,
    /// This daemon's name among those sharing the store.
    pub runner: String,
    /// How long an action may take when neither it, its step nor its
    /// profile says.
    pub default_timeout: Duration,
    /// How often a waiting callback is looked for without a nudge.
    pub callback_poll: Duration,
    pub profiles: ParsedProfiles,
    /// Turns at the store for reads and commits.
    pub turns: StoreTurns,
    /// The deployments whose tasks run here, by the hash of their callback
    /// token (each task adds its own; the engine removes it when the task
    /// ends).
    pub tokens: Mutex<HashMap<TokenHash, i64>>,
}

impl Driver {
    /// Runs deployment `id` until nothing is left to run, another daemon
    /// runs it, or its profile no longer parses. A store that fails is
    /// retried; the deployment's deadlines still hold.
    pub async fn run(&self, id: i64, runner: &Runner) {
        let mut cancelled = runner.cancel.subscribe();
        let mut task = Task::default();
        loop {
            match self.step(id, runner, &mut cancelled, &mut task).await {
                Ok(true) => {}
                Ok(false) => return,
                Err(e) => {
                    warn!(error = %e, "deployment engine: store error; retrying");
                    task = Task::default();
                    tokio::time::sleep(STORE_PAUSE).await;
                }
            }
        }
    }

    /// Does what comes next. Moves that run nothing (a step done, an
    /// action started) are planned on the task's own view of the
    /// deployment and committed together, before the next action runs or
    /// when nothing is left: one write where there were three for each
    /// callback of a boot. `false`: nothing is left.
    async fn step(
        &self,
        id: i64,
        runner: &Runner,
        cancelled: &mut watch::Receiver<bool>,
        task: &mut Task,
    ) -> Result<bool, StoreError> {
        let mut view = match task.view.take() {
            Some(v) => v,
            None => {
                let _turn = self.turns.take().await;
                self.ledger.engine_view(id).await?
            }
        };
        if view.record.runner.as_deref() != Some(self.runner.as_str()) {
            info!(runner = ?view.record.runner, "another daemon runs this deployment now");
            return Ok(false);
        }
        if view.token.is_none() {
            return Ok(false);
        }
        let profile = match self.profiles.of(&mut view) {
            Ok(p) => p,
            Err(e) => {
                self.ledger
                    .append_log(id, LogLevel::Error, &e.to_string())
                    .await?;
                return Ok(false);
            }
        };
        let Some(token) = view.token.as_deref() else {
            return Ok(false);
        };
        let at = position(&view);
        let deadlines = Deadlines {
            action: view.action_deadline,
            step: view.step_deadline,
        };
        if let Some(cursor) = at.cursor {
            runner.entered(cursor);
        }
        runner.stands(&profile, at);
        if runner.token.get().is_none() {
            let hash = CallbackToken::from_presented(token).hash();
            lock(&self.tokens).insert(hash.clone(), id);
            let _ = runner.token.set(hash);
        }
        let run = match plan::next(
            &profile,
            at,
            deadlines,
            (self.clock)(),
            self.default_timeout,
        )
        .map_err(|e| StoreError::Corrupt(e.to_string()))?
        {
            Next::Finished => {
                // Refused (an operator cancelled meanwhile, say): read the
                // deployment again, there may be a `cleanup` to run.
                let committed = self.flush(id, task).await?;
                return Ok(!committed);
            }
            Next::Commit(change) => {
                if !task.pending.as_ref().is_some_and(|p| mergeable(p, &change)) {
                    // Another state change: its own commit, so that every
                    // state entered is published.
                    if !self.flush(id, task).await? {
                        return Ok(true);
                    }
                }
                task.view = Some(applied(view, &change));
                task.pending = Some(match task.pending.take() {
                    Some(p) => merged(p, change),
                    None => change,
                });
                return Ok(true);
            }
            Next::Run(run) => run,
        };
        // What the action needs (the state it runs in, its deadline) is
        // stored before it runs.
        if !self.flush(id, task).await? {
            return Ok(true);
        }
        let subject = Subject {
            deployment: &view.record,
            profile: &profile,
            token,
        };
        let left = Duration::from_secs(run.deadline.saturating_sub((self.clock)()).max(0) as u64);
        let started = Instant::now();
        let store_failed = Mutex::new(None);
        let attempts = self.attempts(subject, &run, runner, &store_failed);
        let outcome = tokio::select! {
            r = tokio::time::timeout(left, attempts) => match r {
                Ok(Ok(said)) => Outcome::Done { said, took: started.elapsed() },
                Ok(Err(reason)) => Outcome::Failed { reason },
                Err(_) => {
                    let seen = self.executor.last_seen(subject).await;
                    let mut reason = plan::timeout_reason(run.cursor, run.action, seen.as_deref());
                    if let Some(error) = lock(&store_failed).take() {
                        reason.push_str(&format!("; the store was failing: {error}"));
                    }
                    Outcome::Failed { reason }
                }
            },
            // The error and cleanup steps of a final deployment run to
            // their end; a cancel stops only an active one. The cancel is
            // committed already: read the deployment again and run its
            // `cleanup`.
            () = cancel_of(at, cancelled) => {
                task.view = None;
                return Ok(true);
            }
        };
        crate::telemetry::action(
            run.cursor.step.as_str(),
            run.action.kind.name(),
            if matches!(outcome, Outcome::Done { .. }) {
                "ok"
            } else {
                "failed"
            },
            started.elapsed(),
        );
        let change = plan::settle(&profile, at, deadlines, outcome, (self.clock)())
            .map_err(|e| StoreError::Corrupt(e.to_string()))?;
        for (level, line) in &change.log {
            if *level == LogLevel::Error {
                warn!(reason = %line, "deployment failed");
            }
        }
        task.view = Some(applied(view, &change));
        task.pending = Some(change);
        Ok(true)
    }

    /// Commits the task's pending moves. `false`: they were refused
    /// (another daemon runs the deployment, or an operator cancelled it);
    /// the task reads the deployment again.
    async fn flush(&self, id: i64, task: &mut Task) -> Result<bool, StoreError> {
        let Some(change) = task.pending.take() else {
            return Ok(true);
        };
        let committed = self.commit(id, change).await;
        if !matches!(committed, Ok(true)) {
            task.view = None;
        }
        committed
    }

    /// Carries out the action of `run`, attempt after attempt as it allows;
    /// `Err` is why it failed. An attempt that met a store down or busy is
    /// made again after a pause, as often as it takes (the deadline still
    /// holds), and does not count as one of the action's attempts;
    /// `store_failed` keeps what the store said last, for the reason of a
    /// timeout.
    async fn attempts(
        &self,
        subject: Subject<'_>,
        run: &Run<'_>,
        runner: &Runner,
        store_failed: &Mutex<Option<String>>,
    ) -> Result<String, String> {
        let id = subject.deployment.id;
        match run.effect {
            Effect::Refuse(reason) => Err(reason.to_string()),
            Effect::AwaitCallback { name } => Ok(runner
                .callback(&*self.executor, &self.turns, id, name, self.callback_poll)
                .await),
            Effect::Perform(work) => {
                let mut attempt = 1;
                let mut store_failures = 0;
                loop {
                    match self.executor.perform(subject, work).await {
                        Ok(said) if store_failures == 0 => return Ok(said),
                        Ok(said) => {
                            let error = lock(store_failed).take().unwrap_or_default();
                            let times = match store_failures {
                                1 => "once".to_string(),
                                n => format!("{n} times"),
                            };
                            return Ok(format!(
                                "{said}; the store failed {times} before it answered: {error}"
                            ));
                        }
                        Err(Failure::Store(error)) => {
                            warn!(%error, "the store failed during the action; it is tried again");
                            store_failures += 1;
                            *lock(store_failed) = Some(error);
                            tokio::time::sleep(STORE_PAUSE).await;
                        }
                        Err(Failure::Transient { error, .. })
                            if plan::retry(run.action, attempt) =>
                        {
                            warn!(%error, attempt, "the action failed; it is tried again");
                            let line = plan::retry_line(run.action, attempt, &error);
                            if let Err(e) = self.ledger.append_log(id, LogLevel::Warn, &line).await
                            {
                                warn!(error = %e, "cannot write the deployment log");
                            }
                            attempt += 1;
                            tokio::time::sleep(RETRY_PAUSE).await;
                        }
                        Err(Failure::Transient { reason, .. } | Failure::Final(reason)) => {
                            return Err(reason);
                        }
                    }
                }
            }
        }
    }

    /// Commits what this daemon's task did, unless another daemon runs the
    /// deployment now.
    async fn commit(&self, id: i64, change: Change) -> Result<bool, StoreError> {
        let mut t = transition(id, change);
        t.runner = Some(self.runner.clone());
        let _turn = self.turns.take().await;
        self.ledger.commit_transition(&t).await
    }
}

/// What one deployment's task carries from one step to the next: the
/// deployment as it will be once `pending` is committed (`None`: read it
/// from the store), and the moves not committed yet.
#[derive(Default)]
struct Task {
    view: Option<EngineView>,
    pending: Option<Change>,
}

/// Whether `next` may be committed together with `pending`: one state
/// change at most, so that each state entered gets its event.
fn mergeable(pending: &Change, next: &Change) -> bool {
    pending.from.state == pending.to.state || next.from.state == next.to.state
}

/// `first` then `then`, as one commit.
fn merged(first: Change, then: Change) -> Change {
    let mut log = first.log;
    log.extend(then.log);
    Change {
        from: first.from,
        to: then.to,
        deadlines: then.deadlines,
        // The deployment's error is the first one.
        error: first.error.or(then.error),
        log,
    }
}

/// `view` as the store will hold it once `change` is committed.
fn applied(mut view: EngineView, change: &Change) -> EngineView {
    let to = change.to;
    view.record.state = to.state;
    view.record.step = to.cursor.map(|c| c.step.as_str().to_string());
    view.record.action_index = to.cursor.map_or(0, |c| c.action as u32);
    if view.record.error.is_none() {
        view.record.error = change.error.clone();
    }
    view.actions_done = to.actions_done;
    view.action_deadline = change.deadlines.action;
    view.step_deadline = change.deadlines.step;
    view
}

/// Ends when an operator cancels an active deployment; never for a final
/// one (its error or cleanup step runs to the end).
async fn cancel_of(at: Position, cancelled: &mut watch::Receiver<bool>) {
    if at.state.is_final() {
        std::future::pending::<()>().await;
    }
    if cancelled.wait_for(|c| *c).await.is_err() {
        std::future::pending::<()>().await;
    }
}

/// Parsed profiles, by id. Every step of every deployment reads its
/// profile; parsing the YAML each time was a tenth of the daemon's CPU in a
/// boot storm. An entry serves only while the store still gives the very
/// source it was parsed from; the views given it then share that source
/// (10,000 waiting deployments held 10,000 copies of their profile's text).
#[derive(Default)]
pub struct ParsedProfiles(Mutex<HashMap<i64, Parsed>>);

/// A profile's source and what it parses to.
type Parsed = (Arc<str>, Arc<Profile>);

/// Profiles kept parsed; past this, the map starts again.
const PARSED_PROFILES: usize = 256;

impl ParsedProfiles {
    pub fn of(&self, view: &mut EngineView) -> Result<Arc<Profile>, StoreError> {
        let id = view.record.profile_id;
        let lock = || self.0.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((source, parsed)) = lock().get(&id)
            && *source == view.profile_source
        {
            view.profile_source = source.clone();
            return Ok(parsed.clone());
        }
        let parsed = Arc::new(parse(view)?);
        let mut map = lock();
        if map.len() >= PARSED_PROFILES {
            map.clear();
        }
        map.insert(id, (view.profile_source.clone(), parsed.clone()));
        Ok(parsed)
    }
}

pub fn parse(view: &EngineView) -> Result<Profile, StoreError> {
    profile::parse(&view.profile_source)
        .map_err(|e| StoreError::Corrupt(format!("the deployment's profile no longer parses: {e}")))
}

pub fn position(view: &EngineView) -> Position {
    let cursor = view
        .record
        .step
        .as_deref()
        .and_then(|s| s.parse::<StepName>().ok())
        .map(|step| Cursor {
            step,
            action: view.record.action_index as usize,
        });
    Position {
        state: view.record.state,
        cursor,
        actions_done: view.actions_done,
    }
}

/// The store's record of `change` (an operator's: no runner).
pub fn transition(id: i64, change: Change) -> Transition {
    let to = change.to;
    Transition {
        id,
        from: change.from.state,
        state: to.state,
        step: to.cursor.map(|c| c.step.as_str().to_string()),
        action_index: to.cursor.map_or(0, |c| c.action as u32),
        actions_done: to.actions_done,
        action_deadline: change.deadlines.action,
        step_deadline: change.deadlines.step,
        error: change.error,
        log: change.log,
        runner: None,
    }
}
