//! The daemon through the failures of its peers, each test with private
//! instances of the real RabbitMQ and PostgreSQL that it stops and starts:
//! - RabbitMQ stopped while a deployment progresses and its callbacks
//!   arrive: once it is back every event arrives (at least once; consumers
//!   dedupe on message_id), in order for the deployment;
//! - PostgreSQL stopped mid-deployment: callbacks are refused with 503
//!   while it is down (the machine retries), none that was accepted is
//!   lost, and the daemon goes on once it is back;
//! - PostgreSQL stopped while an action is under way (a download, then
//!   the file served): the action waits for the store and goes on once it
//!   is back, the deployment does not fail;
//! - SIGKILL of the daemon with events the broker never confirmed: they
//!   are published after the restart.

use crate::common;

use std::collections::HashSet;
use std::time::{Duration, Instant};

use common::binary::Binary;
use common::peers::{Broker, Postgres};
use common::{Backend, Daemon, TestStore};
use futures_util::StreamExt;
use lapin::options::{BasicAckOptions, BasicConsumeOptions, QueueDeclareOptions};
use lapin::types::FieldTable;
use lapin::{Connection, ConnectionProperties};
use reqwest::StatusCode;
use serde_json::{Value, json};

const MAC: &str = "52:54:00:0a:7e:01";
const QUEUE: &str = "outage-test";

/// A durable queue bound to everything on the daemon's exchange, so that
/// messages wait in it across the broker's restarts.
async fn durable_queue(url: &str) {
    let conn = Connection::connect(url, ConnectionProperties::default())
        .await
        .unwrap();
    let ch = conn.create_channel().await.unwrap();
    common::amqp::declare_exchange(&ch, "bootloader").await;
    ch.queue_declare(
        QUEUE.into(),
        QueueDeclareOptions {
            durable: true,
            ..Default::default()
        },
        FieldTable::default(),
    )
    .await
    .unwrap();
    ch.queue_bind(
        QUEUE.into(),
        "bootloader".into(),
        "#".into(),
        Default::default(),
        FieldTable::default(),
    )
    .await
    .unwrap();
    let _ = conn.close(0, "done".into()).await;
}

/// A message as a consumer sees it.
#[derive(Debug, Clone)]
struct Message {
    id: i64,
    key: String,
    body: Value,
}

/// Reads the queue until `done` holds for what arrived (duplicates
/// included, in arrival order).
async fn read_until(url: &str, done: impl Fn(&[Message]) -> bool) -> Vec<Message> {
    let conn = Connection::connect(url, ConnectionProperties::default())
        .await
        .unwrap();
    let ch = conn.create_channel().await.unwrap();
    let mut consumer = ch
        .basic_consume(
            QUEUE.into(),
            "test".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await
        .unwrap();
    let mut got = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    while !done(&got) {
        let left = deadline.saturating_duration_since(Instant::now());
        let d = tokio::time::timeout(left, consumer.next())
            .await
            .unwrap_or_else(|_| panic!("not everything arrived: {got:#?}"))
            .expect("consumer ended")
            .expect("delivery");
        d.ack(BasicAckOptions::default()).await.unwrap();
        got.push(Message {
            id: d
                .properties
                .message_id()
                .as_ref()
                .expect("message_id")
                .as_str()
                .parse()
                .unwrap(),
            key: d.routing_key.to_string(),
            body: serde_json::from_slice(&d.data).unwrap(),
        });
    }
    let _ = conn.close(0, "done".into()).await;
    got
}

/// What a consumer keeps after deduplicating on message_id.
fn dedupe(messages: &[Message]) -> Vec<Message> {
    let mut seen = HashSet::new();
    messages
        .iter()
        .filter(|m| seen.insert(m.id))
        .cloned()
        .collect()
}

/// Every id from the first to the last is there: the outbox's ids have no
/// gaps on SQLite, so nothing was lost.
fn assert_complete(messages: &[Message]) {
    let ids: Vec<i64> = messages.iter().map(|m| m.id).collect();
    let (min, max) = (ids.iter().min().unwrap(), ids.iter().max().unwrap());
    let all: HashSet<i64> = ids.iter().copied().collect();
    let missing: Vec<i64> = (*min..=*max).filter(|i| !all.contains(i)).collect();
    assert!(missing.is_empty(), "lost {missing:?} of {ids:?}");
}

async fn relay_status(d: &Daemon) -> Value {
    d.get("/events/status").await.1
}

async fn wait_relay(d: &Daemon, what: &str, want: impl Fn(&Value) -> bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let st = relay_status(d).await;
        if want(&st) {
            return;
        }
        assert!(Instant::now() < deadline, "never {what}: {st}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn wait_state(d: &Daemon, id: i64, want: &str) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (_, b) = d.get(&format!("/deployments/{id}")).await;
        if b["state"] == want {
            return;
        }
        assert!(Instant::now() < deadline, "never {want}: {b}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Server `fqdn` in location dc1, its one interface `MAC`.
async fn add_server(d: &Daemon, fqdn: &str) {
    d.seed_location().await;
    let (s, b) = d
        .post(
            "/servers",
            json!({"fqdn": fqdn, "location": "dc1",
                   "interfaces": [{"name": "eth0", "mac": MAC}]}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{b}");
}

/// A server and the callback profile; returns the new deployment's id.
async fn start_deployment(d: &Daemon) -> i64 {
    add_server(d, "o1.dc1.example.com").await;
    let profile = common::callback_profile("outage");
    let (s, b) = d.post_text("/profiles", &profile, "application/yaml").await;
    assert_eq!(s, StatusCode::CREATED, "{b}");
    let (s, b) = d
        .post(
            "/deployments",
            json!({"server": "o1.dc1.example.com", "profile": "outage==1.0"}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{b}");
    b["id"].as_i64().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_broker_loses_no_event() {
    let broker = Broker::start();
    durable_queue(&broker.url()).await;
    let mut store = TestStore::new(Backend::Sqlite).await;
    store.env.insert("BROKER_URL".into(), broker.url());
    let d = Daemon::start(&store, None).await;
    let id = start_deployment(&d).await;
    let base = common::callback_base(&d.base, MAC).await;
    wait_relay(&d, "caught up", |st| {
        st["backlog"] == 0 && st["relay"]["connected"] == true
    })
    .await;

    // The broker stops; the machine goes on calling back.
    broker.down();
    for step in ["preparing", "installing"] {
        let r = reqwest::get(format!("{base}{step}")).await.unwrap();
        assert_eq!(r.status(), StatusCode::OK, "{step}");
    }
    wait_state(&d, id, "complete").await;
    wait_relay(&d, "disconnected with a backlog", |st| {
        st["relay"]["connected"] == false && st["backlog"].as_u64() >= Some(5)
    })
    .await;
    // Some time passes; the relay keeps trying.
    tokio::time::sleep(Duration::from_secs(3)).await;

    broker.up();
    let got = read_until(&broker.url(), |m| {
        m.iter().any(|m| m.key == "deployment.complete")
    })
    .await;
    let kept = dedupe(&got);
    assert_complete(&kept);
    let states: Vec<&str> = kept
        .iter()
        .filter(|m| m.key.starts_with("deployment.") && m.body["data"]["id"] == id)
        .map(|m| m.key.as_str())
        .collect();
    assert_eq!(
        states,
        [
            "deployment.new",
            "deployment.preparing",
            "deployment.installing",
            "deployment.configuring",
            "deployment.postconfiguring",
            "deployment.complete"
        ],
        "in order for the deployment"
    );
    wait_relay(&d, "caught up again", |st| {
        st["backlog"] == 0 && st["relay"]["connected"] == true
    })
    .await;
    d.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_database_refuses_callbacks_and_loses_none() {
    let pg = Postgres::start();
    let store = TestStore::on_postgres(&pg.url("postgres"));
    let d = Daemon::start(&store, None).await;
    let id = start_deployment(&d).await;
    let base = common::callback_base(&d.base, MAC).await;
    let r = reqwest::get(format!("{base}preparing")).await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    wait_state(&d, id, "installing").await;

    // PostgreSQL goes away: what cannot be recorded is refused with 503,
    // so the machine tries again.
    pg.down();
    let r = reqwest::get(format!("{base}installing")).await.unwrap();
    assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(r.text().await.unwrap().contains("retry"));
    let (s, _) = d.get(&format!("/deployments/{id}")).await;
    assert_eq!(s, StatusCode::SERVICE_UNAVAILABLE);
    tokio::time::sleep(Duration::from_secs(3)).await;

    // It is back: the machine's retry is accepted, and the deployment
    // completes; the callback accepted before the outage still counts.
    pg.up();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let r = reqwest::get(format!("{base}installing")).await.unwrap();
        if r.status() == StatusCode::OK {
            break;
        }
        assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert!(Instant::now() < deadline, "the daemon never reconnected");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    wait_state(&d, id, "complete").await;
    let (_, log) = d.get(&format!("/deployments/{id}/log")).await;
    let text = log.to_string();
    assert!(text.contains("callback preparing received"), "{log}");
    assert!(text.contains("callback installing received"), "{log}");
    d.stop().await;
}

/// A mirror that answers one download when told to: `asked` fires when
/// the request has arrived, the body goes out once `release` fires.
async fn held_mirror(
    body: &'static [u8],
) -> (
    u16,
    tokio::sync::oneshot::Receiver<()>,
    tokio::sync::oneshot::Sender<()>,
) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let (asked_tx, asked) = tokio::sync::oneshot::channel();
    let (release, released) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(async move {
        let Ok((mut conn, _)) = listener.accept().await else {
            return;
        };
        let mut buf = vec![0u8; 4096];
        let _ = conn.read(&mut buf).await;
        let _ = asked_tx.send(());
        let _ = released.await;
        let head = format!(
            "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            body.len()
        );
        let _ = conn.write_all(head.as_bytes()).await;
        let _ = conn.write_all(body).await;
        let _ = conn.shutdown().await;
    });
    (port, asked, release)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_stopped_during_an_action_does_not_fail_the_deployment() {
    const KERNEL: &[u8] = b"a kernel that took a while to download";
    let pg = Postgres::start();
    let store = TestStore::on_postgres(&pg.url("postgres"));
    let d = Daemon::start(&store, None).await;
    add_server(&d, "o2.dc1.example.com").await;
    let (port, asked, release) = held_mirror(KERNEL).await;
    // The download is done while the database is down; serving the file
    // then needs the store.
    let profile = format!(
        r#"kind: Profile
apiVersion: v1alpha1
name: slowfetch
version: 1.0
timeout: 2m
workflow:
  new: {{}}
  preparing:
    - action: serve_file
      via: http
      filename: 'kernel/{{{{ mac_address }}}}'
      source:
        type: url
        url: 'http://127.0.0.1:{port}/vmlinuz'
    - action: expect_callback
      name: preparing
  installing: []
  configuring: []
  postconfiguring: []
  complete: []
"#
    );
    let (s, b) = d.post_text("/profiles", &profile, "application/yaml").await;
    assert_eq!(s, StatusCode::CREATED, "{b}");
    let (s, b) = d
        .post(
            "/deployments",
            json!({"server": "o2.dc1.example.com", "profile": "slowfetch==1.0"}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{b}");
    let id = b["id"].as_i64().unwrap();

    tokio::time::timeout(Duration::from_secs(60), asked)
        .await
        .expect("the download never started")
        .unwrap();
    pg.down();
    release.send(()).unwrap();
    // Longer than a pooled connection is waited for (10 s): the action
    // meets the store's error, not only a slow store.
    tokio::time::sleep(Duration::from_secs(15)).await;
    pg.up();

    // The file is served once the store is back, and the deployment
    // waits for its machine, not in error.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let r = reqwest::get(format!("{}/kernel/{MAC}", d.base))
            .await
            .unwrap();
        if r.status() == StatusCode::OK {
            assert_eq!(r.bytes().await.unwrap(), KERNEL);
            break;
        }
        assert!(Instant::now() < deadline, "never served: {}", r.status());
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // The action's end is committed after the file it served (the
    // engine's next commit): its log line may come a moment later.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (_, b) = d.get(&format!("/deployments/{id}")).await;
        assert_eq!(b["state"], "preparing", "{b}");
        assert!(b["error"].is_null(), "{b}");
        let (_, log) = d.get(&format!("/deployments/{id}/log")).await;
        if log.to_string().contains("before it answered") {
            break;
        }
        assert!(Instant::now() < deadline, "{log}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    d.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_unconfirmed_at_a_sigkill_are_published_after_the_restart() {
    let broker = Broker::start();
    durable_queue(&broker.url()).await;
    let url = broker.url();
    let mut daemon = Binary::start(&[("BROKER_URL", url.as_str())]).await;
    daemon.create("/locations", json!({"name": "dc1"})).await;
    let wait_backlog = async |daemon: &Binary, want: fn(&Value) -> bool| {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let st = daemon.get("/events/status").await;
            if want(&st) {
                return;
            }
            assert!(Instant::now() < deadline, "{st}\n{}", daemon.log());
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    };
    wait_backlog(&daemon, |st| st["backlog"] == 0).await;

    // Changes the broker never confirms (it is down), then SIGKILL.
    broker.down();
    for i in 0..5 {
        daemon
            .create(
                "/servers",
                json!({"fqdn": format!("k{i}.dc1.example.com"), "location": "dc1"}),
            )
            .await;
    }
    wait_backlog(&daemon, |st| st["backlog"].as_u64() >= Some(5)).await;
    daemon.kill();

    broker.up();
    daemon.restart().await;
    let got = read_until(&url, |m| {
        m.iter()
            .any(|m| m.body["data"]["fqdn"] == "k4.dc1.example.com")
    })
    .await;
    let kept = dedupe(&got);
    assert_complete(&kept);
    let servers: Vec<&str> = kept
        .iter()
        .filter(|m| m.key == "server.created")
        .map(|m| m.body["data"]["fqdn"].as_str().unwrap())
        .collect();
    assert_eq!(
        servers,
        [
            "k0.dc1.example.com",
            "k1.dc1.example.com",
            "k2.dc1.example.com",
            "k3.dc1.example.com",
            "k4.dc1.example.com"
        ]
    );
    wait_backlog(&daemon, |st| st["backlog"] == 0).await;
}
