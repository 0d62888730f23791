//! Runs deployments: one task per deployment with work left that this
//! daemon holds (claims across the daemons sharing a store, renewed every
//! `RENEW`), started after a restart where each stood, ended when another
//! daemon took it over or the daemon stops. What a task does is
//! `drive.rs`; the machine-facing exports are `exports.rs`.

mod drive;
pub use drive::{OWN_CALLBACK_POLL, SHARED_CALLBACK_POLL, started};
mod exports;
mod runner;
#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::watch;
use tracing::{Instrument, info, info_span, warn};

use self::drive::Driver;
use self::runner::Runner;
use super::download::DownloadCache;
use super::executor::StoreExecutor;
use super::templates::Templates;
use crate::power::service::PowerService;
use bootloader_core::model::{CallbackToken, Fqdn, TokenHash};
use bootloader_core::workflow::plan;
use bootloader_store::boot::DeploymentRecord;
use bootloader_store::engine::EngineStore;
use bootloader_store::engine::{Claim, EngineView, NewDeployment, Transition};
use bootloader_store::{BootStore, InventoryStore, Store, StoreError, TimelineStore, UserStore};

/// The `[deployments]` settings the engine uses.
#[derive(Debug, Clone)]
pub struct EngineSettings {
    /// BOOTLOADER_URL: what templates call `agent_url`.
    pub public_url: String,
    /// How long an action may take when neither it, its step nor its
    /// profile says.
    pub default_timeout: Duration,
    /// Where `serve_file` url sources are downloaded to.
    pub cache_dir: std::path::PathBuf,
    /// The largest file downloaded.
    pub download_max_bytes: u64,
    /// This daemon's name among those sharing the store.
    pub runner: String,
    /// Run only the deployments of this location's servers (all for `None`).
    pub location: Option<String>,
    /// How often a task waiting for a callback reads the store for one
    /// without being woken: `drive::SHARED_CALLBACK_POLL` where other
    /// daemons may store callbacks, `drive::OWN_CALLBACK_POLL` where only
    /// this one does.
    pub callback_poll: Duration,
}

/// How long a daemon holds the deployments it runs without renewing; it
/// renews every `RENEW`. A daemon that died loses them to another daemon
/// of the location after at most `HOLD`.
const HOLD: Duration = Duration::from_secs(30);
const RENEW: Duration = Duration::from_secs(10);
/// Deployments taken up at once; the rest of a large claim (a restart with
/// thousands under way) start `RESUME_PACE` apart per group of this many,
/// so that reading them back (a store query and a profile parse each)
/// does not take the store and the cores from machines booting meanwhile.
/// A callback that arrives first is stored and read when its deployment
/// starts.
const RESUME_BURST: usize = 64;
const RESUME_PACE: Duration = Duration::from_millis(25);

/// The store areas the engine reads and writes.
pub struct EngineStores {
    pub engine: Arc<dyn EngineStore>,
    pub boot: Arc<dyn BootStore>,
    pub inventory: Arc<dyn InventoryStore>,
    pub timeline: Arc<dyn TimelineStore>,
    pub users: Arc<dyn UserStore>,
}

impl EngineStores {
    /// Each area from the one store the daemon opened.
    pub fn of(store: &Arc<dyn Store>) -> Self {
        Self {
            engine: store.clone(),
            boot: store.clone(),
            inventory: store.clone(),
            timeline: store.clone(),
            users: store.clone(),
        }
    }
}

pub struct Engine {
    /// Deployments, their claims and their log.
    ledger: Arc<dyn EngineStore>,
    boot: Arc<dyn BootStore>,
    users: Arc<dyn UserStore>,
    templates: Arc<Templates>,
    driver: Arc<Driver>,
    settings: EngineSettings,
    running: Mutex<HashMap<i64, Arc<Runner>>>,
    /// Set when the daemon stops: every task ends where it is (the
    /// deployments stay as committed, and resume at the next start).
    stopping: watch::Sender<bool>,
}

impl Engine {
    pub fn new(
        stores: EngineStores,
        power: Arc<PowerService>,
        settings: EngineSettings,
    ) -> Arc<Self> {
        let downloads = DownloadCache::new(settings.cache_dir.clone(), settings.download_max_bytes);
        if let Err(e) = &downloads {
            warn!(error = %e, "serve_file url sources will fail");
        }
        let templates = Arc::new(Templates::new(
            stores.inventory.clone(),
            settings.public_url.clone(),
        ));
        let executor = StoreExecutor {
            templates: templates.clone(),
            inventory: stores.inventory,
            boot: stores.boot.clone(),
            timeline: stores.timeline,
            power,
            downloads,
        };
        let driver = Driver {
            ledger: stores.engine.clone(),
            executor: Arc::new(executor),
            clock: drive::system_clock(),
            runner: settings.runner.clone(),
            default_timeout: settings.default_timeout,
            callback_poll: settings.callback_poll,
            profiles: Default::default(),
            turns: Default::default(),
            tokens: Default::default(),
        };
        Arc::new(Self {
            ledger: stores.engine,
            boot: stores.boot,
            users: stores.users,
            templates,
            driver: Arc::new(driver),
            settings,
            running: Mutex::new(HashMap::new()),
            stopping: watch::channel(false).0,
        })
    }

    /// Takes the deployments with work left that no live daemon runs, and
    /// renews the hold on those this daemon runs: starts a task for each
    /// new one (after a restart, where each stood) and ends the tasks of
    /// any another daemon took over. Returns how many it started.
    pub async fn claim(self: &Arc<Self>) -> Result<usize, StoreError> {
        let now = (self.driver.clock)();
        let held = self
            .ledger
            .claim_deployments(
                &self.settings.runner,
                self.settings.location.as_deref(),
                now,
                now + HOLD.as_secs() as i64,
            )
            .await?;
        let lost: Vec<(i64, Arc<Runner>)> = self
            .running
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .filter(|(id, _)| held.binary_search(id).is_err())
            .map(|(id, r)| (*id, Arc::clone(r)))
            .collect();
        for (id, runner) in lost {
            // Not held any more: most often it has just finished (its task
            // is ending by itself); lost only if another daemon runs it.
            let taken = match self.boot.deployment(id).await {
                Ok(d) => d.step.is_some() && d.runner.as_deref() != Some(&self.settings.runner),
                Err(StoreError::NotFound { .. }) => false,
                Err(e) => {
                    warn!(deployment = id, error = %e, "cannot read who runs this deployment; asked again at the next claim");
                    false
                }
            };
            if taken {
                warn!(
                    deployment = id,
                    "another daemon runs this deployment now (this one did not renew its hold in time)"
                );
                runner.end();
            }
        }
        let mut started = 0;
        for id in held {
            let turn = (started / RESUME_BURST) as u32;
            if self.spawn(id, RESUME_PACE * turn, Runner::new, None) {
                started += 1;
            }
        }
        if started > 0 {
            info!(count = started, "deployments taken up");
        }
        Ok(started)
    }

    /// Claims every `RENEW` until the daemon stops, then lets go of this
    /// daemon's deployments so that another daemon may go on with them.
    pub async fn run_claims(self: Arc<Self>) {
        let mut stopping = self.stopping.subscribe();
        // Where the database tells of callbacks (PostgreSQL), they wake
        // their deployments meanwhile.
        let notices = self.ledger.callback_notices().map(|rx| {
            let engine = Arc::clone(&self);
            tokio::spawn(async move { engine.follow_callbacks(rx).await })
        });
        loop {
            if let Err(e) = self.claim().await {
                warn!(error = %e, "deployment engine: cannot renew the hold on deployments");
            }
            tokio::select! {
                () = tokio::time::sleep(RENEW) => {}
                _ = stopping.wait_for(|s| *s) => break,
            }
        }
        if let Some(task) = notices {
            task.abort();
        }
        if let Err(e) = self.ledger.release_deployments(&self.settings.runner).await {
            warn!(error = %e, "could not hand this daemon's deployments over");
        }
    }

    /// Starts the task of deployment `id`, which this daemon holds, unless
    /// it runs already; `true` if it started one. The task begins its work
    /// after `delay`; `runner` makes its handle.
    /// `view` is the deployment as the task's first step would read it,
    /// when the caller knows it (none: the step reads it).
    fn spawn(
        self: &Arc<Self>,
        id: i64,
        delay: Duration,
        runner: fn() -> Runner,
        view: Option<Box<EngineView>>,
    ) -> bool {
        let runner = {
            let mut running = self.running.lock().unwrap_or_else(|e| e.into_inner());
            // Under the lock `shutdown` takes to end every task.
            if *self.stopping.borrow() || running.contains_key(&id) {
                return false;
            }
            let runner = Arc::new(runner());
            running.insert(id, Arc::clone(&runner));
            runner
        };
        let engine = Arc::clone(self);
        let fut = async move {
            if !delay.is_zero() {
                tokio::select! {
                    () = tokio::time::sleep(delay) => {}
                    () = runner.ended() => {}
                }
            }
            engine.run(id, &runner, view).await;
            engine
                .running
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .remove(&id);
            if let Some(token) = runner.token.get() {
                engine
                    .driver
                    .tokens
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .remove(token);
            }
        }
        .instrument(info_span!("deployment", id));
        tokio::spawn(fut);
        true
    }

    /// Whether deployment `id`'s profile may still expect a callback
    /// `name` (in its current step, a later one, `error` or `cleanup`).
    pub async fn expects_callback(&self, id: i64, name: &str) -> Result<bool, StoreError> {
        let mut view = self.ledger.engine_view(id).await?;
        let profile = self.driver.profiles.of(&mut view)?;
        let current = drive::position(&view).cursor.map(|c| c.step);
        Ok(profile.callbacks_from(current).contains(&name))
    }

    /// Wakes the task of each deployment the database says got a callback
    /// (another daemon may have stored it), and every waiting task when
    /// callbacks may have been missed. Ends when the store stops telling.
    async fn follow_callbacks(
        self: Arc<Self>,
        mut notices: tokio::sync::broadcast::Receiver<bootloader_store::engine::CallbackNotice>,
    ) {
        use bootloader_store::engine::CallbackNotice;
        use tokio::sync::broadcast::error::RecvError;
        loop {
            match notices.recv().await {
                Ok(CallbackNotice::Stored(id)) => self.nudge(id),
                Ok(CallbackNotice::Unknown) | Err(RecvError::Lagged(_)) => {
                    let running = self.running.lock().unwrap_or_else(|e| e.into_inner());
                    for r in running.values() {
                        r.nudge();
                    }
                }
                Err(RecvError::Closed) => return,
            }
        }
    }

    /// A callback for `id` may have been stored: wake its task, which
    /// reads the store.
    pub fn nudge(&self, id: i64) {
        if let Some(r) = self.runner(id) {
            r.nudge();
        }
    }

    /// Callback `name` of deployment `id` has just been stored here (the
    /// first of its name): its task, if it runs here, takes it without
    /// reading the store.
    pub fn arrived(&self, id: i64, name: &str, method: &str, body: &str) {
        if let Some(r) = self.runner(id) {
            r.arrived(name, super::executor::callback_said(name, method, body));
        }
    }

    /// Judges a callback from memory when the deployment of `token` runs
    /// here: its id and whether its profile may still expect `name`.
    /// `None`: the store must say (the deployment runs elsewhere, has not
    /// started here yet or has ended).
    pub fn judge_callback(&self, token: &TokenHash, name: &str) -> Option<(i64, bool)> {
        let id = *self
            .driver
            .tokens
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(token)?;
        let expected = self.runner(id)?.expects(name)?;
        Some((id, expected))
    }

    fn runner(&self, id: i64) -> Option<Arc<Runner>> {
        let running = self.running.lock().unwrap_or_else(|e| e.into_inner());
        running.get(&id).cloned()
    }

    /// Starts a deployment of `server` with profile `profile_id`, whose
    /// text is `source`.
    pub async fn create(
        self: &Arc<Self>,
        server: Fqdn,
        (profile_id, source): (i64, &str),
        repeat_of: Option<i64>,
    ) -> Result<DeploymentRecord, StoreError> {
        let token = CallbackToken::generate().map_err(|e| {
            StoreError::Corrupt(format!("no randomness for the callback token: {e}"))
        })?;
        // Taken up here if the server is in this daemon's location (in the
        // same transaction); by its location's daemon otherwise. Only this
        // one is claimed: claiming every active deployment on each create
        // made starting N of them cost N² rows.
        let now = (self.driver.clock)();
        // Its task's first moves, which run nothing, go into the same
        // transaction when the deployment is this daemon's; a profile
        // that no longer parses is the task's to report.
        let parsed = self.driver.profiles.parsed(profile_id, source).ok();
        let then = parsed
            .as_ref()
            .and_then(|(_, profile)| {
                drive::first_moves(profile, now, self.settings.default_timeout)
            })
            .map(|change| Transition {
                runner: Some(self.settings.runner.clone()),
                ..drive::transition(0, change)
            });
        let moves = then.clone();
        let secret = token.expose().to_string();
        let record = self
            .ledger
            .start_deployment(&NewDeployment {
                server,
                profile_id,
                token,
                repeat_of,
                claim: Some(Claim {
                    runner: self.settings.runner.clone(),
                    location: self.settings.location.clone(),
                    now,
                    until: now + HOLD.as_secs() as i64,
                }),
                then,
            })
            .await?;
        if record.runner.as_deref() == Some(self.settings.runner.as_str()) {
            // Its task starts from the deployment as just written, instead
            // of reading it back (one statement less for every start).
            let view = parsed.and_then(|(profile_source, _)| {
                drive::started(&record, profile_source, secret, moves.as_ref())
            });
            self.spawn(record.id, Duration::ZERO, Runner::created, view);
        }
        Ok(record)
    }

    /// A new deployment of the same server with the same pinned profile
    /// version and a new token.
    pub async fn repeat(self: &Arc<Self>, id: i64) -> Result<DeploymentRecord, StoreError> {
        let old = self.ledger.engine_view(id).await?;
        let profile = (old.record.profile_id, &*old.profile_source);
        self.create(old.record.server, profile, Some(id)).await
    }

    /// Cancels an active deployment: its files stop being served at once
    /// (only active deployments' files are), its task stops, and the
    /// profile's `cleanup` step runs if it has one.
    pub async fn cancel(self: &Arc<Self>, id: i64) -> Result<DeploymentRecord, StoreError> {
        loop {
            let mut view = self.ledger.engine_view(id).await?;
            let profile = self.driver.profiles.of(&mut view)?;
            let change = plan::cancel(&profile, drive::position(&view))
                .map_err(|e| StoreError::conflict("state", e.to_string()))?;
            if self
                .ledger
                .commit_transition(&drive::transition(id, change))
                .await?
            {
                break;
            }
        }
        let runner = self
            .running
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&id)
            .cloned();
        match runner {
            Some(r) => r.cancel(),
            // Its runner (this daemon or another) runs the error and
            // cleanup steps; with none alive, whoever claims it next.
            None => {
                if let Err(e) = self.claim().await {
                    warn!(error = %e, "the cancelled deployment's cleanup starts at the next claim");
                }
            }
        }
        self.boot.deployment(id).await
    }

    /// Ends every task; nothing new starts. What each deployment did is
    /// committed; the next start resumes it.
    pub fn shutdown(&self) {
        self.stopping.send_replace(true);
        let running = self.running.lock().unwrap_or_else(|e| e.into_inner());
        for r in running.values() {
            r.end();
        }
    }

    /// Runs deployment `id` until it has nothing left, the daemon stops or
    /// another daemon takes it over.
    async fn run(&self, id: i64, runner: &Runner, view: Option<Box<EngineView>>) {
        tokio::select! {
            () = self.driver.run(id, runner, view) => {}
            () = runner.ended() => {}
        }
    }
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Engine")
    }
}
