//! The real RabbitMQ on 127.0.0.1:5672 as the tests use it: a queue bound
//! to everything on a test's own exchange, reading messages, and removing
//! the exchange afterwards.

use std::time::{Duration, Instant};

use futures_util::StreamExt;
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, ExchangeDeclareOptions, QueueBindOptions,
    QueueDeclareOptions,
};
use lapin::types::FieldTable;
use lapin::{Connection, ConnectionProperties, ExchangeKind};
use serde_json::Value;

pub const BROKER: &str = "amqp://guest:guest@127.0.0.1:5672/%2f";

/// A queue bound to everything on `exchange`, declared before the daemon
/// publishes anything.
pub async fn listen(exchange: &str) -> (Connection, lapin::Consumer) {
    let conn = Connection::connect(BROKER, ConnectionProperties::default())
        .await
        .expect("RabbitMQ on 127.0.0.1:5672 (the README's test command starts it)");
    let ch = conn.create_channel().await.unwrap();
    // The test deletes it at the end.
    declare_exchange(&ch, exchange).await;
    let q = exclusive_queue(&ch).await;
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

/// A server-named queue that lives as long as this connection.
pub async fn exclusive_queue(ch: &lapin::Channel) -> lapin::Queue {
    ch.queue_declare(
        "".into(),
        QueueDeclareOptions {
            exclusive: true,
            auto_delete: true,
            ..Default::default()
        },
        FieldTable::default(),
    )
    .await
    .unwrap()
}

/// Declares the topic exchange `name` as the relay does (durable).
pub async fn declare_exchange(ch: &lapin::Channel, name: &str) {
    ch.exchange_declare(
        name.into(),
        ExchangeKind::Topic,
        ExchangeDeclareOptions {
            durable: true,
            ..Default::default()
        },
        FieldTable::default(),
    )
    .await
    .unwrap();
}

/// The next `n` messages: (message_id, routing key, body).
pub async fn take(consumer: &mut lapin::Consumer, n: usize) -> Vec<(String, String, Value)> {
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
pub async fn forget(conn: &Connection, exchange: &str) {
    if let Ok(ch) = conn.create_channel().await {
        let _ = ch
            .exchange_delete(
                exchange.into(),
                lapin::options::ExchangeDeleteOptions::default(),
            )
            .await;
    }
}

pub fn exchange_name() -> String {
    let mut b = [0u8; 4];
    getrandom::fill(&mut b).unwrap();
    format!("bl-test-{}", hex::encode(b))
}
