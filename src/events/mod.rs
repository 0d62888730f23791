//! Events for the web layer and other tools: the outbox relay to RabbitMQ
//! (`relay.rs`), the command queue (`commands.rs`), and notifications to
//! Slack and email (`notify.rs`). Only this module knows AMQP and SMTP.

pub mod commands;
pub mod notify;
pub mod relay;
