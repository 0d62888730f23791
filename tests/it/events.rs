//! The outbox relay against the real RabbitMQ on 127.0.0.1:5672: every
//! change arrives on the topic exchange in order, with its row id as
//! message_id, once confirmed; with the broker cut off (a TCP proxy between
//! the daemon and RabbitMQ that the test closes) changes pile up in the
//! outbox, and all of them arrive once it is back. The command queue:
//! commands published to `bootloader.commands.<location>` are carried out
//! and answered on `reply_to`.

use crate::common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use common::amqp::{BROKER, exchange_name, exclusive_queue, forget, listen, take};
use common::{Backend, Daemon, TestStore};
use futures_util::StreamExt;
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicPublishOptions, QueueDeleteOptions,
};
use lapin::types::FieldTable;
use lapin::{BasicProperties, Connection, ConnectionProperties};
use reqwest::StatusCode;
use serde_json::{Value, json};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changes_arrive_in_order_with_their_ids_sqlite() {
    changes_arrive_in_order_with_their_ids(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changes_arrive_in_order_with_their_ids_postgres() {
    changes_arrive_in_order_with_their_ids(Backend::Postgres).await;
}

async fn changes_arrive_in_order_with_their_ids(backend: Backend) {
    let exchange = exchange_name();
    let (conn, mut consumer) = listen(&exchange).await;
    let mut store = TestStore::new(backend).await;
    store.env.insert("BROKER_URL".into(), BROKER.into());
    store
        .env
        .insert("BOOTLOADER_BROKER_EXCHANGE".into(), exchange.clone());
    let d = Daemon::start(&store, None).await;
    d.seed_location().await;
    for i in 0..5 {
        let (s, b) = d
            .post(
                "/servers",
                json!({"fqdn": format!("e{i}.dc1.example.com"), "location": "dc1"}),
            )
            .await;
        assert_eq!(s, StatusCode::CREATED, "{b}");
    }
    // The first start's user and token, the daemon's start as an agent
    // (when its first report lands), the location, the network, five
    // servers.
    let got = take(&mut consumer, 10).await;
    let keys: Vec<&str> = got.iter().map(|(_, k, _)| k.as_str()).collect();
    assert_eq!(
        keys.iter().filter(|k| **k == "agent.started").count(),
        1,
        "{keys:?}"
    );
    let keys: Vec<&str> = keys
        .into_iter()
        .filter(|k| !k.starts_with("agent."))
        .collect();
    assert_eq!(
        keys[keys.len() - 7..],
        [
            "location.created",
            "network.created",
            "server.created",
            "server.created",
            "server.created",
            "server.created",
            "server.created"
        ],
        "{keys:?}"
    );
    let ids: Vec<i64> = got.iter().map(|(id, _, _)| id.parse().unwrap()).collect();
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "in order: {ids:?}");
    let (id, key, body) = &got[got.len() - 1];
    assert_eq!(body["schema_version"], 2);
    assert_eq!(body["id"].to_string(), *id);
    assert!(body["outbox_id"].is_i64(), "{body}");
    assert_eq!(body["routing_key"], key.as_str());
    assert_eq!(body["data"]["fqdn"], "e4.dc1.example.com");
    assert!(body["created_at"].is_string());
    // Nothing is left behind.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (_, st) = d.get("/events/status").await;
        if st["backlog"] == 0 {
            assert_eq!(st["relay"]["connected"], true, "{st}");
            break;
        }
        assert!(Instant::now() < deadline, "{st}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    d.stop().await;
    forget(&conn, &exchange).await;
    store.drop_database().await;
}

/// A TCP proxy to RabbitMQ that the test can cut and restore.
struct Proxy {
    port: u16,
    up: Arc<AtomicBool>,
    cut: Arc<tokio::sync::Notify>,
    /// Connections stay open but every byte is dropped: a partition that
    /// refuses nothing.
    silent: Arc<AtomicBool>,
}

/// Copies `from` to `to` until either ends; while `silent`, bytes are
/// read and dropped.
async fn forward(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    silent: Arc<AtomicBool>,
) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut buf = vec![0u8; 16384];
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        if silent.load(Ordering::SeqCst) {
            continue;
        }
        if to.write_all(&buf[..n]).await.is_err() {
            return;
        }
    }
}

impl Proxy {
    async fn start() -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let up = Arc::new(AtomicBool::new(true));
        let cut = Arc::new(tokio::sync::Notify::new());
        let silent = Arc::new(AtomicBool::new(false));
        let (up2, cut2, silent2) = (Arc::clone(&up), Arc::clone(&cut), Arc::clone(&silent));
        tokio::spawn(async move {
            loop {
                let Ok((client, _)) = listener.accept().await else {
                    return;
                };
                if !up2.load(Ordering::SeqCst) {
                    // Down: the connection is refused at once.
                    drop(client);
                    continue;
                }
                let cut = Arc::clone(&cut2);
                let silent = Arc::clone(&silent2);
                tokio::spawn(async move {
                    let Ok(broker) = tokio::net::TcpStream::connect("127.0.0.1:5672").await else {
                        return;
                    };
                    let (client_r, client_w) = client.into_split();
                    let (broker_r, broker_w) = broker.into_split();
                    tokio::select! {
                        () = forward(client_r, broker_w, silent.clone()) => {}
                        () = forward(broker_r, client_w, silent) => {}
                        () = cut.notified() => {}
                    }
                });
            }
        });
        Self {
            port,
            up,
            cut,
            silent,
        }
    }

    /// Drops every byte from now on, refusing nothing.
    fn go_silent(&self) {
        self.silent.store(true, Ordering::SeqCst);
    }

    /// Cuts the silent connections and forwards again.
    fn speak(&self) {
        self.cut.notify_waiters();
        self.silent.store(false, Ordering::SeqCst);
    }

    fn down(&self) {
        self.up.store(false, Ordering::SeqCst);
        self.cut.notify_waiters();
    }

    fn restore(&self) {
        self.up.store(true, Ordering::SeqCst);
    }
}

/// Waits until every outbox row is confirmed and marked sent.
async fn wait_backlog_empty(d: &Daemon) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (_, st) = d.get("/events/status").await;
        if st["backlog"] == 0 {
            return;
        }
        assert!(Instant::now() < deadline, "{st}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A daemon on SQLite whose broker connection goes through a `Proxy`,
/// publishing to `exchange`, with location dc1 and its network.
async fn behind_proxy(exchange: &str) -> (Proxy, TestStore, Daemon) {
    let proxy = Proxy::start().await;
    let mut store = TestStore::new(Backend::Sqlite).await;
    store.env.insert(
        "BROKER_URL".into(),
        format!("amqp://guest:guest@127.0.0.1:{}/%2f", proxy.port),
    );
    store
        .env
        .insert("BOOTLOADER_BROKER_EXCHANGE".into(), exchange.to_string());
    let d = Daemon::start(&store, None).await;
    d.seed_location().await;
    (proxy, store, d)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broker_outage_loses_nothing() {
    let exchange = exchange_name();
    let (conn, mut consumer) = listen(&exchange).await;
    let (proxy, _store, d) = behind_proxy(&exchange).await;
    // The first user and token, this daemon's start as its location's
    // agent, the location, the network; and their confirms in (marked
    // sent), or the cut could lose a confirm and they would rightly come
    // again.
    take(&mut consumer, 5).await;
    wait_backlog_empty(&d).await;

    proxy.down();
    for i in 0..10 {
        let (s, b) = d
            .post(
                "/servers",
                json!({"fqdn": format!("o{i}.dc1.example.com"), "location": "dc1"}),
            )
            .await;
        assert_eq!(s, StatusCode::CREATED, "{b}");
    }
    // The changes wait in the outbox; the status says so.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (_, st) = d.get("/events/status").await;
        if st["relay"]["connected"] == false && st["backlog"].as_u64() >= Some(10) {
            assert!(st["relay"]["last_error"].is_string(), "{st}");
            break;
        }
        assert!(Instant::now() < deadline, "{st}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    proxy.restore();
    let got = take(&mut consumer, 10).await;
    let fqdns: Vec<String> = got
        .iter()
        .map(|(_, _, b)| b["data"]["fqdn"].as_str().unwrap_or_default().to_string())
        .collect();
    let want: Vec<String> = (0..10).map(|i| format!("o{i}.dc1.example.com")).collect();
    assert_eq!(fqdns, want, "every change, in order");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (_, st) = d.get("/events/status").await;
        if st["backlog"] == 0 && st["relay"]["connected"] == true {
            break;
        }
        assert!(Instant::now() < deadline, "{st}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    d.stop().await;
    forget(&conn, &exchange).await;
}

/// Writers side by side on PostgreSQL: outbox ids come from the inserts and
/// may commit out of order, but the ids a consumer sees only grow, and
/// every change arrives once the relay is done.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parallel_writers_publish_growing_ids_postgres() {
    let exchange = exchange_name();
    let (conn, mut consumer) = listen(&exchange).await;
    let mut store = TestStore::new(Backend::Postgres).await;
    store.env.insert("BROKER_URL".into(), BROKER.into());
    store
        .env
        .insert("BOOTLOADER_BROKER_EXCHANGE".into(), exchange.clone());
    let d = Arc::new(Daemon::start(&store, None).await);
    d.seed_location().await;
    take(&mut consumer, 5).await;
    let mut writers = tokio::task::JoinSet::new();
    for w in 0..4 {
        let d = d.clone();
        writers.spawn(async move {
            for i in 0..30 {
                let (s, b) = d
                    .post("/labels", json!({"name": format!("w{w}-{i}")}))
                    .await;
                assert_eq!(s, StatusCode::CREATED, "{b}");
            }
        });
    }
    while let Some(r) = writers.join_next().await {
        r.unwrap();
    }
    let got = take(&mut consumer, 120).await;
    let ids: Vec<i64> = got.iter().map(|(id, _, _)| id.parse().unwrap()).collect();
    let inversions = ids.windows(2).filter(|w| w[0] >= w[1]).count();
    assert_eq!(inversions, 0, "ids seen by the consumer went back: {ids:?}");
    let mut rows: Vec<i64> = got
        .iter()
        .map(|(_, _, b)| b["outbox_id"].as_i64().unwrap())
        .collect();
    rows.sort();
    rows.dedup();
    assert_eq!(rows.len(), 120, "every change, once");
    let d = Arc::try_unwrap(d).unwrap_or_else(|_| panic!("daemon still shared"));
    d.stop().await;
    forget(&conn, &exchange).await;
    store.drop_database().await;
}

/// A partition that drops packets instead of refusing them: the relay
/// shows the events waiting for their confirms, gives the session up
/// (heartbeats, the confirm timeout) instead of waiting for minutes, and
/// once the path is back every event arrives, in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_partition_is_noticed_and_loses_nothing() {
    let exchange = exchange_name();
    let (conn, mut consumer) = listen(&exchange).await;
    let (proxy, _store, d) = behind_proxy(&exchange).await;
    take(&mut consumer, 5).await;
    wait_backlog_empty(&d).await;

    proxy.go_silent();
    for i in 0..5 {
        let (s, b) = d
            .post(
                "/servers",
                json!({"fqdn": format!("p{i}.dc1.example.com"), "location": "dc1"}),
            )
            .await;
        assert_eq!(s, StatusCode::CREATED, "{b}");
    }
    // The stall shows: events await their confirms, since a time.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (_, st) = d.get("/events/status").await;
        if st["relay"]["awaiting_confirms"].as_u64() > Some(0) {
            assert!(st["relay"]["awaiting_since"].is_string(), "{st}");
            break;
        }
        assert!(Instant::now() < deadline, "{st}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // And the session is given up well before a TCP timeout would.
    let deadline = Instant::now() + Duration::from_secs(45);
    loop {
        let (_, st) = d.get("/events/status").await;
        if st["relay"]["connected"] == false && st["relay"]["last_error"].is_string() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the stalled session was kept: {st}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    proxy.speak();
    // At-least-once: a message the broker took before the cut may come
    // again; every change arrives, first times in order.
    let mut firsts: Vec<String> = Vec::new();
    while firsts.len() < 5 {
        let (_, _, body) = take(&mut consumer, 1).await.remove(0);
        let fqdn = body["data"]["fqdn"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        if !firsts.contains(&fqdn) {
            firsts.push(fqdn);
        }
    }
    let want: Vec<String> = (0..5).map(|i| format!("p{i}.dc1.example.com")).collect();
    assert_eq!(firsts, want);
    d.stop().await;
    forget(&conn, &exchange).await;
}

/// Location dc1 with its network, the server `fqdn` in it, and the profile
/// `wait==1.0`, whose deployments wait for a callback that never comes.
async fn server_and_waiting_profile(d: &Daemon, fqdn: &str) {
    d.seed_location().await;
    let (s, b) = d
        .post("/servers", json!({"fqdn": fqdn, "location": "dc1"}))
        .await;
    assert_eq!(s, StatusCode::CREATED, "{b}");
    let (s, b) = d
        .post_text(
            "/profiles",
            "kind: Profile\napiVersion: v1alpha1\nname: wait\nversion: 1.0\nworkflow:\n  new: {}\n  preparing:\n    - action: expect_callback\n      name: never\n  installing: {}\n  configuring: {}\n  postconfiguring: {}\n  complete: {}\n",
            "application/yaml",
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{b}");
}

/// Publishes `command` to `queue` with a reply queue, and returns the reply.
async fn ask(
    ch: &lapin::Channel,
    queue: &str,
    replies: &mut lapin::Consumer,
    reply_to: &str,
    id: &str,
    command: &[u8],
) -> Value {
    ch.basic_publish(
        "".into(),
        queue.into(),
        BasicPublishOptions::default(),
        command,
        BasicProperties::default()
            .with_reply_to(reply_to.into())
            .with_correlation_id(id.into())
            .with_message_id(id.into()),
    )
    .await
    .unwrap()
    .await
    .unwrap();
    let d = tokio::time::timeout(Duration::from_secs(60), replies.next())
        .await
        .unwrap_or_else(|_| panic!("no reply to {id}"))
        .expect("consumer ended")
        .expect("delivery");
    d.ack(BasicAckOptions::default()).await.unwrap();
    assert_eq!(
        d.properties
            .correlation_id()
            .as_ref()
            .map(|c| c.to_string()),
        Some(id.to_string()),
        "replies carry the command's correlation_id"
    );
    serde_json::from_slice(&d.data).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commands_from_the_queue_are_carried_out_and_answered() {
    // A location of this test's own, so that its queue is its own.
    let location = exchange_name().replace("bl-test-", "cq");
    let queue = format!("bootloader.commands.{location}");
    let mut store = TestStore::new(Backend::Sqlite).await;
    store.env.insert("BROKER_URL".into(), BROKER.into());
    let exchange = exchange_name();
    store
        .env
        .insert("BOOTLOADER_BROKER_EXCHANGE".into(), exchange.clone());
    store
        .env
        .insert("BOOTLOADER_DHCP_LOCATION".into(), location.clone());
    let d = Daemon::start(&store, None).await;
    server_and_waiting_profile(&d, "q1.dc1.example.com").await;
    // The daemon declares its queue when it connects.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (_, st) = d.get("/events/status").await;
        if st["commands"]["connected"] == true {
            assert_eq!(st["commands"]["queue"], queue.as_str());
            break;
        }
        assert!(Instant::now() < deadline, "{st}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let conn = Connection::connect(BROKER, ConnectionProperties::default())
        .await
        .unwrap();
    let ch = conn.create_channel().await.unwrap();
    ch.confirm_select(Default::default()).await.unwrap();
    let reply_queue = exclusive_queue(&ch).await;
    let reply_to = reply_queue.name().to_string();
    let mut replies = ch
        .basic_consume(
            reply_queue.name().clone(),
            "replies".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await
        .unwrap();

    // Created, as POST /deployments would.
    let r = ask(
        &ch,
        &queue,
        &mut replies,
        &reply_to,
        "c1",
        br#"{"command":"deployment.create","server":"q1.dc1.example.com","profile":"wait==1.0"}"#,
    )
    .await;
    assert_eq!(
        (r["ok"].clone(), r["status"].clone()),
        (json!(true), json!(201)),
        "{r}"
    );
    assert_eq!(r["command"], "deployment.create");
    let id = r["result"]["id"].as_i64().expect("the deployment's id");
    // Acknowledged after the commit: the API sees it at once.
    let (s, got) = d.get(&format!("/deployments/{id}")).await;
    assert_eq!(s, StatusCode::OK, "{got}");
    assert_eq!(got["server"], "q1.dc1.example.com");

    // The API's validation errors, field by field.
    let r = ask(
        &ch,
        &queue,
        &mut replies,
        &reply_to,
        "c2",
        br#"{"command":"deployment.create","server":"q1.dc1.example.com","profile":"wait==1.0"}"#,
    )
    .await;
    assert_eq!(
        (r["ok"].clone(), r["status"].clone()),
        (json!(false), json!(409)),
        "{r}"
    );
    let r = ask(
        &ch,
        &queue,
        &mut replies,
        &reply_to,
        "c3",
        br#"{"command":"deployment.create","server":"nope.dc1.example.com","profile":"wait==1.0"}"#,
    )
    .await;
    assert_eq!(r["status"], 422, "{r}");
    assert!(r["error"]["fields"]["server"].is_array(), "{r}");
    // Not a command at all.
    let r = ask(
        &ch,
        &queue,
        &mut replies,
        &reply_to,
        "c4",
        b"power off everything",
    )
    .await;
    assert_eq!(
        (r["ok"].clone(), r["status"].clone()),
        (json!(false), json!(400)),
        "{r}"
    );
    assert!(
        r["error"]["message"].as_str().unwrap().contains("not JSON"),
        "{r}"
    );
    assert_eq!(r["error"]["error"], "bad_command", "{r}");
    let r = ask(
        &ch,
        &queue,
        &mut replies,
        &reply_to,
        "c5",
        br#"{"command":"deployment.explode","id":1}"#,
    )
    .await;
    assert_eq!(r["status"], 400, "{r}");
    // A power command for a server without a BMC: the API's answer.
    let r = ask(
        &ch,
        &queue,
        &mut replies,
        &reply_to,
        "c6",
        br#"{"command":"power","server":"q1.dc1.example.com","action":"cycle"}"#,
    )
    .await;
    assert_eq!(r["ok"], false, "{r}");
    assert!(r["status"].as_u64().unwrap() >= 400, "{r}");

    // Cancelled through the queue.
    let r = ask(
        &ch,
        &queue,
        &mut replies,
        &reply_to,
        "c7",
        format!(r#"{{"command":"deployment.cancel","id":{id}}}"#).as_bytes(),
    )
    .await;
    assert_eq!(
        (r["ok"].clone(), r["status"].clone()),
        (json!(true), json!(200)),
        "{r}"
    );
    let (_, got) = d.get(&format!("/deployments/{id}")).await;
    assert_eq!(got["state"], "cancelled", "{got}");
    let (_, st) = d.get("/events/status").await;
    assert!(st["commands"]["handled"].as_u64() >= Some(7), "{st}");

    d.stop().await;
    let _ = ch
        .queue_delete(queue.as_str().into(), QueueDeleteOptions::default())
        .await;
    forget(&conn, &exchange).await;
}

/// Outbox retention: a row goes once it is old, published (or no broker is
/// configured) and, for the kinds notifications announce, notified.
async fn old_outbox_rows_are_pruned_once_done_with(backend: Backend) {
    let store = TestStore::new(backend).await;
    let d = Daemon::start(&store, None).await;
    server_and_waiting_profile(&d, "r1.dc1.example.com").await;
    let (s, b) = d
        .post(
            "/deployments",
            json!({"server": "r1.dc1.example.com", "profile": "wait==1.0"}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{b}");
    // The engine walks it to its callback, which never comes: after that
    // the outbox stays still.
    let id = b["id"].as_i64().unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (_, dep) = d.get(&format!("/deployments/{id}")).await;
        if dep["state"] == "preparing" {
            break;
        }
        assert!(Instant::now() < deadline, "{dep}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let now = time::OffsetDateTime::now_utc();
    let later = now + time::Duration::DAY;
    let rows = |_: ()| async {
        let (n, _) = d.store.outbox_backlog().await.unwrap();
        n
    };
    let written = rows(()).await;
    assert!(written >= 6, "{written}");
    // Nothing is old yet; nothing is sent yet.
    assert_eq!(
        d.store
            .prune_outbox(now - time::Duration::DAY, true)
            .await
            .unwrap(),
        0
    );
    assert_eq!(d.store.prune_outbox(later, false).await.unwrap(), 0);
    // Published: every old row goes but deployment.new, which waits for the
    // notifications.
    let pending = d.store.pending_events(1000).await.unwrap();
    let ids: Vec<i64> = pending.iter().map(|e| e.id).collect();
    d.store.mark_events_sent(&ids).await.unwrap();
    let pruned = d.store.prune_outbox(later, false).await.unwrap();
    assert_eq!(pruned, written - 1, "all but deployment.new");
    let waiting = d.store.pending_notifications(10).await.unwrap();
    assert_eq!(waiting.len(), 1);
    assert_eq!(waiting[0].routing_key, "deployment.new");
    d.store.mark_notified(waiting[0].id).await.unwrap();
    assert_eq!(d.store.prune_outbox(later, false).await.unwrap(), 1);
    // Without a broker, unsent rows go too.
    let (s, b) = d
        .post(
            "/servers",
            json!({"fqdn": "r2.dc1.example.com", "location": "dc1"}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{b}");
    assert_eq!(d.store.prune_outbox(later, false).await.unwrap(), 0);
    assert_eq!(d.store.prune_outbox(later, true).await.unwrap(), 1);
    d.stop().await;
    store.drop_database().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn old_outbox_rows_are_pruned_sqlite() {
    old_outbox_rows_are_pruned_once_done_with(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn old_outbox_rows_are_pruned_postgres() {
    old_outbox_rows_are_pruned_once_done_with(Backend::Postgres).await;
}
