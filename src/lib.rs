//! bootloader: a bare-metal provisioning daemon.
//!
//! The daemon: start-up, the service supervisor and the adapters. The
//! domain vocabulary and the pure cores are in `bootloader-core`
//! (`crates/core`), the database in `bootloader-store` (`crates/store`).
//! ARCHITECTURE.md has the whole map.
//!
//! - `app.rs`: start-up shared by `serve` and the tests: the secret key,
//!   the store, the first user, binding, and `run`, which starts every
//!   service under the `supervisor.rs` and stops them in order.
//! - `config/`: the TOML file and environment, layered into a validated
//!   `Config`.
//! - `dhcp/`, `tftp/`: the sockets and leases around the cores.
//! - `http/`: the REST API, boot endpoints and callbacks, health, TLS.
//! - `power/`: BMC drivers (native IPMI, ipmitool) and the power service.
//! - `workflow/`: the deployment engine, its template context and download
//!   cache.
//! - `events/`: the outbox relay, the broker's command queue,
//!   notifications.
//! - `presence.rs`: this daemon reporting itself as its location's agent.
//! - `timeline.rs`, `files.rs`, `telemetry.rs`, `systemd.rs`.

pub mod app;
pub mod config;
pub mod dhcp;
pub mod events;
pub mod files;
pub mod http;
pub mod ndp;
pub mod older;
pub mod ops;
pub mod power;
pub mod presence;
pub mod supervisor;
pub mod systemd;
pub mod telemetry;
pub mod tftp;
pub mod timeline;
pub mod workflow;
