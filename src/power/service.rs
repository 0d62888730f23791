//! What the rest of the daemon calls to control power: finds the server's
//! BMC and driver, paces power-on and cycle across servers (a boot storm),
//! keeps one session at a time per BMC and a global cap on operations in
//! flight, retries transient failures with jittered backoff, and records
//! every command (health, timeline, outbox) after it finishes.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::Serialize;
use tokio::sync::{Semaphore, SemaphorePermit};
use tracing::{info, warn};
use utoipa::ToSchema;

use super::{BmcLogin, IpmitoolDriver, NativeDriver, PowerDriver, PowerError, PowerState};
use bootloader_core::model::Fqdn;
pub use bootloader_core::power::PowerCommand;
use bootloader_core::power::ipmi::BootFlags;
use bootloader_store::power::{PowerHealth, PowerRecord};
use bootloader_store::{InventoryStore, PowerStore, StoreError};

/// The `[power]` settings.
#[derive(Debug, Clone, PartialEq)]
pub struct PowerSettings {
    /// `native` or `ipmitool`, for servers that name none.
    pub default_driver: String,
    /// One attempt, session included.
    pub timeout: Duration,
    /// Extra attempts after a transient failure.
    pub retries: u32,
    /// The first retry's delay; it doubles, with ±50 % jitter.
    pub backoff: Duration,
    /// BMC operations in flight at most, over all servers.
    pub max_in_flight: usize,
    /// Power-on and cycle commands started per second at most, over all
    /// servers.
    pub storm_rate: f64,
    /// Power-on and cycle commands in flight at most.
    pub storm_in_flight: usize,
    pub ipmitool: std::path::PathBuf,
    pub ipmitool_cipher_suite: u8,
}

impl Default for PowerSettings {
    fn default() -> Self {
        Self {
            default_driver: "native".into(),
            timeout: Duration::from_secs(10),
            retries: 2,
            backoff: Duration::from_secs(1),
            max_in_flight: 32,
            storm_rate: 2.0,
            storm_in_flight: 8,
            ipmitool: "ipmitool".into(),
            ipmitool_cipher_suite: 17,
        }
    }
}

/// What the BMC answered.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
#[serde(untagged)]
pub enum PowerAnswer {
    State { state: PowerState },
    Done { done: bool },
    BootFlags { boot: BootFlags },
}

impl PowerAnswer {
    fn describe(&self) -> String {
        match self {
            Self::State { state } => format!(
                "power is {}",
                if *state == PowerState::On {
                    "on"
                } else {
                    "off"
                }
            ),
            Self::Done { .. } => "done".into(),
            Self::BootFlags { boot } => format!(
                "boot device {}{}",
                boot.device.map_or("not set", |d| d.as_str()),
                if boot.valid {
                    ""
                } else {
                    " (not marked valid)"
                }
            ),
        }
    }
}

/// The outcome of one command, with how it went.
#[derive(Debug, Clone)]
pub struct PowerReport {
    pub result: Result<PowerAnswer, PowerError>,
    pub driver: &'static str,
    pub attempts: u32,
    pub duration: Duration,
    /// The server's health after this command (`None` if it could not be
    /// recorded).
    pub health: Option<PowerHealth>,
}

/// The boot-storm queue as the API shows it.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct QueueStatus {
    /// Power-on and cycle commands waiting for their turn.
    pub waiting: usize,
    /// Paced commands being sent now.
    pub in_flight: usize,
    /// All BMC operations being sent now.
    pub bmc_operations_in_flight: usize,
    pub rate_per_second: f64,
    pub max_in_flight: usize,
}

pub struct PowerService {
    /// The server's BMC address and login.
    inventory: Arc<dyn InventoryStore>,
    /// The BMC's health record, the timeline and the outbox.
    store: Arc<dyn PowerStore>,
    native: Arc<dyn PowerDriver>,
    ipmitool: Arc<dyn PowerDriver>,
    settings: PowerSettings,
    /// One lock per BMC address: one session at a time.
    sessions: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    global: Semaphore,
    pacer: Pacer,
}

impl PowerService {
    pub fn new(
        inventory: Arc<dyn InventoryStore>,
        store: Arc<dyn PowerStore>,
        settings: PowerSettings,
    ) -> Arc<Self> {
        Arc::new(Self {
            inventory,
            store,
            native: Arc::new(NativeDriver::new(settings.timeout)),
            ipmitool: Arc::new(IpmitoolDriver::new(
                settings.ipmitool.clone(),
                settings.ipmitool_cipher_suite,
                settings.timeout,
            )),
            global: Semaphore::new(settings.max_in_flight.max(1)),
            pacer: Pacer::new(settings.storm_rate, settings.storm_in_flight),
            sessions: Mutex::new(HashMap::new()),
            settings,
        })
    }

    pub fn queue(&self) -> QueueStatus {
        QueueStatus {
            waiting: self.pacer.waiting.load(Ordering::Relaxed),
            in_flight: self.pacer.max - self.pacer.in_flight.available_permits(),
            bmc_operations_in_flight: self.settings.max_in_flight.max(1)
                - self.global.available_permits(),
            rate_per_second: self.settings.storm_rate,
            max_in_flight: self.pacer.max,
        }
    }

    pub async fn health(&self, fqdn: &Fqdn) -> Result<PowerHealth, StoreError> {
        self.store.power_health(fqdn).await
    }

    /// Servers whose BMC failed its last command, the longest failing
    /// first.
    pub async fn failing(&self, limit: u32) -> Result<Vec<(Fqdn, PowerHealth)>, StoreError> {
        self.store.failing_bmcs(limit).await
    }

    /// Runs `command` against the server's BMC. A store error (the server
    /// does not exist, the store is down) is returned as such; everything
    /// that goes wrong with the BMC is in the report.
    pub async fn execute(
        &self,
        fqdn: &Fqdn,
        command: PowerCommand,
    ) -> Result<PowerReport, StoreError> {
        let server = self.inventory.server(fqdn).await?;
        let login = self.inventory.bmc_login(fqdn).await?;
        let driver_name = server
            .bmc
            .driver
            .clone()
            .unwrap_or_else(|| self.settings.default_driver.clone());
        let driver = match driver_name.as_str() {
            "ipmitool" => Arc::clone(&self.ipmitool),
            _ => Arc::clone(&self.native),
        };
        let started = Instant::now();
        let bmc = match (server.bmc.host.clone(), login) {
            (Some(host), Some((username, password))) => Ok(BmcLogin {
                host,
                port: server.bmc.port,
                username,
                password: bootloader_core::model::Secret::new(password),
            }),
            (None, _) => Err(PowerError::NotConfigured(format!(
                "{fqdn} has no BMC address"
            ))),
            (Some(_), None) => Err(PowerError::NotConfigured(format!(
                "{fqdn} has no BMC user name and password (nor a credential)"
            ))),
        };
        let (result, attempts) = match &bmc {
            Ok(bmc) => self.run(&*driver, bmc, command).await,
            Err(e) => (Err(e.clone()), 0),
        };
        let duration = started.elapsed();
        crate::telemetry::power_command(
            command.action(),
            match &result {
                Ok(_) => "ok",
                Err(e) => e.kind(),
            },
            duration,
        );
        match &result {
            Ok(answer) => {
                info!(server = %fqdn, command = %command.describe(), answer = %answer.describe(), attempts, "BMC command done")
            }
            Err(e) => {
                warn!(server = %fqdn, command = %command.describe(), error = %e, attempts, "BMC command failed")
            }
        }
        let record = PowerRecord {
            server: fqdn.clone(),
            mac: server.interfaces.first().map(|i| i.mac),
            bmc: match &server.bmc.host {
                Some(h) => format!("{h}:{}", server.bmc.port),
                None => "-".into(),
            },
            action: command.action().into(),
            command: command.describe(),
            driver: driver.name().into(),
            attempts,
            duration_ms: duration.as_millis() as u64,
            result: match &result {
                Ok(a) => Ok(a.describe()),
                Err(e) => Err((e.kind().into(), e.to_string())),
            },
            known: match &result {
                Ok(a @ (PowerAnswer::State { .. } | PowerAnswer::BootFlags { .. })) => {
                    serde_json::to_value(a).ok()
                }
                _ => None,
            },
            at: time::OffsetDateTime::now_utc(),
        };
        let health = match self.store.record_power(&record).await {
            Ok(h) => Some(h),
            Err(e) => {
                warn!(server = %fqdn, error = %e, "could not record the BMC command");
                None
            }
        };
        Ok(PowerReport {
            result,
            driver: driver.name(),
            attempts,
            duration,
            health,
        })
    }

    /// Paced, one session per BMC, retried; returns the answer and the
    /// number of attempts.
    async fn run(
        &self,
        driver: &dyn PowerDriver,
        bmc: &BmcLogin,
        command: PowerCommand,
    ) -> (Result<PowerAnswer, PowerError>, u32) {
        let _paced = match command {
            PowerCommand::Power(a) if a.is_paced() => Some(self.pacer.admit().await),
            _ => None,
        };
        let session = self.session_lock(bmc);
        let _session = session.lock().await;
        let mut attempt = 0;
        loop {
            attempt += 1;
            let result = {
                let _slot = self.global.acquire().await;
                send(driver, bmc, command).await
            };
            match result {
                Err(e) if attempt <= self.settings.retries && may_retry(command, &e) => {
                    let delay = jittered(self.settings.backoff * 2u32.pow(attempt - 1));
                    warn!(bmc = ?bmc, error = %e, attempt, "BMC command failed; retrying in {} ms", delay.as_millis());
                    tokio::time::sleep(delay).await;
                }
                other => return (other, attempt),
            }
        }
    }

    fn session_lock(&self, bmc: &BmcLogin) -> Arc<tokio::sync::Mutex<()>> {
        let key = format!("{}:{}", bmc.host, bmc.port);
        let mut map = self.sessions.lock().unwrap_or_else(|e| e.into_inner());
        // Forget BMCs nobody is talking to, so the map does not grow.
        map.retain(|_, lock| Arc::strong_count(lock) > 1);
        Arc::clone(map.entry(key).or_default())
    }
}

async fn send(
    driver: &dyn PowerDriver,
    bmc: &BmcLogin,
    command: PowerCommand,
) -> Result<PowerAnswer, PowerError> {
    match command {
        PowerCommand::Status => driver
            .status(bmc)
            .await
            .map(|state| PowerAnswer::State { state }),
        PowerCommand::Power(a) => driver
            .power(bmc, a)
            .await
            .map(|()| PowerAnswer::Done { done: true }),
        PowerCommand::SetBootDevice(r) => driver
            .set_boot_device(bmc, r)
            .await
            .map(|()| PowerAnswer::Done { done: true }),
        PowerCommand::GetBootDevice => driver
            .boot_device(bmc)
            .await
            .map(|boot| PowerAnswer::BootFlags { boot }),
    }
}

/// Transient failures are retried; for commands that must not run twice,
/// only those where the BMC surely did not act (unreachable, or it said it
/// was busy).
fn may_retry(command: PowerCommand, e: &PowerError) -> bool {
    if !e.is_transient() {
        return false;
    }
    command.is_idempotent() || matches!(e, PowerError::Unreachable(_) | PowerError::Refused { .. })
}

/// `d` scaled by a random factor in [0.5, 1.5).
fn jittered(d: Duration) -> Duration {
    let r = getrandom::u32().unwrap_or(u32::MAX / 2);
    d.mul_f64(0.5 + f64::from(r) / f64::from(u32::MAX))
}

/// The boot-storm queue: starts at most `rate` paced commands per second,
/// and holds at most `max` of them in flight.
struct Pacer {
    interval: Duration,
    next: tokio::sync::Mutex<tokio::time::Instant>,
    in_flight: Semaphore,
    max: usize,
    waiting: AtomicUsize,
}

impl Pacer {
    fn new(rate: f64, max: usize) -> Self {
        let rate = if rate.is_finite() && rate > 0.0 {
            rate
        } else {
            1.0
        };
        Self {
            interval: Duration::from_secs_f64(1.0 / rate),
            next: tokio::sync::Mutex::new(tokio::time::Instant::now()),
            in_flight: Semaphore::new(max.max(1)),
            max: max.max(1),
            waiting: AtomicUsize::new(0),
        }
    }

    async fn admit(&self) -> SemaphorePermit<'_> {
        struct Waiting<'a>(&'a AtomicUsize);
        impl Drop for Waiting<'_> {
            fn drop(&mut self) {
                self.0.fetch_sub(1, Ordering::Relaxed);
            }
        }
        self.waiting.fetch_add(1, Ordering::Relaxed);
        let _waiting = Waiting(&self.waiting);
        // The semaphore is never closed.
        let permit = self
            .in_flight
            .acquire()
            .await
            .expect("the pacing semaphore is never closed");
        let at = {
            let mut next = self.next.lock().await;
            let at = (*next).max(tokio::time::Instant::now());
            *next = at + self.interval;
            at
        };
        tokio::time::sleep_until(at).await;
        permit
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::power::PowerAction;

    #[test]
    fn retry_rules() {
        let timeout = PowerError::Timeout("x".into());
        let busy = PowerError::Refused {
            code: 0xC0,
            message: "busy".into(),
        };
        let auth = PowerError::Auth("x".into());
        assert!(may_retry(PowerCommand::Power(PowerAction::On), &timeout));
        assert!(may_retry(PowerCommand::Status, &timeout));
        // A cycle that timed out may have happened.
        assert!(!may_retry(
            PowerCommand::Power(PowerAction::Cycle),
            &timeout
        ));
        assert!(may_retry(PowerCommand::Power(PowerAction::Cycle), &busy));
        assert!(!may_retry(PowerCommand::Power(PowerAction::On), &auth));
    }

    #[test]
    fn jitter_stays_in_range() {
        for _ in 0..1000 {
            let d = jittered(Duration::from_millis(1000));
            assert!(
                d >= Duration::from_millis(500) && d < Duration::from_millis(1501),
                "{d:?}"
            );
        }
    }

    #[tokio::test(start_paused = true)]
    async fn pacing_spaces_commands_and_counts_the_queue() {
        let pacer = Arc::new(Pacer::new(2.0, 100));
        let start = tokio::time::Instant::now();
        let mut tasks = Vec::new();
        for _ in 0..5 {
            let p = Arc::clone(&pacer);
            tasks.push(tokio::spawn(async move {
                let _permit = p.admit().await;
                tokio::time::Instant::now() - start
            }));
        }
        tokio::task::yield_now().await;
        let mut times = Vec::new();
        for t in tasks {
            times.push(t.await.unwrap());
        }
        times.sort();
        let ms: Vec<u128> = times.iter().map(|d| d.as_millis()).collect();
        assert_eq!(ms, vec![0, 500, 1000, 1500, 2000]);
        assert_eq!(pacer.waiting.load(Ordering::Relaxed), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn pacing_caps_in_flight() {
        let pacer = Arc::new(Pacer::new(1000.0, 2));
        let a = pacer.admit().await;
        let _b = pacer.admit().await;
        let p = Arc::clone(&pacer);
        let third = tokio::spawn(async move {
            let _c = p.admit().await;
        });
        tokio::time::sleep(Duration::from_secs(5)).await;
        assert!(!third.is_finished());
        assert_eq!(pacer.waiting.load(Ordering::Relaxed), 1);
        drop(a);
        third.await.unwrap();
        assert_eq!(pacer.waiting.load(Ordering::Relaxed), 0);
    }
}
