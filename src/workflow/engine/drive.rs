//! Drives one deployment: reads where it stands, asks the plan what comes
//! next, commits what the plan says to commit, and has the executor carry
//! out the action at the cursor under its deadline, with its retries,
//! until an operator's cancel or the deadline stops it; then commits the
//! outcome. Effects happen after the previous commit, so a restart resumes
//! the deployment at the action it was on, with the deadline it had.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::watch;
use tokio::time::Instant;
use tracing::{info, warn};

use super::runner::{Order, Runner, lock};
use crate::workflow::executor::{Executor, Failure};
use crate::workflow::templates::Subject;
use bootloader_core::model::{CallbackToken, DeploymentState, LogLevel, TokenHash};
use bootloader_core::profile::{self, Profile, StepName};
use bootloader_core::workflow::machine::{Cursor, Position};
use bootloader_core::workflow::plan::{self, Change, Deadlines, Effect, Next, Outcome, Run, Work};
use bootloader_store::StoreError;
use bootloader_store::boot::DeploymentRecord;
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
    ///
    /// A step's future is boxed and lives only while the step runs: what a
    /// deployment holds while it waits for its machine to call (most of a
    /// deployment's life, ten thousand of them at once in a storm) is the
    /// small wait below and its `Waiting`, not the largest of the step's
    /// states, which the task would otherwise keep for its whole life.
    ///
    /// `first` is the deployment as its first step would read it, when
    /// the caller knows it (a deployment this daemon has just started).
    pub async fn run(&self, id: i64, runner: &Runner, first: Option<Box<EngineView>>) {
        let mut cancelled = runner.orders.subscribe();
        let mut task = Task {
            view: first,
            pending: None,
        };
        loop {
            let stepped = Box::pin(self.step(id, runner, &mut cancelled, &mut task)).await;
            match stepped {
                Ok(Stepped::Again) => {}
                Ok(Stepped::Ended) => return,
                Ok(Stepped::Wait(waiting)) => {
                    match self.wait(id, runner, &waiting, &mut cancelled).await {
                        // The cancel is committed already: read the
                        // deployment again and run its `cleanup`.
                        Heard::Cancelled => task.view = None,
                        heard => {
                            if let Err(e) = Box::pin(self.heard(waiting, heard, &mut task)).await {
                                warn!(error = %e, "deployment engine: cannot settle a callback; reading the deployment again");
                                task = Task::default();
                            }
                        }
                    }
                }
                Err(e) => {
                    warn!(error = %e, "deployment engine: store error; retrying");
                    task = Task::default();
                    tokio::time::sleep(STORE_PAUSE).await;
                }
            }
        }
    }

    /// Waits for the callback `waiting` expects, until its deadline or an
    /// operator's cancel.
    async fn wait(
        &self,
        id: i64,
        runner: &Runner,
        waiting: &Waiting,
        cancelled: &mut watch::Receiver<Order>,
    ) -> Heard {
        let left =
            Duration::from_secs(waiting.deadline.saturating_sub((self.clock)()).max(0) as u64);
        let callback = runner.callback(
            &*self.executor,
            &self.turns,
            id,
            &waiting.name,
            self.callback_poll,
            Instant::now() + left,
        );
        tokio::select! {
            said = callback => match said {
                Some(said) => Heard::Said(said),
                None => Heard::TimedOut,
            },
            () = cancel_of(position(&waiting.view), cancelled) => Heard::Cancelled,
        }
    }

    /// Settles the callback action `waiting` was on as `heard` says: the
    /// change is planned on the task's view and committed with its next
    /// moves.
    async fn heard(
        &self,
        waiting: Box<Waiting>,
        heard: Heard,
        task: &mut Task,
    ) -> Result<(), StoreError> {
        let Waiting {
            view,
            profile,
            started,
            ..
        } = *waiting;
        let at = position(&view);
        let deadlines = Deadlines {
            action: view.action_deadline,
            step: view.step_deadline,
        };
        // The same action as before the wait: its deadline was armed then.
        let Next::Run(run) = self.next(&profile, at, deadlines)? else {
            return Err(StoreError::Corrupt(
                "a waiting deployment's action vanished".into(),
            ));
        };
        let outcome = match heard {
            Heard::Said(said) => Outcome::Done {
                said,
                took: started.elapsed(),
            },
            Heard::TimedOut | Heard::Cancelled => {
                let token = view.token.as_deref().unwrap_or_default();
                let subject = Subject {
                    deployment: &view.record,
                    profile: &profile,
                    token,
                };
                let seen = self.executor.last_seen(subject).await;
                Outcome::Failed {
                    reason: plan::timeout_reason(run.cursor, run.action, seen.as_deref()),
                }
            }
        };
        let change = self.settled(&profile, at, deadlines, &run, outcome, started)?;
        task.plan(view, change);
        Ok(())
    }

    /// What the plan says comes next, now.
    fn next<'p>(
        &self,
        profile: &'p Profile,
        at: Position,
        deadlines: Deadlines,
    ) -> Result<Next<'p>, StoreError> {
        plan::next(profile, at, deadlines, (self.clock)(), self.default_timeout)
            .map_err(|e| StoreError::Corrupt(e.to_string()))
    }

    /// The change an action's `outcome` makes, its metric recorded.
    fn settled(
        &self,
        profile: &Profile,
        at: Position,
        deadlines: Deadlines,
        run: &Run<'_>,
        outcome: Outcome,
        started: Instant,
    ) -> Result<Change, StoreError> {
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
        let change = plan::settle(profile, at, deadlines, outcome, (self.clock)())
            .map_err(|e| StoreError::Corrupt(e.to_string()))?;
        for (level, line) in &change.log {
            if *level == LogLevel::Error {
                warn!(reason = %line, "deployment failed");
            }
        }
        Ok(change)
    }

    /// Does what comes next. Moves that run nothing (a step done, an
    /// action started) are planned on the task's own view of the
    /// deployment and committed together, before the next action runs or
    /// when nothing is left: one write where there were three for each
    /// callback of a boot. A callback not arrived yet is waited for by
    /// `run`, outside this future.
    async fn step(
        &self,
        id: i64,
        runner: &Runner,
        cancelled: &mut watch::Receiver<Order>,
        task: &mut Task,
    ) -> Result<Stepped, StoreError> {
        let mut view = match task.view.take() {
            Some(v) => *v,
            None => {
                let _turn = self.turns.take().await;
                self.ledger.engine_view(id).await?
            }
        };
        if view.record.runner.as_deref() != Some(self.runner.as_str()) {
            info!(runner = ?view.record.runner, "another daemon runs this deployment now");
            return Ok(Stepped::Ended);
        }
        if view.token.is_none() {
            return Ok(Stepped::Ended);
        }
        let profile = match self.profiles.of(&mut view) {
            Ok(p) => p,
            Err(e) => {
                self.ledger
                    .append_log(id, LogLevel::Error, &e.to_string())
                    .await?;
                return Ok(Stepped::Ended);
            }
        };
        let Some(token) = view.token.as_deref() else {
            return Ok(Stepped::Ended);
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
        let run = match self.next(&profile, at, deadlines)? {
            Next::Finished => {
                // Refused (an operator cancelled meanwhile, say): read the
                // deployment again, there may be a `cleanup` to run.
                let committed = self.flush(id, task).await?;
                return Ok(if committed {
                    Stepped::Ended
                } else {
                    Stepped::Again
                });
            }
            Next::Commit(change) => {
                if !task.pending.as_ref().is_some_and(|p| mergeable(p, &change)) {
                    // Another state change: its own commit, so that every
                    // state entered is published.
                    if !self.flush(id, task).await? {
                        return Ok(Stepped::Again);
                    }
                }
                let change = match task.pending.take() {
                    Some(p) => merged(*p, change),
                    None => change,
                };
                task.plan(view, change);
                return Ok(Stepped::Again);
            }
            Next::Run(run) => run,
        };
        // What the action needs (the state it runs in, its deadline) is
        // stored before it runs.
        if !self.flush(id, task).await? {
            return Ok(Stepped::Again);
        }
        let started = Instant::now();
        let outcome = match run.effect {
            Effect::Refuse(reason) => Outcome::Failed {
                reason: reason.to_string(),
            },
            Effect::AwaitCallback { name } => match runner.said(name) {
                Some(said) => Outcome::Done {
                    said,
                    took: Duration::ZERO,
                },
                None => {
                    return Ok(Stepped::Wait(Box::new(Waiting {
                        name: name.to_string(),
                        deadline: run.deadline,
                        started,
                        view,
                        profile,
                    })));
                }
            },
            Effect::Perform(work) => {
                let subject = Subject {
                    deployment: &view.record,
                    profile: &profile,
                    token,
                };
                // Boxed: a step waiting for its store turn keeps no room
                // for the action's state.
                match Box::pin(self.act(subject, &run, work, at, cancelled, started)).await {
                    Some(outcome) => outcome,
                    // The error and cleanup steps of a final deployment
                    // run to their end; a cancel stops only an active one.
                    // The cancel is committed already: read the deployment
                    // again and run its `cleanup`.
                    None => {
                        task.view = None;
                        return Ok(Stepped::Again);
                    }
                }
            }
        };
        let change = self.settled(&profile, at, deadlines, &run, outcome, started)?;
        task.plan(view, change);
        Ok(Stepped::Again)
    }

    /// Carries out the action of `run` under its deadline. `None`: the
    /// deployment was cancelled meanwhile.
    async fn act(
        &self,
        subject: Subject<'_>,
        run: &Run<'_>,
        work: Work<'_>,
        at: Position,
        cancelled: &mut watch::Receiver<Order>,
        started: Instant,
    ) -> Option<Outcome> {
        let left = Duration::from_secs(run.deadline.saturating_sub((self.clock)()).max(0) as u64);
        let store_failed = Mutex::new(None);
        let attempts = self.attempts(subject, run, work, &store_failed);
        tokio::select! {
            r = tokio::time::timeout(left, attempts) => Some(match r {
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
            }),
            () = cancel_of(at, cancelled) => None,
        }
    }

    /// Commits the task's pending moves. `false`: they were refused
    /// (another daemon runs the deployment, or an operator cancelled it);
    /// the task reads the deployment again.
    async fn flush(&self, id: i64, task: &mut Task) -> Result<bool, StoreError> {
        let Some(change) = task.pending.take() else {
            return Ok(true);
        };
        let committed = self.commit(id, *change).await;
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
        work: Work<'_>,
        store_failed: &Mutex<Option<String>>,
    ) -> Result<String, String> {
        let id = subject.deployment.id;
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
                Err(Failure::Transient { error, .. }) if plan::retry(run.action, attempt) => {
                    warn!(%error, attempt, "the action failed; it is tried again");
                    let line = plan::retry_line(run.action, attempt, &error);
                    if let Err(e) = self.ledger.append_log(id, LogLevel::Warn, &line).await {
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

    /// Commits what this daemon's task did, unless another daemon runs the
    /// deployment now.
    async fn commit(&self, id: i64, change: Change) -> Result<bool, StoreError> {
        let mut t = transition(id, change);
        t.runner = Some(self.runner.clone());
        let waited = std::time::Instant::now();
        // Where commits wait in a group, waiting holds nothing: no turn.
        let _turn = match self.ledger.commits_in_groups() {
            true => None,
            false => self.turns.take().await,
        };
        let started = std::time::Instant::now();
        crate::telemetry::store_op("engine_turn_wait", started - waited);
        let done = self.ledger.commit_transition(&t).await;
        crate::telemetry::store_op("transition", started.elapsed());
        done
    }
}

/// What a step leaves its task to do.
enum Stepped {
    /// The next step.
    Again,
    /// Wait for a callback that has not arrived.
    Wait(Box<Waiting>),
    /// Nothing is left to run here.
    Ended,
}

/// A deployment waiting for callback `name` until `deadline` (unix
/// seconds), on the task's view of it (its pending moves committed).
struct Waiting {
    name: String,
    deadline: i64,
    started: Instant,
    view: EngineView,
    profile: Arc<Profile>,
}

/// How a wait for a callback ended.
enum Heard {
    /// It arrived; the log's line for it.
    Said(String),
    TimedOut,
    /// An operator cancelled the deployment.
    Cancelled,
}

/// What one deployment's task carries from one step to the next: the
/// deployment as it will be once `pending` is committed (`None`: read it
/// from the store), and the moves not committed yet.
#[derive(Default)]
struct Task {
    view: Option<Box<EngineView>>,
    pending: Option<Box<Change>>,
}

impl Task {
    /// `change` planned on `view`, not committed yet.
    fn plan(&mut self, view: EngineView, change: Change) {
        self.view = Some(Box::new(applied(view, &change)));
        self.pending = Some(Box::new(change));
    }
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

/// A deployment this daemon has just started (`record`, as created), as
/// the store holds it once its first moves (`moves`, committed in the same
/// transaction) are: what its task's first step would read back. None
/// when there were no moves or they finished it (the task reads it then).
pub fn started(
    record: &DeploymentRecord,
    profile_source: Arc<str>,
    token: String,
    moves: Option<&Transition>,
) -> Option<Box<EngineView>> {
    let t = moves?;
    if t.state.is_final() {
        return None;
    }
    let mut record = record.clone();
    record.state = t.state;
    record.step = t.step.clone();
    record.action_index = t.action_index;
    record.error = t.error.clone();
    Some(Box::new(EngineView {
        record,
        profile_source,
        token: Some(token),
        actions_done: t.actions_done,
        action_deadline: t.action_deadline,
        step_deadline: t.step_deadline,
    }))
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
async fn cancel_of(at: Position, cancelled: &mut watch::Receiver<Order>) {
    if at.state.is_final() {
        std::future::pending::<()>().await;
    }
    if cancelled.wait_for(|o| *o == Order::Cancel).await.is_err() {
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
pub type Parsed = (Arc<str>, Arc<Profile>);

/// Profiles kept parsed; past this, the map starts again.
const PARSED_PROFILES: usize = 256;

impl ParsedProfiles {
    pub fn of(&self, view: &mut EngineView) -> Result<Arc<Profile>, StoreError> {
        let (source, parsed) = self.parsed(view.record.profile_id, &view.profile_source)?;
        view.profile_source = source;
        Ok(parsed)
    }

    /// Profile `id` whose text is `text`, and that text as kept here.
    pub fn parsed(&self, id: i64, text: &str) -> Result<Parsed, StoreError> {
        let lock = || self.0.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((source, parsed)) = lock().get(&id)
            && **source == *text
        {
            return Ok((source.clone(), parsed.clone()));
        }
        let parsed = Arc::new(parse_text(text)?);
        let source: Arc<str> = text.into();
        let mut map = lock();
        if map.len() >= PARSED_PROFILES {
            map.clear();
        }
        map.insert(id, (source.clone(), parsed.clone()));
        Ok((source, parsed))
    }
}

pub fn parse_text(text: &str) -> Result<Profile, StoreError> {
    profile::parse(text)
        .map_err(|e| StoreError::Corrupt(format!("the deployment's profile no longer parses: {e}")))
}

/// What a new deployment's task would commit before its first action
/// runs (the `new` step done, the next state entered, the first action's
/// deadline armed), as one change with at most one state change:
/// written with the deployment itself (`Engine::create`).
pub fn first_moves(profile: &Profile, now: i64, fallback: Duration) -> Option<Change> {
    let mut at = Position {
        state: DeploymentState::New,
        cursor: Some(Cursor {
            step: StepName::New,
            action: 0,
        }),
        actions_done: 0,
    };
    let mut deadlines = Deadlines::default();
    let mut pending: Option<Change> = None;
    // Each move goes forward; a profile has few steps and actions.
    for _ in 0..64 {
        let Ok(Next::Commit(change)) = plan::next(profile, at, deadlines, now, fallback) else {
            break;
        };
        if pending.as_ref().is_some_and(|p| !mergeable(p, &change)) {
            break;
        }
        at = change.to;
        deadlines = change.deadlines;
        pending = Some(match pending.take() {
            Some(p) => merged(p, change),
            None => change,
        });
    }
    pending
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
