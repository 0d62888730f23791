//! Probes and monitoring: `/readyz` says ready when the store answers and
//! every listener serves, and not when the database is down (a broker that
//! is down is reported, not a failure); `/metrics` is Prometheus text with
//! what happened (HTTP requests by route, callbacks by result) and what is
//! (deployments by state, the outbox), and never a token or a MAC.

use crate::common;

use std::time::{Duration, Instant};

use common::peers::Postgres;
use common::{Backend, Daemon, TestStore};
use reqwest::StatusCode;
use serde_json::{Value, json};

async fn ready(d: &Daemon) -> (StatusCode, Value) {
    let r = reqwest::get(format!("{}/readyz", d.base)).await.unwrap();
    (r.status(), r.json().await.unwrap())
}

async fn metrics(d: &Daemon) -> String {
    let r = reqwest::get(format!("{}/metrics", d.base)).await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let kind = r.headers()["content-type"].to_str().unwrap().to_string();
    assert!(kind.starts_with("text/plain"), "{kind}");
    r.text().await.unwrap()
}

/// The sum of the samples of `name` whose labels include all of `labels`.
fn sample(text: &str, name: &str, labels: &[&str]) -> Option<f64> {
    let values: Vec<f64> = text
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter(|l| l.starts_with(&format!("{name}{{")) || l.starts_with(&format!("{name} ")))
        .filter(|l| labels.iter().all(|want| l.contains(want)))
        .filter_map(|l| l.rsplit(' ').next()?.parse().ok())
        .collect();
    (!values.is_empty()).then(|| values.iter().sum())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ready_and_counted() {
    let mut store = TestStore::new(Backend::Sqlite).await;
    // A broker that is not there: reported, not a reason to be unready.
    store.env.insert(
        "BROKER_URL".into(),
        "amqp://guest:guest@127.0.0.1:1/%2f".into(),
    );
    let d = Daemon::start(&store, None).await;
    let (s, r) = ready(&d).await;
    assert_eq!(s, StatusCode::OK, "{r}");
    assert_eq!(r["ready"], true);
    assert_eq!(r["store"]["ok"], true);
    assert_eq!(r["listeners"][0]["name"], "http");
    assert_eq!(r["listeners"][0]["up"], true);
    assert_eq!(r["broker"]["relay"]["connected"], false, "{r}");

    d.seed_location().await;
    let (s, b) = d
        .post(
            "/servers",
            json!({"fqdn": "m1.dc1.example.com", "location": "dc1",
                   "interfaces": [{"name": "eth0", "mac": "52:54:00:4d:00:01"}]}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{b}");
    let secret = "not-a-real-token-0123456789";
    let r = reqwest::get(format!("{}/_callback/{secret}/installing", d.base))
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    let r = reqwest::get(format!("{}/ipxe/52:54:00:4d:00:01", d.base))
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);

    let text = metrics(&d).await;
    assert!(
        sample(
            &text,
            "bootloader_http_requests_total",
            &[
                "route=\"/api/v1/servers\"",
                "method=\"POST\"",
                "status=\"201\""
            ]
        )
        .is_some_and(|n| n >= 1.0),
        "{text}"
    );
    assert!(
        sample(
            &text,
            "bootloader_http_requests_total",
            &["route=\"/ipxe/{mac}\""]
        )
        .is_some(),
        "{text}"
    );
    assert!(
        sample(
            &text,
            "bootloader_callbacks_total",
            &["result=\"unknown_token\""]
        )
        .is_some_and(|n| n >= 1.0),
        "{text}"
    );
    assert!(
        sample(
            &text,
            "bootloader_http_request_duration_seconds_bucket",
            &["route=\"/_callback/{token}/{*name}\""]
        )
        .is_some(),
        "{text}"
    );
    assert_eq!(
        sample(&text, "bootloader_deployments", &["state=\"new\""]),
        Some(0.0),
        "{text}"
    );
    assert_eq!(
        sample(
            &text,
            "bootloader_leases_held",
            &["network=\"10.0.0.0/24\""]
        ),
        Some(0.0),
        "{text}"
    );
    // The broker is down: the events wait, and say so.
    assert!(
        sample(&text, "bootloader_outbox_backlog", &[]).is_some_and(|n| n >= 3.0),
        "{text}"
    );
    assert_eq!(sample(&text, "bootloader_broker_connected", &[]), Some(0.0));
    assert_eq!(sample(&text, "bootloader_store_up", &[]), Some(1.0));
    assert!(!text.contains(secret), "a token in the metrics");
    assert!(!text.contains("52:54:00:4d:00:01"), "a MAC in the metrics");
    d.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn not_ready_without_the_database() {
    let pg = Postgres::start();
    let store = TestStore::on_postgres(&pg.url("postgres"));
    let d = Daemon::start(&store, None).await;
    assert_eq!(ready(&d).await.0, StatusCode::OK);

    pg.down();
    let (s, r) = ready(&d).await;
    assert_eq!(s, StatusCode::SERVICE_UNAVAILABLE, "{r}");
    assert_eq!(r["ready"], false);
    assert_eq!(r["store"]["ok"], false);
    assert!(r["store"]["error"].is_string(), "{r}");
    assert_eq!(
        sample(&metrics(&d).await, "bootloader_store_up", &[]),
        Some(0.0)
    );

    pg.up();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (s, r) = ready(&d).await;
        if s == StatusCode::OK {
            break;
        }
        assert!(Instant::now() < deadline, "never ready again: {r}");
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    d.stop().await;
}
