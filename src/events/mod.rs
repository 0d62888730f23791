//! Events for the web layer and other tools: the outbox relay to RabbitMQ
//! (`relay.rs`) and the command queue (`commands.rs`). Only this module
//! knows AMQP.

pub mod commands;
pub mod relay;
