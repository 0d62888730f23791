//! The driver against a scripted executor and an in-memory ledger, on
//! tokio's paused clock: deadlines at each level, retries, a cancel during
//! each kind of action, a restart in the middle of an action, a store
//! that fails for a while. The real store, power drivers and callbacks are
//! the integration suite's (`tests/it/deployments.rs`, `deploy_e2e.rs`).
//! This file is the bench; the tests are in `actions.rs`, `callbacks.rs`
//! and `store.rs`.

mod actions;
mod callbacks;
mod store;

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use time::OffsetDateTime;
use tokio::time::Instant;

use super::drive::{Clock, Driver, transition};
use super::runner::Runner;
use crate::workflow::executor::{Executor, Failure};
use crate::workflow::templates::Subject;
use bootloader_core::model::{DeploymentState, Fqdn, LogLevel};
use bootloader_core::workflow::plan::{self, Work};
use bootloader_store::boot::DeploymentRecord;
use bootloader_store::engine::{EngineStore, EngineView, LogEntry, NewDeployment, Transition};
use bootloader_store::{Listing, Page, StoreError};

const ID: i64 = 7;
const RUNNER: &str = "here";
/// Unix seconds when each test starts.
const EPOCH: i64 = 1_700_000_000;
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(3600);

/// One deployment as the store would keep it.
struct Ledger {
    view: Mutex<EngineView>,
    log: Mutex<Vec<(LogLevel, String)>>,
    /// `engine_view` fails this many more times.
    outage: Mutex<u32>,
}

impl Ledger {
    fn new(profile: &str) -> Arc<Self> {
        let at = OffsetDateTime::from_unix_timestamp(EPOCH).unwrap();
        let record = DeploymentRecord {
            id: ID,
            server: "node1.example.com".parse::<Fqdn>().unwrap(),
            profile_id: 1,
            profile: "t==1.0".into(),
            state: DeploymentState::New,
            progress: 0,
            step: Some("new".into()),
            action_index: 0,
            error: None,
            repeat_of: None,
            created_at: at,
            updated_at: at,
            finished_at: None,
            runner: Some(RUNNER.into()),
        };
        Arc::new(Self {
            view: Mutex::new(EngineView {
                record,
                profile_source: profile.into(),
                token: Some("secret".into()),
                actions_done: 0,
                action_deadline: None,
                step_deadline: None,
            }),
            log: Mutex::new(Vec::new()),
            outage: Mutex::new(0),
        })
    }

    fn view(&self) -> EngineView {
        self.view.lock().unwrap().clone()
    }

    fn lines(&self) -> Vec<String> {
        self.log
            .lock()
            .unwrap()
            .iter()
            .map(|(_, l)| l.clone())
            .collect()
    }

    fn logged(&self, part: &str) -> usize {
        self.lines().iter().filter(|l| l.contains(part)).count()
    }

    /// An operator's cancel, committed as `Engine::cancel` commits it.
    fn cancel(&self) {
        let view = self.view();
        let profile = super::drive::parse_text(&view.profile_source).unwrap();
        let change = plan::cancel(&profile, super::drive::position(&view)).unwrap();
        let t = transition(ID, change);
        assert!(self.apply(&t));
    }

    fn apply(&self, t: &Transition) -> bool {
        // A driver that commits without end (arming the same action again
        // and again, say) fails here instead of spinning the test forever.
        assert!(
            self.log.lock().unwrap().len() < 1000,
            "the driver keeps committing: {:?}",
            self.log.lock().unwrap().last()
        );
        let mut view = self.view.lock().unwrap();
        if view.record.state != t.from
            || t.runner
                .as_ref()
                .is_some_and(|r| view.record.runner.as_ref() != Some(r))
        {
            return false;
        }
        view.record.state = t.state;
        view.record.step = t.step.clone();
        view.record.action_index = t.action_index;
        view.actions_done = t.actions_done;
        view.action_deadline = t.action_deadline;
        view.step_deadline = t.step_deadline;
        if t.error.is_some() {
            view.record.error = t.error.clone();
        }
        self.log.lock().unwrap().extend(t.log.iter().cloned());
        true
    }
}

fn unused<T>() -> Result<T, StoreError> {
    Err(StoreError::Corrupt("not used by the driver".into()))
}

#[async_trait]
impl EngineStore for Ledger {
    async fn start_deployment(&self, _: &NewDeployment) -> Result<DeploymentRecord, StoreError> {
        unused()
    }
    async fn engine_view(&self, id: i64) -> Result<EngineView, StoreError> {
        let mut outage = self.outage.lock().unwrap();
        if *outage > 0 {
            *outage -= 1;
            return Err(StoreError::Unavailable(sqlx::Error::PoolTimedOut));
        }
        if id != ID {
            return Err(StoreError::not_found("deployment", id));
        }
        Ok(self.view())
    }
    async fn claim_deployments(
        &self,
        _: &str,
        _: Option<&str>,
        _: i64,
        _: i64,
    ) -> Result<Vec<i64>, StoreError> {
        unused()
    }
    async fn release_deployments(&self, _: &str) -> Result<(), StoreError> {
        unused()
    }
    async fn commit_transition(&self, t: &Transition) -> Result<bool, StoreError> {
        Ok(self.apply(t))
    }
    async fn append_log(&self, _: i64, level: LogLevel, message: &str) -> Result<(), StoreError> {
        self.log.lock().unwrap().push((level, message.into()));
        Ok(())
    }
    async fn deployment_log(
        &self,
        _: i64,
        _: Option<i64>,
        _: u32,
    ) -> Result<Vec<LogEntry>, StoreError> {
        unused()
    }
    async fn list_deployments(
        &self,
        _: Option<&Fqdn>,
        _: Option<DeploymentState>,
        _: Page,
    ) -> Result<Listing<DeploymentRecord>, StoreError> {
        unused()
    }
    async fn delete_deployment(&self, _: i64) -> Result<DeploymentRecord, StoreError> {
        unused()
    }
    async fn changed_deployments(
        &self,
        _: time::OffsetDateTime,
        _: u32,
    ) -> Result<Vec<(i64, time::OffsetDateTime)>, StoreError> {
        unused()
    }
}

/// Carries out work as scripted: each kind of work takes `slow` and then
/// answers the next scripted result for its kind (success when none is
/// left); callbacks are there once `arrive` was called.
#[derive(Default)]
struct Script {
    slow: HashMap<&'static str, Duration>,
    answers: Mutex<HashMap<&'static str, VecDeque<Result<(), Failure>>>>,
    /// What was started, in order (`power`, `serve`, ...).
    started: Mutex<Vec<&'static str>>,
    /// What finished.
    finished: Mutex<Vec<&'static str>>,
    callbacks: Mutex<Vec<String>>,
    /// How often the callbacks were read.
    reads: AtomicUsize,
    /// Runs once, during the first read, after the callbacks were taken:
    /// another daemon storing one meanwhile.
    meanwhile: Mutex<Option<Box<dyn FnOnce() + Send>>>,
}

impl Script {
    fn slow(mut self, kind: &'static str, d: Duration) -> Self {
        self.slow.insert(kind, d);
        self
    }

    fn answer(self, kind: &'static str, results: Vec<Result<(), Failure>>) -> Self {
        self.answers.lock().unwrap().insert(kind, results.into());
        self
    }

    fn arrive(&self, name: &str) {
        self.callbacks.lock().unwrap().push(name.into());
    }

    fn started(&self) -> Vec<&'static str> {
        self.started.lock().unwrap().clone()
    }

    fn finished(&self) -> Vec<&'static str> {
        self.finished.lock().unwrap().clone()
    }
}

fn kind(work: Work<'_>) -> &'static str {
    match work {
        Work::Echo { .. } => "echo",
        Work::Serve { .. } => "serve",
        Work::Unserve { .. } => "unserve",
        Work::Power(_) | Work::Bootdev { .. } => "power",
    }
}

#[async_trait]
impl Executor for Script {
    async fn perform(&self, _: Subject<'_>, work: Work<'_>) -> Result<String, Failure> {
        let kind = kind(work);
        self.started.lock().unwrap().push(kind);
        if let Some(d) = self.slow.get(kind) {
            tokio::time::sleep(*d).await;
        }
        let answer = self
            .answers
            .lock()
            .unwrap()
            .get_mut(kind)
            .and_then(VecDeque::pop_front)
            .unwrap_or(Ok(()));
        self.finished.lock().unwrap().push(kind);
        answer.map(|()| format!("{kind} ok"))
    }

    async fn callbacks(&self, _: i64) -> Result<Vec<(String, String)>, StoreError> {
        self.reads.fetch_add(1, Ordering::SeqCst);
        let taken = self
            .callbacks
            .lock()
            .unwrap()
            .iter()
            .map(|name| (name.clone(), format!("callback {name} received (POST)")))
            .collect();
        if let Some(meanwhile) = self.meanwhile.lock().unwrap().take() {
            meanwhile();
        }
        Ok(taken)
    }

    async fn last_seen(&self, _: Subject<'_>) -> Option<String> {
        Some("the machine was never seen on the boot network".into())
    }
}

struct Bench {
    ledger: Arc<Ledger>,
    script: Arc<Script>,
    driver: Arc<Driver>,
    runner: Arc<Runner>,
    /// When the test started: unix second `EPOCH`.
    origin: Instant,
    /// When this driver started.
    began: Instant,
}

impl Bench {
    fn new(profile: &str, script: Script) -> Self {
        let ledger = Ledger::new(profile);
        Self::resume(ledger, Arc::new(script), Instant::now())
    }

    /// A driver over `ledger` (as after a restart) whose clock reads
    /// `EPOCH` at `origin`.
    fn resume(ledger: Arc<Ledger>, script: Arc<Script>, origin: Instant) -> Self {
        let began = Instant::now();
        let clock: Clock = Arc::new(move || EPOCH + origin.elapsed().as_secs() as i64);
        let driver = Arc::new(Driver {
            ledger: ledger.clone(),
            executor: script.clone(),
            clock,
            runner: RUNNER.into(),
            default_timeout: DEFAULT_TIMEOUT,
            callback_poll: super::SHARED_CALLBACK_POLL,
            profiles: Default::default(),
            turns: Default::default(),
            tokens: Default::default(),
        });
        Self {
            ledger,
            script,
            driver,
            runner: Arc::new(Runner::new()),
            origin,
            began,
        }
    }

    fn start(&self) -> tokio::task::JoinHandle<()> {
        let (driver, runner) = (self.driver.clone(), self.runner.clone());
        tokio::spawn(async move { driver.run(ID, &runner, None).await })
    }

    /// Runs the deployment until nothing is left to run.
    async fn finish(&self) -> EngineView {
        self.start().await.unwrap();
        self.ledger.view()
    }

    fn elapsed(&self) -> Duration {
        self.began.elapsed()
    }
}

/// Lets the driver run until it waits (the paused clock moves only then).
async fn let_run() {
    for _ in 0..50 {
        tokio::task::yield_now().await;
    }
}

fn profile(steps: &str) -> String {
    profile_with("", steps)
}

/// A profile with `head` (top-level keys) and `steps`, the main steps it
/// does not name empty.
fn profile_with(head: &str, steps: &str) -> String {
    let mut yaml = format!(
        "kind: Profile\napiVersion: v1alpha1\nname: t\nversion: 1.0\n{head}templates:\n  t:\n    type: template\n    contents: hello\nworkflow:\n"
    );
    yaml.push_str(steps);
    for step in [
        "new",
        "preparing",
        "installing",
        "configuring",
        "postconfiguring",
        "complete",
    ] {
        if !steps.contains(&format!("  {step}:")) {
            yaml.push_str(&format!("  {step}: []\n"));
        }
    }
    yaml
}

const SERVE: &str = "
    - action: serve_file
      via: http
      filename: f
      source:
        type: template
        name: t";

const CYCLE: &str = "
    - action: ipmi_command
      command: power
      parameters: cycle
      retries: 2";
