//! The integration tests: one binary, so the daemon's dependency graph is
//! linked once and `common` is compiled once for every suite.
//!
//! Each module is a suite against real peers (PostgreSQL, RabbitMQ, QEMU
//! with real firmware, ipmi_sim, atftp, real DHCP clients): run one with
//! `cargo test --test it dhcp::`, one test with its full path
//! (`cargo test --test it events::a_broker_outage_loses_nothing`).

/// Runs each named `async fn(Backend)` of the calling module once on
/// SQLite and once on PostgreSQL, as `<module>::sqlite::<name>` and
/// `<module>::postgres::<name>`. The module must have `Backend` in scope.
macro_rules! on_both_backends {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() { super::$name(super::Backend::Sqlite).await })*
        }
        mod postgres {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() { super::$name(super::Backend::Postgres).await })*
        }
    };
}

mod common;

mod api;
mod boot_e2e;
mod boot_http;
mod cli;
mod console;
mod deploy_e2e;
mod deployments;
mod dhcp;
mod dhcp_clients;
mod dhcp_golden;
mod django_golden;
mod events;
mod fuzz_corpus;
mod health;
mod legacy;
mod notify;
mod older_import;
mod outages;
mod packages;
mod power;
mod power_e2e;
mod profiles_dir;
mod schema;
mod shared_db;
mod starts;
mod store;
mod tftp;
