//! The `[power]` settings: BMC drivers, time limits, retries and boot-storm
//! pacing.

use std::path::PathBuf;
use std::time::Duration;

use super::Resolver;
use super::file::PowerSection;
use crate::power::PowerSettings;

pub(super) fn resolve(r: &mut Resolver<'_>, f: PowerSection) -> PowerSettings {
    let driver = r.pick("power.driver", None, f.driver).unwrap_or_default();
    if !matches!(driver.as_str(), "native" | "ipmitool") {
        r.errors.push(format!(
            "power.driver: unknown driver {driver:?} (expected native or ipmitool)"
        ));
    }
    let timeout = r
        .pick("power.timeout_seconds", None, f.timeout_seconds)
        .unwrap_or_default();
    let retries = r.pick("power.retries", None, f.retries).unwrap_or_default();
    let backoff_ms = r
        .pick("power.backoff_ms", None, f.backoff_ms)
        .unwrap_or_default();
    let max_in_flight = r
        .pick("power.max_in_flight", None, f.max_in_flight)
        .unwrap_or_default();
    let storm_rate = r
        .pick("power.storm_rate", None, f.storm_rate)
        .unwrap_or_default();
    if !(storm_rate.is_finite() && storm_rate > 0.0 && storm_rate <= 1000.0) {
        r.errors
            .push("power.storm_rate must be above 0 and at most 1000 (commands per second)".into());
    }
    let storm_in_flight = r
        .pick("power.storm_in_flight", None, f.storm_in_flight)
        .unwrap_or_default();
    let ipmitool = r
        .pick("power.ipmitool", None, f.ipmitool)
        .unwrap_or_default();
    let suite = r
        .pick("power.ipmitool_cipher_suite", None, f.ipmitool_cipher_suite)
        .unwrap_or_default();
    PowerSettings {
        default_driver: driver,
        timeout: Duration::from_secs(u64::from(timeout)),
        retries,
        backoff: Duration::from_millis(u64::from(backoff_ms)),
        max_in_flight: max_in_flight as usize,
        storm_rate,
        storm_in_flight: storm_in_flight as usize,
        ipmitool: PathBuf::from(ipmitool),
        ipmitool_cipher_suite: suite,
    }
}
