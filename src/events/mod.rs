//! Events for the web layer and other tools: the outbox relay to RabbitMQ
//! (`relay.rs`), the command queue (`commands.rs`), and notifications to
//! Slack and email (`notify.rs`). Only this module knows AMQP and SMTP.

pub mod commands;
pub mod notify;
pub mod relay;

use std::sync::{Arc, Mutex};

/// A part's status, shared between its task (which updates it) and the
/// API (which reads a copy).
#[derive(Debug, Default)]
pub struct StatusCell<T>(Arc<Mutex<T>>);

impl<T> Clone for StatusCell<T> {
    fn clone(&self) -> Self {
        Self(Arc::clone(&self.0))
    }
}

impl<T: Clone> StatusCell<T> {
    pub fn get(&self) -> T {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    pub fn update(&self, f: impl FnOnce(&mut T)) {
        f(&mut self.0.lock().unwrap_or_else(|e| e.into_inner()));
    }
}
