//! Metrics in Prometheus text at `/metrics`: counters and histograms that
//! the parts update as things happen (through the functions below, so the
//! names live in one place), and gauges read from the store at each scrape
//! (`http::health`). One recorder per process.

use std::collections::HashMap;
use std::sync::{LazyLock, OnceLock, RwLock};
use std::time::Duration;

use axum::http::Method;
use metrics::{Counter, Histogram, counter, histogram};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

use bootloader_core::dhcp::classify::MessageKind;
use bootloader_core::model::{Outcome, Phase};

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();

/// Buckets for durations in seconds: a DHCP answer (ms) to a deployment
/// step (an hour).
const SECONDS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
    300.0, 900.0, 1800.0, 3600.0,
];

/// Installs the process's recorder (once) and returns what renders it.
/// Histogram samples pile up between renders: `upkeep` drains them.
pub fn handle() -> PrometheusHandle {
    HANDLE
        .get_or_init(|| {
            let recorder = PrometheusBuilder::new()
                .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), SECONDS)
                .unwrap_or_else(|_| PrometheusBuilder::new())
                .build_recorder();
            let handle = recorder.handle();
            // Another recorder already installed (a test harness): keep
            // rendering ours, which then stays empty.
            if metrics::set_global_recorder(recorder).is_ok() {
                describe();
            }
            handle
        })
        .clone()
}

/// The HELP lines.
fn describe() {
    use metrics::{describe_counter, describe_gauge, describe_histogram};
    describe_counter!(
        "bootloader_dhcp_packets_total",
        "DHCP requests by message type and what was done (answered, silent, refused, failed)"
    );
    describe_counter!(
        "bootloader_dhcp_dropped_total",
        "DHCP requests dropped unanswered because the server was behind"
    );
    describe_counter!(
        "bootloader_tftp_requests_total",
        "TFTP read requests by outcome"
    );
    describe_counter!(
        "bootloader_tftp_slots_full_total",
        "times every TFTP transfer slot was taken (read requests then wait, unanswered, for one)"
    );
    describe_counter!(
        "bootloader_tftp_transfers_total",
        "TFTP transfers by how they ended"
    );
    describe_counter!(
        "bootloader_tftp_bytes_total",
        "bytes of TFTP DATA sent, retransmissions included"
    );
    describe_counter!(
        "bootloader_tftp_retransmits_total",
        "TFTP blocks sent again"
    );
    describe_counter!(
        "bootloader_boot_http_requests_total",
        "boot requests over HTTP (scripts, files) by outcome"
    );
    describe_counter!(
        "bootloader_http_requests_total",
        "HTTP requests by route pattern, method and status"
    );
    describe_histogram!(
        "bootloader_http_request_duration_seconds",
        "HTTP request latency by route pattern"
    );
    describe_counter!(
        "bootloader_callbacks_total",
        "machines' callbacks: accepted, replay, unknown_token, unavailable"
    );
    describe_counter!(
        "bootloader_power_commands_total",
        "BMC commands by action and result (ok or the error kind)"
    );
    describe_counter!(
        "bootloader_bmc_failures_total",
        "BMC commands that failed, by error kind"
    );
    describe_histogram!(
        "bootloader_power_command_duration_seconds",
        "BMC command time, retries and pacing included"
    );
    describe_histogram!(
        "bootloader_deployment_action_duration_seconds",
        "deployment action time by step, action and result"
    );
    describe_histogram!(
        "bootloader_deployment_step_duration_seconds",
        "deployment step time, from when this daemon first ran it"
    );
    describe_histogram!(
        "bootloader_dhcp_lease_group_size",
        "lease changes committed together in one transaction"
    );
    describe_histogram!(
        "bootloader_dhcp_queue_wait_seconds",
        "time a DHCP request waited for a worker"
    );
    describe_histogram!(
        "bootloader_dhcp_answer_duration_seconds",
        "time from a worker taking a DHCP request to its answer (lease committed), by type"
    );
    describe_histogram!(
        "bootloader_store_operation_duration_seconds",
        "store latency of hot-path operations"
    );
    describe_counter!(
        "bootloader_timeline_dropped_total",
        "boot timeline events dropped because the writer was behind"
    );
    describe_gauge!(
        "bootloader_deployments",
        "deployments by state (read from the store at each scrape)"
    );
    describe_gauge!(
        "bootloader_leases_held",
        "addresses offered or bound and not expired, per network"
    );
    describe_gauge!(
        "bootloader_outbox_backlog",
        "events not yet confirmed by the broker"
    );
    describe_gauge!(
        "bootloader_outbox_oldest_age_seconds",
        "age of the oldest unconfirmed event"
    );
    describe_gauge!(
        "bootloader_store_up",
        "1 when the store answered this scrape"
    );
    describe_gauge!(
        "bootloader_store_scrape_seconds",
        "time the store took to answer this scrape"
    );
    describe_gauge!(
        "bootloader_broker_connected",
        "1 when the relay is connected to the broker"
    );
    describe_counter!(
        "bootloader_events_published_total",
        "events this daemon published and the broker confirmed"
    );
}

/// Folds the histograms' pending samples into their buckets every few
/// seconds, so that memory stays flat when nobody scrapes `/metrics`.
pub async fn upkeep(handle: PrometheusHandle) {
    let mut tick = tokio::time::interval(Duration::from_secs(5));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        handle.run_upkeep();
    }
}

fn outcome(o: Outcome) -> &'static str {
    match o {
        Outcome::Answered => "answered",
        Outcome::Silent => "silent",
        Outcome::Refused => "refused",
        Outcome::Failed => "failed",
        Outcome::Done => "done",
    }
}

/// Every boot timeline event: DHCP packets by message type and result,
/// TFTP and HTTP boot requests and power commands by outcome.
pub fn boot_event(phase: Phase, request: &str, result: Outcome) {
    match phase {
        Phase::Dhcp => {
            let kind = request
                .split_whitespace()
                .next()
                .filter(|k| k.starts_with("DHCP"))
                .map_or("malformed", |k| match k {
                    "DHCPDISCOVER" => "discover",
                    "DHCPREQUEST" => "request",
                    "DHCPDECLINE" => "decline",
                    "DHCPRELEASE" => "release",
                    "DHCPINFORM" => "inform",
                    _ => "other",
                });
            counter!("bootloader_dhcp_packets_total", "type" => kind, "result" => outcome(result))
                .increment(1);
        }
        Phase::Tftp => {
            counter!("bootloader_tftp_requests_total", "result" => outcome(result)).increment(1);
        }
        Phase::Http => {
            counter!("bootloader_boot_http_requests_total", "result" => outcome(result))
                .increment(1);
        }
        Phase::Power => {}
    }
}

/// A DHCP request dropped unanswered because the server was behind.
pub fn dhcp_overloaded() {
    counter!("bootloader_dhcp_dropped_total").increment(1);
}

/// A DHCP request taken by a worker after waiting `waited` in the queue.
pub fn dhcp_queue_wait(waited: Duration) {
    histogram!("bootloader_dhcp_queue_wait_seconds").record(waited.as_secs_f64());
}

/// A DHCP request of `kind` answered (or left silent) in `took`: the boot
/// target, the lease and its commit.
pub fn dhcp_answer(kind: MessageKind, took: Duration) {
    let kind = match kind {
        MessageKind::Discover => "discover",
        MessageKind::Request => "request",
        MessageKind::Decline => "decline",
        MessageKind::Release => "release",
        MessageKind::Inform => "inform",
    };
    histogram!("bootloader_dhcp_answer_duration_seconds", "type" => kind)
        .record(took.as_secs_f64());
}

/// A group of lease changes committed in one transaction.
pub fn lease_group(changes: usize) {
    histogram!("bootloader_dhcp_lease_group_size").record(changes as f64);
}

/// A boot timeline event dropped because the writer's queue was full.
pub fn timeline_dropped() {
    counter!("bootloader_timeline_dropped_total").increment(1);
}

/// A TFTP transfer ended: `result` is complete, aborted (by the client),
/// timed_out or failed.
pub fn tftp_transfer(result: &'static str, bytes: u64, retransmits: u64) {
    counter!("bootloader_tftp_transfers_total", "result" => result).increment(1);
    counter!("bootloader_tftp_bytes_total").increment(bytes);
    counter!("bootloader_tftp_retransmits_total").increment(retransmits);
}

/// An HTTP request: `route` is the matched route pattern (never the raw
/// path, which holds MACs and tokens).
pub fn http_request(route: &str, method: &Method, status: u16, took: Duration) {
    let seconds = took.as_secs_f64();
    if let Some((count, time)) = http_handles(route, method, status) {
        count.increment(1);
        time.record(seconds);
        return;
    }
    counter!("bootloader_http_requests_total",
        "route" => route.to_string(), "method" => method.to_string(), "status" => status.to_string())
    .increment(1);
    histogram!("bootloader_http_request_duration_seconds", "route" => route.to_string())
        .record(seconds);
}

/// One route's counter per method and status, and its timer.
type RouteHandles = HashMap<(Method, u16), (Counter, Histogram)>;

/// The handles of the HTTP requests seen, by route: a request then builds
/// no metric key (four strings and a registry look-up each time).
static HTTP_HANDLES: LazyLock<RwLock<HashMap<String, RouteHandles>>> =
    LazyLock::new(Default::default);

/// The handles for `route`, `method` and `status`, registered on first use;
/// `None` before the recorder is installed (a handle taken then would
/// count nowhere for good) and for methods outside the standard ones (a
/// client could invent any number).
fn http_handles(route: &str, method: &Method, status: u16) -> Option<(Counter, Histogram)> {
    HANDLE.get()?;
    let standard = [
        Method::GET,
        Method::HEAD,
        Method::POST,
        Method::PUT,
        Method::PATCH,
        Method::DELETE,
        Method::OPTIONS,
    ];
    if !standard.contains(method) {
        return None;
    }
    let key = (method.clone(), status);
    if let Ok(known) = HTTP_HANDLES.read()
        && let Some(handles) = known.get(route).and_then(|r| r.get(&key))
    {
        return Some(handles.clone());
    }
    let handles = (
        counter!("bootloader_http_requests_total",
            "route" => route.to_string(), "method" => method.to_string(), "status" => status.to_string()),
        histogram!("bootloader_http_request_duration_seconds", "route" => route.to_string()),
    );
    if let Ok(mut known) = HTTP_HANDLES.write() {
        known
            .entry(route.to_string())
            .or_default()
            .insert(key, handles.clone());
    }
    Some(handles)
}

/// A machine's callback: accepted, replay, unknown_token or unavailable.
pub fn callback(result: &'static str) {
    counter!("bootloader_callbacks_total", "result" => result).increment(1);
}

/// A power command's end: `result` is ok or the error kind.
pub fn power_command(action: &'static str, result: &'static str, took: Duration) {
    counter!("bootloader_power_commands_total", "action" => action, "result" => result)
        .increment(1);
    if result != "ok" {
        counter!("bootloader_bmc_failures_total", "kind" => result).increment(1);
    }
    histogram!("bootloader_power_command_duration_seconds", "action" => action)
        .record(took.as_secs_f64());
}

/// A deployment action finished (`ok` or `failed`) after `took`.
pub fn action(step: &'static str, kind: &'static str, result: &'static str, took: Duration) {
    histogram!("bootloader_deployment_action_duration_seconds",
        "step" => step, "action" => kind, "result" => result)
    .record(took.as_secs_f64());
}

/// A deployment step finished after `took` (from its first action's start
/// in this daemon).
pub fn step(step: &'static str, took: Duration) {
    histogram!("bootloader_deployment_step_duration_seconds", "step" => step)
        .record(took.as_secs_f64());
}

/// A store operation on a hot path took `took`.
pub fn store_op(op: &'static str, took: Duration) {
    histogram!("bootloader_store_operation_duration_seconds", "op" => op)
        .record(took.as_secs_f64());
}

/// An HTTP connection closed by the daemon's limits: `reason` is
/// per_source (at accept), evicted (the longest idle, for a newcomer at the
/// global cap), header_timeout or idle_timeout.
pub fn http_connection_closed(reason: &'static str) {
    counter!("bootloader_http_connections_closed_total", "reason" => reason).increment(1);
}

/// HTTP connections held now.
pub fn http_connections(open: usize) {
    metrics::gauge!("bootloader_http_connections").set(open as f64);
}

/// A TFTP request refused because its source holds its share of transfers.
/// Every TFTP transfer slot was taken: read requests waited for one.
pub fn tftp_slots_full() {
    counter!("bootloader_tftp_slots_full_total").increment(1);
}

pub fn tftp_per_source_refused() {
    counter!("bootloader_tftp_requests_total", "result" => "per_source_limit").increment(1);
}

/// A callback refused: `reason` is bad_name, unexpected_name or too_many
/// (bodies past the cap are refused with 413 before the handler runs).
pub fn callback_refused(reason: &'static str) {
    counter!("bootloader_callbacks_refused_total", "reason" => reason).increment(1);
}

/// Events published and not yet confirmed by the broker.
pub fn events_unconfirmed(n: usize) {
    metrics::gauge!("bootloader_events_unconfirmed").set(n as f64);
}

/// A relay round whose confirms did not come in time (the session is
/// dropped and the events go again).
pub fn events_confirm_timeout() {
    counter!("bootloader_events_confirm_timeouts_total").increment(1);
}
