//! The outbox relay against the real RabbitMQ on 127.0.0.1:5672: every
//! change arrives on the topic exchange in order, with its row id as
//! message_id, once confirmed; with the broker cut off (a TCP proxy between
//! the daemon and RabbitMQ that the test closes) changes pile up in the
//! outbox, and all of them arrive once it is back.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use common::{Backend, Daemon, TestStore};
use futures_util::StreamExt;
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, ExchangeDeclareOptions, QueueBindOptions,
    QueueDeclareOptions,
};
use lapin::types::FieldTable;
use lapin::{Connection, ConnectionProperties, ExchangeKind};
use reqwest::StatusCode;
use serde_json::{Value, json};

const BROKER: &str = "amqp://guest:guest@127.0.0.1:5672/%2f";

/// A queue bound to everything on `exchange`, declared before the daemon
/// publishes anything.
async fn listen(exchange: &str) -> (Connection, lapin::Consumer) {
    let conn = Connection::connect(BROKER, ConnectionProperties::default())
        .await
        .expect("RabbitMQ on 127.0.0.1:5672 (the README's test command starts it)");
    let ch = conn.create_channel().await.unwrap();
    ch.exchange_declare(
        exchange.into(),
        ExchangeKind::Topic,
        // As the relay declares it; the test deletes it at the end.
        ExchangeDeclareOptions {
            durable: true,
            ..Default::default()
        },
        FieldTable::default(),
    )
    .await
    .unwrap();
    let q = ch
        .queue_declare(
            "".into(),
            QueueDeclareOptions {
                exclusive: true,
                auto_delete: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await
        .unwrap();
    ch.queue_bind(
        q.name().clone(),
        exchange.into(),
        "#".into(),
        QueueBindOptions::default(),
        FieldTable::default(),
    )
    .await
    .unwrap();
    let consumer = ch
        .basic_consume(
            q.name().clone(),
            "test".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await
        .unwrap();
    (conn, consumer)
}

/// The next `n` messages: (message_id, routing key, body).
async fn take(consumer: &mut lapin::Consumer, n: usize) -> Vec<(String, String, Value)> {
    let mut got = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while got.len() < n {
        let left = deadline.saturating_duration_since(Instant::now());
        let d = tokio::time::timeout(left, consumer.next())
            .await
            .unwrap_or_else(|_| panic!("only {} of {n} messages arrived: {got:?}", got.len()))
            .expect("consumer ended")
            .expect("delivery");
        d.ack(BasicAckOptions::default()).await.unwrap();
        let id = d
            .properties
            .message_id()
            .as_ref()
            .map(|m| m.to_string())
            .unwrap_or_default();
        assert_eq!(
            d.properties.delivery_mode(),
            &Some(2),
            "persistent delivery"
        );
        got.push((
            id,
            d.routing_key.to_string(),
            serde_json::from_slice(&d.data).unwrap(),
        ));
    }
    got
}

/// Removes the test's exchange from the shared broker.
async fn forget(conn: &Connection, exchange: &str) {
    if let Ok(ch) = conn.create_channel().await {
        let _ = ch
            .exchange_delete(
                exchange.into(),
                lapin::options::ExchangeDeleteOptions::default(),
            )
            .await;
    }
}

fn exchange_name() -> String {
    let mut b = [0u8; 4];
    getrandom::fill(&mut b).unwrap();
    format!("bl-test-{}", hex::encode(b))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changes_arrive_in_order_with_their_ids() {
    let exchange = exchange_name();
    let (conn, mut consumer) = listen(&exchange).await;
    let mut store = TestStore::new(Backend::Sqlite).await;
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
    // The first start's user and token, the location, the network, five
    // servers.
    let got = take(&mut consumer, 9).await;
    let keys: Vec<&str> = got.iter().map(|(_, k, _)| k.as_str()).collect();
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
    assert_eq!(body["schema_version"], 1);
    assert_eq!(body["id"].to_string(), *id);
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
}

/// A TCP proxy to RabbitMQ that the test can cut and restore.
struct Proxy {
    port: u16,
    up: Arc<AtomicBool>,
    cut: Arc<tokio::sync::Notify>,
}

impl Proxy {
    async fn start() -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let up = Arc::new(AtomicBool::new(true));
        let cut = Arc::new(tokio::sync::Notify::new());
        let (up2, cut2) = (Arc::clone(&up), Arc::clone(&cut));
        tokio::spawn(async move {
            loop {
                let Ok((mut client, _)) = listener.accept().await else {
                    return;
                };
                if !up2.load(Ordering::SeqCst) {
                    // Down: the connection is refused at once.
                    drop(client);
                    continue;
                }
                let cut = Arc::clone(&cut2);
                tokio::spawn(async move {
                    let Ok(mut broker) = tokio::net::TcpStream::connect("127.0.0.1:5672").await
                    else {
                        return;
                    };
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut client, &mut broker) => {}
                        () = cut.notified() => {}
                    }
                });
            }
        });
        Self { port, up, cut }
    }

    fn down(&self) {
        self.up.store(false, Ordering::SeqCst);
        self.cut.notify_waiters();
    }

    fn restore(&self) {
        self.up.store(true, Ordering::SeqCst);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broker_outage_loses_nothing() {
    let exchange = exchange_name();
    let (conn, mut consumer) = listen(&exchange).await;
    let proxy = Proxy::start().await;
    let mut store = TestStore::new(Backend::Sqlite).await;
    store.env.insert(
        "BROKER_URL".into(),
        format!("amqp://guest:guest@127.0.0.1:{}/%2f", proxy.port),
    );
    store
        .env
        .insert("BOOTLOADER_BROKER_EXCHANGE".into(), exchange.clone());
    let d = Daemon::start(&store, None).await;
    d.seed_location().await;
    // The first user and token, the location, the network.
    take(&mut consumer, 4).await;

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
