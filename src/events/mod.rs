//! Events for the web layer and other tools: the outbox relay to RabbitMQ
//! (`relay.rs`). Only this module knows AMQP.

pub mod relay;
