//! The driver against a scripted executor and an in-memory ledger, on
//! tokio's paused clock: deadlines at each level, retries, a cancel during
//! each kind of action, a restart in the middle of an action, a store
//! that fails for a while. The real store, power drivers and callbacks are
//! the integration suite's (`tests/it/deployments.rs`, `deploy_e2e.rs`).

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use time::OffsetDateTime;
use tokio::time::Instant;

use super::drive::{Clock, Driver, Runner, transition};
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
        let profile = super::drive::parse(&view).unwrap();
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
        tokio::spawn(async move { driver.run(ID, &runner).await })
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

#[tokio::test(start_paused = true)]
async fn a_profile_runs_to_complete_in_order() {
    let steps = format!(
        "  preparing:{SERVE}{CYCLE}
    - action: expect_callback
      name: booted
  installing:
    - action: echo
      message: hi
  complete:
    - action: delete_file
      on: http
      filename: f
"
    );
    let bench = Bench::new(&profile(&steps), Script::default());
    bench.script.arrive("booted");
    let view = bench.finish().await;
    assert_eq!(view.record.state, DeploymentState::Complete);
    assert_eq!(view.record.step, None);
    assert_eq!(view.actions_done, 5);
    assert_eq!(
        bench.script.started(),
        ["serve", "power", "echo", "unserve"]
    );
    assert_eq!(bench.ledger.logged(": started (timeout 1h)"), 5);
    assert_eq!(
        bench
            .ledger
            .logged("preparing #3 expect_callback booted: done in"),
        1
    );
    assert_eq!(bench.ledger.logged("state complete"), 1);
}

#[tokio::test(start_paused = true)]
async fn an_action_fails_at_its_own_deadline_with_what_the_machine_did_last() {
    let steps = "  preparing:
    - action: expect_callback
      name: booted
      timeout: 5m
  error:
    - action: echo
      message: failed
";
    let bench = Bench::new(&profile(steps), Script::default());
    let view = bench.finish().await;
    assert_eq!(view.record.state, DeploymentState::Error);
    assert_eq!(
        view.record.error.as_deref(),
        Some(
            "preparing #1 expect_callback booted: timed out in step preparing waiting for \
             expect_callback booted; the machine was never seen on the boot network"
        )
    );
    // The error step ran.
    assert_eq!(bench.script.started(), ["echo"]);
    let took = bench.elapsed();
    assert!(
        took >= Duration::from_secs(300) && took < Duration::from_secs(302),
        "{took:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn each_level_of_timeout_ends_an_action_that_hangs() {
    // The BMC never answers within the deadline: the action's own, its
    // step's (shorter than the action's), the profile's, the daemon's.
    let power_on =
        "  preparing:\n    - action: ipmi_command\n      command: power\n      parameters: on\n";
    let cases = [
        ("", format!("{power_on}      timeout: 90s\n"), 90),
        (
            "",
            "  preparing:\n    timeout: 2m\n    actions:\n      - action: ipmi_command\n        command: power\n        parameters: on\n        timeout: 10m\n".to_string(),
            120,
        ),
        ("timeout: 3m\n", power_on.to_string(), 180),
        ("", power_on.to_string(), DEFAULT_TIMEOUT.as_secs()),
    ];
    for (head, steps, secs) in cases {
        let yaml = profile_with(head, &steps);
        let bench = Bench::new(
            &yaml,
            Script::default().slow("power", Duration::from_secs(86_400)),
        );
        let view = bench.finish().await;
        assert_eq!(view.record.state, DeploymentState::Error, "{steps}");
        assert!(
            view.record
                .error
                .as_deref()
                .unwrap()
                .contains("timed out in step preparing waiting for ipmi_command power on"),
            "{:?}",
            view.record.error
        );
        let took = bench.elapsed().as_secs();
        assert!(
            (secs..secs + 2).contains(&took),
            "{steps}: took {took}s, expected {secs}s"
        );
        assert!(
            bench.script.finished().is_empty(),
            "the hung command never finished"
        );
    }
}

#[tokio::test(start_paused = true)]
async fn a_failed_attempt_is_retried_as_the_action_allows() {
    let transient = || {
        Err(Failure::Transient {
            error: "no answer".into(),
            reason: "power cycle failed: no answer".into(),
        })
    };
    // Two failures, then the third attempt succeeds.
    let bench = Bench::new(
        &profile(&format!("  preparing:{CYCLE}\n")),
        Script::default().answer("power", vec![transient(), transient()]),
    );
    let view = bench.finish().await;
    assert_eq!(view.record.state, DeploymentState::Complete);
    assert_eq!(bench.script.started(), ["power", "power", "power"]);
    assert_eq!(
        bench
            .ledger
            .logged("attempt 1 of 3 failed: no answer; retrying"),
        1
    );
    assert_eq!(
        bench
            .ledger
            .logged("attempt 2 of 3 failed: no answer; retrying"),
        1
    );
    assert!(
        bench.elapsed() >= Duration::from_secs(4),
        "a pause between attempts"
    );

    // Three failures: the action fails with the last one's reason.
    let bench = Bench::new(
        &profile(&format!("  preparing:{CYCLE}\n")),
        Script::default().answer("power", vec![transient(), transient(), transient()]),
    );
    let view = bench.finish().await;
    assert_eq!(view.record.state, DeploymentState::Error);
    assert_eq!(
        view.record.error.as_deref(),
        Some("preparing #1 ipmi_command power cycle: power cycle failed: no answer")
    );
    assert_eq!(bench.script.started().len(), 3);

    // A failure no attempt would change is not retried.
    let bench = Bench::new(
        &profile(&format!("  preparing:{CYCLE}\n")),
        Script::default().answer(
            "power",
            vec![Err(Failure::Final("the server has no BMC".into()))],
        ),
    );
    let view = bench.finish().await;
    assert_eq!(view.record.state, DeploymentState::Error);
    assert_eq!(bench.script.started(), ["power"]);
    assert_eq!(bench.ledger.logged("retrying"), 0);
}

#[tokio::test(start_paused = true)]
async fn a_cancel_stops_each_kind_of_action_and_runs_cleanup() {
    let cleanup = "  cleanup:
    - action: delete_file
      on: http
      filename: f
";
    let cases: [(&str, &str); 4] = [
        (
            "expect_callback",
            "    - action: expect_callback\n      name: booted\n",
        ),
        (
            "power",
            "    - action: ipmi_command\n      command: power\n      parameters: on\n",
        ),
        (
            "serve",
            "    - action: serve_file\n      via: http\n      filename: f\n      source:\n        type: url\n        url: http://127.0.0.1:9/big.iso\n",
        ),
        ("echo", "    - action: echo\n      message: hi\n"),
    ];
    for (what, action) in cases {
        let steps = format!("  preparing:\n{action}{cleanup}");
        let script = Script::default()
            .slow("power", Duration::from_secs(600))
            .slow("serve", Duration::from_secs(600))
            .slow("echo", Duration::from_secs(600));
        let bench = Bench::new(&profile(&steps), script);
        let task = bench.start();
        // Well into the action.
        tokio::time::sleep(Duration::from_secs(30)).await;
        let_run().await;
        assert_eq!(
            bench.ledger.view().record.state,
            DeploymentState::Preparing,
            "{what}"
        );
        bench.ledger.cancel();
        bench.runner.cancel.send_replace(true);
        task.await.unwrap();
        let view = bench.ledger.view();
        assert_eq!(view.record.state, DeploymentState::Cancelled, "{what}");
        assert_eq!(view.record.step, None, "{what}: cleanup ran to its end");
        assert!(
            bench.elapsed() < Duration::from_secs(60),
            "{what}: stopped at once"
        );
        assert_eq!(
            bench.ledger.logged("preparing #1"),
            1,
            "{what}: only its start is logged"
        );
        assert_eq!(
            bench.ledger.logged("cleanup #1 delete_file http f: done"),
            1,
            "{what}"
        );
        assert_eq!(
            bench.script.finished(),
            ["unserve"],
            "{what}: the cancelled work never finished"
        );
    }
}

#[tokio::test(start_paused = true)]
async fn after_a_restart_an_action_resumes_with_the_deadline_it_had() {
    let steps = "  preparing:
    - action: expect_callback
      name: booted
      timeout: 10m
";
    let first = Bench::new(&profile(steps), Script::default());
    let task = first.start();
    tokio::time::sleep(Duration::from_secs(120)).await;
    let_run().await;
    let armed = first.ledger.view().action_deadline;
    assert_eq!(armed, Some(EPOCH + 600));
    // The daemon stops in the middle of the action...
    task.abort();
    let _ = task.await;
    // ...and is down for two minutes.
    tokio::time::sleep(Duration::from_secs(120)).await;
    let script = Arc::new(Script::default());
    let second = Bench::resume(first.ledger.clone(), script, first.origin);
    let view = second.finish().await;
    // The deadline is the one armed before the restart: six more minutes,
    // not ten; the action was not started twice.
    assert_eq!(view.record.state, DeploymentState::Error);
    let took = second.elapsed().as_secs();
    assert!((360..362).contains(&took), "took {took}s after the restart");
    assert_eq!(second.ledger.logged(": started (timeout 10m)"), 1);

    // A callback that arrived while the daemon was down is found at once.
    let first = Bench::new(&profile(steps), Script::default());
    let task = first.start();
    tokio::time::sleep(Duration::from_secs(60)).await;
    let_run().await;
    task.abort();
    let _ = task.await;
    let script = Arc::new(Script::default());
    script.arrive("booted");
    let second = Bench::resume(first.ledger.clone(), script, first.origin);
    let view = second.finish().await;
    assert_eq!(view.record.state, DeploymentState::Complete);
    assert!(second.elapsed() < Duration::from_secs(1));
}

#[tokio::test(start_paused = true)]
async fn a_callback_is_taken_when_it_arrives_and_a_nudge_wakes_the_wait() {
    let steps = "  preparing:
    - action: expect_callback
      name: booted
";
    let bench = Bench::new(&profile(steps), Script::default());
    let task = bench.start();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let_run().await;
    bench.script.arrive("booted");
    bench.runner.nudge();
    task.await.unwrap();
    assert_eq!(bench.ledger.view().record.state, DeploymentState::Complete);
    // Woken by the nudge, not by the next poll two seconds on.
    assert!(
        bench.elapsed() < Duration::from_secs(1),
        "{:?}",
        bench.elapsed()
    );
}

#[tokio::test(start_paused = true)]
async fn callbacks_stored_here_are_judged_and_taken_from_memory() {
    let steps = "  preparing:
    - action: expect_callback
      name: booted
  installing:
    - action: expect_callback
      name: installed
";
    let bench = Bench::new(&profile(steps), Script::default());
    assert_eq!(bench.runner.expects("booted"), None, "not started yet");
    let task = bench.start();
    let_run().await;
    // Read once on entering the first wait: nothing had arrived.
    assert_eq!(bench.script.reads.load(Ordering::SeqCst), 1);
    assert_eq!(bench.runner.expects("booted"), Some(true));
    assert_eq!(bench.runner.expects("installed"), Some(true));
    assert_eq!(bench.runner.expects("other"), Some(false));
    bench
        .runner
        .arrived("booted", "callback booted received (GET)".into());
    let_run().await;
    assert_eq!(
        bench.ledger.view().record.state,
        DeploymentState::Installing
    );
    // A callback of a step passed is no longer expected.
    assert_eq!(bench.runner.expects("booted"), Some(false));
    bench.runner.arrived(
        "installed",
        "callback installed received (POST): done".into(),
    );
    task.await.unwrap();
    assert_eq!(bench.ledger.view().record.state, DeploymentState::Complete);
    assert_eq!(
        bench.runner.expects("installed"),
        None,
        "final: ask the store"
    );
    assert_eq!(bench.script.reads.load(Ordering::SeqCst), 1);
    let lines = bench.ledger.lines();
    // The lines the handler gave are the ones logged.
    for said in [
        "(callback booted received (GET))",
        "(callback installed received (POST): done)",
    ] {
        assert!(lines.iter().any(|l| l.ends_with(said)), "{lines:?}");
    }
    assert!(bench.elapsed() < Duration::from_secs(1));
}

#[tokio::test(start_paused = true)]
async fn a_callback_stored_elsewhere_during_a_read_is_not_missed() {
    let steps = "  preparing:
    - action: expect_callback
      name: booted
";
    let script = Script::default();
    let bench = Bench::new(&profile(steps), script);
    // While the task reads, another daemon stores the callback and its
    // notice wakes the task: the read's answer is not the whole story.
    let (script, runner) = (bench.script.clone(), bench.runner.clone());
    *bench.script.meanwhile.lock().unwrap() = Some(Box::new(move || {
        script.arrive("booted");
        runner.nudge();
    }));
    bench.finish().await;
    assert_eq!(bench.ledger.view().record.state, DeploymentState::Complete);
    assert_eq!(bench.script.reads.load(Ordering::SeqCst), 2);
    // Not left for the poll two seconds on.
    assert!(
        bench.elapsed() < Duration::from_secs(1),
        "{:?}",
        bench.elapsed()
    );
}

#[tokio::test(start_paused = true)]
async fn a_store_outage_delays_the_deployment_but_loses_nothing() {
    let bench = Bench::new(
        &profile(&format!("  preparing:{SERVE}\n")),
        Script::default(),
    );
    *bench.ledger.outage.lock().unwrap() = 3;
    let view = bench.finish().await;
    assert_eq!(view.record.state, DeploymentState::Complete);
    assert_eq!(bench.script.started(), ["serve"]);
    assert!(
        bench.elapsed() >= Duration::from_secs(6),
        "retried every two seconds"
    );
}

#[tokio::test(start_paused = true)]
async fn a_deployment_another_daemon_took_over_is_left_alone() {
    let bench = Bench::new(
        &profile(&format!("  preparing:{SERVE}\n")),
        Script::default(),
    );
    bench.ledger.view.lock().unwrap().record.runner = Some("elsewhere".into());
    let view = bench.finish().await;
    assert_eq!(view.record.state, DeploymentState::New);
    assert!(bench.ledger.lines().is_empty());
    assert!(bench.script.started().is_empty());
}

#[tokio::test(start_paused = true)]
async fn what_no_driver_can_do_fails_without_reaching_the_executor() {
    let steps = "  preparing:
    - action: ipmi_command
      command: health
";
    let bench = Bench::new(&profile(steps), Script::default());
    let view = bench.finish().await;
    assert_eq!(view.record.state, DeploymentState::Error);
    assert_eq!(
        view.record.error.as_deref(),
        Some(
            "preparing #1 ipmi_command health: this ipmi_command is a query the power drivers do not run as a step"
        )
    );
    assert!(bench.script.started().is_empty());
}
