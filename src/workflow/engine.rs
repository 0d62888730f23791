//! Runs deployments: one task per deployment with work left, which reads
//! where it stands, runs the action at its cursor under its deadline, and
//! commits the outcome (position, log, outbox event) before going on.
//! Effects happen after the previous commit, so a restart resumes each
//! deployment at the action it was on, with the deadline it had.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::{Notify, watch};
use tracing::{Instrument, info, info_span, warn};

use super::context::{self, ContextInput};
use super::download::DownloadCache;
use crate::power::service::{PowerCommand, PowerService};
use bootloader_core::model::Via;
use bootloader_core::model::{CallbackToken, Fqdn};
use bootloader_core::power::BootRequest;
use bootloader_core::profile::{
    self, Action, ActionKind, FileSource, IpmiCommand, Profile, StepName,
};
use bootloader_core::workflow::machine::{self, Cursor, Event, Position};
use bootloader_store::boot::DeploymentRecord;
use bootloader_store::engine::{EngineView, LogLevel, NewDeployment, Transition};
use bootloader_store::{Network, Server, Store, StoreError};

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
}

/// How long a daemon holds the deployments it runs without renewing; it
/// renews every `RENEW`. A daemon that died loses them to another daemon
/// of the location after at most `HOLD`.
const HOLD: Duration = Duration::from_secs(30);
const RENEW: Duration = Duration::from_secs(10);

/// What ended an action early.
#[derive(Debug)]
enum Stop {
    Failed(String),
    Cancelled,
}

struct Runner {
    nudge: Notify,
    cancel: watch::Sender<bool>,
    /// Another daemon took the deployment over (this one missed renewing
    /// its hold): the task ends without committing anything more.
    lost: watch::Sender<bool>,
    /// The step under way and when this task first saw it (for the step
    /// duration metric).
    step: Mutex<Option<(StepName, Instant)>>,
}

pub struct Engine {
    store: Arc<dyn Store>,
    power: Arc<PowerService>,
    /// `Err`: why downloads cannot work here (no TLS roots, say).
    downloads: Result<DownloadCache, String>,
    settings: EngineSettings,
    running: Mutex<HashMap<i64, Arc<Runner>>>,
    /// Set when the daemon stops: every task ends where it is (the
    /// deployments stay as committed, and resume at the next start).
    stopping: watch::Sender<bool>,
}

fn unix_now() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}

impl Engine {
    pub fn new(
        store: Arc<dyn Store>,
        power: Arc<PowerService>,
        settings: EngineSettings,
    ) -> Arc<Self> {
        let downloads = DownloadCache::new(settings.cache_dir.clone(), settings.download_max_bytes);
        if let Err(e) = &downloads {
            warn!(error = %e, "serve_file url sources will fail");
        }
        Arc::new(Self {
            store,
            power,
            downloads,
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
        let now = unix_now();
        let held = self
            .store
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
            warn!(
                deployment = id,
                "another daemon runs this deployment now (this one did not renew its hold in time)"
            );
            runner.lost.send_replace(true);
        }
        let mut started = 0;
        for id in held {
            if self.spawn(id) {
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
        loop {
            if let Err(e) = self.claim().await {
                warn!(error = %e, "deployment engine: cannot renew the hold on deployments");
            }
            tokio::select! {
                () = tokio::time::sleep(RENEW) => {}
                _ = stopping.wait_for(|s| *s) => break,
            }
        }
        if let Err(e) = self.store.release_deployments(&self.settings.runner).await {
            warn!(error = %e, "could not hand this daemon's deployments over");
        }
    }

    /// Starts the task of deployment `id`, which this daemon holds, unless
    /// it runs already; `true` if it started one.
    fn spawn(self: &Arc<Self>, id: i64) -> bool {
        if *self.stopping.borrow() {
            return false;
        }
        let runner = {
            let mut running = self.running.lock().unwrap_or_else(|e| e.into_inner());
            if running.contains_key(&id) {
                return false;
            }
            let runner = Arc::new(Runner {
                nudge: Notify::new(),
                cancel: watch::channel(false).0,
                lost: watch::channel(false).0,
                step: Mutex::new(None),
            });
            running.insert(id, Arc::clone(&runner));
            runner
        };
        let engine = Arc::clone(self);
        tokio::spawn(
            async move {
                engine.run(id, &runner).await;
                engine
                    .running
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .remove(&id);
            }
            .instrument(info_span!("deployment", id)),
        );
        true
    }

    /// Whether deployment `id`'s profile may still expect a callback
    /// `name` (in its current step, a later one, `error` or `cleanup`).
    pub async fn expects_callback(&self, id: i64, name: &str) -> Result<bool, StoreError> {
        let view = self.store.engine_view(id).await?;
        let profile = parse(&view)?;
        let current = position(&view).cursor.map(|c| c.step);
        Ok(profile.callbacks_from(current).contains(&name))
    }

    /// A callback for `id` was stored: wake its task.
    pub fn nudge(&self, id: i64) {
        let running = self.running.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(r) = running.get(&id) {
            r.nudge.notify_one();
        }
    }

    /// Starts a deployment of `server` with profile `profile_id`.
    pub async fn create(
        self: &Arc<Self>,
        server: Fqdn,
        profile_id: i64,
        repeat_of: Option<i64>,
    ) -> Result<DeploymentRecord, StoreError> {
        let token = CallbackToken::generate().map_err(|e| {
            StoreError::Corrupt(format!("no randomness for the callback token: {e}"))
        })?;
        let record = self
            .store
            .start_deployment(&NewDeployment {
                server,
                profile_id,
                token,
                repeat_of,
            })
            .await?;
        // Taken up here if the server is in this daemon's location; by its
        // location's daemon otherwise.
        if let Err(e) = self.claim().await {
            warn!(error = %e, "the new deployment starts at the next claim");
        }
        self.store.deployment(record.id).await
    }

    /// A new deployment of the same server with the same pinned profile
    /// version and a new token.
    pub async fn repeat(self: &Arc<Self>, id: i64) -> Result<DeploymentRecord, StoreError> {
        let old = self.store.deployment(id).await?;
        self.create(old.server, old.profile_id, Some(id)).await
    }

    /// Cancels an active deployment: its files stop being served at once
    /// (only active deployments' files are), its task stops, and the
    /// profile's `cleanup` step runs if it has one.
    pub async fn cancel(self: &Arc<Self>, id: i64) -> Result<DeploymentRecord, StoreError> {
        loop {
            let view = self.store.engine_view(id).await?;
            let profile = parse(&view)?;
            let at = position(&view);
            let next = machine::apply(&profile, at, &Event::Cancel)
                .map_err(|e| StoreError::conflict("state", e.to_string()))?;
            let t = transition(
                id,
                at,
                next,
                None,
                vec![(LogLevel::Warn, "cancelled by an operator".into())],
            );
            if self.store.commit_transition(&t).await? {
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
            Some(r) => {
                let _ = r.cancel.send(true);
            }
            // Its runner (this daemon or another) runs the error and
            // cleanup steps; with none alive, whoever claims it next.
            None => {
                if let Err(e) = self.claim().await {
                    warn!(error = %e, "the cancelled deployment's cleanup starts at the next claim");
                }
            }
        }
        self.store.deployment(id).await
    }

    /// Ends every task; nothing new starts. What each deployment did is
    /// committed; the next start resumes it.
    pub fn shutdown(&self) {
        self.stopping.send_replace(true);
    }

    async fn run(self: &Arc<Self>, id: i64, runner: &Runner) {
        let mut stopping = self.stopping.subscribe();
        let mut lost = runner.lost.subscribe();
        tokio::select! {
            () = self.run_steps(id, runner) => {}
            _ = stopping.wait_for(|s| *s) => {}
            _ = lost.wait_for(|l| *l) => {}
        }
    }

    /// Commits what this daemon's task did, unless another daemon runs the
    /// deployment now.
    async fn commit(&self, mut t: Transition) -> Result<bool, StoreError> {
        t.runner = Some(self.settings.runner.clone());
        self.store.commit_transition(&t).await
    }

    async fn run_steps(self: &Arc<Self>, id: i64, runner: &Runner) {
        let mut cancelled = runner.cancel.subscribe();
        loop {
            match self.step(id, runner, &mut cancelled).await {
                Ok(true) => {}
                Ok(false) => return,
                Err(e) => {
                    // The store is down or busy: try again shortly; the
                    // deployment's deadline still holds.
                    warn!(error = %e, "deployment engine: store error; retrying");
                    tokio::time::sleep(Duration::from_secs(2)).await;
                }
            }
        }
    }

    /// Runs what is at the cursor and commits it. `false`: nothing left.
    async fn step(
        self: &Arc<Self>,
        id: i64,
        runner: &Runner,
        cancelled: &mut watch::Receiver<bool>,
    ) -> Result<bool, StoreError> {
        let view = self.store.engine_view(id).await?;
        if view.record.runner.as_deref() != Some(self.settings.runner.as_str()) {
            info!(runner = ?view.record.runner, "another daemon runs this deployment now");
            return Ok(false);
        }
        let Some(token) = view.token.clone() else {
            return Ok(false);
        };
        let profile = match parse(&view) {
            Ok(p) => p,
            Err(e) => {
                self.store
                    .append_log(id, LogLevel::Error, &e.to_string())
                    .await?;
                return Ok(false);
            }
        };
        let at = position(&view);
        let Some(cursor) = at.cursor else {
            return Ok(false);
        };
        {
            let mut seen = runner.step.lock().unwrap_or_else(|e| e.into_inner());
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
        let Some(action) = machine::action_at(&profile, cursor) else {
            // The step has nothing (more) to run: on to the next.
            let next = machine::apply(&profile, at, &Event::Advance)
                .map_err(|e| StoreError::Corrupt(e.to_string()))?;
            let mut log = vec![(
                LogLevel::Info,
                format!("step {} done", cursor.step.as_str()),
            )];
            if next.state != at.state {
                log.push((LogLevel::Info, format!("state {}", next.state)));
            }
            let mut t = transition(id, at, next, None, log);
            t.step_deadline = next_step_deadline(&profile, at, next, view.step_deadline);
            self.commit(t).await?;
            return Ok(true);
        };
        // Deadlines are stored before the action starts, so that a restart
        // keeps them.
        let action_deadline = match view.action_deadline {
            Some(d) => d,
            None => {
                let timeout =
                    machine::action_timeout(&profile, cursor, self.settings.default_timeout);
                let deadline = unix_now() + timeout.as_secs() as i64;
                let mut t = transition(
                    id,
                    at,
                    at,
                    None,
                    vec![(
                        LogLevel::Info,
                        format!(
                            "{} #{} {}: started (timeout {})",
                            cursor.step.as_str(),
                            cursor.action + 1,
                            describe(action),
                            human(timeout)
                        ),
                    )],
                );
                t.action_deadline = Some(deadline);
                t.step_deadline = view.step_deadline;
                if !self.commit(t).await? {
                    return Ok(true);
                }
                deadline
            }
        };
        let deadline = view
            .step_deadline
            .map_or(action_deadline, |s| s.min(action_deadline));
        let left = Duration::from_secs(deadline.saturating_sub(unix_now()).max(0) as u64);
        let started = Instant::now();
        let outcome = tokio::select! {
            r = tokio::time::timeout(left, self.act(&view, &profile, &token, action, runner)) => match r {
                Ok(Ok(message)) => Ok(message),
                Ok(Err(message)) => Err(Stop::Failed(message)),
                Err(_) => Err(Stop::Failed(self.timeout_reason(&view, cursor, action).await)),
            },
            // The error and cleanup steps of a final deployment run to
            // their end; a cancel stops only an active one.
            _ = async {
                if at.state.is_final() {
                    std::future::pending::<()>().await;
                }
                let _ = cancelled.wait_for(|c| *c).await;
            } => Err(Stop::Cancelled),
        };
        let took = started.elapsed();
        crate::telemetry::action(
            cursor.step.as_str(),
            action.kind.name(),
            if outcome.is_ok() { "ok" } else { "failed" },
            took,
        );
        let what = format!(
            "{} #{} {}",
            cursor.step.as_str(),
            cursor.action + 1,
            describe(action)
        );
        let t = match outcome {
            Ok(message) => {
                let next = machine::apply(&profile, at, &Event::Advance)
                    .map_err(|e| StoreError::Corrupt(e.to_string()))?;
                let mut log = vec![(
                    LogLevel::Info,
                    format!("{what}: done in {} ({message})", human(took)),
                )];
                if next.state != at.state {
                    log.push((LogLevel::Info, format!("state {}", next.state)));
                }
                let mut t = transition(id, at, next, None, log);
                t.step_deadline = next_step_deadline(&profile, at, next, view.step_deadline);
                t
            }
            Err(Stop::Failed(reason)) => {
                let next = machine::apply(&profile, at, &Event::Fail)
                    .map_err(|e| StoreError::Corrupt(e.to_string()))?;
                let reason = format!("{what}: {reason}");
                warn!(%reason, "deployment failed");
                let error = (!at.state.is_final()).then(|| reason.clone());
                let mut t = transition(id, at, next, error, vec![(LogLevel::Error, reason)]);
                t.step_deadline = None;
                t
            }
            // The cancel is committed already; reload and run `cleanup`.
            Err(Stop::Cancelled) => return Ok(true),
        };
        self.commit(t).await?;
        Ok(true)
    }

    /// Runs one action; `Ok` carries what to log, `Err` why it failed.
    async fn act(
        &self,
        view: &EngineView,
        profile: &Profile,
        token: &str,
        action: &Action,
        runner: &Runner,
    ) -> Result<String, String> {
        let id = view.record.id;
        match &action.kind {
            ActionKind::Echo { message } => {
                let (server, nets) = self.server(view).await?;
                let ctx = self.context(view, profile, token, &server, &nets, 0);
                profile::render_str(message, &ctx).map_err(|e| format!("message: {e}"))
            }
            ActionKind::ServeFile {
                via,
                filename,
                source,
            } => {
                let name = match source {
                    FileSource::Template { name } => name,
                    FileSource::Url { url, sha256 } => {
                        return self
                            .serve_download(
                                view,
                                profile,
                                token,
                                action,
                                (*via, filename),
                                url,
                                sha256.as_deref(),
                            )
                            .await;
                    }
                };
                let mut served = Vec::new();
                for (ctx, path) in self.per_interface(view, profile, token, filename).await? {
                    let content = profile::render_template(profile, name, &ctx)
                        .map_err(|e| format!("template {name}: {e}"))?;
                    let via = *via;
                    self.store
                        .serve_file(id, via, &path, content.as_bytes())
                        .await
                        .map_err(|e| format!("cannot serve {path}: {e}"))?;
                    served.push(format!("{} {path} ({} bytes)", via.as_str(), content.len()));
                }
                Ok(format!("serving {}", served.join(", ")))
            }
            ActionKind::DeleteFile { on, filename } => {
                let mut removed = Vec::new();
                for (_, path) in self.per_interface(view, profile, token, filename).await? {
                    let via = *on;
                    let was = self
                        .store
                        .unserve_file(id, via, &path)
                        .await
                        .map_err(|e| format!("cannot stop serving {path}: {e}"))?;
                    removed.push(format!(
                        "{} {path}{}",
                        via.as_str(),
                        if was { "" } else { " (was not served)" }
                    ));
                }
                Ok(format!("stopped serving {}", removed.join(", ")))
            }
            ActionKind::ExpectCallback { name } => loop {
                // Callbacks are stored as they arrive, also before this
                // action started; a replay is a no-op.
                match self.store.callbacks(id).await {
                    Ok(calls) => {
                        if let Some(c) = calls.iter().find(|c| &c.name == name) {
                            let mut said = format!("callback {name} received ({})", c.method);
                            if !c.body.is_empty() {
                                said.push_str(&format!(
                                    ": {}",
                                    excerpt(&c.body, CALLBACK_BODY_IN_LOG)
                                ));
                            }
                            return Ok(said);
                        }
                    }
                    Err(e) => warn!(error = %e, "cannot read callbacks; retrying"),
                }
                // Woken by the callback handler; polled too, for callbacks
                // another daemon stored.
                let _ = tokio::time::timeout(Duration::from_secs(2), runner.nudge.notified()).await;
            },
            ActionKind::IpmiCommand(cmd) => {
                let command = match *cmd {
                    IpmiCommand::Power(action) => PowerCommand::Power(action),
                    IpmiCommand::PowerStatus => PowerCommand::Status,
                    IpmiCommand::Bootdev(device) => PowerCommand::SetBootDevice(BootRequest {
                        device,
                        persistent: false,
                        efi: false,
                    }),
                    IpmiCommand::BootdevSafe => {
                        return Err("bootdev safe is not supported by the power drivers".into());
                    }
                };
                let mut attempt = 0;
                loop {
                    attempt += 1;
                    let report = self
                        .power
                        .execute(&view.record.server, command)
                        .await
                        .map_err(|e| format!("{e}"))?;
                    match report.result {
                        Ok(_) => {
                            return Ok(format!("{} via {}", command.describe(), report.driver));
                        }
                        Err(e) if attempt <= action.retries => {
                            warn!(error = %e, attempt, "BMC command failed; the action retries");
                            self.note_retry(id, attempt, action.retries, &e.to_string())
                                .await;
                            tokio::time::sleep(Duration::from_secs(2)).await;
                        }
                        Err(e) => return Err(format!("{} failed: {e}", command.describe())),
                    }
                }
            }
        }
    }

    /// Each interface's template context with `filename` rendered in it:
    /// files are served once per interface of the server (once, with an
    /// empty interface, for a server that has none).
    async fn per_interface(
        &self,
        view: &EngineView,
        profile: &Profile,
        token: &str,
        filename: &str,
    ) -> Result<Vec<(serde_json::Value, String)>, String> {
        let (server, nets) = self.server(view).await?;
        (0..server.interfaces.len().max(1))
            .map(|i| {
                let ctx = self.context(view, profile, token, &server, &nets, i);
                let path =
                    profile::render_str(filename, &ctx).map_err(|e| format!("filename: {e}"))?;
                Ok((ctx, path))
            })
            .collect()
    }

    /// A failed attempt of an action that will be tried again, in the log.
    async fn note_retry(&self, id: i64, attempt: u32, retries: u32, error: &str) {
        let message = format!(
            "attempt {attempt} of {} failed: {error}; retrying",
            retries + 1
        );
        if let Err(e) = self.store.append_log(id, LogLevel::Warn, &message).await {
            warn!(error = %e, "cannot write the deployment log");
        }
    }

    /// `serve_file` with a url source: the file is downloaded once into the
    /// cache (resuming, retried as the action allows), then served from
    /// there under the rendered name, once per interface.
    #[allow(clippy::too_many_arguments)]
    async fn serve_download(
        &self,
        view: &EngineView,
        profile: &Profile,
        token: &str,
        action: &Action,
        (via, filename): (Via, &String),
        url: &str,
        sha256: Option<&str>,
    ) -> Result<String, String> {
        let downloads = self.downloads.as_ref().map_err(Clone::clone)?;
        let mut attempt = 0;
        let cached = loop {
            attempt += 1;
            match downloads.fetch(url, sha256).await {
                Ok(c) => break c,
                Err(e) if attempt <= action.retries => {
                    warn!(error = %e, attempt, "download failed; the action retries");
                    self.note_retry(view.record.id, attempt, action.retries, &e)
                        .await;
                    tokio::time::sleep(Duration::from_secs(2)).await;
                }
                Err(e) => return Err(e),
            }
        };
        let mut served = Vec::new();
        for (_, path) in self.per_interface(view, profile, token, filename).await? {
            self.store
                .serve_cached_file(view.record.id, via, &path, &cached.path)
                .await
                .map_err(|e| format!("cannot serve {path}: {e}"))?;
            served.push(format!("{} {path}", via.as_str()));
        }
        Ok(format!(
            "serving {} from {url} ({} bytes, sha256 {}, {})",
            served.join(", "),
            cached.size,
            cached.sha256,
            if cached.fetched {
                "downloaded"
            } else {
                "from the cache"
            }
        ))
    }

    /// The deployment, if `presented` is its callback token and it is
    /// active (machine-facing URLs work only while it runs).
    async fn authorized(&self, id: i64, presented: &str) -> Result<Option<EngineView>, StoreError> {
        let view = match self.store.engine_view(id).await {
            Ok(v) => v,
            Err(StoreError::NotFound { .. }) => return Ok(None),
            Err(e) => return Err(e),
        };
        let ok = view.token.as_deref().is_some_and(|t| {
            use subtle::ConstantTimeEq;
            bool::from(t.as_bytes().ct_eq(presented.as_bytes()))
        });
        Ok((ok && !view.record.state.is_final()).then_some(view))
    }

    /// `/export/file/{id}/{token}/{profile}/{version}/{file}`: the
    /// deployment's template `file` rendered for its first interface, if
    /// the token, profile and version are the deployment's.
    pub async fn export_file(
        &self,
        id: i64,
        presented: &str,
        profile_name: &str,
        version: &str,
        file: &str,
    ) -> Result<Option<String>, StoreError> {
        let Some(view) = self.authorized(id, presented).await? else {
            return Ok(None);
        };
        let profile = parse(&view)?;
        if profile.name != profile_name
            || profile.version != version
            || !profile.templates.contains_key(file)
        {
            return Ok(None);
        }
        let (server, nets) = self.server(&view).await.map_err(StoreError::Corrupt)?;
        let ctx = self.context(&view, &profile, presented, &server, &nets, 0);
        match profile::render_template(&profile, file, &ctx) {
            Ok(text) => Ok(Some(text)),
            Err(e) => {
                self.store
                    .append_log(
                        id,
                        LogLevel::Warn,
                        &format!("export of template {file} failed: {e}"),
                    )
                    .await?;
                Ok(None)
            }
        }
    }

    /// `/export/sshkeys/{id}/{token}/{user}`: the user's authorized keys,
    /// for an installer of an active deployment.
    pub async fn export_ssh_keys(
        &self,
        id: i64,
        presented: &str,
        user: &str,
    ) -> Result<Option<String>, StoreError> {
        if self.authorized(id, presented).await?.is_none() {
            return Ok(None);
        }
        let Ok(user) = user.parse::<bootloader_core::model::Name>() else {
            return Ok(None);
        };
        let page = bootloader_store::Page {
            limit: 1000,
            offset: 0,
        };
        let keys = self.store.list_ssh_keys(Some(&user), page).await?;
        Ok(Some(
            keys.items
                .iter()
                .map(|k| format!("{}\n", k.key.trim()))
                .collect(),
        ))
    }

    /// The server, with each interface's address: its reservation, else
    /// (DNS as a fallback) the server's name resolved to an IPv4 address;
    /// and the networks of those addresses.
    async fn server(&self, view: &EngineView) -> Result<(Server, Vec<Network>), String> {
        let mut server = self
            .store
            .server(&view.record.server)
            .await
            .map_err(|e| format!("cannot read the server: {e}"))?;
        if server.interfaces.iter().any(|i| i.ipv4.is_none()) {
            let resolved = resolve_v4(server.fqdn.as_str()).await;
            if let Some(addr) = resolved {
                let page = bootloader_store::Page {
                    limit: 1000,
                    offset: 0,
                };
                let networks = self
                    .store
                    .list_networks(Some(&server.location), page)
                    .await
                    .map(|l| l.items)
                    .unwrap_or_default();
                let network = networks
                    .iter()
                    .find(|n| n.cidr.contains(&addr))
                    .map(|n| n.id);
                for i in server.interfaces.iter_mut().filter(|i| i.ipv4.is_none()) {
                    i.ipv4 = Some(addr);
                    if i.network_id.is_none() {
                        i.network_id = network;
                    }
                }
            }
        }
        let mut nets = Vec::new();
        for i in &server.interfaces {
            if let Some(n) = i.network_id
                && !nets.iter().any(|x: &Network| x.id == n)
                && let Ok(net) = self.store.network(n).await
            {
                nets.push(net);
            }
        }
        Ok((server, nets))
    }

    fn context(
        &self,
        view: &EngineView,
        profile: &Profile,
        token: &str,
        server: &Server,
        nets: &[Network],
        interface: usize,
    ) -> serde_json::Value {
        let iface = server.interfaces.get(interface);
        let net = iface
            .and_then(|i| i.network_id)
            .and_then(|n| nets.iter().find(|x| x.id == n));
        context::for_interface(
            &ContextInput {
                public_url: &self.settings.public_url,
                token,
                deployment: &view.record,
                profile_name: &profile.name,
                profile_version: &profile.version,
                server,
            },
            iface,
            net,
        )
    }

    /// A timeout names the step, the action, and the last thing the machine
    /// did (its newest boot timeline event).
    async fn timeout_reason(&self, view: &EngineView, cursor: Cursor, action: &Action) -> String {
        let mut reason = format!(
            "timed out in step {} waiting for {}",
            cursor.step.as_str(),
            describe(action)
        );
        let macs: Vec<_> = match self.store.server(&view.record.server).await {
            Ok(s) => s.interfaces.iter().map(|i| i.mac).collect(),
            Err(_) => Vec::new(),
        };
        if macs.is_empty() {
            return reason;
        }
        if let Ok(events) = self.store.boot_events(&macs, None, 1).await {
            match events.first() {
                Some((_, e)) => reason.push_str(&format!(
                    "; the machine's last boot event: {} {} {} -> {} {}",
                    e.at.format(&time::format_description::well_known::Rfc3339)
                        .unwrap_or_default(),
                    e.phase.as_str(),
                    e.request,
                    e.outcome.as_str(),
                    e.detail
                )),
                None => reason.push_str("; the machine was never seen on the boot network"),
            }
        }
        reason
    }
}

/// How much of a callback's body goes into the log.
const CALLBACK_BODY_IN_LOG: usize = 4096;

/// The first `max` bytes of `text` (on a character boundary), marked when
/// cut.
fn excerpt(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_string();
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}... ({} bytes in all)", &text[..end], text.len())
}

/// The first IPv4 address DNS gives for `name`, if it answers in time.
async fn resolve_v4(name: &str) -> Option<std::net::Ipv4Addr> {
    let lookup = tokio::net::lookup_host((name, 0));
    match tokio::time::timeout(Duration::from_secs(3), lookup).await {
        Ok(Ok(addrs)) => addrs.into_iter().find_map(|a| match a.ip() {
            std::net::IpAddr::V4(v4) => Some(v4),
            std::net::IpAddr::V6(_) => None,
        }),
        _ => None,
    }
}

fn parse(view: &EngineView) -> Result<Profile, StoreError> {
    profile::parse(&view.profile_source)
        .map_err(|e| StoreError::Corrupt(format!("the deployment's profile no longer parses: {e}")))
}

fn position(view: &EngineView) -> Position {
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

fn transition(
    id: i64,
    from: Position,
    to: Position,
    error: Option<String>,
    log: Vec<(LogLevel, String)>,
) -> Transition {
    Transition {
        id,
        from: from.state,
        state: to.state,
        step: to.cursor.map(|c| c.step.as_str().to_string()),
        action_index: to.cursor.map_or(0, |c| c.action as u32),
        actions_done: to.actions_done,
        action_deadline: None,
        step_deadline: None,
        error,
        log,
        runner: None,
    }
}

/// A step with a timeout of its own gets a deadline when it is entered.
fn next_step_deadline(
    profile: &Profile,
    from: Position,
    to: Position,
    current: Option<i64>,
) -> Option<i64> {
    match (from.cursor, to.cursor) {
        (Some(a), Some(b)) if a.step == b.step => current,
        (_, Some(b)) => {
            machine::step_timeout(profile, b.step).map(|t| unix_now() + t.as_secs() as i64)
        }
        _ => None,
    }
}

fn describe(action: &Action) -> String {
    match &action.kind {
        ActionKind::ServeFile { via, filename, .. } => {
            format!("serve_file {} {filename}", via.as_str())
        }
        ActionKind::DeleteFile { on, filename } => {
            format!("delete_file {} {filename}", on.as_str())
        }
        ActionKind::ExpectCallback { name } => format!("expect_callback {name}"),
        ActionKind::IpmiCommand(command) => {
            let (command, parameters) = command.parts();
            format!("ipmi_command {command} {parameters}")
        }
        ActionKind::Echo { .. } => "echo".into(),
    }
}

fn human(d: Duration) -> String {
    let s = d.as_secs();
    if s >= 3600 && s.is_multiple_of(3600) {
        format!("{}h", s / 3600)
    } else if s >= 60 && s.is_multiple_of(60) {
        format!("{}m", s / 60)
    } else if s >= 1 {
        format!("{s}s")
    } else {
        format!("{} ms", d.as_millis())
    }
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Engine")
    }
}
