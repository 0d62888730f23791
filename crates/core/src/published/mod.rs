//! The objects as the daemon publishes them: the bodies of the REST API
//! and the `data` of every event (`docs/events.md`), one declared
//! representation, schema version [`SCHEMA_VERSION`]. The store builds them
//! from its rows (which are its own types, `sqlx::FromRow`); nothing here
//! knows a table. A change to a field here is a change to the API and to
//! the events: `tests.rs` holds each one's JSON to its published shape.

pub mod agents;
pub mod boot;
pub mod deployment;
pub mod events;
pub mod inventory;
pub mod power;

#[cfg(test)]
mod tests;

/// The event body's `schema_version`.
pub const SCHEMA_VERSION: u32 = 2;
