//! The SQL of every store operation, one file per area, written once and
//! compiled for each backend: `sqlite.rs` and `postgres.rs` each declare
//! this directory as their module `backend`, after defining `Db` (their
//! sqlx database), `Backend` (their store type), and the row-lock clauses
//! (`locked!`, `shared!`, `FOR_UPDATE` and `FOR_KEY_SHARE`: `FOR UPDATE`/`FOR SHARE` on
//! PostgreSQL, nothing on SQLite, whose writers `BEGIN IMMEDIATE` one at a
//! time). The statements use `$n` placeholders, which both accept; types
//! that differ (timestamps, JSON, bytes) go through sqlx's encoders, so
//! the text is the same. What is compiled once (row types, conversions)
//! is in `sql.rs`, `boot_sql.rs`, `engine_sql.rs` and `power_sql.rs`.

use super::{
    Backend, Batch, Db, FOR_KEY_SHARE, FOR_UPDATE, HEX_BYTES, JSON_PAYLOAD, JSON_ROWS, ONE_WRITER,
    RELEASE_CHECKED, Statements, WARMING_TURNS_INDEX_ON,
};

type Conn = <Db as sqlx::Database>::Connection;

mod agents;
mod boot;
mod callbacks;
pub(crate) use boot::Unserve;
#[cfg(test)]
#[allow(
    unused_imports,
    reason = "the PostgreSQL build of this file has no such test"
)]
pub(super) use boot::by_server_queries;
pub(super) use boot::keep_warm;
#[allow(
    unused_imports,
    reason = "PostgreSQL's listener reads the index ahead; on SQLite the daemon asks (`warm_boot_index`)"
)]
pub(super) use boot::warm_index;
#[cfg(test)]
#[allow(
    unused_imports,
    reason = "the PostgreSQL build of this file has no such test"
)]
pub(super) use engine::claim_queries;
mod engine;
mod helpers;
mod import;
mod inventory;
mod leases;
mod locks;
mod older;
mod outbox;
mod power;
mod profiles;
mod secrets;
mod server_reads;
mod sessions;
mod starts;
pub(crate) use starts::Start;
mod store;
mod timeline;
mod transition_groups;
mod users;
