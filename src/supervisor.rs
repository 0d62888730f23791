//! The daemon's long-running parts under one supervisor.
//!
//! Each service (DHCP, TFTP, HTTP, HTTPS, the timeline writer, the relay,
//! the command queue, the notifier, the engine's claims, outbox pruning)
//! has a name, a stage and a health. It runs until its stage is told to
//! stop. One that ends before that is reported (its health says so, with
//! the error, and `/readyz` shows it). One started with a factory (the
//! relay, the command queue...) is started again after a pause; one that
//! owns what cannot be had twice (a bound socket) is not: its end is the
//! daemon's failure (`failed`), and the daemon stops with that error so
//! that systemd starts it again. At shutdown the stages stop in order:
//! first what answers the network (whose requests under way get a drain
//! period), then the work those requests caused, then the relay that
//! publishes it, and last the timeline writer that records all of it.

use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::Serialize;
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// When a service is told to stop, in drain order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Stage {
    /// Listeners: DHCP, TFTP, HTTP, HTTPS.
    Serve,
    /// What requests start or feed: the engine, commands, notifications.
    Work,
    /// The outbox relay, so that what the stages before committed is
    /// published.
    Publish,
    /// The timeline writer, so that every stage's events are stored.
    Record,
}

impl Stage {
    const ALL: [Stage; 4] = [Stage::Serve, Stage::Work, Stage::Publish, Stage::Record];

    fn index(self) -> usize {
        self as usize
    }
}

/// Resolves when the service's stage is told to stop.
#[derive(Clone)]
pub struct Shutdown(watch::Receiver<bool>);

impl Shutdown {
    pub async fn wait(mut self) {
        let _ = self.0.wait_for(|stop| *stop).await;
    }

    fn requested(&self) -> bool {
        *self.0.borrow()
    }
}

/// What the supervisor knows of one service, for `/readyz`.
#[derive(Debug)]
pub struct Health {
    name: &'static str,
    up: AtomicBool,
    restarts: AtomicU32,
    last_error: Mutex<Option<String>>,
}

impl Health {
    fn new(name: &'static str) -> Arc<Self> {
        Arc::new(Self {
            name,
            up: AtomicBool::new(true),
            restarts: AtomicU32::new(0),
            last_error: Mutex::new(None),
        })
    }

    pub fn is_up(&self) -> bool {
        self.up.load(Ordering::Relaxed)
    }

    pub fn report(&self) -> ServiceReport {
        ServiceReport {
            name: self.name,
            up: self.is_up(),
            restarts: self.restarts.load(Ordering::Relaxed),
            last_error: self
                .last_error
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .clone(),
        }
    }

    fn record_error(&self, error: String) {
        *self.last_error.lock().unwrap_or_else(|e| e.into_inner()) = Some(error);
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct ServiceReport {
    pub name: &'static str,
    pub up: bool,
    pub restarts: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
}

/// How long a restarting service waits before it starts again.
const RESTART_PAUSE: Duration = Duration::from_secs(2);

struct Service {
    health: Arc<Health>,
    stage: Stage,
    task: JoinHandle<anyhow::Result<()>>,
}

/// Every supervised service's health, as `/readyz` reads it; grows as
/// services start.
#[derive(Clone, Default)]
pub struct Services(Arc<Mutex<Vec<Arc<Health>>>>);

impl Services {
    pub fn reports(&self) -> Vec<ServiceReport> {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .map(|h| h.report())
            .collect()
    }

    /// Whether the service of this name runs (false if none started).
    pub fn is_up(&self, name: &str) -> bool {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .find(|h| h.name == name)
            .is_some_and(|h| h.is_up())
    }

    fn add(&self, health: Arc<Health>) {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(health);
    }
}

pub struct Supervisor {
    stops: [watch::Sender<bool>; 4],
    services: Vec<Service>,
    registry: Services,
    /// Set when a service that is not restarted ends early.
    failed: watch::Sender<bool>,
}

impl Default for Supervisor {
    fn default() -> Self {
        Self::new()
    }
}

impl Supervisor {
    pub fn new() -> Self {
        Self {
            stops: Stage::ALL.map(|_| watch::channel(false).0),
            services: Vec::new(),
            registry: Services::default(),
            failed: watch::channel(false).0,
        }
    }

    /// Resolves when a service that is not restarted has ended while the
    /// daemon runs.
    pub fn failed(&self) -> impl Future<Output = ()> + Send + 'static {
        let mut rx = self.failed.subscribe();
        async move {
            let _ = rx.wait_for(|f| *f).await;
        }
    }

    /// The signal a service of `stage` stops on.
    pub fn shutdown(&self, stage: Stage) -> Shutdown {
        Shutdown(self.stops[stage.index()].subscribe())
    }

    /// Runs `service` until its stage stops. If it ends before that, the
    /// end is logged, its health goes down and `failed` resolves; it is not
    /// started again (it owns what cannot be had twice, such as a bound
    /// socket).
    pub fn spawn<F>(&mut self, name: &'static str, stage: Stage, service: F) -> Arc<Health>
    where
        F: Future<Output = anyhow::Result<()>> + Send + 'static,
    {
        let health = Health::new(name);
        let shutdown = self.shutdown(stage);
        let h = health.clone();
        let failed = self.failed.clone();
        let task = tokio::spawn(async move {
            let result = supervised(service).await;
            h.up.store(false, Ordering::Relaxed);
            if !shutdown.requested() {
                let why = ended(&result);
                tracing::error!(service = name, error = %why, "a service ended while the daemon runs");
                h.record_error(why);
                failed.send_replace(true);
            }
            result
        });
        self.keep(health, stage, task)
    }

    /// Runs the service `start` makes until its stage stops, and starts it
    /// again (after `RESTART_PAUSE`) whenever it ends or panics before.
    pub fn spawn_restarting<S, F>(
        &mut self,
        name: &'static str,
        stage: Stage,
        start: S,
    ) -> Arc<Health>
    where
        S: Fn(Shutdown) -> F + Send + 'static,
        F: Future<Output = anyhow::Result<()>> + Send + 'static,
    {
        let health = Health::new(name);
        let shutdown = self.shutdown(stage);
        let h = health.clone();
        let task = tokio::spawn(async move {
            loop {
                let result = supervised(start(shutdown.clone())).await;
                if shutdown.requested() {
                    h.up.store(false, Ordering::Relaxed);
                    return result;
                }
                let why = ended(&result);
                tracing::error!(service = name, error = %why, "a service ended while the daemon runs; starting it again");
                h.record_error(why);
                h.restarts.fetch_add(1, Ordering::Relaxed);
                tokio::select! {
                    () = tokio::time::sleep(RESTART_PAUSE) => {}
                    () = shutdown.clone().wait() => {
                        h.up.store(false, Ordering::Relaxed);
                        return Ok(());
                    }
                }
            }
        });
        self.keep(health, stage, task)
    }

    fn keep(
        &mut self,
        health: Arc<Health>,
        stage: Stage,
        task: JoinHandle<anyhow::Result<()>>,
    ) -> Arc<Health> {
        self.registry.add(health.clone());
        self.services.push(Service {
            health: health.clone(),
            stage,
            task,
        });
        health
    }

    /// The services' health, for `/readyz`: those started so far and
    /// those started later.
    pub fn services(&self) -> Services {
        self.registry.clone()
    }

    /// Stops the stages in order, each once the one before has finished.
    /// The services of `Stage::Serve` get `drain` for requests under way,
    /// the others `settle`; one still running then is cut off, and said
    /// so. Returns the first error a service ended with.
    pub async fn stop(self, drain: Duration, settle: Duration) -> anyhow::Result<()> {
        let mut services = self.services;
        let mut first_error = None;
        for stage in Stage::ALL {
            self.stops[stage.index()].send_replace(true);
            let limit = if stage == Stage::Serve { drain } else { settle };
            let deadline = tokio::time::Instant::now() + limit;
            let (now, later): (Vec<_>, Vec<_>) =
                services.into_iter().partition(|s| s.stage == stage);
            services = later;
            for mut s in now {
                let name = s.health.name;
                match tokio::time::timeout_at(deadline, &mut s.task).await {
                    Ok(Ok(Ok(()))) => {}
                    Ok(Ok(Err(e))) => {
                        first_error.get_or_insert(e.context(format!("{name} failed")));
                    }
                    Ok(Err(join)) => {
                        first_error.get_or_insert(anyhow::anyhow!("{name}: {join}"));
                    }
                    Err(_) => {
                        tracing::warn!(service = name, "still busy at shutdown; cut off");
                        s.task.abort();
                    }
                }
            }
        }
        match first_error {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }
}

/// Why a service ended, for its health and the log.
fn ended(result: &anyhow::Result<()>) -> String {
    match result {
        Ok(()) => "stopped".to_string(),
        Err(e) => format!("{e:#}"),
    }
}

/// Runs `service` in a task of its own, so that a panic is an error to
/// report rather than the end of the supervisor.
async fn supervised<F>(service: F) -> anyhow::Result<()>
where
    F: Future<Output = anyhow::Result<()>> + Send + 'static,
{
    match tokio::spawn(service).await {
        Ok(result) => result,
        Err(e) if e.is_panic() => Err(anyhow::anyhow!("panicked: {}", panic_text(e.into_panic()))),
        Err(e) => Err(anyhow::anyhow!("{e}")),
    }
}

fn panic_text(payload: Box<dyn std::any::Any + Send>) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "(no message)".to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;

    #[tokio::test(start_paused = true)]
    async fn stages_stop_in_order() {
        let order = Arc::new(Mutex::new(Vec::new()));
        let mut sup = Supervisor::new();
        for (name, stage) in [
            ("timeline", Stage::Record),
            ("relay", Stage::Publish),
            ("http", Stage::Serve),
            ("engine", Stage::Work),
        ] {
            let order = order.clone();
            let stop = sup.shutdown(stage);
            sup.spawn(name, stage, async move {
                stop.wait().await;
                order.lock().unwrap().push(name);
                Ok(())
            });
        }
        sup.stop(Duration::from_secs(15), Duration::from_secs(5))
            .await
            .unwrap();
        assert_eq!(
            *order.lock().unwrap(),
            ["http", "engine", "relay", "timeline"]
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_dead_service_is_reported_and_its_error_returned() {
        let mut sup = Supervisor::new();
        let health = sup.spawn("tftp", Stage::Serve, async {
            Err(anyhow::anyhow!("socket closed"))
        });
        tokio::time::timeout(Duration::from_secs(1), sup.failed())
            .await
            .expect("the failure is signalled");
        let r = health.report();
        assert!(!r.up);
        assert_eq!(r.last_error.as_deref(), Some("socket closed"));
        let e = sup
            .stop(Duration::from_secs(1), Duration::from_secs(1))
            .await
            .unwrap_err();
        assert!(
            format!("{e:#}").contains("tftp failed: socket closed"),
            "{e:#}"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_panicking_service_is_started_again() {
        let starts = Arc::new(AtomicUsize::new(0));
        let mut sup = Supervisor::new();
        let s = starts.clone();
        let health = sup.spawn_restarting("relay", Stage::Publish, move |stop| {
            let n = s.fetch_add(1, Ordering::Relaxed);
            async move {
                if n < 2 {
                    panic!("broker gone mad");
                }
                stop.wait().await;
                Ok(())
            }
        });
        tokio::time::sleep(RESTART_PAUSE * 3).await;
        assert_eq!(starts.load(Ordering::Relaxed), 3);
        let r = health.report();
        assert!(r.up);
        assert_eq!(r.restarts, 2);
        assert!(r.last_error.unwrap().contains("broker gone mad"));
        sup.stop(Duration::from_secs(1), Duration::from_secs(1))
            .await
            .unwrap();
        assert!(!health.is_up());
    }

    #[tokio::test(start_paused = true)]
    async fn a_service_that_does_not_stop_is_cut_off() {
        let mut sup = Supervisor::new();
        sup.spawn("http", Stage::Serve, async {
            std::future::pending::<()>().await;
            Ok(())
        });
        let stop = sup.shutdown(Stage::Record);
        let recorded = Arc::new(AtomicBool::new(false));
        let r = recorded.clone();
        sup.spawn("timeline", Stage::Record, async move {
            stop.wait().await;
            r.store(true, Ordering::Relaxed);
            Ok(())
        });
        let started = tokio::time::Instant::now();
        sup.stop(Duration::from_secs(15), Duration::from_secs(5))
            .await
            .unwrap();
        assert!(started.elapsed() >= Duration::from_secs(15));
        assert!(
            recorded.load(Ordering::Relaxed),
            "the later stage still ran"
        );
    }
}
